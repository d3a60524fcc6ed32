/* Tenant table: configuration parsing, key hashing, constant-time key lookup. */
#include "route/tenants.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/amount.h"

void tenant_conf_default(struct tenant_conf *t) {
  memset(t, 0, sizeof *t);
  adm_limits_default(&t->lim);
}

void tenants_hash_key(const char *key, size_t len, uint8_t out[TENANT_KEY_HASH_BYTES]) {
  /* Keyed with a fixed domain-separation key, the same as the control plane's (cluster/fsm_item.c,
   * fsm_key_hash), so a tenant's stored hash means the same thing in the config and in Raft. */
  static const uint8_t ctx[] = "infermesh tenant api key v1......";
  if (sodium_init() < 0) abort();
  crypto_generichash(out, TENANT_KEY_HASH_BYTES, (const unsigned char *)key, len, ctx, 32);
}

static int parse_num(const char *v, double lo, double *out) {
  char *end = NULL;
  errno = 0;
  double d = strtod(v, &end);
  if (!*v || !end || *end || errno || !isfinite(d) || d < lo) return -EINVAL;
  *out = d;
  return 0;
}

int tenant_conf_set(struct tenant_conf *t, const char *key, const char *val, char *err, size_t errlen) {
  double d;
  if (strcmp(key, "name") == 0) {
    size_t n = strlen(val);
    bool ok = n > 0 && n < sizeof t->name;
    for (size_t i = 0; ok && i < n; i++)
      ok = (val[i] >= 'a' && val[i] <= 'z') || (val[i] >= 'A' && val[i] <= 'Z') ||
           (val[i] >= '0' && val[i] <= '9') || val[i] == '-' || val[i] == '_' || val[i] == '.';
    if (!ok) {
      snprintf(err, errlen, "tenant name '%s' must be 1-%zu letters, digits, '-', '_' or '.'", val,
               sizeof t->name - 1);
      return -EINVAL;
    }
    str_copy(t->name, sizeof t->name, val);
    return 0;
  }
  if (strcmp(key, "key") == 0) {
    size_t n = strlen(val);
    if (n < 8 || n > 512) {
      snprintf(err, errlen, "tenant %s: the key must have 8 to 512 characters", t->name[0] ? t->name : "?");
      return -EINVAL;
    }
    for (size_t i = 0; i < n; i++)
      if ((unsigned char)val[i] <= 0x20 || (unsigned char)val[i] >= 0x7f) {
        snprintf(err, errlen, "tenant %s: the key must be printable ASCII without spaces",
                 t->name[0] ? t->name : "?");
        return -EINVAL;
      }
    tenants_hash_key(val, n, t->key_hash);
    t->has_key = true;
    return 0;
  }
  if (strcmp(key, "priority") == 0) {
    if (adm_priority_parse(val, strlen(val), &t->lim.priority) == 0) return 0;
    snprintf(err, errlen, "tenant %s: priority '%s' is not high, normal or low", t->name, val);
    return -EINVAL;
  }
  if (strcmp(key, "slo") == 0) {
    if (strcmp(val, "latency") == 0 || strcmp(val, "throughput") == 0) {
      t->slo_latency = val[0] == 'l';
      return 0;
    }
    snprintf(err, errlen, "tenant %s: slo '%s' is not latency or throughput", t->name, val);
    return -EINVAL;
  }
  if (strcmp(key, "model") == 0) {
    size_t n = strlen(val);
    bool ok = n > 0 && n < TENANT_MODEL_MAX;
    for (size_t i = 0; ok && i < n; i++) ok = val[i] > 0x20 && val[i] < 0x7f && val[i] != '"' && val[i] != '\\';
    if (!ok) {
      snprintf(err, errlen, "tenant %s: a model name has 1-%d printable characters, no spaces or quotes",
               t->name[0] ? t->name : "?", TENANT_MODEL_MAX - 1);
      return -EINVAL;
    }
    if (t->nmodels == TENANT_MODELS) {
      snprintf(err, errlen, "tenant %s: at most %d models", t->name[0] ? t->name : "?", TENANT_MODELS);
      return -EINVAL;
    }
    str_copy(t->models[t->nmodels++], TENANT_MODEL_MAX, val);
    return 0;
  }
  if (strcmp(key, "budget") == 0) {
    if (amount_parse(val, &t->budget_nano) == 0) return 0;
    snprintf(err, errlen, "tenant %s: budget '%s' is not an amount >= 0 with at most 9 decimals (e.g. 25.00)",
             t->name[0] ? t->name : "?", val);
    return -EINVAL;
  }
  if (strcmp(key, "period") == 0) {
    if (period_parse(val, &t->period) == 0) return 0;
    snprintf(err, errlen, "tenant %s: period '%s' is not day, month or total", t->name[0] ? t->name : "?", val);
    return -EINVAL;
  }
  if (strcmp(key, "weight") == 0) {
    if (parse_num(val, 0, &d) == 0 && d > 0 && d <= 1e6) {
      t->lim.weight = d;
      return 0;
    }
  } else if (strcmp(key, "requests_per_s") == 0) {
    if (parse_num(val, 0, &d) == 0) {
      t->lim.requests_per_s = d;
      return 0;
    }
  } else if (strcmp(key, "tokens_per_min") == 0) {
    if (parse_num(val, 0, &d) == 0) {
      t->lim.tokens_per_min = d;
      return 0;
    }
  } else if (strcmp(key, "max_concurrent") == 0) {
    if (parse_num(val, 0, &d) == 0 && d == floor(d) && d <= 1e6) {
      t->lim.max_concurrent = (int)d;
      return 0;
    }
  } else {
    snprintf(
        err, errlen,
        "unknown tenant setting '%s' (known: name, key, weight, priority, requests_per_s, tokens_per_min, "
        "max_concurrent, slo, model, budget, period)",
        key);
    return -EINVAL;
  }
  snprintf(err, errlen, "tenant %s: %s '%s' is not a valid number", t->name[0] ? t->name : "?", key, val);
  return -EINVAL;
}

