/* cfg-doc: prints the config reference tables that docs/config.md carries,
 * straight from the schema, so the docs cannot drift (a test compares). */
#include <stdio.h>

#include "cfg/cfg.h"

int main(void)
{
    struct ut_buf b;

    ut_buf_init(&b, 1 << 20);
    ut_buf_printf(&b, "### ahdapa\n\n");
    cfg_schema_markdown(&b, 0);
    ut_buf_printf(&b, "\n### akamu\n\n");
    cfg_schema_markdown(&b, 1);
    fwrite(b.data, 1, b.len, stdout);
    ut_buf_free(&b);
    return 0;
}
