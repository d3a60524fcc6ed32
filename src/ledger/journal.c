/* The ledger journal's entry codec (see journal.h). Pure. */
#include "ledger/journal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#define HEAD 8
#define FIXED (9 * 8 + 4 + 1) /* seven integers and two doubles, the status, the flags */
#define STRINGS 8

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    *p++ = (uint8_t)(v >> (8 * i));
  return p;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    *p++ = (uint8_t)(v >> (8 * i));
  return p;
}

static uint8_t *put_f64(uint8_t *p, double d) {
  uint64_t v;
  memcpy(&v, &d, sizeof v);
  return put_u64(p, v);
}

static uint8_t *put_str(uint8_t *p, const char *s, size_t cap) {
  size_t n = strnlen(s, cap);
  if (n > 255) n = 255;
  *p++ = (uint8_t)n;
  memcpy(p, s, n);
  return p + n;
}

size_t journal_encode(const struct ledger_record *r, uint8_t *out, size_t cap) {
  (void)cap; /* >= JOURNAL_ENTRY_MAX, which the assertion shows is enough: a string takes at most its array */
  _Static_assert(HEAD + FIXED + sizeof r->request_id + sizeof r->tenant + sizeof r->model +
                         sizeof r->ingress + sizeof r->serving + sizeof r->target + sizeof r->provider +
                         sizeof r->currency <=
                     JOURNAL_ENTRY_MAX,
                 "an entry fits JOURNAL_ENTRY_MAX");
  uint8_t *p = out + HEAD;
  p = put_u64(p, (uint64_t)r->seq);
  p = put_u64(p, (uint64_t)r->ts_ms);
  p = put_u64(p, (uint64_t)r->prompt_tokens);
  p = put_u64(p, (uint64_t)r->cached_tokens);
  p = put_u64(p, (uint64_t)r->completion_tokens);
  p = put_f64(p, r->ttft_ms);
  p = put_f64(p, r->duration_ms);
  p = put_u32(p, (uint32_t)r->status);
  *p++ = (uint8_t)((r->retried ? 1 : 0) | (r->hedged ? 2 : 0));
  p = put_u64(p, (uint64_t)r->cost_nano);
  p = put_u64(p, (uint64_t)r->contribution_nano);
  p = put_str(p, r->request_id, sizeof r->request_id);
  p = put_str(p, r->tenant, sizeof r->tenant);
  p = put_str(p, r->model, sizeof r->model);
  p = put_str(p, r->ingress, sizeof r->ingress);
  p = put_str(p, r->serving, sizeof r->serving);
  p = put_str(p, r->target, sizeof r->target);
  p = put_str(p, r->provider, sizeof r->provider);
  p = put_str(p, r->currency, sizeof r->currency);
  size_t plen = (size_t)(p - out - HEAD);
  put_u32(out, (uint32_t)plen);
  put_u32(out + 4, XXH32(out + HEAD, plen, 0));
  return HEAD + plen;
}

struct rd {
  const uint8_t *p, *end;
  bool bad;
};

static uint64_t get_u64(struct rd *r) {
  if (r->end - r->p < 8) {
    r->bad = true;
    return 0;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v |= (uint64_t)r->p[i] << (8 * i);
  r->p += 8;
  return v;
}

static uint32_t get_u32(struct rd *r) {
  if (r->end - r->p < 4) {
    r->bad = true;
    return 0;
  }
  uint32_t v = 0;
  for (int i = 0; i < 4; i++)
    v |= (uint32_t)r->p[i] << (8 * i);
  r->p += 4;
  return v;
}

static double get_f64(struct rd *r) {
  uint64_t v = get_u64(r);
  double d;
  memcpy(&d, &v, sizeof d);
  return d;
}

static void get_str(struct rd *r, char *out, size_t cap) {
  if (r->end - r->p < 1 || (size_t)r->p[0] >= cap || r->end - r->p - 1 < r->p[0]) {
    r->bad = true;
    return;
  }
  size_t n = r->p[0];
  memcpy(out, r->p + 1, n);
  out[n] = '\0';
  if (memchr(out, 0, n)) r->bad = true;
  r->p += 1 + n;
}

int journal_decode(const uint8_t *in, size_t len, struct ledger_record *out, size_t *used) {
  if (len < HEAD) return -EAGAIN;
  struct rd h = {in, in + HEAD, false};
  uint32_t plen = get_u32(&h), sum = get_u32(&h);
  if (plen < FIXED + STRINGS || plen > JOURNAL_ENTRY_MAX - HEAD) return -EINVAL;
  if (len - HEAD < plen) return -EAGAIN;
  if (XXH32(in + HEAD, plen, 0) != sum) return -EINVAL;
  static const struct ledger_record zero;
  struct ledger_record r = zero;
  struct rd d = {in + HEAD, in + HEAD + plen, false};
  r.seq = (int64_t)get_u64(&d);
  r.ts_ms = (int64_t)get_u64(&d);
  r.prompt_tokens = (int64_t)get_u64(&d);
  r.cached_tokens = (int64_t)get_u64(&d);
  r.completion_tokens = (int64_t)get_u64(&d);
  r.ttft_ms = get_f64(&d);
  r.duration_ms = get_f64(&d);
  r.status = (int32_t)get_u32(&d);
  if (d.end - d.p < 1) return -EINVAL;
  uint8_t flags = *d.p++;
  r.retried = flags & 1;
  r.hedged = (flags & 2) != 0;
  r.cost_nano = (int64_t)get_u64(&d);
  r.contribution_nano = (int64_t)get_u64(&d);
  get_str(&d, r.request_id, sizeof r.request_id);
  get_str(&d, r.tenant, sizeof r.tenant);
  get_str(&d, r.model, sizeof r.model);
  get_str(&d, r.ingress, sizeof r.ingress);
  get_str(&d, r.serving, sizeof r.serving);
  get_str(&d, r.target, sizeof r.target);
  get_str(&d, r.provider, sizeof r.provider);
  get_str(&d, r.currency, sizeof r.currency);
  if (d.bad || d.p != d.end || r.seq <= 0 || flags > 3) return -EINVAL;
  *out = r;
  *used = HEAD + plen;
  return 0;
}

int journal_path(const char *db_path, char *out, size_t cap) {
  size_t len = strlen(db_path);
  if (len > 3 && strcmp(db_path + len - 3, ".db") == 0) len -= 3;
  int n = snprintf(out, cap, "%.*s.journal", (int)len, db_path);
  return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}
