/* Routing policies behind one interface (pure: no I/O, no clocks), shared by the live router and the simulator.
 *
 * One `struct policy` is one router's instance of a policy: it may keep per-router state (prefix trees or
 * indexes, counters, its own estimate of work in flight). For each request the caller:
 *   1. builds the candidate targets that may serve it (healthy, serving the model) with their latest signals
 *      and its router-local counts (struct policy_target), or keeps them up to date between requests (the live
 *      router's route/cand_set.h),
 *   2. calls policy_pick, which returns the index of the chosen candidate,
 *   3. when it actually sends the request there, calls policy_on_route with the chosen candidate and a
 *      ticket it keeps with the request (a retry elsewhere is a new pick + on_route with a fresh ticket),
 *   4. calls policy_on_first_token when the target's first output token arrives (if it ever does), and
 *      policy_on_done exactly once when the request ends (finished, failed or aborted).
 * Time is whatever monotonic nanosecond clock the caller uses (virtual in the simulator); only differences
 * and signal ages matter. A policy object belongs to its caller (policy_free), is not thread-safe (one per
 * router / event loop) and holds no pointers into the caller's data after a call returns.
 *
 * Policies (policy_new names): "round-robin", "least-request", "power-of-two", "sglang" (SGLang router's
 * cache_aware), "llm-d" (llm-d inference scheduler's weighted scorers) and "ours" (DESIGN §6). Each lives in
 * its own src/state/policy_<name>.c and documents which published algorithm it follows. */
#ifndef IM_STATE_POLICY_H
#define IM_STATE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

/* A request as the policy sees it. Everything is borrowed for the duration of the call. */
struct policy_req {
  const char *model;           /* requested model id (may be NULL) */
  int prompt_tokens;           /* prompt length in tokens (an estimate is fine) */
  int max_tokens;              /* output budget */
  const uint64_t *block_hashes; /* chained hashes of the prompt's full blocks (policy_prompt_hashes) */
  int nblocks;                 /* entries in block_hashes */
  int block_size;              /* tokens per hashed block (the runtime's KV block size) */
  int tenant;                  /* tenant index (-1 = none); for policies that care */
};

/* One candidate target with the signals the router holds about it. Signals are as of the target's last load
 * report (taken at report_ns); the router-local counts are exact for this router. A record does not change
 * with the clock: a caller may keep it from one request to the next. */
struct policy_target {
  int id;                      /* the caller's stable id, >= 0; per-target state is sized by the largest */
  double waiting, running;     /* requests, as reported */
  double kv_usage;             /* 0..1 of the KV pool held by requests; < 0 unknown */
  int64_t num_gpu_blocks;      /* KV capacity in blocks (0 unknown) */
  int block_size;              /* tokens per KV block (0 unknown) */
  double prefix_hit_rate;      /* 0..1 of prompt tokens found in the prefix cache, recently (e.g. between
                                * the last two scrapes of its counters); < 0 unknown */
  double prefill_tps;          /* prompt tokens per second the target prefills at full batch (0 unknown) */
  double itl_s;                /* median time between output tokens there over a recent window, seconds
                                * (the adapters' windowed ITL); < 0 unknown */
  uint64_t report_ns;          /* when the signals were reported, on the clock of policy_pick's now (their age is
                                * now - report_ns); UINT64_MAX = never reported */
  int inflight;                /* router-local: routed here and not done */
  int routed_since_report;     /* router-local: routed here after the report was taken, not done */
  double network_s;            /* expected extra latency to reach it (a remote node's agent), seconds */
  int degraded;                /* a GPU it runs on is degraded (throttling, ECC errors, too hot) */
};

/* What the caller keeps with a routed request and hands back on first token / done. Plain data, written by
 * policy_on_route; zero-initialize it before. */
struct policy_ticket {
  int target;       /* target id routed to; -1 before on_route */
  int est_tokens;   /* the policy's estimate of the prompt tokens the target must prefill */
  uint64_t t_route, t_first; /* when on_route / on_first_token were called */
  int out_tokens;            /* output tokens the request produced, as told to on_done (0 unknown) */
  unsigned char first_seen, done;
};

