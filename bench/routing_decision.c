/* CPU cost of one routing decision (policy_pick) with N candidate targets, for every policy.
 *
 * usage: routing_decision N [PICKS [POLICY [FAMILIES]]]   (POLICY: only that one, "all" by default; FAMILIES:
 *        shared-prefix families, 64 by default, 0 for prompts that share nothing: no candidate holds a
 * prefix) Builds N targets with varied load signals; a warm-up routes PICKS requests (each commits like the
 * router: on_route, then first token and done, so reservations and prefix indexes hold realistic state):
 * prompts of 64 shared-prefix families of 4096 tokens plus a unique 256-token question, 16-token blocks (272
 * block hashes). Then times PICKS more picks (the full decision: every candidate scored) and prints one line
 * per policy: "policy N ns_per_pick median_ns": the mean of the best of three timed passes, and the median
 * pick over all three (on a shared machine a preempted pick inflates the mean by milliseconds; the median
 * shows the decision's own cost). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "state/policy.h"

#define BS 16
#define NB 272

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* prompt: the hashes of request SEQ: its family's 256 blocks (none when FAMS is 0) and 16 of its own. */
static void prompt(uint64_t seq, int fams, uint64_t *h) {
  uint64_t x = 0x1234, fam = fams > 0 ? seq % (uint64_t)fams : (1ull << 40) + seq;
  for (int i = 0; i < NB; i++) {
    x = policy_mix64(x ^ ((i < 256 ? fam : seq) * 0x9E3779B97F4A7C15ull + (uint64_t)i));
    h[i] = x;
  }
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000, picks = argc > 2 ? atoi(argv[2]) : 20000;
  int fams = argc > 4 ? atoi(argv[4]) : 64;
  if (n < 2 || picks < 1 || fams < 0) {
    fprintf(stderr, "usage: routing_decision N [PICKS [POLICY [FAMILIES]]]\n");
    return 2;
  }
  struct policy_target *c = calloc((size_t)n, sizeof *c);
  uint64_t *each = calloc(3 * (size_t)picks, sizeof *each);
  uint64_t h[NB];
  const char *names[16];
  int np = policy_names(names, 16);
  for (int k = 0; k < np; k++) {
    if (argc > 3 && strcmp(argv[3], "all") != 0 && strcmp(argv[3], names[k]) != 0) continue;
    for (int i = 0; i < n; i++)
      c[i] = (struct policy_target){.id = i,
                                    .waiting = i % 7,
                                    .running = 10 + i % 50,
                                    .kv_usage = (i % 10) / 10.0,
                                    .num_gpu_blocks = 27500,
                                    .block_size = BS,
                                    .prefix_hit_rate = 0.5,
                                    .prefill_tps = 22000,
                                    .itl_s = 0.01 + (i % 5) * 0.002,
                                    .report_ns = UINT64_MAX - 1}; /* no pick's clock passes it: fresh */
    struct policy *p = policy_new(names[k], NULL, 7);
    uint64_t t = 1000000000ull, seq = 0;
    struct policy_ticket tk;
    for (int i = 0; i < picks; i++, seq++) {
      prompt(seq, fams, h);
      struct policy_req r = {.model = "m",
                             .prompt_tokens = NB * BS + 1,
                             .max_tokens = 256,
                             .block_hashes = h,
                             .nblocks = NB,
                             .block_size = BS,
                             .tenant = -1};
      int j = policy_pick(p, &r, c, n, t);
      policy_on_route(p, &r, &c[j], t, &tk);
      policy_on_first_token(p, &tk, t + 1000000);
      policy_on_done(p, &tk, t + 2000000, 128);
      t += 1000000;
    }
    double best = 1e30;
    for (int pass = 0; pass < 3; pass++) {
      uint64_t spent = 0;
      for (int i = 0; i < picks; i++, seq++) {
        prompt(seq, fams, h);
        struct policy_req r = {.model = "m",
                               .prompt_tokens = NB * BS + 1,
                               .max_tokens = 256,
                               .block_hashes = h,
                               .nblocks = NB,
                               .block_size = BS,
                               .tenant = -1};
        uint64_t t0 = now_ns();
        int j = policy_pick(p, &r, c, n, t);
        uint64_t dt = now_ns() - t0;
        spent += dt;
        each[(size_t)pass * (size_t)picks + (size_t)i] = dt;
        policy_on_route(p, &r, &c[j], t, &tk);
        policy_on_first_token(p, &tk, t + 1000000);
        policy_on_done(p, &tk, t + 2000000, 128);
        t += 1000000;
      }
      double per = (double)spent / picks;
      if (per < best) best = per;
    }
    qsort(each, 3 * (size_t)picks, sizeof *each, cmp_u64);
    printf("%s %d %.0f %llu\n", names[k], n, best, (unsigned long long)each[3 * (size_t)picks / 2]);
    policy_free(p);
  }
  free(c);
  free(each);
  return 0;
}
