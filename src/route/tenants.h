/* Tenants of the ingress (DESIGN §4.2, §10): names, API-key hashes, limits and defaults, and key lookup.
 *
 * Until the Raft control plane holds them, tenants come from the agent config. Only a BLAKE2b-256 hash
 * (libsodium crypto_generichash, keyed like cluster/fsm's fsm_key_hash) of each key is kept; a request's
 * `Authorization: Bearer KEY` is hashed and compared with every tenant's hash in constant time. With no
 * tenant configured every request belongs to the implicit default tenant, without limits. Pure: no I/O. */
#ifndef IM_ROUTE_TENANTS_H
#define IM_ROUTE_TENANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/period.h"
#include "core/slice.h"
#include "route/admission.h"

#define TENANTS_MAX 64
#define TENANT_KEY_HASH_BYTES 32
#define TENANT_MODELS 16    /* models a tenant may be limited to */
#define TENANT_MODEL_MAX 128 /* bytes of one model name, with its NUL */

struct tenant_conf {
  char name[64];
  uint8_t key_hash[TENANT_KEY_HASH_BYTES];
  bool has_key;
  struct adm_limits lim;
  bool slo_latency; /* its requests are latency-class (hedged) unless they say otherwise */
  int nmodels;      /* 0: every model; else only models[0..nmodels) (others answer 403) */
  char models[TENANT_MODELS][TENANT_MODEL_MAX];
  int64_t budget_nano; /* spend allowed per period (nano-units of the prices' currency); 0 = no budget */
  enum period period; /* what the budget counts (core/period.h) */
};

/* tenant_conf_default: no name, no key, default limits, throughput class. */
void tenant_conf_default(struct tenant_conf *t);

/* tenants_hash_key writes the hash of key[0..len) to out. */
void tenants_hash_key(const char *key, size_t len, uint8_t out[TENANT_KEY_HASH_BYTES]);

/* tenant_conf_set sets one field from text: name, key (hashed at once; the caller should wipe its copy),
 * weight (> 0), priority (high|normal|low), requests_per_s, tokens_per_min (>= 0, 0 = unlimited),
 * max_concurrent (integer >= 0), slo (latency|throughput), model (appends one to the models the tenant is
 * limited to; repeat it for more), budget (an amount >= 0 with at most 9 decimals; 0 = none), period
 * (month|day|total). 0, or -EINVAL with a message in err. */
int tenant_conf_set(struct tenant_conf *t, const char *key, const char *val, char *err, size_t errlen);

/* tenant_conf_parse parses the flag/environment form "name=team-a,key=sk-...,weight=2,priority=high,..."
 * (the fields of tenant_conf_set, comma-separated) into *t (defaults first). spec is modified: the key's
 * characters are overwritten with zeros once hashed. A name and a key are required. 0 or -EINVAL. */
int tenant_conf_parse(struct tenant_conf *t, char *spec, char *err, size_t errlen);

/* tenant_conf_check validates a complete tenant (name and key present) and that its name and key hash differ
 * from those of others[0..n). 0 or -EINVAL with a message. */
int tenant_conf_check(const struct tenant_conf *t, const struct tenant_conf *others, int n, char *err,
                      size_t errlen);

/* tenant_model_allowed: may tenant t use model? (Always, when it is not limited to some models.) */
bool tenant_model_allowed(const struct tenant_conf *t, struct slice model);

/* Lookup results besides an index >= 0. */
enum { TENANT_MISSING = -1, TENANT_BAD_KEY = -2 };

/* tenants_lookup finds the tenant of an Authorization header value ("Bearer KEY", scheme case-insensitive)
 * among t[0..n): its index, TENANT_MISSING (no header, or not a Bearer credential) or TENANT_BAD_KEY (no
 * tenant has this key). Every tenant's hash is compared (constant time per comparison, no early exit). A
 * credential made by tenants_peer_credential finds the tenant of that name. */
int tenants_lookup(const struct tenant_conf *t, int n, struct slice authorization);

/* tenants_peer_credential writes to out an Authorization value ("Bearer im-peer.MAC.NAME") that tenants_lookup
 * maps to the tenant named name, for a client the transport authenticated (a verified TLS client certificate):
 * the MAC is under a random key of this process, so nobody outside it can make one, and it stays valid when the
 * tenant table changes. The first call makes the key: call it on the loop thread before serving. 0, or -ENOSPC
 * when out is too small. */
int tenants_peer_credential(const char *name, char *out, size_t cap);

#endif
