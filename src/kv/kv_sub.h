/* A KV-cache event subscriber on the agent's loop: a ZMQ SUB socket connected to one runtime's publisher
 * (vLLM/SGLang --kv-events-config, or `infermesh sim-engine --kv-events`), polled through ZMQ_FD with a
 * uv_poll handle, so reading never blocks the loop. Each message [topic, seq, payload] is decoded with
 * kv_events_decode and its events handed to the callback; malformed messages and sequence gaps are counted.
 */
#ifndef IM_KV_KV_SUB_H
#define IM_KV_KV_SUB_H

#include <stdint.h>
#include <uv.h>

#include "kv/kv_events.h"

struct kv_sub_stats {
  uint64_t batches;   /* well-formed batches received */
  uint64_t events;    /* events delivered */
  uint64_t skipped;   /* events of an unknown kind or another medium */
  uint64_t malformed; /* messages dropped: not 3 frames, a bad sequence frame or payload */
  uint64_t gaps;      /* batches whose sequence number skipped (the publisher restarted or dropped some) */
  uint64_t last_ns;   /* monotonic time of the last batch; 0 = none yet */
};

/* What the subscriber calls, on the loop. event: one event (borrowed for the call). gap: the sequence skipped
 * (events were lost: whatever the caller derived from earlier events may now be wrong). */
struct kv_sub_cb {
  void (*event)(void *arg, const struct kv_event *ev);
  void (*gap)(void *arg);
  void *arg;
};

struct kv_sub;

/* kv_sub_start connects to ENDPOINT (tcp://HOST:PORT or ipc://PATH; ZMQ reconnects on its own while the
 * publisher is away) and starts reading on LOOP. Returns 0 and *out, or a negative code with a message in
 * err. cb is copied. Stop with kv_sub_close. */
int kv_sub_start(struct kv_sub **out, uv_loop_t *loop, const char *endpoint, const struct kv_sub_cb *cb,
                 char *err, size_t errlen);

/* kv_sub_stats_of reads the counters (owned by s). */
const struct kv_sub_stats *kv_sub_stats_of(const struct kv_sub *s);

/* kv_sub_close stops reading at once (no callback after it returns) and frees s once its handle has closed
 * on the loop. NULL is a no-op. */
void kv_sub_close(struct kv_sub *s);

#endif
