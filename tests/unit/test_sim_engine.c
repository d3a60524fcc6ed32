/* Unit tests for the simulated engine: KV pool, profiles, tokens/hashes and the virtual-time scheduler. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/err.h"
#include "core/rng.h"
#include "sim/engine.h"
#include "sim/kvpool.h"
#include "sim/oai_gen.h"
#include "sim/profile.h"

/* ---- helpers ---- */

static const char *profiles_dir(void) {
  static char dir[4096];
  const char *src = getenv("IM_SOURCE_DIR");
#ifdef IM_SOURCE_DIR
  if (!src || !src[0]) src = IM_SOURCE_DIR;
#endif
  if (!src || !src[0]) src = ".";
  snprintf(dir, sizeof dir, "%s/profiles", src);
  return dir;
}

static void load(const char *name, struct sim_profile *p) {
  char err[512] = "";
  int rc = sim_profile_load(name, profiles_dir(), p, err, sizeof err);
  if (rc) fail_msg("loading profile %s: %s", name, err);
}

/* make_prompt fills a deterministic pseudo-random text; different seeds give different first blocks. */
static char *make_prompt(size_t len, uint64_t seed) {
  char *s = malloc(len + 1);
  struct rng r;
  rng_seed(&r, seed * 7919 + 1);
  for (size_t i = 0; i < len; i++)
    s[i] = (char)('a' + rng_below(&r, 26));
  s[len] = '\0';
  return s;
}

#define MAXH 16384
static uint64_t hbuf[MAXH];

static uint64_t submit_text(struct sim_engine *e, uint64_t now, const char *prompt, size_t len,
                            int max_tokens, uintptr_t tag) {
  const struct sim_profile *p = sim_engine_profile(e);
  int nh = sim_block_hashes(p, prompt, len, hbuf, MAXH);
  return sim_engine_submit(e, now, hbuf, nh, sim_tokens_for_bytes(len), max_tokens, (void *)tag);
}

#define MAXR 64

/* rec records events per request tag and checks the event-order contract as they arrive. */
struct rec {
  struct sim_engine *e;
  int n_first[MAXR], n_tok[MAXR], n_done[MAXR];
  int tokens_out[MAXR], cached[MAXR];
  uint64_t t_first[MAXR], t_done[MAXR], t_last[MAXR], max_gap[MAXR];
  uint64_t ids[MAXR];
  int done_order[MAXR], ndone;
  int last_tag, last_kind;
  int bad;
  char why[256];
  /* callback actions */
  int abort_self_on_first; /* tag, or -1 */
  int abort_other_on_first_of, abort_other_tag;
  int submit_on_done_of, submit_tag;
  const char *submit_prompt;
  size_t submit_len;
  int tokens_seen_by_tag0_before_first_of_tag1;
};

static void rec_init(struct rec *r, struct sim_engine *e) {
  memset(r, 0, sizeof *r);
  r->e = e;
  r->last_tag = -1;
  r->abort_self_on_first = -1;
  r->abort_other_on_first_of = -1;
  r->submit_on_done_of = -1;
}

static void bad(struct rec *r, const char *why, int tag) {
  if (!r->bad) snprintf(r->why, sizeof r->why, "%s (tag %d)", why, tag);
  r->bad++;
}

static void rec_cb(void *arg, const struct sim_event *ev) {
  struct rec *r = arg;
  int tag = (int)(uintptr_t)ev->udata;
  if (tag < 0 || tag >= MAXR) return bad(r, "unknown udata", tag);
  if (r->n_done[tag]) bad(r, "event after DONE", tag);
  switch (ev->kind) {
  case SIM_EV_FIRST_TOKEN:
    if (r->n_first[tag] || r->n_tok[tag] || ev->tokens_out != 1) bad(r, "bad FIRST_TOKEN", tag);
    r->n_first[tag]++;
    r->t_first[tag] = ev->t_ns;
    r->cached[tag] = ev->cached_tokens;
    break;
  case SIM_EV_TOKEN:
    if (!r->n_first[tag] || ev->tokens_out != r->tokens_out[tag] + 1) bad(r, "bad TOKEN", tag);
    r->n_tok[tag]++;
    if (ev->t_ns - r->t_last[tag] > r->max_gap[tag]) r->max_gap[tag] = ev->t_ns - r->t_last[tag];
    if (tag == 0 && r->n_first[1] == 0) r->tokens_seen_by_tag0_before_first_of_tag1++;
    break;
  case SIM_EV_DONE:
    if (r->last_tag != tag || r->last_kind == SIM_EV_DONE) bad(r, "DONE not right after own token", tag);
    if (ev->tokens_out != r->tokens_out[tag]) bad(r, "DONE tokens_out mismatch", tag);
    r->n_done[tag]++;
    r->t_done[tag] = ev->t_ns;
    r->done_order[r->ndone++] = tag;
    break;
  default: bad(r, "unknown kind", tag);
  }
  if (ev->kind != SIM_EV_DONE) {
    r->tokens_out[tag] = ev->tokens_out;
    r->t_last[tag] = ev->t_ns;
  }
  r->last_tag = tag;
  r->last_kind = ev->kind;
  if (ev->kind == SIM_EV_FIRST_TOKEN && tag == r->abort_self_on_first) sim_engine_abort(r->e, ev->id);
  if (ev->kind == SIM_EV_FIRST_TOKEN && tag == r->abort_other_on_first_of)
    sim_engine_abort(r->e, r->ids[r->abort_other_tag]);
  if (ev->kind == SIM_EV_DONE && tag == r->submit_on_done_of)
    r->ids[r->submit_tag] =
        submit_text(r->e, ev->t_ns, r->submit_prompt, r->submit_len, 3, (uintptr_t)r->submit_tag);
}

static void run_all(struct sim_engine *e, struct rec *r) {
  for (long guard = 0; guard < 10000000; guard++) {
    uint64_t t = sim_engine_next_event(e);
    if (t == UINT64_MAX) return;
    sim_engine_advance(e, t, rec_cb, r);
  }
  fail_msg("engine did not go idle");
}

static void assert_idle_and_empty(struct sim_engine *e) {
  const struct sim_stats *st = sim_engine_stats(e);
  assert_int_equal(st->running, 0);
  assert_int_equal(st->waiting, 0);
  assert_int_equal(kvpool_used(sim_engine_pool(e)), 0);
  assert_true(st->kv_usage == 0.0);
  assert_true(sim_engine_next_event(e) == UINT64_MAX);
}

