/* Invite tokens, join requests and the keyring transfer (see invite.h for the formats). */
#include "cluster/invite.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INVITE_VERSION 1
#define SECRET_SUBKEY_ID 2
#define SECRET_SUBKEY_CTX "im-invit"
#define SECRET_DOMAIN "infermesh-invite"
#define REQ_MAC_ID 1
#define REQ_MAC_CTX "im-joinr"
#define XFER_ID 2
#define XFER_CTX "im-kxfer"
#define REQ_BODY_LEN (INVITE_REQ_LEN - 32)
#define XFER_PAYLOAD_MAX (1 + KEYRING_ID_LEN + KEYRING_MAX * KEYRING_KEY_LEN)
#define TOKEN_JSON_MAX 1536 /* the decoded JSON of the longest token */

_Static_assert(INVITE_SECRET_LEN == crypto_kdf_KEYBYTES, "join secret is a KDF key");
_Static_assert(crypto_auth_BYTES == 32 && crypto_auth_KEYBYTES == 32, "crypto_auth sizes");
_Static_assert(INVITE_KEYRING_SEALED_MAX == KEYRING_OVERHEAD + XFER_PAYLOAD_MAX, "sealed keyring size");

static void init_sodium(void) {
  if (sodium_init() < 0) abort();
}

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* join_secret computes the token's secret under one cluster key. */
static void join_secret(const uint8_t key[KEYRING_KEY_LEN], const uint8_t cluster_id[KEYRING_ID_LEN],
                        const uint8_t token_id[INVITE_ID_LEN], int64_t expiry,
                        uint8_t out[INVITE_SECRET_LEN]) {
  uint8_t sub[crypto_generichash_KEYBYTES];
  uint8_t e[8];
  crypto_generichash_state st;
  keyring_subkey(key, SECRET_SUBKEY_ID, SECRET_SUBKEY_CTX, sub);
  put_be64(e, (uint64_t)expiry);
  crypto_generichash_init(&st, sub, sizeof sub, INVITE_SECRET_LEN);
  crypto_generichash_update(&st, (const uint8_t *)SECRET_DOMAIN, sizeof SECRET_DOMAIN - 1);
  crypto_generichash_update(&st, cluster_id, KEYRING_ID_LEN);
  crypto_generichash_update(&st, token_id, INVITE_ID_LEN);
  crypto_generichash_update(&st, e, sizeof e);
  crypto_generichash_final(&st, out, INVITE_SECRET_LEN);
  sodium_memzero(&st, sizeof st);
  sodium_memzero(sub, sizeof sub);
}

void invite_wipe(struct invite *inv) { sodium_memzero(inv, sizeof *inv); }

bool invite_expired(const struct invite *inv, int64_t now) { return inv->expiry != 0 && now >= inv->expiry; }

/* --- seeds --- */

static bool host_char(char c, bool bracketed) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
      c == '_')
    return true;
  return bracketed && (c == ':' || c == '%');
}

bool invite_valid_seed(const char *s) {
  if (!s) return false;
  size_t n = strnlen(s, INVITE_ADDR_MAX);
  if (n == 0 || n >= INVITE_ADDR_MAX) return false;
  const char *colon;
  if (s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close || close == s + 1 || close[1] != ':') return false;
    for (const char *p = s + 1; p < close; p++)
      if (!host_char(*p, true)) return false;
    colon = close + 1;
  } else {
    colon = memchr(s, ':', n);
    if (!colon || colon == s) return false;
    for (const char *p = s; p < colon; p++)
      if (!host_char(*p, false)) return false;
  }
  const char *port = colon + 1, *end = s + n;
  if (port == end || end - port > 5) return false;
  unsigned v = 0;
  for (const char *p = port; p < end; p++) {
    if (*p < '0' || *p > '9') return false;
    v = v * 10 + (unsigned)(*p - '0');
  }
  return v >= 1 && v <= 65535;
}

/* --- tokens --- */

