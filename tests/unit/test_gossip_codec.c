/* Gossip wire codec tests: roundtrips, the SWIM size bound, rejection of malformed input, pinned field
 * numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <math.h>

#include "core/slice.h"
#include "proto/gossip_codec.h"

/* --- a minimal protobuf writer, independent of the generated code: it pins field numbers and wire types ---
 */

struct w {
  uint8_t b[8192];
  size_t n;
};

static void w_raw(struct w *w, const void *p, size_t n) {
  assert_true(w->n + n <= sizeof w->b);
  memcpy(w->b + w->n, p, n);
  w->n += n;
}
static void w_varint(struct w *w, uint64_t v) {
  do {
    uint8_t c = (uint8_t)(v & 0x7f);
    v >>= 7;
    if (v) c |= 0x80;
    w_raw(w, &c, 1);
  } while (v);
}
static void w_uint(struct w *w, uint32_t f, uint64_t v) {
  w_varint(w, (uint64_t)f << 3);
  w_varint(w, v);
}
static void w_bytes(struct w *w, uint32_t f, const void *p, size_t n) {
  w_varint(w, (uint64_t)f << 3 | 2);
  w_varint(w, n);
  w_raw(w, p, n);
}
static void w_str(struct w *w, uint32_t f, const char *s) { w_bytes(w, f, s, strlen(s)); }
static void w_msg(struct w *w, uint32_t f, const struct w *sub) { w_bytes(w, f, sub->b, sub->n); }
static void w_double(struct w *w, uint32_t f, double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  w_varint(w, (uint64_t)f << 3 | 1);
  for (int i = 0; i < 8; i++) {
    uint8_t c = (uint8_t)(u >> (8 * i));
    w_raw(w, &c, 1);
  }
}

static uint64_t lcg(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return *s >> 11;
}

static void fill(uint8_t *p, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(seed + 7 * i);
}

/* fill_text writes n printable characters and a NUL. */
static void fill_text(char *p, size_t n, char first) {
  for (size_t i = 0; i < n; i++)
    p[i] = (char)('!' + (first - '!' + (int)i) % 94);
  p[n] = '\0';
}

/* --- field-by-field comparisons --- */

static void assert_update_equal(const struct gossip_update *a, const struct gossip_update *b) {
  assert_memory_equal(a->id, b->id, GOSSIP_ID_LEN);
  assert_string_equal(a->name, b->name);
  assert_string_equal(a->addr, b->addr);
  assert_true(a->incarnation == b->incarnation);
  assert_int_equal(a->state, b->state);
  assert_memory_equal(a->from, b->from, GOSSIP_ID_LEN);
  assert_int_equal(a->meta_len, b->meta_len);
  if (a->meta_len) assert_memory_equal(a->meta, b->meta, a->meta_len);
}

static void assert_msg_equal(const struct gossip_msg *a, const struct gossip_msg *b) {
  assert_int_equal(a->type, b->type);
  assert_int_equal(a->seq, b->seq);
  assert_memory_equal(a->from, b->from, GOSSIP_ID_LEN);
  assert_string_equal(a->from_addr, b->from_addr);
  assert_memory_equal(a->target, b->target, GOSSIP_ID_LEN);
  assert_string_equal(a->target_addr, b->target_addr);
  assert_int_equal(a->nupdates, b->nupdates);
  for (int i = 0; i < a->nupdates; i++)
    assert_update_equal(&a->updates[i], &b->updates[i]);
}

static void assert_load_equal(const struct gossip_load *a, const struct gossip_load *b) {
  assert_memory_equal(a->from, b->from, GOSSIP_ID_LEN);
  assert_true(a->seq == b->seq);
  assert_int_equal(a->age_ms, b->age_ms);
  assert_int_equal(a->ntargets, b->ntargets);
  for (int i = 0; i < a->ntargets; i++) {
    const struct gossip_target_load *x = &a->targets[i], *y = &b->targets[i];
    assert_string_equal(x->name, y->name);
    assert_string_equal(x->kind, y->kind);
    assert_int_equal(x->nmodels, y->nmodels);
    for (int j = 0; j < x->nmodels; j++)
      assert_string_equal(x->models[j], y->models[j]);
    assert_int_equal(x->healthy, y->healthy);
    assert_int_equal(x->gpu_degraded, y->gpu_degraded);
    assert_true(x->waiting == y->waiting && x->running == y->running && x->kv_usage == y->kv_usage);
    assert_true(x->kv_capacity_tokens == y->kv_capacity_tokens);
    assert_true(x->prefix_hit_rate == y->prefix_hit_rate && x->prompt_tps == y->prompt_tps);
    assert_true(x->gen_tps == y->gen_tps && x->ttft_p50_ms == y->ttft_p50_ms);
    assert_int_equal(x->inflight, y->inflight);
  }
}

static void assert_meta_equal(const struct gossip_meta *a, const struct gossip_meta *b) {
  assert_int_equal(a->roles, b->roles);
  assert_string_equal(a->zone, b->zone);
  assert_string_equal(a->api_addr, b->api_addr);
  assert_int_equal(a->draining, b->draining);
  assert_int_equal(a->gpus, b->gpus);
  assert_int_equal(a->gpus_degraded, b->gpus_degraded);
  assert_string_equal(a->raft_addr, b->raft_addr);
  assert_int_equal(a->raft_formed, b->raft_formed);
  assert_string_equal(a->provider, b->provider);
  assert_int_equal(a->nlabels, b->nlabels);
  for (int i = 0; i < a->nlabels; i++) {
    assert_string_equal(a->label_key[i], b->label_key[i]);
    assert_string_equal(a->label_value[i], b->label_value[i]);
  }
  assert_int_equal(a->nmodels, b->nmodels);
  for (int i = 0; i < a->nmodels; i++) {
    assert_string_equal(a->models[i].name, b->models[i].name);
    assert_string_equal(a->models[i].kind, b->models[i].kind);
    assert_true(a->models[i].capacity_tokens == b->models[i].capacity_tokens);
  }
}

static bool all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return false;
  return true;
}

/* Big structs live in static storage: a gossip_packet is ~16 KB. */
static struct gossip_packet pa, pb;
static uint8_t buf[GOSSIP_PACKET_INPUT_MAX];

/* expect_packet_rejected decodes in and checks it is refused with *p left zeroed. */
static void expect_packet_rejected(const uint8_t *in, size_t len) {
  memset(&pb, 0xa5, sizeof pb);
  assert_int_equal(gossip_decode_packet(in, len, &pb), -EINVAL);
  assert_true(all_zero(&pb, sizeof pb));
}

static void make_update(struct gossip_update *u, int i) {
  memset(u, 0, sizeof *u);
  fill(u->id, GOSSIP_ID_LEN, (uint8_t)(i + 1));
  snprintf(u->name, sizeof u->name, "node-%d", i);
  snprintf(u->addr, sizeof u->addr, "10.0.%d.%d:7946", i / 256, i % 256);
  u->incarnation = 1000u + (uint64_t)i * 7919u;
  u->state = (enum gossip_state)(i % 4);
  if (u->state != GOSSIP_ALIVE) fill(u->from, GOSSIP_ID_LEN, (uint8_t)(200 + i));
  u->meta_len = (uint16_t)(i % 5 == 0 ? 0 : 10 + i % 50);
  fill(u->meta, u->meta_len, (uint8_t)(3 * i));
}