/* Parameters of every policy (policy_config_default gives the published defaults). */
struct policy_config {
  uint64_t stale_ns;            /* ours: a report older than this counts the target as saturated (5 s) */
  /* SGLang cache_aware (sgl-model-gateway router_args.py defaults) */
  double sgl_cache_threshold;   /* 0.3: route by prefix match when matched/total > this */
  int sgl_balance_abs;          /* 64: imbalanced when max - min load > this ... */
  double sgl_balance_rel;       /* 1.5: ... and max > this * min */
  int64_t sgl_max_tree_chars;   /* 2^26 characters per worker tree (1 token = 4 characters here) */
  /* llm-d inference scheduler default profile */
  double llmd_w_queue, llmd_w_kv, llmd_w_prefix; /* 2, 2, 3 */
  int llmd_max_prefix_blocks;   /* 256 blocks matched at most */
  int llmd_lru_capacity;        /* 31250 entries per server unless the target reports num_gpu_blocks */
  /* ours (DESIGN §6; see policy_ours.c) */
  double ours_default_tps;      /* prefill tokens/s assumed when a target reports less or none (20000): a live
                                 * target reports the highest rate it has shown, which light load keeps low */
  double ours_slack_rel;        /* the best few: est <= best * (1 + slack_rel) + slack_abs_s (0.5, 0.01 s) */
  double ours_slack_abs_s;
  double ours_stale_penalty_s;  /* added to the estimate of a stale target (60 s) */
  double ours_degraded_penalty_s; /* added for a degraded GPU (1 s): it still serves when others are worse */
  double ours_w_miss;           /* a miss's prefill also delays each request queued behind it (1) */
  double ours_w_arrivals;       /* ... and, at this weight, those expected to arrive while it prefills (0.5) */
  double ours_w_step;           /* engine steps a new request waits, times the observed step time (1.5) */
  double ours_w_decode;         /* a miss's prefill stalls each running request's next token, at this weight
                                 * (0.25): decode-aware, a cost on their time per output token */
  int ours_affinity_blocks;     /* the two choices are hashed from the prompt's first this-many blocks (32) */
  int ours_new_prefix_home;     /* a prefix new to the router goes to its rendezvous choice (1) */
};

void policy_config_default(struct policy_config *c);

/* policy_config_set sets field KEY (its name in struct policy_config, e.g. "sgl_balance_abs") from the
 * decimal VAL. 0, or -EINVAL (unknown key, not a number, negative). */
int policy_config_set(struct policy_config *c, const char *key, const char *val);

struct policy;

/* policy_new creates one router's instance of policy NAME with CFG (copied; NULL = defaults) and a PRNG
 * seeded with SEED. Returns NULL for an unknown name. Free with policy_free. */
struct policy *policy_new(const char *name, const struct policy_config *cfg, uint64_t seed);
void policy_free(struct policy *p);

/* policy_name returns the canonical name (static storage). */
const char *policy_name(const struct policy *p);

/* policy_upstream_refresh_ns is how often the upstream router policy NAME follows refreshes the engine
 * metrics it scores on, when it scrapes them itself at a fixed default interval (llm-d's EPP: 50 ms); 0 for
 * policies that read no scraped metrics or take the agent's (an unknown name too). */
uint64_t policy_upstream_refresh_ns(const char *name);

/* policy_names writes up to MAX canonical policy names (static strings) to OUT and returns how many exist. */
int policy_names(const char **out, int max);

/* policy_pick chooses among C[0..n) (n >= 1, ids distinct and >= 0) for request R at NOW_NS
 * and returns the index into C of the choice. It changes only the policy's transient state (its PRNG, a
 * round-robin cursor); what it routed is recorded by policy_on_route. */
int policy_pick(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n, uint64_t now_ns);

/* policy_on_route records that R was sent to target T (normally the candidate policy_pick returned) and fills
 * TK, which the caller keeps until policy_on_done. */
void policy_on_route(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now_ns,
                     struct policy_ticket *tk);

/* policy_on_first_token: the request of TK got its first output token. At most once; optional. */
void policy_on_first_token(struct policy *p, struct policy_ticket *tk, uint64_t now_ns);

