/* CPU cost of the router's whole decision (candidates + records + ours' pick) with N targets in the store:
 * the candidate sets kept in step with the store (route/cand_set.c) against rebuilding the candidates and
 * their records from the store's targets for every decision (what the router did before), side by side in one
 * run.
 *
 * usage: routing_candidates N [PICKS]
 * A store of N targets serving "m" (and N / 8 more serving another model); each decision reserves on the
 * chosen target and releases the one routed 8 decisions earlier (as requests end), and one target in 16 sends
 * a load report between decisions (a 4 s scrape of 1,000 targets at ~4,000 decisions/s). Prompts as in
 * routing_decision.c (64 shared-prefix families, 272 16-token blocks). Each decision is timed both ways on
 * the same state (in alternating order; their picks are asserted equal) and one line per way is printed: "way
 * N median_ns p90_ns" over PICKS decisions after a warm-up of PICKS. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "route/cand_set.h"
#include "state/policy.h"
#include "state/store.h"

#define BS 16
#define NB 272
#define LAG 8

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void prompt(uint64_t seq, uint64_t *h) {
  uint64_t x = 0x1234, fam = seq % 64;
  for (int i = 0; i < NB; i++) {
    x = policy_mix64(x ^ ((i < 256 ? fam : seq) * 0x9E3779B97F4A7C15ull + (uint64_t)i));
    h[i] = x;
  }
}

static void report(struct store *s, int i, uint64_t t) {
  struct target_load l = {.waiting = i % 7,
                          .running = 10 + i % 50,
                          .kv_usage = (i % 10) / 10.0,
                          .block_size = BS,
                          .num_gpu_blocks = 27500,
                          .prefix_queries = 100,
                          .prefix_hits = 50,
                          .prompt_tps = 22000,
                          .itl_p50 = 0.01 + (i % 5) * 0.002};
  store_report(s, i, &l, t);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000, picks = argc > 2 ? atoi(argv[2]) : 20000;
  if (n < 2 || picks < 1) {
    fprintf(stderr, "usage: routing_candidates N [PICKS]\n");
    return 2;
  }
  int total = n + n / 8;
  struct store s;
  store_init(&s, total);
  const char *m[] = {"m"}, *other[] = {"other"};
  uint64_t t = 1000000000ull;
  for (int i = 0; i < total; i++) {
    char url[64];
    snprintf(url, sizeof url, "http://10.0.%d.%d:8000", i / 250, i % 250 + 1);
    store_add_target(&s, NULL, url, "vllm");
    store_set_models(&s, i, i % 9 == 8 ? other : m, 1); /* the other model's targets interleaved */
    report(&s, i, t);
  }
  struct cand_sets cs;
  cand_sets_init(&cs, s.cap);
  int *ids = malloc((size_t)total * sizeof *ids);
  struct policy_target *c = malloc((size_t)total * sizeof *c);
  uint64_t *dt[2] = {calloc((size_t)picks, sizeof(uint64_t)), calloc((size_t)picks, sizeof(uint64_t))};
  struct policy_ticket tk[LAG] = {{0}},
                       tq[LAG] = {{0}}; /* the same requests, as each way's policy routed them */
  struct policy *p = policy_new("ours", NULL, 7), *q = policy_new("ours", NULL, 7);
  uint64_t h[NB], seq = 0;
  for (int i = 0; i < 2 * picks; i++, seq++) {
    prompt(seq, h);
    struct policy_req r = {.model = "m",
                           .prompt_tokens = NB * BS + 1,
                           .max_tokens = 256,
                           .block_hashes = h,
                           .nblocks = NB,
                           .block_size = BS,
                           .tenant = -1};
    struct slice model = slice_cstr("m");
    int a = -1, b = -1;
    uint64_t d[2] = {0, 0};
    for (int way = 0; way < 2; way++) {
      uint64_t t0 = now_ns();
      if ((way ^ (i & 1)) == 0) { /* before: the candidates and every record rebuilt from the store */
        int k = store_candidates(&s, model, NULL, ids, total);
        for (int j = 0; j < k; j++)
          cand_record(&s.targets[ids[j]], &c[j]);
        a = ids[policy_pick(p, &r, c, k, t)];
        d[0] = now_ns() - t0;
      } else { /* now: the kept set, refreshed from the change log */
        struct cand_set *set = cand_sets_get(&cs, &s, model);
        b = set->ids[policy_pick(q, &r, set->pt, set->n, t)];
        d[1] = now_ns() - t0;
      }
    }
    if (a != b) {
      fprintf(stderr, "routing_candidates: the two ways picked %d and %d\n", a, b);
      return 1;
    }
    if (i >= picks) dt[0][i - picks] = d[0], dt[1][i - picks] = d[1];
    /* route there (both policies), end the request routed LAG decisions ago, and a load report now and then
     */
    if (i >= LAG) {
      policy_on_first_token(p, &tk[i % LAG], t);
      policy_on_done(p, &tk[i % LAG], t, 128);
      policy_on_first_token(q, &tq[i % LAG], t);
      policy_on_done(q, &tq[i % LAG], t, 128);
      store_release(&s, tk[i % LAG].target);
    }
    struct policy_target pt;
    cand_record(&s.targets[a], &pt);
    policy_on_route(p, &r, &pt, t, &tk[i % LAG]);
    policy_on_route(q, &r, &pt, t, &tq[i % LAG]);
    store_reserve(&s, a);
    if (i % 16 == 0) report(&s, (int)(seq * 7919 % (uint64_t)total), t);
    t += 250000;
  }
  const char *way[2] = {"rebuilt-per-decision", "kept-sets"};
  for (int w = 0; w < 2; w++) {
    qsort(dt[w], (size_t)picks, sizeof(uint64_t), cmp_u64);
    printf("%s %d %llu %llu\n", way[w], n, (unsigned long long)dt[w][picks / 2],
           (unsigned long long)dt[w][(size_t)picks * 9 / 10]);
  }
  printf("# kept sets: %llu rebuilds, %llu records refreshed\n", (unsigned long long)cs.rebuilds,
         (unsigned long long)cs.refreshes);
  policy_free(p);
  policy_free(q);
  cand_sets_free(&cs);
  store_free(&s);
  free(ids);
  free(c);
  free(dt[0]);
  free(dt[1]);
  return 0;
}