/* --- roundtrips --- */

static void test_swim_roundtrip_every_type(void **state) {
  for (int type = GOSSIP_PING; type <= GOSSIP_GOSSIP; type++) {
    memset(&pa, 0, sizeof pa);
    pa.kind = GOSSIP_PKT_SWIM;
    struct gossip_msg *m = &pa.u.swim;
    m->type = (enum gossip_type)type;
    m->seq = 0xdeadbeefu + (uint32_t)type;
    fill(m->from, GOSSIP_ID_LEN, 0x10);
    str_copy(m->from_addr, sizeof m->from_addr, "192.168.1.10:7946");
    fill(m->target, GOSSIP_ID_LEN, 0x20);
    str_copy(m->target_addr, sizeof m->target_addr, "[fe80::1]:7946");
    m->nupdates = 4 + type; /* every state, with and without meta and `from` */
    for (int i = 0; i < m->nupdates; i++)
      make_update(&m->updates[i], i);
    m->updates[1].incarnation = UINT64_MAX;
    int n = gossip_encode_packet(&pa, buf, GOSSIP_PACKET_MAX);
    assert_true(n > 0);
    assert_true((size_t)n <= gossip_swim_size_bound(m));
    memset(&pb, 0xa5, sizeof pb);
    assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
    assert_int_equal(pb.kind, GOSSIP_PKT_SWIM);
    assert_msg_equal(&pa.u.swim, &pb.u.swim);
    /* the decoded struct re-encodes to the same bytes */
    uint8_t again[GOSSIP_PACKET_MAX];
    assert_int_equal(gossip_encode_packet(&pb, again, sizeof again), n);
    assert_memory_equal(again, buf, (size_t)n);
  }
  /* defaults: zero seq, empty addresses, all-zero ids, no updates */
  memset(&pa, 0, sizeof pa);
  pa.kind = GOSSIP_PKT_SWIM;
  pa.u.swim.type = GOSSIP_ACK;
  int n = gossip_encode_packet(&pa, buf, sizeof buf);
  assert_int_equal(n, 2 + 2 + 2 + 2 * (2 + GOSSIP_ID_LEN)); /* version, body head, type, from, target */
  assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
  assert_msg_equal(&pa.u.swim, &pb.u.swim);
}

static void make_load(struct gossip_load *l) {
  memset(l, 0, sizeof *l);
  fill(l->from, GOSSIP_ID_LEN, 0x77);
  l->seq = UINT64_MAX - 3;
  l->age_ms = 1234;
  l->ntargets = GOSSIP_LOAD_TARGETS;
  for (int i = 0; i < l->ntargets; i++) {
    struct gossip_target_load *t = &l->targets[i];
    snprintf(t->name, sizeof t->name, "engine-%d", i);
    str_copy(t->kind, sizeof t->kind, i % 2 ? "sglang" : "vllm");
    t->nmodels = i % (GOSSIP_LOAD_MODELS + 1);
    for (int j = 0; j < t->nmodels; j++)
      snprintf(t->models[j], sizeof t->models[j], "org/model-%d-%d", i, j);
    t->healthy = i % 2 == 0;
    t->gpu_degraded = i % 3 == 0;
    t->waiting = 3 + i;
    t->running = 0.5 * i;
    t->kv_usage = i == 1 ? -1 : 0.125 * i; /* negative: unknown */
    t->kv_capacity_tokens = i == 2 ? INT64_MAX : (i == 3 ? INT64_MIN : 1000 * i);
    t->prefix_hit_rate = i == 4 ? -1 : 1.0 / (i + 1);
    t->prompt_tps = 1e6 + i;
    t->gen_tps = 1e-9 * i;
    t->ttft_p50_ms = i == 5 ? -1 : 42.5;
    t->inflight = i == 6 ? INT32_MIN : (i == 7 ? INT32_MAX : -i);
  }
}

static void test_load_roundtrip(void **state) {
  memset(&pa, 0, sizeof pa);
  pa.kind = GOSSIP_PKT_LOAD;
  make_load(&pa.u.load);
  int n = gossip_encode_packet(&pa, buf, sizeof buf);
  assert_true(n > 0);
  memset(&pb, 0xa5, sizeof pb);
  assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
  assert_int_equal(pb.kind, GOSSIP_PKT_LOAD);
  assert_load_equal(&pa.u.load, &pb.u.load);
  assert_int_equal(gossip_encode_packet(&pa, buf, (size_t)n - 1), -ENOSPC);
  /* a load report with no targets */
  pa.u.load.ntargets = 0;
  n = gossip_encode_packet(&pa, buf, sizeof buf);
  assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
  assert_load_equal(&pa.u.load, &pb.u.load);
}

static void make_meta(struct gossip_meta *m) {
  memset(m, 0, sizeof *m);
  m->roles = GOSSIP_ROLE_GPU | GOSSIP_ROLE_SERVER | 0x80000000u; /* unknown role bits travel untouched */
  str_copy(m->zone, sizeof m->zone, "eu-west-1a");
  str_copy(m->api_addr, sizeof m->api_addr, "10.1.2.3:8080");
  m->draining = true;
  m->gpus = 8;
  m->gpus_degraded = 3;
  str_copy(m->raft_addr, sizeof m->raft_addr, "10.1.2.3:7947");
  m->raft_formed = true;
  str_copy(m->provider, sizeof m->provider, "acme-gpu-cloud");
  m->nlabels = GOSSIP_META_LABELS;
  for (int i = 0; i < m->nlabels; i++) {
    snprintf(m->label_key[i], sizeof m->label_key[i], "k%d", i);
    if (i != 2) snprintf(m->label_value[i], sizeof m->label_value[i], "value-%d", i); /* [2] stays empty */
  }
  m->nmodels = 3;
  str_copy(m->models[0].name, sizeof m->models[0].name, "meta-llama/Llama-3.1-8B-Instruct");
  str_copy(m->models[0].kind, sizeof m->models[0].kind, "vllm");
  m->models[0].capacity_tokens = 1 << 20;
  str_copy(m->models[1].name, sizeof m->models[1].name, "Qwen/Qwen2.5-7B");
  str_copy(m->models[1].kind, sizeof m->models[1].kind, "sglang");
  m->models[1].capacity_tokens = 0;
  str_copy(m->models[2].name, sizeof m->models[2].name, "tiny");
  str_copy(m->models[2].kind, sizeof m->models[2].kind, "llamacpp");
  m->models[2].capacity_tokens = INT64_MAX;
}