static uint64_t prefill_ns(const struct sim_profile *p, int ctx, int n) {
  return (uint64_t)llround(sim_profile_step_s(p, n, sim_profile_attn_s(p, ctx, n)) * 1e9);
}

/* ---- KV pool ---- */

static void test_pool_hit_miss_refcount(void **state) {
  (void)state;
  struct kvpool p;
  assert_int_equal(kvpool_init(&p, 0), -EINVAL);
  assert_int_equal(kvpool_init(&p, 8), 0);
  uint64_t h[3] = {111, 222, 333};
  int a[4], b[4];
  assert_int_equal(kvpool_lookup_prefix(&p, h, 3), 0);
  assert_int_equal(kvpool_acquire_prefix(&p, h, 0, 3, a), 0); /* a miss: three fresh blocks */
  assert_int_equal(kvpool_used(&p), 3);
  for (int i = 0; i < 3; i++)
    assert_int_equal(kvpool_commit_hash(&p, a[i], h[i]), 1);
  assert_int_equal(kvpool_num_cached(&p), 3);
  assert_int_equal(kvpool_lookup_prefix(&p, h, 3), 3);
  uint64_t other[2] = {111, 999}; /* shares only the first block */
  assert_int_equal(kvpool_lookup_prefix(&p, other, 2), 1);
  /* A second request shares the first two blocks and takes one fresh block. */
  assert_int_equal(kvpool_acquire_prefix(&p, h, 2, 1, b), 0);
  assert_int_equal(b[0], a[0]);
  assert_int_equal(b[1], a[1]);
  assert_true(b[2] != a[2]);
  assert_int_equal(kvpool_ref(&p, a[0]), 2);
  assert_int_equal(kvpool_ref(&p, a[2]), 1);
  assert_int_equal(kvpool_used(&p), 4);
  assert_int_equal(kvpool_num_free(&p), 4);
  kvpool_release(&p, a, 3);
  assert_int_equal(kvpool_ref(&p, a[0]), 1);
  assert_int_equal(kvpool_ref(&p, a[2]), 0);
  assert_int_equal(kvpool_used(&p), 3);
  assert_int_equal(kvpool_num_free(&p), 5); /* a[2] is free but still cached */
  assert_int_equal(kvpool_find(&p, 333), a[2]);
  kvpool_release(&p, b, 3);
  assert_int_equal(kvpool_used(&p), 0);
  assert_int_equal(kvpool_num_free(&p), 8);
  assert_int_equal(kvpool_num_cached(&p), 3); /* b[2] never got a hash: plain free */
  /* Re-acquiring a cached free block takes it off the LRU list: it counts as used again. */
  assert_int_equal(kvpool_acquire_prefix(&p, h, 3, 0, a), 0);
  assert_int_equal(kvpool_used(&p), 3);
  assert_int_equal(kvpool_num_free(&p), 5);
  kvpool_release(&p, a, 3);
  kvpool_free_all(&p);
}

static void test_pool_lru_eviction_order(void **state) {
  (void)state;
  struct kvpool p;
  assert_int_equal(kvpool_init(&p, 6), 0);
  uint64_t ha[2] = {0xa0, 0xa1}, hb[2] = {0xb0, 0xb1};
  int a[2], b[2], x[2];
  assert_int_equal(kvpool_alloc(&p, 2, a), 0);
  assert_int_equal(kvpool_alloc(&p, 2, b), 0);
  for (int i = 0; i < 2; i++) {
    kvpool_commit_hash(&p, a[i], ha[i]);
    kvpool_commit_hash(&p, b[i], hb[i]);
  }
  kvpool_release(&p, a, 2); /* LRU: a1 a0 */
  kvpool_release(&p, b, 2); /* LRU: a1 a0 b1 b0 */
  /* Never-used blocks go first: the two plain ones, no eviction. */
  assert_int_equal(kvpool_alloc(&p, 2, x), 0);
  assert_int_equal(kvpool_num_cached(&p), 4);
  assert_int_equal(p.evictions, 0);
  /* Then the least recently released, a request's tail block first. */
  int y;
  assert_int_equal(kvpool_alloc(&p, 1, &y), 0);
  assert_int_equal(y, a[1]);
  assert_int_equal(kvpool_find(&p, 0xa1), -1);
  assert_int_equal(kvpool_find(&p, 0xa0), a[0]);
  assert_int_equal(kvpool_lookup_prefix(&p, ha, 2), 1);
  /* A hit refreshes a block: touch b (hits b0 b1), release it: LRU becomes a0 b1 b0. */
  int bb[2];
  assert_int_equal(kvpool_acquire_prefix(&p, hb, 2, 0, bb), 0);
  kvpool_release(&p, bb, 2);
  int z;
  assert_int_equal(kvpool_alloc(&p, 1, &z), 0);
  assert_int_equal(z, a[0]);
  assert_int_equal(kvpool_lookup_prefix(&p, ha, 2), 0);
  assert_int_equal(kvpool_lookup_prefix(&p, hb, 2), 2);
  assert_int_equal(kvpool_alloc(&p, 1, &z), 0);
  assert_int_equal(z, b[1]); /* b's tail before its head */
  assert_int_equal(kvpool_lookup_prefix(&p, hb, 2), 1);
  assert_int_equal(p.evictions, 3);
  assert_int_equal(kvpool_num_free(&p), 1);
  kvpool_free_all(&p);
}