int invite_create(const struct keyring *kr, const char *const *seeds, int nseeds, int64_t expiry, char *out,
                  size_t cap) {
  char json[TOKEN_JSON_MAX], cid[2 * KEYRING_ID_LEN + 1], tid[2 * INVITE_ID_LEN + 1],
      sec[2 * INVITE_SECRET_LEN + 1];
  uint8_t token_id[INVITE_ID_LEN], secret[INVITE_SECRET_LEN];
  init_sodium();
  if (kr->nkeys < 1 || nseeds < 1 || nseeds > INVITE_MAX_SEEDS || expiry < 0) return -EINVAL;
  for (int i = 0; i < nseeds; i++)
    if (!invite_valid_seed(seeds[i])) return -EINVAL;
  randombytes_buf(token_id, sizeof token_id);
  join_secret(kr->keys[0], kr->cluster_id, token_id, expiry, secret);
  keyring_id_hex(kr->cluster_id, cid);
  sodium_bin2hex(tid, sizeof tid, token_id, sizeof token_id);
  sodium_bin2hex(sec, sizeof sec, secret, sizeof secret);
  sodium_memzero(secret, sizeof secret);
  /* Built by hand: every field is hex, a number or a validated seed (no quote, backslash or control byte),
   * and no copy of the secret is left in freed heap memory. */
  size_t n = (size_t)snprintf(json, sizeof json, "{\"c\":\"%s\",\"s\":[", cid);
  for (int i = 0; i < nseeds; i++)
    n += (size_t)snprintf(json + n, sizeof json - n, "%s\"%s\"", i ? "," : "", seeds[i]);
  n += (size_t)snprintf(json + n, sizeof json - n, "],\"t\":\"%s\",\"e\":%lld,\"k\":\"%s\"}", tid,
                        (long long)expiry, sec);
  sodium_memzero(sec, sizeof sec);
  int rc;
  size_t need =
      sizeof INVITE_PREFIX - 1 + sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  if (n >= sizeof json) {
    rc = -EINVAL; /* cannot happen with validated seeds */
  } else if (cap < need || need - 1 > INVITE_TOKEN_MAX) {
    rc = -ENOSPC;
  } else {
    memcpy(out, INVITE_PREFIX, sizeof INVITE_PREFIX - 1);
    sodium_bin2base64(out + sizeof INVITE_PREFIX - 1, cap - (sizeof INVITE_PREFIX - 1), (const uint8_t *)json,
                      n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    rc = (int)strlen(out);
  }
  sodium_memzero(json, sizeof json);
  return rc;
}

static bool b64url_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/* hex_field decodes object member `key` (a string of exactly 2 * n hex characters) into out. */
static int hex_field(json_t *obj, const char *key, uint8_t *out, size_t n) {
  json_t *v = json_object_get(obj, key);
  size_t got = 0;
  if (!json_is_string(v) || json_string_length(v) != 2 * n) return -EINVAL;
  if (sodium_hex2bin(out, n, json_string_value(v), 2 * n, NULL, &got, NULL) != 0 || got != n) return -EINVAL;
  return 0;
}

/* parse_json fills inv from the decoded token body; messages name the field. */
static int parse_json(const char *body, size_t len, struct invite *inv, char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    if ((size_t)jerr.position >= len)
      snprintf(err, errlen,
               "token is truncated: copy the whole token (it ends where `infermesh invite` "
               "printed the line end)");
    else
      snprintf(err, errlen,
               "token is damaged (its content is not valid): copy it again from `infermesh invite`");
    return -EINVAL;
  }
  int rc = 0;
  const char *bad = NULL;
  if (!json_is_object(root) || json_object_size(root) != 5) {
    bad = "its fields";
  } else if (hex_field(root, "c", inv->cluster_id, KEYRING_ID_LEN) != 0) {
    bad = "the cluster id";
  } else if (hex_field(root, "t", inv->token_id, INVITE_ID_LEN) != 0) {
    bad = "the token id";
  } else if (hex_field(root, "k", inv->secret, INVITE_SECRET_LEN) != 0) {
    bad = "the join secret";
  } else {
    json_t *e = json_object_get(root, "e");
    json_t *s = json_object_get(root, "s");
    if (!json_is_integer(e) || json_integer_value(e) < 0) {
      bad = "the expiry";
    } else if (!json_is_array(s) || json_array_size(s) < 1 || json_array_size(s) > INVITE_MAX_SEEDS) {
      bad = "the seed list";
    } else {
      inv->expiry = (int64_t)json_integer_value(e);
      inv->nseeds = (int)json_array_size(s);
      for (int i = 0; i < inv->nseeds && !bad; i++) {
        json_t *a = json_array_get(s, (size_t)i);
        const char *v = json_string_value(a);
        if (!json_is_string(a) || strlen(v) != json_string_length(a) || !invite_valid_seed(v))
          bad = "a seed address";
        else
          memcpy(inv->seeds[i], v, strlen(v) + 1);
      }
    }
  }
  if (bad) {
    snprintf(err, errlen, "token is damaged (%s is not valid): copy it again from `infermesh invite`", bad);
    rc = -EINVAL;
  }
  json_decref(root);
  return rc;
}