static void test_meta_roundtrip(void **state) {
  struct gossip_meta a, b;
  uint8_t out[GOSSIP_META_MAX];
  make_meta(&a);
  int n = gossip_encode_meta(&a, out, sizeof out);
  assert_true(n > 0);
  memset(&b, 0xa5, sizeof b);
  assert_int_equal(gossip_decode_meta(out, (size_t)n, &b), 0);
  assert_meta_equal(&a, &b);
  assert_int_equal(gossip_encode_meta(&a, out, (size_t)n - 1), -ENOSPC);
  /* an empty meta is the empty encoding, and decodes to all defaults */
  memset(&a, 0, sizeof a);
  assert_int_equal(gossip_encode_meta(&a, out, sizeof out), 0);
  memset(&b, 0xa5, sizeof b);
  assert_int_equal(gossip_decode_meta(out, 0, &b), 0);
  assert_true(all_zero(&b, sizeof b));
  assert_int_equal(gossip_decode_meta(NULL, 0, &b), 0);
  /* the largest meta: every model and label at full length does not fit GOSSIP_META_MAX */
  for (int i = 0; i < GOSSIP_META_MODELS; i++) {
    fill_text(a.models[i].name, sizeof a.models[i].name - 1, 'a');
    fill_text(a.models[i].kind, sizeof a.models[i].kind - 1, 'b');
  }
  a.nmodels = GOSSIP_META_MODELS;
  assert_int_equal(gossip_encode_meta(&a, out, sizeof out), -ENOSPC);
  /* ... but encodes into a larger buffer, and such an input is refused as meta (> GOSSIP_META_MAX) */
  static uint8_t big[4096];
  n = gossip_encode_meta(&a, big, sizeof big);
  assert_true(n > GOSSIP_META_MAX);
  assert_int_equal(gossip_decode_meta(big, (size_t)n, &b), -EINVAL);
  assert_true(all_zero(&b, sizeof b));
}

/* meta travels inside an update: encode meta, carry it in a SWIM update, decode both */
static void test_meta_inside_update(void **state) {
  struct gossip_meta a, b;
  make_meta(&a);
  memset(&pa, 0, sizeof pa);
  pa.kind = GOSSIP_PKT_SWIM;
  pa.u.swim.type = GOSSIP_GOSSIP;
  pa.u.swim.nupdates = 1;
  make_update(&pa.u.swim.updates[0], 0);
  int mlen = gossip_encode_meta(&a, pa.u.swim.updates[0].meta, GOSSIP_META_MAX);
  assert_true(mlen > 0);
  pa.u.swim.updates[0].meta_len = (uint16_t)mlen;
  int n = gossip_encode_packet(&pa, buf, GOSSIP_PACKET_MAX);
  assert_true(n > 0);
  assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
  assert_int_equal(gossip_decode_meta(pb.u.swim.updates[0].meta, pb.u.swim.updates[0].meta_len, &b), 0);
  assert_meta_equal(&a, &b);
}

static void test_pushpull_roundtrip(void **state) {
  struct gossip_pushpull a = {.join = true, .nmembers = GOSSIP_PUSHPULL_MAX}, b;
  fill(a.from, GOSSIP_ID_LEN, 0x99);
  a.members = calloc(GOSSIP_PUSHPULL_MAX, sizeof *a.members);
  assert_non_null(a.members);
  for (int i = 0; i < a.nmembers; i++)
    make_update(&a.members[i], i);
  a.members[511].meta_len = GOSSIP_META_MAX;
  fill(a.members[511].meta, GOSSIP_META_MAX, 1);
  uint8_t *out;
  size_t outlen;
  assert_int_equal(gossip_encode_pushpull(&a, &out, &outlen), 0);
  assert_true(outlen > 0 && outlen <= GOSSIP_PUSHPULL_INPUT_MAX);
  memset(&b, 0xa5, sizeof b);
  assert_int_equal(gossip_decode_pushpull(out, outlen, &b), 0);
  assert_true(b.join);
  assert_memory_equal(a.from, b.from, GOSSIP_ID_LEN);
  assert_int_equal(b.nmembers, GOSSIP_PUSHPULL_MAX);
  for (int i = 0; i < a.nmembers; i++)
    assert_update_equal(&a.members[i], &b.members[i]);
  gossip_pushpull_free(&b);
  assert_null(b.members);
  assert_int_equal(b.nmembers, 0);
  gossip_pushpull_free(&b); /* twice is fine */

  /* one member more than the cap, by appending a valid member to a valid table (protobuf concatenation) */
  struct w m = {0};
  w_bytes(&m, 1, a.members[0].id, GOSSIP_ID_LEN);
  w_bytes(&m, 6, a.members[0].from, GOSSIP_ID_LEN);
  uint8_t *more = malloc(outlen + m.n + 3);
  assert_non_null(more);
  memcpy(more, out, outlen);
  size_t mlen = outlen;
  more[mlen++] = 4 << 3 | 2;
  more[mlen++] = (uint8_t)m.n;
  memcpy(more + mlen, m.b, m.n);
  mlen += m.n;
  memset(&b, 0xa5, sizeof b);
  assert_int_equal(gossip_decode_pushpull(more, mlen, &b), -EINVAL);
  assert_true(all_zero(&b, sizeof b));
  /* ... while the same member replacing one of the table decodes (so it was the count that was refused) */
  struct gossip_pushpull one = {.nmembers = 1, .members = a.members};
  uint8_t *o1;
  size_t o1len;
  assert_int_equal(gossip_encode_pushpull(&one, &o1, &o1len), 0);
  memcpy(more, o1, o1len);
  memmove(more + o1len, more + outlen, mlen - outlen);
  assert_int_equal(gossip_decode_pushpull(more, o1len + mlen - outlen, &b), 0);
  assert_int_equal(b.nmembers, 2);
  gossip_pushpull_free(&b);
  free(o1);
  free(more);

  a.nmembers = GOSSIP_PUSHPULL_MAX + 1;
  assert_int_equal(gossip_encode_pushpull(&a, &o1, &o1len), -EINVAL);
  assert_null(o1);
  a.nmembers = 3;
  a.members[2].state = (enum gossip_state)4;
  assert_int_equal(gossip_encode_pushpull(&a, &o1, &o1len), -EINVAL);
  assert_null(o1);
  assert_int_equal(o1len, 0);
  free(a.members);
  free(out);

  /* an empty table: members stays NULL */
  struct gossip_pushpull e = {.join = false};
  assert_int_equal(gossip_encode_pushpull(&e, &out, &outlen), 0);
  assert_int_equal(gossip_decode_pushpull(out, outlen, &b), 0);
  assert_int_equal(b.nmembers, 0);
  assert_null(b.members);
  assert_false(b.join);
  free(out);
}