static void test_pool_all_or_nothing(void **state) {
  (void)state;
  struct kvpool p;
  assert_int_equal(kvpool_init(&p, 4), 0);
  uint64_t h[2] = {7, 8};
  int a[2], ids[8];
  assert_int_equal(kvpool_alloc(&p, 2, a), 0);
  kvpool_commit_hash(&p, a[0], h[0]);
  kvpool_commit_hash(&p, a[1], h[1]);
  kvpool_release(&p, a, 2); /* 2 cached free + 2 plain free */
  /* Taking both hits leaves only the 2 plain blocks: 3 new must fail and change nothing. */
  assert_int_equal(kvpool_acquire_prefix(&p, h, 2, 3, ids), -ENOSPC);
  assert_int_equal(kvpool_used(&p), 0);
  assert_int_equal(kvpool_num_free(&p), 4);
  assert_int_equal(kvpool_num_cached(&p), 2);
  assert_int_equal(kvpool_ref(&p, a[0]), 0);
  uint64_t missing[2] = {7, 9};
  assert_int_equal(kvpool_acquire_prefix(&p, missing, 2, 0, ids), -ENOENT);
  assert_int_equal(kvpool_used(&p), 0);
  assert_int_equal(kvpool_alloc(&p, 5, ids), -ENOSPC);
  assert_int_equal(kvpool_used(&p), 0);
  /* 2 new fit, and must not evict the hits being taken. */
  assert_int_equal(kvpool_acquire_prefix(&p, h, 2, 2, ids), 0);
  assert_int_equal(kvpool_find(&p, 7), a[0]);
  assert_int_equal(kvpool_find(&p, 8), a[1]);
  assert_int_equal(kvpool_used(&p), 4);
  assert_int_equal(kvpool_num_free(&p), 0);
  /* A duplicate block (same hash computed twice) stays unhashed and is not cached on release. */
  assert_int_equal(kvpool_commit_hash(&p, ids[2], 7), 0);
  kvpool_release(&p, ids, 4);
  assert_int_equal(kvpool_num_cached(&p), 2);
  kvpool_free_all(&p);
}

/* Random churn against a simple model: the hash table must find exactly the cached blocks. */
static void test_pool_random_churn(void **state) {
  (void)state;
  enum { NB = 300, NREQ = 40, PER = 12 };
  struct kvpool p;
  assert_int_equal(kvpool_init(&p, NB), 0);
  struct rng r;
  rng_seed(&r, 42);
  int held[NREQ][PER], nheld[NREQ] = {0};
  uint64_t next_hash = 1;
  for (int it = 0; it < 20000; it++) {
    int q = (int)rng_below(&r, NREQ);
    if (nheld[q]) {
      kvpool_release(&p, held[q], nheld[q]);
      nheld[q] = 0;
    } else {
      int n = 1 + (int)rng_below(&r, PER);
      if (kvpool_alloc(&p, n, held[q]) != 0) continue;
      nheld[q] = n;
      for (int i = 0; i < n; i++)
        if (rng_below(&r, 2)) kvpool_commit_hash(&p, held[q][i], (next_hash++) * 0x100000000ull);
    }
    int used = 0;
    for (int k = 0; k < NREQ; k++)
      used += nheld[k];
    assert_int_equal(kvpool_used(&p), used);
    assert_int_equal(kvpool_used(&p) + kvpool_num_free(&p), NB);
  }
  int cached = 0;
  for (int id = 0; id < NB; id++) {
    if (!p.blk[id].hashed) continue;
    cached++;
    assert_int_equal(kvpool_find(&p, p.blk[id].hash), id);
  }
  assert_int_equal(cached, kvpool_num_cached(&p));
  assert_true(p.evictions > 0);
  for (int k = 0; k < NREQ; k++)
    kvpool_release(&p, held[k], nheld[k]);
  assert_int_equal(kvpool_used(&p), 0);
  kvpool_free_all(&p);
}

/* ---- profiles ---- */

static void assert_profiles_equal(const struct sim_profile *a, const struct sim_profile *b) {
  assert_string_equal(a->name, b->name);
  assert_string_equal(a->model, b->model);
  assert_int_equal(a->block_size, b->block_size);
  assert_int_equal(a->num_gpu_blocks, b->num_gpu_blocks);
  assert_int_equal(a->max_num_seqs, b->max_num_seqs);
  assert_int_equal(a->max_num_batched_tokens, b->max_num_batched_tokens);
  assert_int_equal(a->max_model_len, b->max_model_len);
  assert_true(a->step_overhead_s == b->step_overhead_s);
  assert_true(a->weights_read_s == b->weights_read_s);
  assert_true(a->token_compute_s == b->token_compute_s);
  assert_true(a->kv_read_per_token_s == b->kv_read_per_token_s);
  assert_true(a->attn_pair_s == b->attn_pair_s);
}

static void test_profile_default_matches_json(void **state) {
  (void)state;
  struct sim_profile def, js, tiny;
  sim_profile_default(&def);
  assert_int_equal(sim_profile_validate(&def, NULL, 0), 0);
  load("llama-3.1-8b-h100", &js);
  assert_profiles_equal(&def, &js);
  char path[4200];
  snprintf(path, sizeof path, "%s/llama-3.1-8b-h100.json", profiles_dir());
  load(path, &js); /* by path */
  assert_profiles_equal(&def, &js);
  load("tiny-test", &tiny);
  assert_int_equal(tiny.block_size, 16);
  assert_int_equal(tiny.num_gpu_blocks, 64);
  assert_int_equal(tiny.max_num_seqs, 4);
}

static int load_text(const char *json, char *err, size_t errlen) {
  char path[] = "/tmp/im_profile_XXXXXX.json";
  int fd = mkstemps(path, 5);
  assert_true(fd >= 0);
  size_t n = strlen(json);
  assert_int_equal(write(fd, json, n), (ssize_t)n);
  close(fd);
  struct sim_profile p;
  err[0] = '\0';
  int rc = sim_profile_load(path, NULL, &p, err, errlen);
  unlink(path);
  return rc;
}

#define GOOD_BODY                                                                                            \
  "\"name\":\"t\",\"model\":\"m\",\"block_size\":16,\"num_gpu_blocks\":64,\"max_num_seqs\":4,"               \
  "\"max_num_batched_tokens\":256,\"max_model_len\":1024,\"step_overhead_s\":0.001,\"weights_read_s\":0."    \
  "005,"                                                                                                     \
  "\"token_compute_s\":4e-5,\"kv_read_per_token_s\":5e-8,\"attn_pair_s\":1e-9"

