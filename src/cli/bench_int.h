/* Internals of `infermesh bench`, shared by bench.c (options, report) and bench_run.c (the replay loop). */
#ifndef IM_CLI_BENCH_INT_H
#define IM_CLI_BENCH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sim/workload.h"

#define BENCH_MAX_AGENTS 16

/* One ingress node requests are sent to. */
struct bench_agent {
  char host[96]; /* numeric host or localhost */
  int port;
  char url[160]; /* as given, for the report */
};

struct bench_opts {
  char trace[1024];
  struct bench_agent agents[BENCH_MAX_AGENTS]; /* request i goes to agents[i % nagents] */
  int nagents;
  double time_scale;   /* multiplies trace timestamps */
  size_t limit;        /* first N requests (0 = all) */
  double duration_s;   /* send only requests scheduled in the first S seconds (0 = all) */
  int concurrency_cap; /* requests in flight at most; later ones wait (their wait counts in their TTFT) */
  double slo_ttft_ms;
  char model[256];   /* "" = the first model of GET /v1/models */
  int max_model_len; /* prompt + output clipped to this (workload_clip) */
  char api_key[512];
  char slo_class[16]; /* x-infermesh-slo header value, "" = none */
  bool chat;          /* /v1/chat/completions instead of /v1/completions */
  bool json;
  double timeout_s; /* longest silence of one response */
  uint64_t salt;    /* mixed into the prompt text: another salt, another set of prompts */
};

/* What happened to one trace request. Times are ns from the replay's start; t_sched is when the trace says it
 * is sent (TTFT and latency are measured from it, so waiting at the concurrency cap counts). */
struct bench_req {
  uint64_t t_sched, t_send, t_first, t_end;
  int status;        /* HTTP status; 0 = no response (err says why); -1 = never sent */
  int err;           /* libuv error of a transport failure */
  bool ok;           /* 200, a complete stream ([DONE]) without an in-band error */
  bool stream_error; /* the stream carried an error event */
  int64_t prompt_tokens, completion_tokens, cached_tokens; /* from the final usage chunk; -1 unknown */
  int chunks;                                              /* data frames with output */
};

/* bench_run replays w (sorted, times already scaled) against o's agents (request i to agents[i % nagents],
 * one keep-alive pool each) and fills out[0..w->n). Returns 0, or -1 with a message in err when the replay
 * could not start (no model, the first agent unreachable for GET /v1/models). *sent_out: requests actually
 * sent. *interrupted: SIGINT stopped it early. */
int bench_run(const struct bench_opts *o, const struct workload *w, struct bench_req *out, size_t *sent_out,
              bool *interrupted, char *err, size_t errlen);

/* bench_text appends the prompt text of w's request r (prompt_tokens 4-byte words; span id -> deterministic
 * words, so equal span ids give equal bytes and a partial span is a prefix of the full one) to out. */
struct buf;
void bench_text(const struct workload *w, const struct wl_req *r, uint64_t salt, struct buf *out);

#endif