static void test_pushpull_rejections(void **state) {
  struct gossip_pushpull b;
  struct w x = {0};
  static uint8_t id[GOSSIP_ID_LEN];
  /* version missing, wrong, and right */
  w_uint(&x, 2, 1);
  w_bytes(&x, 3, id, GOSSIP_ID_LEN);
  assert_int_equal(gossip_decode_pushpull(x.b, x.n, &b), -EINVAL);
  struct w y = {0};
  w_uint(&y, 1, 2);
  w_raw(&y, x.b, x.n);
  assert_int_equal(gossip_decode_pushpull(y.b, y.n, &b), -EINVAL);
  y.n = 0;
  w_uint(&y, 1, GOSSIP_WIRE_VERSION);
  w_raw(&y, x.b, x.n);
  assert_int_equal(gossip_decode_pushpull(y.b, y.n, &b), 0);
  assert_true(b.join);
  gossip_pushpull_free(&b);
  /* `from` of 31 bytes */
  y.n = 0;
  w_uint(&y, 1, GOSSIP_WIRE_VERSION);
  w_bytes(&y, 3, id, GOSSIP_ID_LEN - 1);
  assert_int_equal(gossip_decode_pushpull(y.b, y.n, &b), -EINVAL);
  /* a bad member: rejected with nothing left allocated (ASan's leak check watches) */
  y.n = 0;
  w_uint(&y, 1, GOSSIP_WIRE_VERSION);
  w_bytes(&y, 3, id, GOSSIP_ID_LEN);
  struct w u = {0};
  w_bytes(&u, 1, id, GOSSIP_ID_LEN);
  w_bytes(&u, 6, id, GOSSIP_ID_LEN);
  for (int i = 0; i < 5; i++)
    w_msg(&y, 4, &u);
  assert_int_equal(gossip_decode_pushpull(y.b, y.n, &b), 0);
  assert_int_equal(b.nmembers, 5);
  gossip_pushpull_free(&b);
  w_uint(&u, 5, 9); /* state 9 */
  w_msg(&y, 4, &u);
  memset(&b, 0xa5, sizeof b);
  assert_int_equal(gossip_decode_pushpull(y.b, y.n, &b), -EINVAL);
  assert_true(all_zero(&b, sizeof b));
  /* the 1 MiB input cap: a valid table padded with an unknown field to exactly the cap, then one byte over */
  size_t base = 2 + 2 + GOSSIP_ID_LEN;
  size_t pad = GOSSIP_PUSHPULL_INPUT_MAX - base - 5; /* 2-byte tag of field 100 + 3-byte length */
  uint8_t *big = calloc(1, GOSSIP_PUSHPULL_INPUT_MAX + 1);
  assert_non_null(big);
  struct w h = {0};
  w_uint(&h, 1, GOSSIP_WIRE_VERSION);
  w_bytes(&h, 3, id, GOSSIP_ID_LEN);
  w_varint(&h, 100 << 3 | 2);
  w_varint(&h, pad);
  assert_int_equal(h.n, base + 5);
  memcpy(big, h.b, h.n);
  assert_int_equal(gossip_decode_pushpull(big, GOSSIP_PUSHPULL_INPUT_MAX, &b), 0);
  gossip_pushpull_free(&b);
  h.n = base;
  w_varint(&h, 100 << 3 | 2);
  w_varint(&h, pad + 1);
  memcpy(big, h.b, h.n);
  assert_int_equal(gossip_decode_pushpull(big, GOSSIP_PUSHPULL_INPUT_MAX + 1, &b), -EINVAL);
  free(big);
  /* empty and garbage */
  assert_int_equal(gossip_decode_pushpull(NULL, 0, &b), -EINVAL);
  assert_int_equal(gossip_decode_pushpull((const uint8_t *)"\xff\xff\xff", 3, &b), -EINVAL);
}

/* --- the SWIM size bound --- */

static void make_worst(struct gossip_msg *m, int nupdates) {
  memset(m, 0, sizeof *m);
  m->type = GOSSIP_PING_REQ;
  m->seq = UINT32_MAX;
  memset(m->from, 0xff, GOSSIP_ID_LEN);
  memset(m->target, 0xff, GOSSIP_ID_LEN);
  fill_text(m->from_addr, GOSSIP_ADDR_MAX - 1, 'f');
  fill_text(m->target_addr, GOSSIP_ADDR_MAX - 1, 't');
  m->nupdates = nupdates;
  for (int i = 0; i < nupdates; i++) {
    struct gossip_update *u = &m->updates[i];
    memset(u->id, 0xff, GOSSIP_ID_LEN);
    fill_text(u->name, GOSSIP_NAME_MAX - 1, 'n');
    fill_text(u->addr, GOSSIP_ADDR_MAX - 1, 'a');
    u->incarnation = UINT64_MAX;
    u->state = GOSSIP_LEFT;
    memset(u->from, 0xff, GOSSIP_ID_LEN);
    u->meta_len = GOSSIP_META_MAX;
    memset(u->meta, 0xee, GOSSIP_META_MAX);
  }
}

static void test_worst_case_size_within_bound(void **state) {
  memset(&pa, 0, sizeof pa);
  pa.kind = GOSSIP_PKT_SWIM;
  make_worst(&pa.u.swim, GOSSIP_MAX_UPDATES);
  size_t bound = gossip_swim_size_bound(&pa.u.swim);
  assert_int_equal(bound, GOSSIP_MSG_BASE_BOUND + GOSSIP_PACKET_FRAMING +
                              GOSSIP_MAX_UPDATES * gossip_update_size_bound(&pa.u.swim.updates[0]));
  int n = gossip_encode_packet(&pa, buf, sizeof buf);
  assert_true(n > 0);
  assert_true((size_t)n <= bound);
  /* exactly: Swim base 206 + 16 updates of 985 (982 + tag + 2-byte length) + framing 5 */
  assert_int_equal(n, 206 + GOSSIP_MAX_UPDATES * 985 + GOSSIP_PACKET_FRAMING);
  assert_int_equal(gossip_encode_packet(&pa, buf, (size_t)n - 1), -ENOSPC);
  assert_int_equal(gossip_encode_packet(&pa, buf, (size_t)n), n);
  /* the worst case decodes back (past the decoder's stack arena) */
  assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
  assert_msg_equal(&pa.u.swim, &pb.u.swim);

  /* a full update still fits one datagram when the bound says so */
  make_worst(&pa.u.swim, 1);
  assert_true(gossip_swim_size_bound(&pa.u.swim) <= GOSSIP_PACKET_MAX);
  assert_true(gossip_encode_packet(&pa, buf, GOSSIP_PACKET_MAX) > 0);
  /* no update at all: base + framing */
  make_worst(&pa.u.swim, 0);
  n = gossip_encode_packet(&pa, buf, sizeof buf);
  assert_true(n > 0 && (size_t)n <= GOSSIP_MSG_BASE_BOUND + GOSSIP_PACKET_FRAMING);
}