static void test_profile_rejects_bad_files(void **state) {
  (void)state;
  char err[512];
  assert_int_equal(load_text("{" GOOD_BODY ",\"sources\":[\"x\"]}", err, sizeof err), 0);
  assert_int_equal(load_text("{" GOOD_BODY ",\"sources\":[\"x\"],\"max_num_seq\":8}", err, sizeof err),
                   -EINVAL);
  assert_non_null(strstr(err, "unknown key \"max_num_seq\""));
  assert_int_equal(load_text("{" GOOD_BODY ",\"sources\":[\"x\"],\"block_size\":32}", err, sizeof err),
                   IM_EPARSE);
  assert_non_null(strstr(err, "block_size"));
  assert_int_equal(load_text("{" GOOD_BODY "}", err, sizeof err), -EINVAL); /* sources are required */
  assert_non_null(strstr(err, "sources"));
  assert_int_equal(load_text("{" GOOD_BODY ",\"sources\":[]}", err, sizeof err), -EINVAL);
  /* A pool too small for one max_model_len sequence (64 blocks * 16 < 2048) is refused, as vLLM does. */
  assert_int_equal(
      load_text("{\"name\":\"t\",\"model\":\"m\",\"block_size\":16,\"num_gpu_blocks\":64,\"max_num_seqs\":4,"
                "\"max_num_batched_tokens\":256,\"max_model_len\":2048,\"step_overhead_s\":0.001,"
                "\"weights_read_s\":0.005,\"token_compute_s\":4e-5,\"kv_read_per_token_s\":5e-8,"
                "\"attn_pair_s\":1e-9,\"sources\":[\"x\"]}",
                err, sizeof err),
      -EINVAL);
  assert_non_null(strstr(err, "max_model_len"));
  assert_int_equal(
      load_text("{\"name\":\"t\",\"model\":\"m\",\"block_size\":16,\"num_gpu_blocks\":64,\"max_num_seqs\":4,"
                "\"max_num_batched_tokens\":2,\"max_model_len\":1024,\"step_overhead_s\":0.001,"
                "\"weights_read_s\":0.005,\"token_compute_s\":4e-5,\"kv_read_per_token_s\":5e-8,"
                "\"attn_pair_s\":1e-9,\"sources\":[\"x\"]}",
                err, sizeof err),
      -EINVAL);
  assert_non_null(strstr(err, "max_num_batched_tokens"));
  assert_int_equal(
      load_text("{\"name\":\"t\",\"model\":\"m\",\"block_size\":16,\"num_gpu_blocks\":64,\"max_num_seqs\":4,"
                "\"max_num_batched_tokens\":256,\"max_model_len\":1024,\"step_overhead_s\":-1,"
                "\"weights_read_s\":0.005,\"token_compute_s\":4e-5,\"kv_read_per_token_s\":5e-8,"
                "\"attn_pair_s\":1e-9,\"sources\":[\"x\"]}",
                err, sizeof err),
      -EINVAL);
  assert_non_null(strstr(err, "step_overhead_s"));
  assert_int_equal(load_text("{\"name\":\"t\",\"model\":\"m\",\"block_size\":\"16\"}", err, sizeof err),
                   -EINVAL);
  assert_int_equal(load_text("{\"name\":", err, sizeof err), IM_EPARSE);
  assert_int_equal(load_text("[1]", err, sizeof err), -EINVAL);
  struct sim_profile p;
  assert_int_equal(sim_profile_load("..", profiles_dir(), &p, err, sizeof err), -EINVAL);
  assert_int_equal(sim_profile_load("no such", profiles_dir(), &p, err, sizeof err), -EINVAL);
  assert_int_equal(sim_profile_load("no-such-profile", profiles_dir(), &p, err, sizeof err), -ENOENT);
  assert_non_null(strstr(err, "no-such-profile.json"));
}

/* ---- tokenization and hashes ---- */

static void test_tokens_and_hashes(void **state) {
  (void)state;
  assert_int_equal(sim_tokens_for_bytes(0), 0);
  assert_int_equal(sim_tokens_for_bytes(1), 1);
  assert_int_equal(sim_tokens_for_bytes(4), 1);
  assert_int_equal(sim_tokens_for_bytes(5), 2);
  assert_int_equal(sim_tokens_for_bytes(4000), 1000);
  struct sim_profile p, q;
  sim_profile_default(&p); /* 16-token blocks = 64 bytes */
  char *a = make_prompt(64 * 3 + 10, 1);
  char *b = make_prompt(64 * 3 + 10, 1);
  b[64 * 2 + 5] ^= 1; /* differs inside block 2 */
  uint64_t ha[8], hb[8], hc[8];
  assert_int_equal(sim_block_hashes(&p, a, 64 * 3 + 10, ha, 8), 3); /* the partial block has no hash */
  assert_int_equal(sim_block_hashes(&p, b, 64 * 3 + 10, hb, 8), 3);
  assert_true(ha[0] == hb[0] && ha[1] == hb[1] && ha[2] != hb[2]);
  assert_int_equal(sim_block_hashes(&p, a, 64 * 3 + 10, hc, 2), 2); /* bounded by max */
  assert_int_equal(sim_block_hashes(&p, a, 63, hc, 8), 0);
  /* Chained: a change in block 0 changes every later hash; another model gives other hashes. */
  b[3] ^= 1;
  sim_block_hashes(&p, b, 64 * 3, hb, 8);
  assert_true(ha[0] != hb[0] && ha[1] != hb[1]);
  q = p;
  snprintf(q.model, sizeof q.model, "another/model");
  sim_block_hashes(&q, a, 64 * 3, hc, 8);
  assert_true(hc[0] != ha[0]);
  free(a);
  free(b);
}

/* ---- engine ---- */

