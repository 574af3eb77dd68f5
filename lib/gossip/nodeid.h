/*
 * nodeid.h - a node's gossip id and its public description.
 *
 * The node id is what peers pin keys under and what allowed_node_ids
 * lists. Default: the advertised "host:port" of the node (ahdapa: its
 * issuer URL's authority, else its listen address; akamu: its admin listen
 * address); a wildcard listen host (0.0.0.0, ::, empty) is replaced by the
 * machine's host name. [gossip] node_id overrides it.
 */
#ifndef GSP_NODEID_H
#define GSP_NODEID_H

#include <jansson.h>
#include <stddef.h>

#include "crypto/envelope.h"
#include "util/err.h"

/* 1..CRY_ENV_ID_MAX printable ASCII bytes (0x21..0x7e). 0 or -EINVAL. */
int gsp_node_id_valid(const char *id);

/* Derives the default id from an http(s) URL (issuer) when url is non-NULL
 * and non-empty, else from a "host:port" listen address. */
int gsp_node_id_default(const char *url, const char *listen, char *out, size_t outlen,
                        struct ut_err *err);

/* The GET /api/gossip/kem-info document:
 * {"node_id", "kem_alg": "X-Wing", "kem_public_key": base64url(1216 bytes),
 *  "signing_alg": "ES256", "signing_public_key": base64url(65-byte SEC1
 *  uncompressed point)}. New reference. */
json_t *gsp_kem_info_json(const struct cry_identity *id);

#endif
