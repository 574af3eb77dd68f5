/* akamu's database schema, one migration per version; never edit a
 * released migration, add a new one. */
#include "akamu.h"
#include "gossip/nodekey.h"

const struct store_migration akamu_migrations[] = {
    {1, "CREATE TABLE node_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"},
    {2, gsp_nodekey_schema_sql},
};
const int akamu_n_migrations = sizeof(akamu_migrations) / sizeof(akamu_migrations[0]);