static void test_8b_single_request_latency(void **state) {
  (void)state;
  struct sim_profile p;
  load("llama-3.1-8b-h100", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  char *prompt = make_prompt(4000, 3);
  uint64_t t0 = 1000000000ull; /* 1 s: TTFT is measured from submit, not from 0 */
  assert_true(submit_text(e, t0, prompt, 4000, 10, 0) != 0);
  assert_true(sim_engine_next_event(e) == t0);
  run_all(e, &r);
  assert_int_equal(r.bad, 0);
  double ttft = (double)(r.t_first[0] - t0) / 1e9;
  assert_true(ttft >= 0.030 && ttft <= 0.200);
  /* Exactly one step prefilling 1000 tokens (fits the 8192 budget, nothing cached). */
  assert_int_equal(r.t_first[0] - t0, prefill_ns(&p, 0, 1000));
  assert_int_equal(r.cached[0], 0);
  assert_int_equal(r.n_tok[0], 9);
  assert_int_equal(r.n_done[0], 1);
  /* Decode steps: one token on a 1000+ token context, ~weights read + overhead. */
  double itl = (double)(r.t_done[0] - r.t_first[0]) / 9 / 1e9;
  double one = sim_profile_step_s(&p, 1, sim_profile_attn_s(&p, 1005, 1));
  assert_true(itl > one * 0.99 && itl < one * 1.01);
  assert_true(itl > 0.005 && itl < 0.012);
  const struct sim_stats *st = sim_engine_stats(e);
  assert_int_equal(st->prompt_tokens_total, 1000);
  assert_int_equal(st->generation_tokens_total, 10);
  assert_int_equal(st->requests_finished, 1);
  assert_int_equal(st->ttft.count, 1);
  assert_int_equal(st->itl.count, 9);
  assert_int_equal(st->e2e.count, 1);
  assert_true(st->ttft.sum > 0.030 && st->ttft.sum < 0.200);
  assert_idle_and_empty(e);
  free(prompt);
  sim_engine_free(e);
}

static void test_prefix_cache_hits_cut_ttft(void **state) {
  (void)state;
  struct sim_profile p;
  sim_profile_default(&p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  /* A: 2000 tokens = 125 full blocks. B: A plus a different 100-token tail. C: unrelated, B's length. */
  char *b = make_prompt(8400, 10);
  char *c = make_prompt(8400, 11);
  uint64_t t = 0;
  submit_text(e, t, b, 8000, 1, 0);
  run_all(e, &r);
  t = r.t_done[0] + 1000000;
  submit_text(e, t, b, 8400, 1, 1);
  run_all(e, &r);
  uint64_t ttft_b = r.t_first[1] - t;
  t = r.t_done[1] + 1000000;
  submit_text(e, t, c, 8400, 1, 2);
  run_all(e, &r);
  uint64_t ttft_c = r.t_first[2] - t;
  /* Identical prompt: all but the last block hit (the last token must be recomputed). */
  t = r.t_done[2] + 1000000;
  submit_text(e, t, b, 8000, 1, 3);
  run_all(e, &r);
  uint64_t ttft_d = r.t_first[3] - t;
  assert_int_equal(r.bad, 0);
  assert_int_equal(r.cached[0], 0);
  assert_int_equal(r.cached[1], 2000);
  assert_int_equal(r.cached[2], 0);
  assert_int_equal(r.cached[3], 1984);
  assert_int_equal(ttft_b, prefill_ns(&p, 2000, 100));
  assert_int_equal(ttft_c, prefill_ns(&p, 0, 2100));
  assert_true(ttft_b * 5 < ttft_c);
  assert_true(ttft_d < ttft_b);
  const struct sim_stats *st = sim_engine_stats(e);
  assert_int_equal(st->prefix_queries_tokens, 2000 + 2100 + 2100 + 2000);
  assert_int_equal(st->prefix_hits_tokens, 2000 + 1984);
  assert_int_equal(st->prompt_tokens_total, 2000 + 2100 + 2100 + 2000);
  assert_idle_and_empty(e);
  assert_true(kvpool_num_cached(sim_engine_pool(e)) > 0); /* finished prompts stay cached */
  free(b);
  free(c);
  sim_engine_free(e);
}

static void test_queueing_at_max_num_seqs(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  char *prompts[5];
  for (int i = 0; i < 5; i++) {
    prompts[i] = make_prompt(64, 100 + (uint64_t)i);
    assert_true(submit_text(e, 0, prompts[i], 64, 20, (uintptr_t)i) != 0);
  }
  sim_engine_advance(e, 0, rec_cb, &r);
  assert_int_equal(sim_engine_stats(e)->running, 4);
  assert_int_equal(sim_engine_stats(e)->waiting, 1);
  assert_true(sim_engine_stats(e)->kv_usage > 0);
  run_all(e, &r);
  assert_int_equal(r.bad, 0);
  uint64_t first_done = UINT64_MAX;
  for (int i = 0; i < 4; i++) {
    assert_int_equal(r.t_first[i], r.t_first[0]); /* batched together */
    if (r.t_done[i] < first_done) first_done = r.t_done[i];
  }
  /* The 5th waited for a running slot: its first token comes after a request finished. */
  assert_true(r.t_first[4] > first_done);
  assert_true(r.t_first[4] > 10 * r.t_first[0]);
  for (int i = 0; i < 5; i++)
    assert_int_equal(r.n_done[i], 1);
  assert_idle_and_empty(e);
  for (int i = 0; i < 5; i++)
    free(prompts[i]);
  sim_engine_free(e);
}

static void test_requests_only_join_steps_after_arrival(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  char *a = make_prompt(64, 1), *b = make_prompt(64, 2);
  submit_text(e, 0, a, 64, 5, 0);
  submit_text(e, 1000000, b, 64, 5, 1); /* arrives 1 ms later, while A's first step runs */
  sim_engine_advance(e, 2000000, rec_cb, &r);
  assert_int_equal(sim_engine_stats(e)->running, 1);
  assert_int_equal(sim_engine_stats(e)->waiting, 1);
  run_all(e, &r);
  assert_true(r.t_first[1] > r.t_first[0]);
  assert_int_equal(r.n_done[1], 1);
  free(a);
  free(b);
  sim_engine_free(e);
}

static void test_chunked_prefill(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p); /* 256-token budget */
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  char *lng = make_prompt(2400, 5); /* 600 tokens: chunks of 256, 256, 88 */
  submit_text(e, 0, lng, 2400, 2, 1);
  run_all(e, &r);
  assert_int_equal(r.bad, 0);
  assert_int_equal(r.t_first[1], prefill_ns(&p, 0, 256) + prefill_ns(&p, 256, 256) + prefill_ns(&p, 512, 88));
  sim_engine_free(e);

  /* A decoding request keeps getting a token every step while the long prompt is chunked beside it. */
  e = sim_engine_new(&p, 1);
  rec_init(&r, e);
  char *shrt = make_prompt(64, 6);
  submit_text(e, 0, shrt, 64, 10, 0);
  submit_text(e, 0, lng, 2400, 2, 1);
  run_all(e, &r);
  assert_int_equal(r.bad, 0);
  /* Steps: [16 + 240], [1 + 255], [1 + 105] -> the short one gets tokens at the ends of steps 2 and 3 too. */
  assert_true(r.t_first[0] < r.t_first[1]);
  assert_int_equal(r.tokens_seen_by_tag0_before_first_of_tag1, 2);
  assert_int_equal(r.n_tok[0], 9);
  assert_int_equal(r.n_done[0], 1);
  assert_int_equal(r.n_done[1], 1);
  assert_idle_and_empty(e);
  free(shrt);
  free(lng);
  sim_engine_free(e);
}

static void check_all_complete(const struct rec *r, int n, const int *max_tokens) {
  assert_int_equal(r->bad, 0);
  for (int i = 0; i < n; i++) {
    assert_int_equal(r->n_first[i], 1);
    assert_int_equal(r->n_tok[i], max_tokens[i] - 1);
    assert_int_equal(r->n_done[i], 1);
    assert_int_equal(r->tokens_out[i], max_tokens[i]);
  }
}

static void test_preemption_loses_nothing(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p); /* 64 blocks */
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  /* 4 x (200-token prompt + 400 output) = 4 x 38 blocks > 64: the pool runs dry during decode. */
  char *pr[4];
  int maxt[4];
  for (int i = 0; i < 4; i++) {
    pr[i] = make_prompt(800, 200 + (uint64_t)i);
    maxt[i] = 400;
    submit_text(e, 0, pr[i], 800, 400, (uintptr_t)i);
  }
  run_all(e, &r);
  check_all_complete(&r, 4, maxt);
  const struct sim_stats *st = sim_engine_stats(e);
  assert_true(st->preemptions > 0);
  assert_int_equal(st->generation_tokens_total, 1600);
  assert_int_equal(st->requests_finished, 4);
  /* The most recently admitted is preempted, so the oldest request never stalls and all finish in order. */
  for (int i = 0; i < 4; i++)
    assert_int_equal(r.done_order[i], i);
  uint64_t normal = (uint64_t)llround(sim_profile_step_s(&p, 4, 4 * sim_profile_attn_s(&p, 600, 1)) * 1e9);
  assert_true(r.max_gap[0] <= normal + 2 * prefill_ns(&p, 0, 256));
  assert_true(r.max_gap[3] > 4 * normal); /* the youngest one waited for a recompute */
  assert_idle_and_empty(e);
  for (int i = 0; i < 4; i++)
    free(pr[i]);
  sim_engine_free(e);
}

