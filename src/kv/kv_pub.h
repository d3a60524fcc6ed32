/* A KV-cache event publisher speaking vLLM's protocol (ZMQ PUB, [topic, seq, msgpack KVEventBatch]): what the
 * simulated engine runs when started with --kv-events, so the agent's subscriber meets the same bytes a vLLM
 * `--kv-events-config '{"enable_kv_cache_events": true, "publisher": "zmq", "endpoint": ...}'` sends. */
#ifndef IM_KV_KV_PUB_H
#define IM_KV_KV_PUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv_pub;

/* kv_pub_open binds a PUB socket to ENDPOINT (a ZMQ address, e.g. tcp://127.0.0.1:5557, ipc://PATH; host *
 * for every interface); subscribers (the agent) connect to it, as they do to vLLM's publisher bound on
 * tcp://HOST:5557 (vLLM binds for a wildcard or ipc address and connects otherwise; a server binds here).
 * Returns 0 and *out (free with kv_pub_close), or a negative code with a message in err. */
int kv_pub_open(struct kv_pub **out, const char *endpoint, char *err, size_t errlen);

/* kv_pub_stored / kv_pub_removed / kv_pub_cleared queue one event for the next batch. Consecutive stored
 * blocks that extend each other (parent = the previous block) become one BlockStored event. */
void kv_pub_stored(struct kv_pub *p, uint64_t hash, bool has_parent, uint64_t parent, int block_size);
void kv_pub_removed(struct kv_pub *p, uint64_t hash);
void kv_pub_cleared(struct kv_pub *p);

/* kv_pub_flush sends the queued events as one batch stamped with the wall clock, if there are any.
 * Never blocks: a PUB socket drops what its subscribers cannot take (vLLM behaves the same). */
void kv_pub_flush(struct kv_pub *p);

/* kv_pub_batches counts the batches sent. kv_pub_close flushes nothing, closes the socket (removing an ipc://
 * endpoint's socket file) and frees p. */
uint64_t kv_pub_batches(const struct kv_pub *p);
void kv_pub_close(struct kv_pub *p);

#endif
