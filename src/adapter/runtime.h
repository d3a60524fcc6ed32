/* The normalized load snapshot every runtime adapter (vLLM, SGLang, TGI, ...) produces from one scrape. */
#ifndef IM_ADAPTER_RUNTIME_H
#define IM_ADAPTER_RUNTIME_H

#include <stdint.h>

/* Bits of runtime_metrics.have. A bit is set only when every field it covers was found in the scrape (and,
 * for RT_HAVE_CACHE_CONFIG, was a positive integer); fields whose bit is clear may still hold what was found
 * (e.g. prefix_queries without prefix_hits) but must not be trusted as a pair. */
enum {
  RT_HAVE_WAITING = 1,       /* waiting */
  RT_HAVE_RUNNING = 2,       /* running */
  RT_HAVE_KV = 4,            /* kv_usage */
  RT_HAVE_PREFIX = 8,        /* prefix_queries and prefix_hits */
  RT_HAVE_TOKENS = 16,       /* prompt_tokens and generation_tokens */
  RT_HAVE_CACHE_CONFIG = 32, /* block_size and num_gpu_blocks */
  RT_HAVE_TTFT = 64          /* ttft_sum and ttft_count */
};

/* A plain value: no pointers, copy it freely. Counters are cumulative since the runtime started (take
 * deltas between scrapes for rates). Absent fields are 0. */
struct runtime_metrics {
  unsigned have;                           /* RT_HAVE_* bits for the fields that were present */
  double waiting, running;                 /* requests, summed over data-parallel ranks */
  double kv_usage;                         /* 0..1; if several ranks, the mean */
  double prefix_queries, prefix_hits;      /* counters, tokens */
  double prompt_tokens, generation_tokens; /* counters */
  int64_t block_size, num_gpu_blocks; /* from cache_config_info (0 when absent); blocks summed over ranks */
  double ttft_sum, ttft_count;        /* histogram sum/count of time_to_first_token_seconds */
};

#endif