static void test_random_load_completes(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  struct rng g;
  rng_seed(&g, 7);
  enum { N = 40 };
  int maxt[N];
  char *shared = make_prompt(4000, 77);
  uint64_t t = 0;
  for (int i = 0; i < N; i++) {
    t += rng_below(&g, 20000000); /* 0-20 ms apart: bursts and queueing */
    size_t len = 4 + rng_below(&g, 2800);
    maxt[i] = 1 + (int)rng_below(&g, 200);
    if (i % 3 == 0) memcpy(shared + 100, &i, sizeof i); /* vary the tail of a shared prefix */
    /* Advance to the arrival first, as a real driver does. */
    while (sim_engine_next_event(e) <= t)
      sim_engine_advance(e, sim_engine_next_event(e), rec_cb, &r);
    assert_true(submit_text(e, t, shared, len, maxt[i], (uintptr_t)i) != 0);
  }
  run_all(e, &r);
  check_all_complete(&r, N, maxt);
  const struct sim_stats *st = sim_engine_stats(e);
  assert_true(st->prefix_hits_tokens > 0);
  assert_int_equal(st->requests_finished, N);
  assert_idle_and_empty(e);
  free(shared);
  sim_engine_free(e);
}

static void test_abort(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  char *a = make_prompt(640, 1); /* 160 tokens, 10 full blocks */
  uint64_t ida = submit_text(e, 0, a, 640, 50, 0);
  sim_engine_advance(e, sim_engine_next_event(e), rec_cb, &r); /* starts the prefill step */
  sim_engine_advance(e, sim_engine_next_event(e), rec_cb, &r); /* first token */
  assert_int_equal(r.n_first[0], 1);
  assert_true(kvpool_used(sim_engine_pool(e)) >= 10);
  sim_engine_abort(e, ida); /* while its next step is in flight */
  assert_int_equal(kvpool_used(sim_engine_pool(e)), 0);
  assert_int_equal(sim_engine_stats(e)->running, 0);
  run_all(e, &r);
  assert_int_equal(r.n_tok[0], 0); /* nothing after the abort */
  assert_idle_and_empty(e);
  sim_engine_abort(e, ida);   /* again: no-op */
  sim_engine_abort(e, 12345); /* unknown: no-op */
  /* Its computed prompt blocks stay cached: a resubmission hits them. */
  submit_text(e, r.t_first[0] + 1, a, 640, 1, 1);
  run_all(e, &r);
  assert_int_equal(r.cached[1], 144); /* (160 - 1) / 16 = 9 blocks */
  sim_engine_abort(e, 2);             /* finished: no-op */

  /* A waiting request can be aborted: fill the 4 slots, abort the 5th. */
  char *q[5];
  uint64_t ids[5];
  for (int i = 0; i < 5; i++) {
    q[i] = make_prompt(64, 50 + (uint64_t)i);
    ids[i] = submit_text(e, r.t_first[1] + 10, q[i], 64, 5, (uintptr_t)(10 + i));
  }
  sim_engine_advance(e, sim_engine_next_event(e), rec_cb, &r);
  assert_int_equal(sim_engine_stats(e)->waiting, 1);
  sim_engine_abort(e, ids[4]);
  assert_int_equal(sim_engine_stats(e)->waiting, 0);
  run_all(e, &r);
  for (int i = 0; i < 4; i++)
    assert_int_equal(r.n_done[10 + i], 1);
  assert_int_equal(r.n_first[14], 0);
  assert_idle_and_empty(e);
  for (int i = 0; i < 5; i++)
    free(q[i]);
  free(a);
  sim_engine_free(e);
}

static void test_callbacks_abort_and_submit(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  struct rec r;
  rec_init(&r, e);
  char *x = make_prompt(64, 1), *y = make_prompt(64, 2), *z = make_prompt(64, 3), *w = make_prompt(64, 4);
  /* Same step: 0 (max 1) aborts itself on FIRST_TOKEN, so its DONE is not delivered; 1 aborts 2 whose
   * FIRST_TOKEN was produced by the same step but not yet delivered; 3 submits 4 on DONE. */
  r.abort_self_on_first = 0;
  r.abort_other_on_first_of = 1;
  r.abort_other_tag = 2;
  r.submit_on_done_of = 3;
  r.submit_tag = 4;
  r.submit_prompt = w;
  r.submit_len = 64;
  r.ids[0] = submit_text(e, 0, x, 64, 1, 0);
  r.ids[1] = submit_text(e, 0, y, 64, 3, 1);
  r.ids[2] = submit_text(e, 0, z, 64, 3, 2);
  r.ids[3] = submit_text(e, 0, x, 64, 2, 3);
  run_all(e, &r);
  assert_int_equal(r.bad, 0);
  assert_int_equal(r.n_first[0], 1);
  assert_int_equal(r.n_done[0], 0);
  assert_int_equal(r.n_first[2], 0);
  assert_int_equal(r.n_done[1], 1);
  assert_int_equal(r.n_done[3], 1);
  assert_true(r.ids[4] != 0);
  assert_int_equal(r.n_done[4], 1);
  assert_true(r.t_first[4] > r.t_done[3]);
  assert_idle_and_empty(e);
  free(x);
  free(y);
  free(z);
  free(w);
  sim_engine_free(e);
}