int invite_parse(const char *token, struct invite *inv, char *err, size_t errlen) {
  static const char *const prefix = INVITE_PREFIX;
  const size_t plen = sizeof INVITE_PREFIX - 1;
  char body[TOKEN_JSON_MAX + 4];
  struct invite tmp;
  if (errlen) err[0] = '\0';
  init_sodium();
  if (!token) {
    snprintf(err, errlen, "not an infermesh invite token (empty)");
    return -EINVAL;
  }
  size_t n = strnlen(token, INVITE_TOKEN_MAX + 64);
  const char *b = token, *e = token + n;
  while (b < e && (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r'))
    b++;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
    e--;
  n = (size_t)(e - b);
  if (n == 0) {
    snprintf(err, errlen, "not an infermesh invite token (empty)");
    return -EINVAL;
  }
  if (n < plen || memcmp(b, prefix, plen) != 0) {
    /* "imtN." with another N: a token from a newer (or older) infermesh. */
    size_t d = 3;
    while (d < n && d < 12 && b[d] >= '0' && b[d] <= '9')
      d++;
    if (n > 4 && memcmp(b, "imt", 3) == 0 && d > 3 && d < n && b[d] == '.')
      snprintf(err, errlen,
               "invite token version %.*s is not supported by this infermesh (it reads version 1): "
               "use the same infermesh version as the cluster",
               (int)(d - 3), b + 3);
    else
      snprintf(err, errlen,
               "not an infermesh invite token (those start with %s; make one with `infermesh invite`)",
               prefix);
    return -EINVAL;
  }
  if (n > INVITE_TOKEN_MAX) {
    snprintf(err, errlen, "token is too long (%zu bytes, at most %d): it is not an infermesh invite token", n,
             INVITE_TOKEN_MAX);
    return -EINVAL;
  }
  const char *b64 = b + plen;
  size_t b64len = n - plen;
  for (size_t i = 0; i < b64len; i++)
    if (!b64url_char(b64[i])) {
      snprintf(err, errlen, "token is damaged (character %zu is not allowed in a token): copy it again",
               plen + i + 1);
      return -EINVAL;
    }
  size_t blen = 0;
  if (b64len == 0 || sodium_base642bin((uint8_t *)body, sizeof body - 1, b64, b64len, NULL, &blen, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    snprintf(err, errlen, "token is truncated: copy the whole token");
    return -EINVAL;
  }
  memset(&tmp, 0, sizeof tmp);
  int rc = parse_json(body, blen, &tmp, err, errlen);
  if (rc == 0) *inv = tmp;
  sodium_memzero(&tmp, sizeof tmp);
  sodium_memzero(body, sizeof body);
  return rc;
}

/* --- join request --- */

static void request_mac(const uint8_t secret[INVITE_SECRET_LEN], const uint8_t *body, uint8_t mac[32]) {
  uint8_t k[crypto_auth_KEYBYTES];
  crypto_kdf_derive_from_key(k, sizeof k, REQ_MAC_ID, REQ_MAC_CTX, secret);
  crypto_auth(mac, body, REQ_BODY_LEN, k);
  sodium_memzero(k, sizeof k);
}

int invite_join_request(const struct invite *inv, const uint8_t node_pk[32], uint8_t *out, size_t cap) {
  init_sodium();
  if (cap < INVITE_REQ_LEN) return -ENOSPC;
  uint8_t *p = out;
  *p++ = INVITE_VERSION;
  memcpy(p, inv->token_id, INVITE_ID_LEN);
  p += INVITE_ID_LEN;
  put_be64(p, (uint64_t)inv->expiry);
  p += 8;
  memcpy(p, node_pk, 32);
  p += 32;
  randombytes_buf(p, 24);
  p += 24;
  request_mac(inv->secret, out, p);
  return INVITE_REQ_LEN;
}

int invite_check_request(const struct keyring *kr, const uint8_t *req, size_t len, int64_t now,
                         uint8_t node_pk_out[32], uint8_t secret_out[INVITE_SECRET_LEN]) {
  init_sodium();
  if (!req || len != INVITE_REQ_LEN || req[0] != INVITE_VERSION) return -EACCES;
  const uint8_t *token_id = req + 1, *pk = req + 1 + INVITE_ID_LEN + 8, *mac = req + REQ_BODY_LEN;
  uint64_t e = get_be64(req + 1 + INVITE_ID_LEN);
  if (e > (uint64_t)INT64_MAX) return -EACCES;
  int64_t expiry = (int64_t)e;
  uint8_t secret[INVITE_SECRET_LEN], k[crypto_auth_KEYBYTES];
  int rc = -EACCES;
  for (int i = 0; i < kr->nkeys && i < KEYRING_MAX && rc != 0; i++) {
    join_secret(kr->keys[i], kr->cluster_id, token_id, expiry, secret);
    crypto_kdf_derive_from_key(k, sizeof k, REQ_MAC_ID, REQ_MAC_CTX, secret);
    if (crypto_auth_verify(mac, req, REQ_BODY_LEN, k) == 0) rc = 0;
  }
  sodium_memzero(k, sizeof k);
  if (rc == 0 && expiry != 0 && now >= expiry) rc = -ETIMEDOUT; /* genuine, but too late */
  if (rc == 0) {
    memcpy(node_pk_out, pk, 32);
    memcpy(secret_out, secret, INVITE_SECRET_LEN);
  }
  sodium_memzero(secret, sizeof secret);
  return rc;
}

/* --- keyring transfer --- */

int invite_seal_keyring(const struct keyring *kr, const uint8_t secret[INVITE_SECRET_LEN], uint8_t *out,
                        size_t cap) {
  uint8_t payload[XFER_PAYLOAD_MAX], k[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
  init_sodium();
  if (kr->nkeys < 1 || kr->nkeys > KEYRING_MAX) return -EINVAL;
  size_t plen = 1 + KEYRING_ID_LEN + (size_t)kr->nkeys * KEYRING_KEY_LEN;
  if (cap < KEYRING_OVERHEAD + plen) return -ENOSPC;
  payload[0] = (uint8_t)kr->nkeys;
  memcpy(payload + 1, kr->cluster_id, KEYRING_ID_LEN);
  memcpy(payload + 1 + KEYRING_ID_LEN, kr->keys, (size_t)kr->nkeys * KEYRING_KEY_LEN);
  crypto_kdf_derive_from_key(k, sizeof k, XFER_ID, XFER_CTX, secret);
  unsigned long long clen = 0;
  out[0] = INVITE_VERSION;
  randombytes_buf(out + 1, KEYRING_NONCE_LEN);
  crypto_aead_xchacha20poly1305_ietf_encrypt(out + 1 + KEYRING_NONCE_LEN, &clen, payload, plen, out, 1, NULL,
                                             out + 1, k);
  sodium_memzero(payload, sizeof payload);
  sodium_memzero(k, sizeof k);
  return (int)(1 + KEYRING_NONCE_LEN + clen);
}

int invite_open_keyring(const struct invite *inv, const uint8_t *in, size_t len, struct keyring *kr_out) {
  uint8_t payload[XFER_PAYLOAD_MAX], k[crypto_aead_xchacha20poly1305_ietf_KEYBYTES];
  init_sodium();
  if (!in || len < KEYRING_OVERHEAD + 1 + KEYRING_ID_LEN + KEYRING_KEY_LEN ||
      len > INVITE_KEYRING_SEALED_MAX || in[0] != INVITE_VERSION)
    return -EBADMSG;
  crypto_kdf_derive_from_key(k, sizeof k, XFER_ID, XFER_CTX, inv->secret);
  unsigned long long plen = 0;
  int rc = crypto_aead_xchacha20poly1305_ietf_decrypt(payload, &plen, NULL, in + 1 + KEYRING_NONCE_LEN,
                                                      len - 1 - KEYRING_NONCE_LEN, in, 1, in + 1, k) == 0
               ? 0
               : -EBADMSG;
  sodium_memzero(k, sizeof k);
  int nkeys = rc == 0 ? payload[0] : 0;
  if (rc == 0 && (nkeys < 1 || nkeys > KEYRING_MAX ||
                  plen != 1 + KEYRING_ID_LEN + (unsigned long long)nkeys * KEYRING_KEY_LEN))
    rc = -EBADMSG;
  if (rc == 0 && sodium_memcmp(payload + 1, inv->cluster_id, KEYRING_ID_LEN) != 0) rc = -EACCES;
  if (rc == 0) {
    struct keyring tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.nkeys = nkeys;
    memcpy(tmp.cluster_id, payload + 1, KEYRING_ID_LEN);
    memcpy(tmp.keys, payload + 1 + KEYRING_ID_LEN, (size_t)nkeys * KEYRING_KEY_LEN);
    for (int i = 0; i < nkeys && rc == 0; i++)
      for (int j = 0; j < i; j++)
        if (sodium_memcmp(tmp.keys[i], tmp.keys[j], KEYRING_KEY_LEN) == 0) rc = -EBADMSG;
    if (rc == 0) *kr_out = tmp;
    sodium_memzero(&tmp, sizeof tmp);
  }
  sodium_memzero(payload, sizeof payload);
  return rc;
}