/* Random messages, and messages filled the way SWIM fills a datagram: the bound always holds. */
static void test_random_messages_within_bound(void **state) {
  uint64_t s = 12345;
  for (int iter = 0; iter < 2000; iter++) {
    memset(&pa, 0, sizeof pa);
    pa.kind = GOSSIP_PKT_SWIM;
    struct gossip_msg *m = &pa.u.swim;
    m->type = (enum gossip_type)(1 + lcg(&s) % 5);
    m->seq = (uint32_t)lcg(&s) >> (lcg(&s) % 32);
    fill(m->from, GOSSIP_ID_LEN, (uint8_t)lcg(&s));
    fill_text(m->from_addr, lcg(&s) % GOSSIP_ADDR_MAX, 'x');
    fill_text(m->target_addr, lcg(&s) % GOSSIP_ADDR_MAX, 'y');
    bool fill_datagram = iter % 2;
    int want = (int)(lcg(&s) % (GOSSIP_MAX_UPDATES + 1));
    for (int i = 0; i < (fill_datagram ? GOSSIP_MAX_UPDATES : want); i++) {
      struct gossip_update *u = &m->updates[i];
      fill(u->id, GOSSIP_ID_LEN, (uint8_t)lcg(&s));
      fill_text(u->name, lcg(&s) % GOSSIP_NAME_MAX, 'n');
      fill_text(u->addr, lcg(&s) % GOSSIP_ADDR_MAX, 'a');
      u->incarnation = lcg(&s) % 3 == 0 ? UINT64_MAX : lcg(&s) >> (lcg(&s) % 53);
      u->state = (enum gossip_state)(lcg(&s) % 4);
      u->meta_len = (uint16_t)(lcg(&s) % 3 == 0 ? 0 : lcg(&s) % (fill_datagram ? 300 : GOSSIP_META_MAX + 1));
      fill(u->meta, u->meta_len, (uint8_t)i);
      m->nupdates = i + 1;
      if (fill_datagram && gossip_swim_size_bound(m) > GOSSIP_PACKET_MAX) {
        m->nupdates = i; /* what SWIM does: stop before the bound passes the datagram */
        break;
      }
    }
    int n = gossip_encode_packet(&pa, buf, fill_datagram ? GOSSIP_PACKET_MAX : sizeof buf);
    assert_true(n > 0);
    assert_true((size_t)n <= gossip_swim_size_bound(m));
    assert_int_equal(gossip_decode_packet(buf, (size_t)n, &pb), 0);
    assert_msg_equal(m, &pb.u.swim);
  }
}

/* --- encoder refuses structs outside their bounds --- */

static void test_encode_rejects_bad_structs(void **state) {
  memset(&pa, 0, sizeof pa);
  pa.kind = GOSSIP_PKT_SWIM;
  pa.u.swim.type = GOSSIP_PING;
  pa.u.swim.nupdates = 1;
  make_update(&pa.u.swim.updates[0], 1);
  assert_true(gossip_encode_packet(&pa, buf, sizeof buf) > 0);
  pa.u.swim.nupdates = GOSSIP_MAX_UPDATES + 1;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.nupdates = -1;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.nupdates = 1;
  pa.u.swim.type = (enum gossip_type)0;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.type = GOSSIP_PING;
  memset(pa.u.swim.updates[0].name, 'n', GOSSIP_NAME_MAX); /* no NUL inside the array */
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.updates[0].name[GOSSIP_NAME_MAX - 1] = '\0';
  assert_true(gossip_encode_packet(&pa, buf, sizeof buf) > 0);
  pa.u.swim.updates[0].meta_len = GOSSIP_META_MAX + 1;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.updates[0].meta_len = 0;
  pa.u.swim.updates[0].state = (enum gossip_state)4;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.updates[0].state = GOSSIP_DEAD;
  memset(pa.u.swim.from_addr, 'x', GOSSIP_ADDR_MAX);
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.swim.from_addr[0] = '\0';
  pa.kind = (enum gossip_packet_kind)3;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);

  memset(&pa, 0, sizeof pa);
  pa.kind = GOSSIP_PKT_LOAD;
  make_load(&pa.u.load);
  pa.u.load.targets[3].kv_usage = NAN;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.load.targets[3].kv_usage = INFINITY;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.load.targets[3].kv_usage = 0;
  pa.u.load.targets[3].nmodels = GOSSIP_LOAD_MODELS + 1;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);
  pa.u.load.targets[3].nmodels = 0;
  pa.u.load.ntargets = GOSSIP_LOAD_TARGETS + 1;
  assert_int_equal(gossip_encode_packet(&pa, buf, sizeof buf), -EINVAL);

  struct gossip_meta m;
  uint8_t out[GOSSIP_META_MAX];
  make_meta(&m);
  m.nlabels = GOSSIP_META_LABELS + 1;
  assert_int_equal(gossip_encode_meta(&m, out, sizeof out), -EINVAL);
  m.nlabels = 1;
  memset(m.zone, 'z', sizeof m.zone);
  assert_int_equal(gossip_encode_meta(&m, out, sizeof out), -EINVAL);
}

/* --- decoder rejections, on inputs built field by field --- */

/* knobs for one SWIM packet with `nupdates` equal updates; good_swim() decodes */
struct knobs {
  uint64_t version;
  int64_t type, state;
  size_t from_len, target_len, uid_len, ufrom_len, meta_len;
  const char *addr, *uname;
  size_t addr_len, uname_len;
  int nupdates;
};

static struct knobs good_swim(void) {
  return (struct knobs){.version = GOSSIP_WIRE_VERSION,
                        .type = GOSSIP_PING,
                        .state = GOSSIP_SUSPECT,
                        .from_len = GOSSIP_ID_LEN,
                        .target_len = GOSSIP_ID_LEN,
                        .uid_len = GOSSIP_ID_LEN,
                        .ufrom_len = GOSSIP_ID_LEN,
                        .meta_len = 10,
                        .addr = "10.0.0.1:7946",
                        .addr_len = 13,
                        .uname = "n1",
                        .uname_len = 2,
                        .nupdates = 2};
}

static size_t build_swim(const struct knobs *k, uint8_t *out) {
  static uint8_t id[64], meta[GOSSIP_META_MAX + 8];
  struct w s = {0}, u = {0}, p = {0};
  w_uint(&s, 1, (uint64_t)k->type);
  w_uint(&s, 2, 7);
  w_bytes(&s, 3, id, k->from_len);
  w_bytes(&s, 4, k->addr, k->addr_len);
  w_bytes(&s, 5, id, k->target_len);
  w_bytes(&u, 1, id, k->uid_len);
  w_bytes(&u, 2, k->uname, k->uname_len);
  w_uint(&u, 4, 3);
  w_uint(&u, 5, (uint64_t)k->state);
  w_bytes(&u, 6, id, k->ufrom_len);
  w_bytes(&u, 7, meta, k->meta_len);
  for (int i = 0; i < k->nupdates; i++)
    w_msg(&s, 7, &u);
  if (k->version) w_uint(&p, 1, k->version);
  w_msg(&p, 2, &s);
  memcpy(out, p.b, p.n);
  return p.n;
}

/* try_swim builds k and returns the decoder's verdict (checking the zeroed output on rejection) */
static int try_swim(const struct knobs *k) {
  size_t n = build_swim(k, buf);
  memset(&pb, 0xa5, sizeof pb);
  int rc = gossip_decode_packet(buf, n, &pb);
  if (rc) assert_true(all_zero(&pb, sizeof pb));
  return rc;
}