static void test_rejects_impossible_requests(void **state) {
  (void)state;
  struct sim_profile p;
  load("tiny-test", &p);
  struct sim_engine *e = sim_engine_new(&p, 1);
  char err[256];
  assert_int_equal(sim_engine_submit(e, 0, NULL, 0, 0, 10, NULL), 0);
  assert_int_equal(sim_engine_submit(e, 0, NULL, 0, 10, 0, NULL), 0);
  assert_int_equal(sim_engine_submit(e, 0, NULL, 0, 1000, 25, NULL), 0);
  assert_int_equal(sim_engine_check(e, 1000, 25, err, sizeof err), IM_ETOOBIG);
  assert_non_null(strstr(err, "maximum context length is 1024 tokens"));
  assert_int_equal(sim_engine_check(e, 1000, 24, err, sizeof err), 0);
  /* The largest allowed request runs alone to completion (the pool holds exactly max_model_len). */
  assert_true(sim_engine_submit(e, 0, NULL, 0, 1000, 24, NULL) != 0);
  struct rec r;
  rec_init(&r, e);
  run_all(e, &r);
  assert_int_equal(r.n_done[0], 1);
  assert_int_equal(r.tokens_out[0], 24);
  assert_idle_and_empty(e);
  sim_engine_free(e);
  struct sim_profile bad_p = p;
  bad_p.max_num_seqs = 0;
  assert_null(sim_engine_new(&bad_p, 1));
}

/* ---- OpenAI generation options (sim/oai_gen.h) ---- */

static json_t *req_json(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  if (!j) fail_msg("bad test JSON: %s", e.text);
  return j;
}

/* Parse text as a chat (or completions) request: the return code, err filled. */
static int gen_parse(const char *text, bool chat, struct sim_gen *g, char *err, size_t errlen) {
  json_t *j = req_json(text);
  int rc = sim_gen_parse(j, chat, g, err, errlen);
  json_decref(j);
  return rc;
}

static void test_gen_n_and_stop(void **state) {
  (void)state;
  struct sim_gen g;
  struct sim_choice c[3];
  char err[256];
  assert_int_equal(gen_parse("{\"n\":3,\"stop\":[\"red\",\"zzz\"]}", true, &g, err, sizeof err), 0);
  assert_int_equal(g.n, 3);
  for (int i = 0; i < 3; i++)
    sim_gen_choice(&g, i, 6, &c[i]);
  /* choice 0 is "the big red fox ran far ": cut before "red" */
  assert_int_equal(c[0].text.len, 8);
  assert_memory_equal(c[0].text.base, "the big ", 8);
  assert_string_equal(c[0].finish, "stop");
  assert_int_equal(c[0].tokens, 2);
  /* the choices differ; one without a stop string runs to max_tokens */
  assert_false(c[1].text.len == c[0].text.len && memcmp(c[1].text.base, c[0].text.base, c[0].text.len) == 0);
  assert_string_equal(c[1].finish, "length");
  assert_int_equal(c[1].tokens, 6);
  for (int i = 0; i < 3; i++)
    sim_choice_free(&c[i]);
  sim_gen_free(&g);
  /* a single string works too; without options: one choice, no stop */
  assert_int_equal(gen_parse("{\"stop\":\"the\"}", false, &g, err, sizeof err), 0);
  sim_gen_choice(&g, 0, 4, &c[0]);
  assert_int_equal(c[0].text.len, 0);
  assert_string_equal(c[0].finish, "stop");
  sim_choice_free(&c[0]);
  sim_gen_free(&g);
  static const char *const bad[] = {"{\"n\":0}",
                                    "{\"n\":17}",
                                    "{\"n\":\"2\"}",
                                    "{\"stop\":5}",
                                    "{\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
                                    "{\"stop\":[\"\"]}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    assert_int_equal(gen_parse(bad[i], true, &g, err, sizeof err), -EINVAL);
    assert_true(err[0] != '\0');
    sim_gen_free(&g);
  }
}

static void test_gen_logprobs(void **state) {
  (void)state;
  struct sim_gen g;
  struct sim_choice c;
  char err[256];
  assert_int_equal(gen_parse("{\"logprobs\":true,\"top_logprobs\":3}", true, &g, err, sizeof err), 0);
  assert_true(g.logprobs);
  assert_int_equal(g.top_logprobs, 3);
  sim_gen_choice(&g, 0, 5, &c);
  struct buf b = {0};
  sim_gen_logprobs(&b, c.text.base, c.text.len, 0, g.top_logprobs);
  json_error_t e;
  json_t *lp = json_loadb(b.base, b.len, 0, &e);
  assert_non_null(lp);
  json_t *content = json_object_get(lp, "content");
  assert_int_equal(json_array_size(content), 5); /* one entry per output token */
  struct buf joined = {0};
  size_t i;
  json_t *t;
  json_array_foreach(content, i, t) {
    const char *tok = json_string_value(json_object_get(t, "token"));
    assert_non_null(tok);
    buf_puts(&joined, tok);
    assert_true(json_real_value(json_object_get(t, "logprob")) < 0);
    assert_int_equal(json_array_size(json_object_get(t, "bytes")), strlen(tok));
    json_t *top = json_object_get(t, "top_logprobs");
    assert_int_equal(json_array_size(top), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(top, 0), "token")), tok);
  }
  assert_int_equal(joined.len, c.text.len); /* the tokens spell the content */
  assert_memory_equal(joined.base, c.text.base, c.text.len);
  json_decref(lp);
  buf_free(&b);
  buf_free(&joined);
  sim_choice_free(&c);
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"top_logprobs\":2}", true, &g, err, sizeof err),
                   -EINVAL); /* needs logprobs */
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"logprobs\":true,\"top_logprobs\":21}", true, &g, err, sizeof err), -EINVAL);
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"logprobs\":\"yes\"}", true, &g, err, sizeof err), -EINVAL);
  sim_gen_free(&g);
  /* pieces never split a UTF-8 sequence */
  const char *u = "ab\xc3\xa9\xc3\xa9x";
  assert_int_equal(sim_gen_piece(u, strlen(u), 0), 4);
  assert_int_equal(sim_gen_piece(u, strlen(u), 4), 3);
  assert_int_equal(sim_gen_piece(u, strlen(u), 7), 0);
}

