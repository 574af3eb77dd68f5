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
    /* 5: this node's active token signing key, sealed at rest like
     * node_keys (jwks.c): secret is the SEC1 DER of the P-256 private key
     * in clear (wrap_key_id NULL) or gsp_wrap_seal'ed (iv || ct || tag)
     * under the wrapping key of that id. The row of migration 4 is moved
     * here (and deleted) by the first start that runs this version, so
     * oauth_signing_key stays empty from then on. */
    {5, "CREATE TABLE oauth_active_key (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " kid TEXT NOT NULL, secret BLOB NOT NULL, wrap_key_id TEXT,"
        " created INTEGER NOT NULL);"},
};
const int ahdapa_n_migrations = sizeof(ahdapa_migrations) / sizeof(ahdapa_migrations[0]);
