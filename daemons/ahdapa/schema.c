/* ahdapa's database schema, one migration per version; never edit a
 * released migration, add a new one. */
#include "ahdapa.h"
#include "gossip/nodekey.h"

const struct store_migration ahdapa_migrations[] = {
    {1, "CREATE TABLE node_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"},
    {2, gsp_nodekey_schema_sql},
    /* auth (node-local, never replicated): session keys by name ("local",
     * "cluster") and the revocations of distributed_mode = "off". */
    {3, "CREATE TABLE auth_keys (name TEXT PRIMARY KEY, key BLOB NOT NULL,"
        " key_id TEXT NOT NULL, set_at INTEGER NOT NULL);"
        "CREATE TABLE local_revoked_sessions (sid TEXT PRIMARY KEY, exp INTEGER NOT NULL);"},
    /* 4: this node's token signing key (oauth, jwks.c); node-local, never
     * replicated: only its public JWK goes into signing_keys. */
    {4, "CREATE TABLE oauth_signing_key (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " kid TEXT NOT NULL, private_pem TEXT NOT NULL, created INTEGER NOT NULL);"},
};
const int ahdapa_n_migrations = sizeof(ahdapa_migrations) / sizeof(ahdapa_migrations[0]);