int tenant_conf_parse(struct tenant_conf *t, char *spec, char *err, size_t errlen) {
  tenant_conf_default(t);
  for (char *s = spec, *next; s && *s; s = next) {
    next = strchr(s, ',');
    if (next) *next++ = '\0';
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "tenant setting '%.60s' is not KEY=VALUE (e.g. name=team-a,key=sk-...,weight=2)",
               s);
      return -EINVAL;
    }
    *eq = '\0';
    int rc = tenant_conf_set(t, s, eq + 1, err, errlen);
    if (strcmp(s, "key") == 0) sodium_memzero(eq + 1, strlen(eq + 1));
    if (rc) return rc;
  }
  return 0;
}

int tenant_conf_check(const struct tenant_conf *t, const struct tenant_conf *others, int n, char *err,
                      size_t errlen) {
  if (!t->name[0] || !t->has_key) {
    snprintf(err, errlen, "a tenant needs a name and a key (name=team-a,key=sk-...)");
    return -EINVAL;
  }
  for (int i = 0; i < n; i++) {
    if (strcmp(others[i].name, t->name) == 0) {
      snprintf(err, errlen, "tenant '%s' is configured twice", t->name);
      return -EINVAL;
    }
    if (sodium_memcmp(others[i].key_hash, t->key_hash, TENANT_KEY_HASH_BYTES) == 0) {
      snprintf(err, errlen, "tenants '%s' and '%s' have the same key", others[i].name, t->name);
      return -EINVAL;
    }
  }
  return 0;
}

bool tenant_model_allowed(const struct tenant_conf *t, struct slice model) {
  if (t->nmodels == 0) return true;
  for (int i = 0; i < t->nmodels; i++)
    if (slice_eqz(model, t->models[i])) return true;
  return false;
}

/* The key of this process's peer credentials (tenants_peer_credential); never leaves the process. */
static uint8_t peer_key[crypto_auth_KEYBYTES];
static bool peer_key_made;
#define PEER_PREFIX "im-peer."
#define PEER_MAC_HEX (2 * crypto_auth_BYTES)

int tenants_peer_credential(const char *name, char *out, size_t cap) {
  if (!peer_key_made) {
    crypto_auth_keygen(peer_key);
    peer_key_made = true;
  }
  uint8_t mac[crypto_auth_BYTES];
  char hex[PEER_MAC_HEX + 1];
  crypto_auth(mac, (const uint8_t *)name, strlen(name), peer_key);
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  int w = snprintf(out, cap, "Bearer " PEER_PREFIX "%s.%s", hex, name);
  return w < 0 || (size_t)w >= cap ? -ENOSPC : 0;
}

/* key is PEER_PREFIX MAC "." NAME: the tenant named NAME when the MAC is ours. */
static int peer_lookup(const struct tenant_conf *t, int n, struct slice key) {
  size_t pl = sizeof PEER_PREFIX - 1;
  if (!peer_key_made || key.len <= pl + PEER_MAC_HEX + 1 || key.base[pl + PEER_MAC_HEX] != '.')
    return TENANT_BAD_KEY;
  uint8_t mac[crypto_auth_BYTES];
  size_t got = 0;
  if (sodium_hex2bin(mac, sizeof mac, key.base + pl, PEER_MAC_HEX, NULL, &got, NULL) != 0 || got != sizeof mac)
    return TENANT_BAD_KEY;
  struct slice name = slice_make(key.base + pl + PEER_MAC_HEX + 1, key.len - pl - PEER_MAC_HEX - 1);
  if (crypto_auth_verify(mac, (const uint8_t *)name.base, name.len, peer_key) != 0) return TENANT_BAD_KEY;
  for (int i = 0; i < n; i++)
    if (slice_eqz(name, t[i].name)) return i;
  return TENANT_BAD_KEY;
}

int tenants_lookup(const struct tenant_conf *t, int n, struct slice auth) {
  auth = slice_trim(auth);
  if (auth.len < 8 || !slice_eq_nocase(slice_make(auth.base, 7), "bearer ")) return TENANT_MISSING;
  struct slice key = slice_trim(slice_make(auth.base + 7, auth.len - 7));
  if (key.len == 0) return TENANT_MISSING;
  if (slice_starts(key, PEER_PREFIX)) return peer_lookup(t, n, key);
  uint8_t h[TENANT_KEY_HASH_BYTES];
  tenants_hash_key(key.base, key.len, h);
  int found = TENANT_BAD_KEY;
  for (int i = 0; i < n; i++) {
    bool eq = t[i].has_key && sodium_memcmp(t[i].key_hash, h, sizeof h) == 0;
    found = eq ? i : found;
  }
  sodium_memzero(h, sizeof h);
  return found;
}

