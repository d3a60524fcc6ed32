/* Inter-node gossip messages as plain C structs: what SWIM, the load push and push-pull exchange. The wire
 * form (protobuf-c, proto/gossip.proto) is produced and checked by proto/gossip_codec.h. */
#ifndef IM_PROTO_GOSSIP_MSG_H
#define IM_PROTO_GOSSIP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define GOSSIP_WIRE_VERSION 1
#define GOSSIP_ID_LEN 32     /* a node id is its ed25519 public key */
#define GOSSIP_NAME_MAX 64   /* node name, NUL-terminated */
#define GOSSIP_ADDR_MAX 64   /* "ip:port" or "[ip6]:port", NUL-terminated */
#define GOSSIP_META_MAX 768  /* opaque node metadata (an encoded struct gossip_meta) */
#define GOSSIP_MAX_UPDATES 16
#define GOSSIP_PACKET_MAX 1400 /* plaintext budget of one UDP datagram (the AEAD adds its own bytes) */

/* Member states. LEFT is a graceful leave: final like DEAD, but not a failure. */
enum gossip_state { GOSSIP_ALIVE = 0, GOSSIP_SUSPECT = 1, GOSSIP_DEAD = 2, GOSSIP_LEFT = 3 };

/* One membership fact about one node, as disseminated (piggybacked) and exchanged in push-pull. */
struct gossip_update {
  uint8_t id[GOSSIP_ID_LEN];
  char name[GOSSIP_NAME_MAX];
  char addr[GOSSIP_ADDR_MAX]; /* the node's gossip address */
  uint64_t incarnation;
  enum gossip_state state;
  uint8_t from[GOSSIP_ID_LEN]; /* who declared SUSPECT/DEAD (suspicion confirmations count distinct ones) */
  uint16_t meta_len;           /* meta travels with ALIVE facts (and in push-pull); 0 otherwise */
  uint8_t meta[GOSSIP_META_MAX];
};

enum gossip_type {
  GOSSIP_PING = 1,     /* direct probe of `target`; answered with ACK */
  GOSSIP_PING_REQ = 2, /* ask the receiver to probe `target` at `target_addr` for the sender */
  GOSSIP_ACK = 3,      /* answers seq; for a PING_REQ relayed back to the requester */
  GOSSIP_NACK = 4,     /* an indirect prober could not reach the target in time (Lifeguard) */
  GOSSIP_GOSSIP = 5,   /* only piggybacked updates */
};

/* One SWIM message with its piggybacked updates. */
struct gossip_msg {
  enum gossip_type type;
  uint32_t seq;
  uint8_t from[GOSSIP_ID_LEN];
  char from_addr[GOSSIP_ADDR_MAX]; /* where to answer (the sender's advertised gossip address) */
  uint8_t target[GOSSIP_ID_LEN];   /* PING: the node meant (a new node at an old address ignores it);
                                      PING_REQ: the node to probe */
  char target_addr[GOSSIP_ADDR_MAX]; /* PING_REQ only */
  int nupdates;
  struct gossip_update updates[GOSSIP_MAX_UPDATES];
};

/* gossip_update_size_bound is an upper bound of the encoded size of u inside a message; SWIM uses it to
 * fill a datagram with piggybacked updates. The codec guarantees the encoding never exceeds it. */
static inline size_t gossip_update_size_bound(const struct gossip_update *u) {
  return 2 * (GOSSIP_ID_LEN + 2) + strnlen(u->name, GOSSIP_NAME_MAX) + 2 + strnlen(u->addr, GOSSIP_ADDR_MAX) + 2 +
         (size_t)u->meta_len + 3 + 11 + 2 + 8;
}
/* gossip_msg_base_bound bounds the encoded size of a message without its updates. */
#define GOSSIP_MSG_BASE_BOUND (16 + 6 + 2 * (GOSSIP_ID_LEN + 2) + 2 * (GOSSIP_ADDR_MAX + 2))

/* --- node metadata: what members tell each other about themselves (carried as gossip_update.meta) --- */
#define GOSSIP_ROLE_GPU 1u
#define GOSSIP_ROLE_GATEWAY 2u
#define GOSSIP_ROLE_SERVER 4u
#define GOSSIP_ROLE_RPC 8u /* runs an rpc-server for split models (agent/rpc_worker.h); labels rpc, rpc_mem_mb */
#define GOSSIP_META_MODELS 12
#define GOSSIP_META_LABELS 6

struct gossip_model {
  char name[96];
  char kind[16];            /* runtime kind serving it */
  int64_t capacity_tokens;  /* KV capacity in tokens; 0 unknown */
};

struct gossip_meta {
  uint32_t roles; /* GOSSIP_ROLE_* bits */
  char zone[32];
  char api_addr[GOSSIP_ADDR_MAX]; /* the node's HTTP listener, host:port */
  bool draining;
  int nlabels;
  char label_key[GOSSIP_META_LABELS][32];
  char label_value[GOSSIP_META_LABELS][64];
  int nmodels;
  struct gossip_model models[GOSSIP_META_MODELS];
  uint32_t gpus, gpus_degraded; /* GPU telemetry of the node (0 = none seen) */
  char raft_addr[GOSSIP_ADDR_MAX]; /* servers: the Raft address, host:port ("" = not a server) */
  bool raft_formed;                /* servers: this node has Raft state (a cluster was formed) */
  char provider[64];               /* who is paid for what it serves ("" = the node's name) */
};