static void test_gen_response_format_json(void **state) {
  (void)state;
  struct sim_gen g;
  struct sim_choice c;
  char err[256];
  json_error_t e;
  assert_int_equal(gen_parse("{\"response_format\":{\"type\":\"json_object\"}}", true, &g, err, sizeof err),
                   0);
  sim_gen_choice(&g, 0, 3, &c);
  json_t *doc = json_loadb(c.text.base, c.text.len, 0, &e);
  assert_true(json_is_object(doc));
  assert_string_equal(c.finish, "stop");
  json_decref(doc);
  sim_choice_free(&c);
  sim_gen_free(&g);
  assert_int_equal(
      gen_parse("{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\",\"schema\":"
                "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":"
                "\"integer\"},\"ok\":{\"type\":\"boolean\"},\"kind\":{\"enum\":[\"cat\",\"dog\"]},"
                "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},\"home\":{\"type\":"
                "\"object\",\"properties\":{\"zip\":{\"type\":\"number\"}},\"required\":[\"zip\"]}},"
                "\"required\":[\"name\",\"age\",\"ok\",\"kind\",\"tags\",\"home\"]}}}}",
                true, &g, err, sizeof err),
      0);
  sim_gen_choice(&g, 0, 2, &c); /* whole even past max_tokens */
  doc = json_loadb(c.text.base, c.text.len, 0, &e);
  assert_non_null(doc);
  assert_true(json_is_string(json_object_get(doc, "name")));
  assert_true(json_is_integer(json_object_get(doc, "age")));
  assert_true(json_is_true(json_object_get(doc, "ok")));
  assert_string_equal(json_string_value(json_object_get(doc, "kind")), "cat");
  assert_true(json_is_array(json_object_get(doc, "tags")));
  assert_true(json_is_number(json_object_get(json_object_get(doc, "home"), "zip")));
  assert_int_equal(c.tokens, (int)((c.text.len + 3) / 4));
  json_decref(doc);
  sim_choice_free(&c);
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"response_format\":{\"type\":\"json_schema\"}}", true, &g, err, sizeof err),
                   -EINVAL);
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"response_format\":{\"type\":\"yaml\"}}", true, &g, err, sizeof err),
                   -EINVAL);
  sim_gen_free(&g);
}

#define TOOLS                                                                                                \
  "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"lookup\"}},{\"type\":\"function\","            \
  "\"function\":"                                                                                            \
  "{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"        \
  "\"string\"},\"days\":{\"type\":\"integer\"},\"unit\":{\"type\":\"string\"}},\"required\":[\"city\","      \
  "\"days\"]}}}]"

static void test_gen_tool_calls(void **state) {
  (void)state;
  struct sim_gen g;
  struct sim_choice c;
  char err[256];
  json_error_t e;
  /* auto (and none, and no tool_choice) answers in text */
  assert_int_equal(gen_parse("{" TOOLS ",\"tool_choice\":\"auto\"}", true, &g, err, sizeof err), 0);
  assert_false(g.tool_call);
  sim_gen_free(&g);
  /* a named function is called, with its required arguments */
  assert_int_equal(gen_parse("{" TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":"
                             "\"get_weather\"}}}",
                             true, &g, err, sizeof err),
                   0);
  assert_true(g.tool_call);
  assert_string_equal(g.tool_name, "get_weather");
  sim_gen_choice(&g, 0, 16, &c);
  assert_string_equal(c.finish, "tool_calls");
  json_t *args = json_loadb(c.text.base, c.text.len, 0, &e);
  assert_non_null(args);
  assert_true(json_is_string(json_object_get(args, "city")));
  assert_true(json_is_integer(json_object_get(args, "days")));
  assert_null(json_object_get(args, "unit")); /* not required */
  json_decref(args);
  sim_choice_free(&c);
  sim_gen_free(&g);
  /* required: the first function; one without parameters gets {} */
  assert_int_equal(gen_parse("{" TOOLS ",\"tool_choice\":\"required\"}", true, &g, err, sizeof err), 0);
  assert_string_equal(g.tool_name, "lookup");
  sim_gen_choice(&g, 0, 16, &c);
  assert_int_equal(c.text.len, 2);
  assert_memory_equal(c.text.base, "{}", 2);
  sim_choice_free(&c);
  sim_gen_free(&g);
  /* what cannot be honoured is a 400, not silently ignored */
  assert_int_equal(gen_parse("{" TOOLS
                             ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}",
                             true, &g, err, sizeof err),
                   -EINVAL);
  assert_non_null(strstr(err, "nope"));
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"tool_choice\":\"required\"}", true, &g, err, sizeof err), -EINVAL);
  sim_gen_free(&g);
  assert_int_equal(gen_parse("{\"tools\":{}}", true, &g, err, sizeof err), -EINVAL);
  sim_gen_free(&g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gen_n_and_stop),
      cmocka_unit_test(test_gen_logprobs),
      cmocka_unit_test(test_gen_response_format_json),
      cmocka_unit_test(test_gen_tool_calls),
      cmocka_unit_test(test_pool_hit_miss_refcount),
      cmocka_unit_test(test_pool_lru_eviction_order),
      cmocka_unit_test(test_pool_all_or_nothing),
      cmocka_unit_test(test_pool_random_churn),
      cmocka_unit_test(test_profile_default_matches_json),
      cmocka_unit_test(test_profile_rejects_bad_files),
      cmocka_unit_test(test_tokens_and_hashes),
      cmocka_unit_test(test_8b_single_request_latency),
      cmocka_unit_test(test_prefix_cache_hits_cut_ttft),
      cmocka_unit_test(test_queueing_at_max_num_seqs),
      cmocka_unit_test(test_requests_only_join_steps_after_arrival),
      cmocka_unit_test(test_chunked_prefill),
      cmocka_unit_test(test_preemption_loses_nothing),
      cmocka_unit_test(test_random_load_completes),
      cmocka_unit_test(test_abort),
      cmocka_unit_test(test_callbacks_abort_and_submit),
      cmocka_unit_test(test_rejects_impossible_requests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
