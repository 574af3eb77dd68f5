/* ahdapa's database schema, one migration per version; never edit a
 * released migration, add a new one. */
#include "ahdapa.h"
#include "gossip/nodekey.h"

const struct store_migration ahdapa_migrations[] = {
    {1, "CREATE TABLE node_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"},
    {2, gsp_nodekey_schema_sql},
};
const int ahdapa_n_migrations = sizeof(ahdapa_migrations) / sizeof(ahdapa_migrations[0]);