static void test_decode_rejects_swim(void **state) {
  struct knobs k = good_swim();
  assert_int_equal(try_swim(&k), 0);
  assert_int_equal(pb.u.swim.nupdates, 2);
  assert_string_equal(pb.u.swim.updates[1].name, "n1");
#define REJECT(field, value)                                                                                 \
  do {                                                                                                       \
    k = good_swim();                                                                                         \
    k.field = value;                                                                                         \
    assert_int_equal(try_swim(&k), -EINVAL);                                                                 \
  } while (0)
#define ACCEPT(field, value)                                                                                 \
  do {                                                                                                       \
    k = good_swim();                                                                                         \
    k.field = value;                                                                                         \
    assert_int_equal(try_swim(&k), 0);                                                                       \
  } while (0)
  /* version: absent (0), unknown */
  REJECT(version, 0);
  REJECT(version, GOSSIP_WIRE_VERSION + 1);
  /* ids of 31, 33 and 0 bytes, in each place */
  REJECT(from_len, 31);
  REJECT(from_len, 33);
  REJECT(from_len, 0);
  REJECT(target_len, 31);
  REJECT(target_len, 33);
  REJECT(uid_len, 31);
  REJECT(uid_len, 33);
  REJECT(ufrom_len, 31);
  REJECT(ufrom_len, 0);
  /* enums */
  REJECT(type, 0);
  REJECT(type, 6);
  REJECT(type, -1);
  REJECT(state, 4);
  REJECT(state, -1);
  ACCEPT(state, GOSSIP_LEFT);
  ACCEPT(type, GOSSIP_GOSSIP);
  /* counts and lengths at and past their limits */
  ACCEPT(nupdates, GOSSIP_MAX_UPDATES);
  REJECT(nupdates, GOSSIP_MAX_UPDATES + 1);
  ACCEPT(meta_len, GOSSIP_META_MAX);
  REJECT(meta_len, GOSSIP_META_MAX + 1);
  char name[GOSSIP_NAME_MAX + 1];
  fill_text(name, GOSSIP_NAME_MAX, 'n');
  k = good_swim();
  k.uname = name;
  k.uname_len = GOSSIP_NAME_MAX - 1;
  assert_int_equal(try_swim(&k), 0);
  assert_int_equal(strlen(pb.u.swim.updates[0].name), GOSSIP_NAME_MAX - 1);
  k.uname_len = GOSSIP_NAME_MAX; /* no room for the NUL */
  assert_int_equal(try_swim(&k), -EINVAL);
  char addr[GOSSIP_ADDR_MAX + 1];
  fill_text(addr, GOSSIP_ADDR_MAX, 'a');
  k = good_swim();
  k.addr = addr;
  k.addr_len = GOSSIP_ADDR_MAX - 1;
  assert_int_equal(try_swim(&k), 0);
  k.addr_len = GOSSIP_ADDR_MAX;
  assert_int_equal(try_swim(&k), -EINVAL);
  /* embedded NUL in a name and in an address */
  k = good_swim();
  k.uname = "n\0de";
  k.uname_len = 4;
  assert_int_equal(try_swim(&k), -EINVAL);
  k = good_swim();
  k.addr = "10.0.0.1\0:7946";
  k.addr_len = 14;
  assert_int_equal(try_swim(&k), -EINVAL);
#undef REJECT
#undef ACCEPT
}

static void test_decode_rejects_malformed(void **state) {
  /* empty input, NULL input */
  expect_packet_rejected((const uint8_t *)"", 0);
  expect_packet_rejected(NULL, 0);
  /* every truncation of a valid packet */
  struct knobs k = good_swim();
  static uint8_t full[8192];
  size_t n = build_swim(&k, full);
  for (size_t cut = 0; cut < n; cut++) {
    uint8_t *copy = malloc(cut ? cut : 1); /* exactly cut bytes: ASan sees any overread */
    assert_non_null(copy);
    memcpy(copy, full, cut);
    expect_packet_rejected(copy, cut);
    free(copy);
  }
  /* a length prefix that runs past the end */
  memcpy(buf, full, n);
  buf[3] = (uint8_t)(buf[3] + 1);
  expect_packet_rejected(buf, n);
  /* a group wire type, and an unterminated varint */
  expect_packet_rejected((const uint8_t *)"\x08\x01\x13", 3);
  expect_packet_rejected((const uint8_t *)"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
  /* no body, and a body kind this build does not know (field 4) */
  expect_packet_rejected((const uint8_t *)"\x08\x01", 2);
  expect_packet_rejected((const uint8_t *)"\x08\x01\x22\x00", 4);
  /* a body of the wrong wire type */
  expect_packet_rejected((const uint8_t *)"\x08\x01\x10\x05", 4);
  /* over the input cap */
  static uint8_t huge[GOSSIP_PACKET_INPUT_MAX + 1];
  expect_packet_rejected(huge, sizeof huge);
  /* garbage: random bytes, also behind a valid version field */
  uint64_t s = 99;
  for (int i = 0; i < 5000; i++) {
    size_t len = 1 + lcg(&s) % 300;
    for (size_t j = 0; j < len; j++)
      buf[j] = (uint8_t)lcg(&s);
    if (i % 2) {
      buf[0] = 0x08;
      buf[1] = GOSSIP_WIRE_VERSION;
    }
    expect_packet_rejected(buf, len);
  }
}

/* load reports built field by field */
struct lknobs {
  size_t from_len, name_len;
  int ntargets, nmodels;
  double waiting;
  int64_t healthy;
};

static size_t build_load(const struct lknobs *k, uint8_t *out) {
  static uint8_t id[GOSSIP_ID_LEN + 8];
  static char name[128];
  memset(name, 'e', sizeof name);
  struct w r = {0}, t = {0}, p = {0};
  w_bytes(&r, 1, id, k->from_len);
  w_uint(&r, 2, 5);
  w_uint(&r, 3, 10);
  w_bytes(&t, 1, name, k->name_len);
  w_str(&t, 2, "vllm");
  for (int i = 0; i < k->nmodels; i++)
    w_str(&t, 3, "m");
  w_uint(&t, 4, (uint64_t)k->healthy);
  w_double(&t, 6, k->waiting);
  for (int i = 0; i < k->ntargets; i++)
    w_msg(&r, 4, &t);
  w_uint(&p, 1, GOSSIP_WIRE_VERSION);
  w_msg(&p, 3, &r);
  memcpy(out, p.b, p.n);
  return p.n;
}

static void test_decode_rejects_load(void **state) {
  const struct lknobs good = {
      .from_len = GOSSIP_ID_LEN, .name_len = 63, .ntargets = 8, .nmodels = 4, .waiting = 2.5, .healthy = 1};
  struct lknobs k = good;
  size_t n = build_load(&k, buf);
  assert_int_equal(gossip_decode_packet(buf, n, &pb), 0);
  assert_int_equal(pb.kind, GOSSIP_PKT_LOAD);
  assert_int_equal(pb.u.load.ntargets, 8);
  assert_int_equal(pb.u.load.targets[7].nmodels, 4);
  assert_true(pb.u.load.targets[7].waiting == 2.5);
  assert_true(pb.u.load.targets[7].healthy);
  k.healthy = 1ll << 40; /* any non-zero varint is true */
  n = build_load(&k, buf);
  assert_int_equal(gossip_decode_packet(buf, n, &pb), 0);
  assert_true(pb.u.load.targets[0].healthy);
  k = good;
  k.ntargets = GOSSIP_LOAD_TARGETS + 1;
  expect_packet_rejected(buf, build_load(&k, buf));
  k = good;
  k.nmodels = GOSSIP_LOAD_MODELS + 1;
  expect_packet_rejected(buf, build_load(&k, buf));
  k = good;
  k.name_len = 64;
  expect_packet_rejected(buf, build_load(&k, buf));
  k = good;
  k.from_len = 33;
  expect_packet_rejected(buf, build_load(&k, buf));
  k = good;
  k.waiting = NAN;
  expect_packet_rejected(buf, build_load(&k, buf));
  k.waiting = -INFINITY;
  expect_packet_rejected(buf, build_load(&k, buf));
}

static void test_decode_rejects_meta(void **state) {
  struct gossip_meta m;
  struct w x = {0};
  char s[100];
  fill_text(s, 99, 'a');
  /* zone: 31 bytes fit, 32 do not */
  w_bytes(&x, 2, s, 31);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), 0);
  assert_int_equal(strlen(m.zone), 31);
  x.n = 0;
  w_bytes(&x, 2, s, 32);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), -EINVAL);
  assert_true(all_zero(&m, sizeof m));
  /* labels: 6 fit, 7 do not; a key with a NUL is refused */
  struct w l = {0};
  w_str(&l, 1, "k");
  w_str(&l, 2, "v");
  x.n = 0;
  for (int i = 0; i < GOSSIP_META_LABELS; i++)
    w_msg(&x, 5, &l);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), 0);
  assert_int_equal(m.nlabels, GOSSIP_META_LABELS);
  w_msg(&x, 5, &l);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), -EINVAL);
  l.n = 0;
  w_bytes(&l, 1, "k\0", 2);
  x.n = 0;
  w_msg(&x, 5, &l);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), -EINVAL);
  /* models: 12 fit, 13 do not; a 96-byte name does not; a 15-byte kind does, 16 not */
  struct w md = {0};
  w_str(&md, 1, "m");
  x.n = 0;
  for (int i = 0; i < GOSSIP_META_MODELS + 1; i++)
    w_msg(&x, 6, &md);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), -EINVAL);
  md.n = 0;
  w_bytes(&md, 1, s, 96);
  x.n = 0;
  w_msg(&x, 6, &md);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), -EINVAL);
  md.n = 0;
  w_bytes(&md, 2, s, 15);
  x.n = 0;
  w_msg(&x, 6, &md);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), 0);
  md.n = 0;
  w_bytes(&md, 2, s, 16);
  x.n = 0;
  w_msg(&x, 6, &md);
  assert_int_equal(gossip_decode_meta(x.b, x.n, &m), -EINVAL);
  /* garbage */
  assert_int_equal(gossip_decode_meta((const uint8_t *)"\x0a\x05zz", 4, &m), -EINVAL);
  assert_int_equal(gossip_decode_meta((const uint8_t *)"\x28", 1, &m), -EINVAL);
}

