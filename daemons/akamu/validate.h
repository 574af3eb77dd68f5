/*
 * validate.h - validate.c's interface beyond acme.h: the CAA check
 * (RFC 8659). Meant to move into acme.h once the CA has a configured
 * identity (the domain CAA "issue" values name): then akm_va_set_caa
 * becomes an akm_va_opts field, `const char *const *caa_identities`.
 * Until then only the tests call these, and the pool checks no CAA.
 */
#ifndef AKAMU_VALIDATE_H
#define AKAMU_VALIDATE_H

#include <jansson.h>

#include "acme.h"

/* The issuer domain names (RFC 8659 §4.2) this CA answers to, as a NULL-
 * terminated list, copied. With a non-empty list, every job that validated
 * a "dns" identifier is then checked against CAA and fails with a "caa"
 * problem when CAA forbids issuance. NULL or an empty list: no CAA check
 * (the default). Only before the first akm_va_submit (-EBUSY after). */
int akm_va_set_caa(struct akm_va *va, const char *const *identities, struct ut_err *err);

/* Looks CAA up for domain (climbing to the parent until a non-empty CAA
 * RRset is found, RFC 8659 §3) with the pool's resolver and timeout, and
 * evaluates it against the identities set above: "issuewild" for a
 * wildcard (falling back to "issue"), "issue" otherwise; no property of
 * the kind in question, or no CAA RRset at all, allows issuance; an
 * unknown property with the critical flag forbids it. Blocks the caller
 * up to timeout_ms. Returns 0 (allowed, also when no identities are set),
 * -ECANCELED (the pool is stopping), -EPERM (forbidden: *problem a
 * "caa" problem) or -EAGAIN (a lookup failed, which RFC 8659 §3 does not
 * let count as permission: *problem a "dns" problem). */
int akm_va_caa_check(struct akm_va *va, const char *domain, int wildcard, json_t **problem);

#endif
