/* vLLM adapter: turns a vLLM /metrics scrape and /v1/models response into normalized runtime state. */
#ifndef IM_ADAPTER_VLLM_H
#define IM_ADAPTER_VLLM_H

#include <stddef.h>

#include "adapter/prom.h"
#include "adapter/runtime.h"

/* vllm_parse_metrics reads a vLLM Prometheus exposition text[0..len) (no NUL needed) into *out. Pure: no I/O,
 * no allocation, nothing kept. Every series of a metric is summed (the `engine` label is the data-parallel
 * rank), except kv_usage, which is the mean over ranks. Where vLLM renamed a metric the new name wins when
 * present and the old one is only a fallback, per field, so nothing is counted twice:
 * vllm:kv_cache_usage_perc over vllm:gpu_cache_usage_perc; vllm:prefix_cache_{queries,hits}_total over
 * vllm:gpu_prefix_cache_{queries,hits}_total over vllm:gpu_prefix_cache_{queries,hits}. `_created` series
 * and samples whose value is NaN or infinite are ignored. block_size is the first valid one seen.
 * Returns 0 (even when no vLLM metric was found: check out->have), or prom_parse's IM_EPARSE/IM_ETOOBIG
 * with err (may be NULL) filled in; *out is zeroed first, and left zeroed on error. */
int vllm_parse_metrics(const char *text, size_t len, struct runtime_metrics *out, struct prom_error *err);

#endif