/* --- the wire format pinned by hand-written bytes --- */

#define R8(x) x, x, x, x, x, x, x, x
#define R32(x) R8(x), R8(x), R8(x), R8(x)

/* clang-format off */
static const uint8_t swim_bytes[] = {
    0x08, 0x01,                                                        /* Packet.version = 1 */
    0x12, 0xc9, 0x01,                                                  /* Packet.swim, 201 bytes */
    0x08, 0x02,                                                        /* Swim.type = PING_REQ */
    0x10, 0x2a,                                                        /* Swim.seq = 42 */
    0x1a, 0x20, R32(0x11),                                             /* Swim.from */
    0x22, 0x0d, '1', '0', '.', '0', '.', '0', '.', '1', ':', '7', '9', '4', '6', /* Swim.from_addr */
    0x2a, 0x20, R32(0x22),                                             /* Swim.target */
    0x32, 0x0d, '1', '0', '.', '0', '.', '0', '.', '2', ':', '7', '9', '4', '6', /* Swim.target_addr */
    0x3a, 0x61,                                                        /* Swim.updates[0], 97 bytes */
    0x0a, 0x20, R32(0x33),                                             /* Update.id */
    0x12, 0x02, 'n', '3',                                              /* Update.name */
    0x1a, 0x0d, '1', '0', '.', '0', '.', '0', '.', '3', ':', '7', '9', '4', '6', /* Update.addr */
    0x20, 0x96, 0x01,                                                  /* Update.incarnation = 150 */
    0x28, 0x01,                                                        /* Update.state = SUSPECT */
    0x32, 0x20, R32(0x44),                                             /* Update.from */
    0x3a, 0x03, 0x01, 0x02, 0x03,                                      /* Update.meta */
};
/* clang-format on */

static void test_hand_written_swim(void **state) {
  assert_int_equal(sizeof swim_bytes, 2 + 3 + 201);
  assert_int_equal(gossip_decode_packet(swim_bytes, sizeof swim_bytes, &pb), 0);
  assert_int_equal(pb.kind, GOSSIP_PKT_SWIM);
  const struct gossip_msg *m = &pb.u.swim;
  uint8_t id[GOSSIP_ID_LEN];
  assert_int_equal(m->type, GOSSIP_PING_REQ);
  assert_int_equal(m->seq, 42);
  memset(id, 0x11, sizeof id);
  assert_memory_equal(m->from, id, GOSSIP_ID_LEN);
  assert_string_equal(m->from_addr, "10.0.0.1:7946");
  memset(id, 0x22, sizeof id);
  assert_memory_equal(m->target, id, GOSSIP_ID_LEN);
  assert_string_equal(m->target_addr, "10.0.0.2:7946");
  assert_int_equal(m->nupdates, 1);
  const struct gossip_update *u = &m->updates[0];
  memset(id, 0x33, sizeof id);
  assert_memory_equal(u->id, id, GOSSIP_ID_LEN);
  assert_string_equal(u->name, "n3");
  assert_string_equal(u->addr, "10.0.0.3:7946");
  assert_true(u->incarnation == 150);
  assert_int_equal(u->state, GOSSIP_SUSPECT);
  memset(id, 0x44, sizeof id);
  assert_memory_equal(u->from, id, GOSSIP_ID_LEN);
  assert_int_equal(u->meta_len, 3);
  assert_memory_equal(u->meta, "\x01\x02\x03", 3);
  /* the encoder writes exactly these bytes back */
  assert_int_equal(gossip_encode_packet(&pb, buf, sizeof buf), (int)sizeof swim_bytes);
  assert_memory_equal(buf, swim_bytes, sizeof swim_bytes);

  /* unknown fields are ignored: at the top (varint 9, bytes 15, a future body kind 4) and inside the update
   */
  static uint8_t ext[sizeof swim_bytes + 32];
  memcpy(ext, swim_bytes, sizeof swim_bytes);
  size_t n = sizeof swim_bytes;
  memcpy(ext + n, "\x48\x07\x7a\x02\xaa\xbb", 6);
  n += 6;
  assert_int_equal(gossip_decode_packet(ext, n, &pa), 0);
  assert_msg_equal(&pb.u.swim, &pa.u.swim);
  struct w x = {0}, s = {0}, up = {0};
  w_bytes(&up, 1, id, GOSSIP_ID_LEN);
  w_bytes(&up, 6, id, GOSSIP_ID_LEN);
  w_uint(&up, 8, 77);        /* unknown to this build */
  w_str(&up, 1000, "later"); /* so is this */
  w_uint(&s, 1, GOSSIP_GOSSIP);
  w_bytes(&s, 3, id, GOSSIP_ID_LEN);
  w_bytes(&s, 5, id, GOSSIP_ID_LEN);
  w_msg(&s, 7, &up);
  w_double(&s, 12, 1.5);
  w_uint(&x, 1, 1);
  w_msg(&x, 2, &s);
  assert_int_equal(gossip_decode_packet(x.b, x.n, &pa), 0);
  assert_int_equal(pa.u.swim.nupdates, 1);
  assert_memory_equal(pa.u.swim.updates[0].id, id, GOSSIP_ID_LEN);
  /* ... but a known field with the wrong wire type is malformed: Update.id as a varint */
  w_uint(&up, 1, 5);
  s.n = x.n = 0;
  w_uint(&s, 1, GOSSIP_GOSSIP);
  w_bytes(&s, 3, id, GOSSIP_ID_LEN);
  w_bytes(&s, 5, id, GOSSIP_ID_LEN);
  w_msg(&s, 7, &up);
  w_uint(&x, 1, 1);
  w_msg(&x, 2, &s);
  expect_packet_rejected(x.b, x.n);
}

