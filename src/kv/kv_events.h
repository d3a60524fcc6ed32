/* KV-cache events as vLLM and SGLang publish them (`--kv-events-config`): decoding and encoding (pure).
 *
 * Wire form (vllm/distributed/kv_events.py, ZmqEventPublisher): a ZMQ PUB multipart message
 * [topic, seq (8 bytes, big-endian), payload], the payload a msgpack KVEventBatch. msgspec encodes it as an
 * array [ts, [event...], data_parallel_rank?] (array_like structs, vLLM up to 0.10 and SGLang) or as a map
 * {"ts", "events", "data_parallel_rank"} (later vLLM); each event likewise as ["Tag", field...] or
 * {"type": "Tag", field: ...}. Events:
 *   BlockStored      [block_hashes, parent_block_hash|nil, token_ids, block_size, lora_id|nil, medium?, ...]
 *   BlockRemoved     [block_hashes, medium?, ...]
 *   AllBlocksCleared []
 * A block hash is an integer (vLLM's builtin/int hashes, SGLang, infermesh's simulated engine) or bytes
 * (vLLM's sha256 ExternalBlockHash). Trailing fields vLLM may add later (lora_name, extra_keys, group_idx...)
 * and unknown map keys are ignored; unknown event tags are skipped and counted. Events of a medium other than
 * "GPU" (a CPU offload tier) are skipped: they say nothing about what the GPU holds. */
#ifndef IM_KV_KV_EVENTS_H
#define IM_KV_KV_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest payload kv_events_decode accepts (larger batches are rejected, not truncated). */
#define KV_EVENTS_PAYLOAD_MAX (4u << 20)
/* Most block hashes one event may carry (the decoder's scratch array). */
#define KV_EVENT_MAX_HASHES 4096

enum kv_event_kind { KV_EV_STORED = 1, KV_EV_REMOVED = 2, KV_EV_CLEARED = 3 };

/* One decoded event. hashes is borrowed: valid only during the callback. Byte-string hashes are folded to
 * 64 bits with XXH3 (kv_hash_bytes); integers are taken as their two's-complement 64 bits. */
struct kv_event {
  enum kv_event_kind kind;
  const uint64_t *hashes; /* STORED: the new blocks, parent first; REMOVED: the evicted blocks */
  int nhashes;
  bool has_parent; /* STORED: parent_block_hash was not nil */
  uint64_t parent;
  int block_size; /* STORED: tokens per block (0 when absent) */
  int ntokens;    /* STORED: length of token_ids */
};

/* What kv_events_decode learned about the batch as a whole. */
struct kv_batch {
  double ts;    /* the publisher's wall clock, seconds */
  int dp_rank;  /* data_parallel_rank, -1 when absent or nil */
  int nevents;  /* events delivered to the callback */
  int nskipped; /* events of an unknown kind or of another medium */
};

typedef void (*kv_event_cb)(void *arg, const struct kv_event *ev);

/* kv_events_decode parses payload[0..len) (borrowed) and calls cb(arg, ev) for each event in order. Returns
 * 0, or -EINVAL when the payload is not a well-formed KVEventBatch (malformed msgpack, wrong types, more than
 * KV_EVENT_MAX_HASHES hashes in an event, len > KV_EVENTS_PAYLOAD_MAX): the whole batch is then rejected
 * before any callback runs. Allocates at most O(len) transiently; nothing survives the call. */
int kv_events_decode(const void *payload, size_t len, struct kv_batch *out, kv_event_cb cb, void *arg);

/* kv_events_seq reads a sequence frame (8 bytes, big-endian): 0 and *seq, or -EINVAL for another length. */
int kv_events_seq(const void *frame, size_t len, uint64_t *seq);

/* kv_hash_bytes folds a byte-string block hash to 64 bits (XXH3_64bits). */
uint64_t kv_hash_bytes(const void *p, size_t len);

/* One BlockStored event to encode: consecutive blocks of one prompt, parent first (borrowed). */
struct kv_stored_block_run {
  const uint64_t *hashes;
  int nhashes;
  bool has_parent;
  uint64_t parent;
  int block_size;
};

/* kv_events_encode builds a payload in vLLM's array form: an AllBlocksCleared when cleared, then one
 * BlockRemoved listing removed[0..nremoved) (omitted when nremoved is 0), then one BlockStored per run, all
 * with medium "GPU", integer hashes and no token ids. *out is malloc'd (the caller frees it) with its length
 * in *outlen. */
void kv_events_encode(double ts, bool cleared, const uint64_t *removed, int nremoved,
                      const struct kv_stored_block_run *stored, int nstored, char **out, size_t *outlen);

#endif