/* policy_on_done: the request of TK ended (any outcome) having produced OUTPUT_TOKENS tokens (0 or less:
 * unknown). Exactly once per on_route. */
void policy_on_done(struct policy *p, struct policy_ticket *tk, uint64_t now_ns, int output_tokens);

/* policy_on_peer_route: another router sent R to target T at about NOW_NS (learned from the mesh, e.g. by
 * gossip). Policies that keep prefix knowledge may record where the prompt now lives; no reservation is made
 * (the peer's load shows up in T's reports). Optional: the published baselines ignore it, as their routers
 * share nothing. */
void policy_on_peer_route(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                          uint64_t now_ns);

/* policy_on_peer_decision: another router routed request R to target T and told us at about NOW_NS (a
 * shared routing decision, gossip). Records what policy_on_peer_route records; a policy that keeps its own
 * reservations may also count R as T's load until a report of T taken after NOW_NS covers it (the peer's
 * request is in T's queue before T's next report says so). Policies without such state treat it as
 * policy_on_peer_route. */
void policy_on_peer_decision(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                             uint64_t now_ns);

/* policy_forget_target drops what the policy holds about target ID (it left the mesh). */
void policy_forget_target(struct policy *p, int id);

/* policy_prompt_hashes writes the chained hashes of the full blocks of prompt TEXT[0..len) to OUT (at most
 * MAX; returns how many) for a runtime with BLOCK_SIZE-token KV blocks, estimating 4 bytes per token (as
 * llm-d's router and the simulated engine do): h_0 = XXH3_64bits(model), h_i = XXH3_64bits_withSeed(bytes of
 * block i, h_{i-1}), a block being 4 * block_size bytes. Equal to sim_block_hashes for the same model and
 * text, so a router hashing the prompt text the engine sees predicts its prefix cache block for block. */
int policy_prompt_hashes(const char *model, const char *text, size_t len, int block_size, uint64_t *out, int max);

/* ---- for policy implementations (policy_*.c) ---- */

/* policy_mix64 is a 64-bit finalizer (MurmurHash3's fmix64): rendezvous hashing of (key, target id). */
static inline uint64_t policy_mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

struct policy_ops {
  const char *name;
  uint64_t upstream_refresh_ns; /* see policy_upstream_refresh_ns */
  void *(*create)(const struct policy_config *cfg);
  void (*destroy)(void *impl);
  int (*pick)(struct policy *p, const struct policy_req *r, const struct policy_target *c, int n, uint64_t now);
  void (*on_route)(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now,
                   struct policy_ticket *tk);
  void (*on_first_token)(struct policy *p, struct policy_ticket *tk, uint64_t now);
  void (*on_done)(struct policy *p, struct policy_ticket *tk, uint64_t now);
  void (*forget)(struct policy *p, int id);
  void (*on_peer_route)(struct policy *p, const struct policy_req *r, const struct policy_target *t, uint64_t now);
  void (*on_peer_decision)(struct policy *p, const struct policy_req *r, const struct policy_target *t,
                           uint64_t now);
};

struct policy {
  const struct policy_ops *ops;
  struct policy_config cfg;
  struct rng rng;
  void *impl; /* owned, from ops->create */
};

extern const struct policy_ops policy_round_robin_ops, policy_least_request_ops, policy_power_of_two_ops,
    policy_sglang_ops, policy_llmd_ops, policy_ours_ops;

/* policy_grow returns ARR (an array of *CAP elements of SIZE bytes, or NULL with *cap 0) grown, when NEED > *cap,
 * to at least NEED elements with the new ones zeroed (it may move: the caller replaces its pointer), and
 * updates *cap. Policies keep per-target state in arrays indexed by target id, grown to the largest id they
 * see: a router's target count is known only at run time. */
void *policy_grow(void *arr, int *cap, int need, size_t size);

/* policy_max_id is the largest id among C[0..n) (-1 when n is 0). */
int policy_max_id(const struct policy_target *c, int n);

/* policy_prefix_blocks is how many of R's hashed blocks a cache keyed by R->block_size can use: full blocks
 * strictly before the last prompt token (the runtime must compute at least one token). */
int policy_prefix_blocks(const struct policy_req *r);

#endif