static void test_hand_written_load_meta_pushpull(void **state) {
  uint8_t id[GOSSIP_ID_LEN];
  fill(id, sizeof id, 5);
  /* LoadReport: every field number of LoadReport and TargetLoad */
  struct w t = {0}, r = {0}, p = {0};
  w_str(&t, 1, "engine-0");
  w_str(&t, 2, "vllm");
  w_str(&t, 3, "m1");
  w_str(&t, 3, "m2");
  w_uint(&t, 4, 1);
  w_uint(&t, 5, 1);
  w_double(&t, 6, 1.5);
  w_double(&t, 7, 2.5);
  w_double(&t, 8, 0.25);
  w_uint(&t, 9, 123456789);
  w_double(&t, 10, 0.75);
  w_double(&t, 11, 1000.5);
  w_double(&t, 12, 50.25);
  w_double(&t, 13, -1);
  w_uint(&t, 14, (uint64_t)(int64_t)-3); /* int32 negative: 10-byte varint */
  w_bytes(&r, 1, id, sizeof id);
  w_uint(&r, 2, 77);
  w_uint(&r, 3, 250);
  w_msg(&r, 4, &t);
  w_uint(&p, 1, GOSSIP_WIRE_VERSION);
  w_msg(&p, 3, &r);
  assert_int_equal(gossip_decode_packet(p.b, p.n, &pb), 0);
  assert_int_equal(pb.kind, GOSSIP_PKT_LOAD);
  const struct gossip_load *l = &pb.u.load;
  assert_memory_equal(l->from, id, sizeof id);
  assert_true(l->seq == 77);
  assert_int_equal(l->age_ms, 250);
  assert_int_equal(l->ntargets, 1);
  const struct gossip_target_load *tl = &l->targets[0];
  assert_string_equal(tl->name, "engine-0");
  assert_string_equal(tl->kind, "vllm");
  assert_int_equal(tl->nmodels, 2);
  assert_string_equal(tl->models[0], "m1");
  assert_string_equal(tl->models[1], "m2");
  assert_true(tl->healthy && tl->gpu_degraded);
  assert_true(tl->waiting == 1.5 && tl->running == 2.5 && tl->kv_usage == 0.25);
  assert_true(tl->kv_capacity_tokens == 123456789);
  assert_true(tl->prefix_hit_rate == 0.75 && tl->prompt_tps == 1000.5 && tl->gen_tps == 50.25);
  assert_true(tl->ttft_p50_ms == -1);
  assert_int_equal(tl->inflight, -3);
  assert_int_equal(gossip_encode_packet(&pb, buf, sizeof buf), (int)p.n); /* same fields, same order */
  assert_memory_equal(buf, p.b, p.n);

  /* NodeMeta, Label, Model */
  struct w m = {0}, lb = {0}, md = {0};
  w_uint(&m, 1, GOSSIP_ROLE_GPU | GOSSIP_ROLE_GATEWAY);
  w_str(&m, 2, "zone-b");
  w_str(&m, 3, "10.0.0.9:8080");
  w_uint(&m, 4, 1);
  w_str(&lb, 1, "rack");
  w_str(&lb, 2, "r7");
  w_msg(&m, 5, &lb);
  w_str(&md, 1, "llama");
  w_str(&md, 2, "ollama");
  w_uint(&md, 3, 65536);
  w_msg(&m, 6, &md);
  struct gossip_meta gm;
  assert_int_equal(gossip_decode_meta(m.b, m.n, &gm), 0);
  assert_int_equal(gm.roles, GOSSIP_ROLE_GPU | GOSSIP_ROLE_GATEWAY);
  assert_string_equal(gm.zone, "zone-b");
  assert_string_equal(gm.api_addr, "10.0.0.9:8080");
  assert_true(gm.draining);
  assert_int_equal(gm.nlabels, 1);
  assert_string_equal(gm.label_key[0], "rack");
  assert_string_equal(gm.label_value[0], "r7");
  assert_int_equal(gm.nmodels, 1);
  assert_string_equal(gm.models[0].name, "llama");
  assert_string_equal(gm.models[0].kind, "ollama");
  assert_true(gm.models[0].capacity_tokens == 65536);
  uint8_t mout[GOSSIP_META_MAX];
  assert_int_equal(gossip_encode_meta(&gm, mout, sizeof mout), (int)m.n);
  assert_memory_equal(mout, m.b, m.n);

  /* PushPull */
  struct w pp = {0}, u = {0};
  w_bytes(&u, 1, id, sizeof id);
  w_str(&u, 2, "n");
  w_uint(&u, 5, GOSSIP_DEAD);
  w_bytes(&u, 6, id, sizeof id);
  w_uint(&pp, 1, GOSSIP_WIRE_VERSION);
  w_uint(&pp, 2, 1);
  w_bytes(&pp, 3, id, sizeof id);
  w_msg(&pp, 4, &u);
  w_msg(&pp, 4, &u);
  struct gossip_pushpull g;
  assert_int_equal(gossip_decode_pushpull(pp.b, pp.n, &g), 0);
  assert_true(g.join);
  assert_memory_equal(g.from, id, sizeof id);
  assert_int_equal(g.nmembers, 2);
  assert_string_equal(g.members[1].name, "n");
  assert_int_equal(g.members[1].state, GOSSIP_DEAD);
  uint8_t *out;
  size_t outlen;
  assert_int_equal(gossip_encode_pushpull(&g, &out, &outlen), 0);
  assert_int_equal(outlen, pp.n);
  assert_memory_equal(out, pp.b, pp.n);
  free(out);
  gossip_pushpull_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_swim_roundtrip_every_type),
      cmocka_unit_test(test_load_roundtrip),
      cmocka_unit_test(test_meta_roundtrip),
      cmocka_unit_test(test_meta_inside_update),
      cmocka_unit_test(test_pushpull_roundtrip),
      cmocka_unit_test(test_pushpull_rejections),
      cmocka_unit_test(test_worst_case_size_within_bound),
      cmocka_unit_test(test_random_messages_within_bound),
      cmocka_unit_test(test_encode_rejects_bad_structs),
      cmocka_unit_test(test_decode_rejects_swim),
      cmocka_unit_test(test_decode_rejects_malformed),
      cmocka_unit_test(test_decode_rejects_load),
      cmocka_unit_test(test_decode_rejects_meta),
      cmocka_unit_test(test_hand_written_swim),
      cmocka_unit_test(test_hand_written_load_meta_pushpull),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