/* --- load push: a node's live per-target load, sent straight to every gateway (not piggybacked) --- */
#define GOSSIP_LOAD_TARGETS 8
#define GOSSIP_LOAD_MODELS 4

struct gossip_target_load {
  char name[64]; /* the target's name on its node */
  char kind[16];
  int nmodels;
  char models[GOSSIP_LOAD_MODELS][96];
  bool healthy;
  bool gpu_degraded;
  double waiting, running;   /* requests */
  double kv_usage;           /* 0..1; negative unknown */
  int64_t kv_capacity_tokens;
  double prefix_hit_rate;    /* 0..1; negative unknown */
  double prompt_tps, gen_tps; /* tokens/s over a recent window; negative unknown */
  double ttft_p50_ms;        /* negative unknown */
  int32_t inflight;          /* requests the node's own router has in flight there */
};

struct gossip_load {
  uint8_t from[GOSSIP_ID_LEN];
  uint64_t boot;   /* the sender's life: rises with every restart (a new process counts seq from 1 again) */
  uint64_t seq;    /* rises with every report within one boot; (boot, seq) at or below the last seen is ignored */
  uint32_t age_ms; /* how old the newest signal in this report already was when it was sent */
  int ntargets;
  struct gossip_target_load targets[GOSSIP_LOAD_TARGETS];
};

/* --- cache report: deltas of one target's cached prompt blocks, sent straight to every gateway --- */
#define GOSSIP_CACHE_HASHES 144 /* stored + removed: 144 * 8 bytes + ~170 bytes of header fit a datagram */
enum gossip_cache_source { GOSSIP_CACHE_ENGINE = 1, GOSSIP_CACHE_ROUTE = 2 };

struct gossip_cache {
  uint8_t from[GOSSIP_ID_LEN];
  uint64_t boot, seq;          /* as in struct gossip_load (stamped by the transport) */
  uint8_t target_node[GOSSIP_ID_LEN];
  char target[64];             /* the target's name on target_node */
  enum gossip_cache_source source;
  bool cleared;
  int nstored, nremoved;       /* nstored + nremoved <= GOSSIP_CACHE_HASHES */
  uint64_t stored[GOSSIP_CACHE_HASHES];
  uint64_t removed[GOSSIP_CACHE_HASHES];
};

/* --- spend report: a node's ingress spend per tenant, sent straight to every gateway (budgets) --- */
#define GOSSIP_SPEND_TENANTS 8

struct gossip_tenant_spend {
  char tenant[64];
  int64_t day_start, day_nano;     /* unix seconds of 00:00 UTC that day; nano-units spent since */
  int64_t month_start, month_nano; /* the same for the calendar month */
  int64_t total_nano;
};

struct gossip_spend {
  uint8_t from[GOSSIP_ID_LEN];
  uint64_t boot, seq; /* as in gossip_load */
  int ntenants;
  struct gossip_tenant_spend tenants[GOSSIP_SPEND_TENANTS];
};

/* --- load digest: compact load numbers of several nodes in one datagram (proto LoadDigest) --- */
#define GOSSIP_SHORT_ID 8       /* a delta names its node by the first 8 bytes of the id */
#define GOSSIP_DELTA_STRIDE 9   /* quantised values per target (cluster/load_delta.h says which) */
#define GOSSIP_DIGEST_ENTRIES 32

struct gossip_load_delta {
  uint8_t node[GOSSIP_SHORT_ID];
  uint32_t boot;   /* low 32 bits of the node's boot */
  uint64_t seq;    /* the node's report counter (shared with its full reports) */
  uint32_t age_ms;
  uint32_t layout; /* load_delta_layout() of the full report these numbers belong to */
  int ntargets;
  uint32_t values[GOSSIP_LOAD_TARGETS][GOSSIP_DELTA_STRIDE];
};

struct gossip_load_digest {
  bool forward; /* the receiver relays the entries to the gateways of its grid column */
  int nentries;
  struct gossip_load_delta entries[GOSSIP_DIGEST_ENTRIES];
};

/* --- a decoded datagram: one SWIM message, one load, cache or spend report, or a load digest --- */
enum gossip_packet_kind {
  GOSSIP_PKT_SWIM = 1,
  GOSSIP_PKT_LOAD = 2,
  GOSSIP_PKT_CACHE = 3,
  GOSSIP_PKT_SPEND = 4,
  GOSSIP_PKT_DIGEST = 5
};

struct gossip_packet {
  enum gossip_packet_kind kind;
  union {
    struct gossip_msg swim;
    struct gossip_load load;
    struct gossip_cache cache;
    struct gossip_spend spend;
    struct gossip_load_digest digest;
  } u;
};

/* --- push-pull (TCP anti-entropy and join): the sender's whole member table --- */
#define GOSSIP_PUSHPULL_MAX 512

struct gossip_pushpull {
  bool join; /* the sender is joining: answer with your own table */
  uint8_t from[GOSSIP_ID_LEN];
  int nmembers;
  struct gossip_update *members; /* owned by whoever filled it */
};

#endif
