/* Compact load reports: a node's load numbers quantised into a struct gossip_load_delta, applied by a
 * receiver against the last full report (struct gossip_load) it holds from that node. The full report carries
 * what rarely changes (target names, kinds, models, KV capacity: its "layout"); a delta carries only the
 * numbers.
 *
 * Values per target (GOSSIP_DELTA_STRIDE), in this order; a double x is sent as 0 when negative ("unknown")
 * and round(x * scale) + 1 otherwise, so a receiver reads it back within 1/(2 * scale):
 *   0 flags (1 healthy, 2 gpu_degraded)   1 waiting (x100)   2 running (x100)   3 kv_usage (x10000)
 *   4 prefix_hit_rate (x10000)   5 prompt_tps (x10)   6 gen_tps (x10)   7 ttft_p50_ms (x10)
 *   8 inflight (zigzag) */
#ifndef IM_CLUSTER_LOAD_DELTA_H
#define IM_CLUSTER_LOAD_DELTA_H

#include <stdint.h>

#include "proto/gossip_msg.h"

/* load_delta_layout hashes the static part of l (borrowed): the number of targets and each one's name, kind,
 * models and KV capacity. Two reports with equal layouts accept each other's deltas. */
uint32_t load_delta_layout(const struct gossip_load *l);

/* load_delta_make fills d (caller-owned, fully overwritten) from l (borrowed): the first GOSSIP_SHORT_ID
 * bytes of l->from, the low 32 bits of l->boot, l->seq, l->age_ms, the layout and the quantised numbers. */
void load_delta_make(const struct gossip_load *l, struct gossip_load_delta *d);

/* load_delta_apply writes into *out (caller-owned, fully overwritten) the full report `base` (borrowed) with
 * d's numbers, seq and age. Returns 0, or -ESTALE when d does not belong to base: another node, another boot,
 * another layout or another number of targets (the receiver waits for the sender's next full report). */
int load_delta_apply(const struct gossip_load *base, const struct gossip_load_delta *d,
                     struct gossip_load *out);

#endif
