/* The control plane's replicated state machine: routing policies, model pins, node drains, tenants, prices and
 * providers.
 *
 * Pure: no I/O and no consensus types. The Raft wrapper (cluster/raft.h) feeds it committed commands in log
 * order; read replicas restore it from a snapshot fetched from a server. Everything is in memory and rebuilt
 * from snapshot + log on start (DESIGN §9).
 *
 * A command is a small JSON object (fsm_cmd_encode builds one):
 *   {"id": ID, "op": "put"|"create"|"merge"|"delete", "kind": "policy"|"pin"|"drain"|"tenant"|"price"|"provider",
 *    "key": NAME, "value": {...}, "ts": UNIX_SECONDS}
 * put replaces (or creates) the item; create fails with -EEXIST when it exists; merge overlays the given fields
 * on an existing item (-ENOENT otherwise); delete removes it (-ENOENT when absent). ids make commands
 * idempotent: a command whose id is among the last FSM_RECENT applied ones is not applied again and returns
 * the first outcome (duplicate = true). The recent ids travel in snapshots, so a retry after a leader change
 * is still recognised.
 *
 * fsm_apply is deterministic and never fails: a malformed or refused command changes nothing and reports why
 * in its result. Not thread-safe: one owner, one loop. */
#ifndef IM_CLUSTER_FSM_H
#define IM_CLUSTER_FSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define FSM_NAME_MAX 128    /* keys: model, node or tenant names, printable ASCII without spaces */
#define FSM_ID_MAX 64       /* command ids */
#define FSM_RECENT 4096     /* remembered command ids (idempotency window) */
#define FSM_MAX_ITEMS 10000 /* per kind; a put beyond is refused with -ENOSPC */
#define FSM_FALLBACKS 4
#define FSM_PIN_MAX 8
#define FSM_TENANT_MODELS 16 /* models a tenant may be limited to (= route/tenants.h TENANT_MODELS) */
#define FSM_HASH_LEN 32 /* tenant API key hash: BLAKE2b-256 (crypto_generichash) */
#define FSM_MSG_MAX 160

enum fsm_kind { FSM_POLICY, FSM_PIN, FSM_DRAIN, FSM_TENANT, FSM_PRICE, FSM_PROVIDER, FSM_NKINDS };
enum fsm_op { FSM_OP_PUT, FSM_OP_CREATE, FSM_OP_MERGE, FSM_OP_DELETE };

/* Items. The key is always the first member. */
struct fsm_policy {
  char model[FSM_NAME_MAX];
  char strategy[32];   /* routing strategy name; "" = the router's default */
  char slo_class[16];  /* "", "latency" or "throughput" */
  int32_t max_queue;   /* requests queued per model before 429; 0 = the router's default */
  int hedge;           /* 0 (JSON null): the router's default; 1 (true): hedge latency-class requests; -1
                          (false): never hedge this model */
  uint32_t hedge_delay_ms; /* 0 = the target's p95 TTFT */
  double hedge_max_pct;    /* cap on hedged share of traffic, percent */
  int nfallbacks;
  char fallbacks[FSM_FALLBACKS][FSM_NAME_MAX]; /* models tried, in order, when this one has no target */
};

struct fsm_pin {
  char model[FSM_NAME_MAX];
  int nnodes, nzones; /* the model may run only on these nodes (names) or in these zones; none = anywhere */
  char nodes[FSM_PIN_MAX][64];
  char zones[FSM_PIN_MAX][32];
};

struct fsm_drain {
  char node[FSM_NAME_MAX];
  char reason[128];
  int64_t since; /* unix seconds, from the command */
};

struct fsm_tenant {
  char name[FSM_NAME_MAX];
  uint8_t key_hash[FSM_HASH_LEN]; /* fsm_key_hash of the tenant's API key; the key itself is never stored */
  double rps;              /* requests per second; 0 = unlimited */
  int64_t tokens_per_min;  /* 0 = unlimited */
  int32_t max_concurrent;  /* 0 = unlimited */
  double weight;           /* fair-queueing weight (1) */
  int32_t priority;        /* higher first (0) */
  bool revoked;
  int64_t created; /* unix seconds */
  int nmodels;     /* 0: every model; else only these (403 for others) */
  char models[FSM_TENANT_MODELS][FSM_NAME_MAX];
  int64_t budget_nano; /* spend allowed per period, in nano-units of the prices' currency; 0 = no budget */
  int32_t period;      /* enum period (core/period.h): what the budget counts */
};

/* A provider: who is paid for what its nodes serve (a node names its provider with --provider). */
struct fsm_provider {
  char name[FSM_NAME_MAX];
  double share; /* the part of a served request's cost it earns, in [0, 1] (1 when it has no entry) */
};

struct fsm_price {
  char model[FSM_NAME_MAX];
  double prompt_per_mtok, completion_per_mtok; /* price per million tokens */
  double cached_prompt_per_mtok;               /* cached prompt tokens; < 0: the prompt price (the default) */
  char currency[8];                            /* ISO 4217 code, 3 capital letters: "USD" unless given */
};

/* The outcome of one command. status: 0, or a negative errno (-EINVAL malformed, -ENOENT, -EEXIST, -ENOSPC). */
struct fsm_result {
  int status;
  bool duplicate;      /* the id had been applied before: this is that first outcome */
  uint64_t index;      /* index at which the command (first) applied */
  char msg[FSM_MSG_MAX];
};

struct fsm;

/* fsm_new returns an empty state machine (index 0); the caller owns it and frees it with fsm_free. */
struct fsm *fsm_new(void);
void fsm_free(struct fsm *f);

/* fsm_apply applies command cmd[0, len) (borrowed) committed at log index `index` (> fsm_index(f); the index
 * becomes fsm_index(f) whatever the outcome). The outcome goes to *res. */
void fsm_apply(struct fsm *f, uint64_t index, const void *cmd, size_t len, struct fsm_result *res);

/* fsm_index is the index of the last applied command (or of the restored snapshot). */
uint64_t fsm_index(const struct fsm *f);

/* fsm_snapshot serializes the whole state (items, index, recent command ids) as JSON into out (appended). */
void fsm_snapshot(const struct fsm *f, struct buf *out);
/* fsm_restore replaces f's state with the snapshot in buf[0, len) (borrowed). On error (-EINVAL, message in
 * err) f is unchanged. */
int fsm_restore(struct fsm *f, const void *buf, size_t len, char *err, size_t errlen);

/* Typed read access. Pointers are owned by f and valid until the next fsm_apply/fsm_restore/fsm_free.
 * fsm_count/fsm_at enumerate a kind in key order; fsm_get finds one item by key (NULL if absent). */
int fsm_count(const struct fsm *f, enum fsm_kind k);
const void *fsm_at(const struct fsm *f, enum fsm_kind k, int i);
const void *fsm_get(const struct fsm *f, enum fsm_kind k, const char *key);
static inline const struct fsm_policy *fsm_policy(const struct fsm *f, const char *model) {
  return (const struct fsm_policy *)fsm_get(f, FSM_POLICY, model);
}
static inline const struct fsm_pin *fsm_pin(const struct fsm *f, const char *model) {
  return (const struct fsm_pin *)fsm_get(f, FSM_PIN, model);
}
static inline bool fsm_drained(const struct fsm *f, const char *node) { return fsm_get(f, FSM_DRAIN, node) != NULL; }
static inline const struct fsm_price *fsm_price(const struct fsm *f, const char *model) {
  return (const struct fsm_price *)fsm_get(f, FSM_PRICE, model);
}
static inline const struct fsm_provider *fsm_provider(const struct fsm *f, const char *name) {
  return (const struct fsm_provider *)fsm_get(f, FSM_PROVIDER, name);
}
/* fsm_tenant_by_key finds the tenant whose key hash matches api_key (revoked ones included: check ->revoked);
 * NULL if none. */
const struct fsm_tenant *fsm_tenant_by_key(const struct fsm *f, const char *api_key);

/* fsm_key_hash hashes an API key (BLAKE2b-256 keyed with a fixed context). */
void fsm_key_hash(const char *api_key, uint8_t out[FSM_HASH_LEN]);

/* fsm_kind_changed is the index of the last command that changed an item of kind k (a put that left the item
 * as it was does not count), or the index of the restored snapshot: 0 when the kind never changed. Lets a
 * watcher skip kinds that did not change. */
uint64_t fsm_kind_changed(const struct fsm *f, enum fsm_kind k);
/* fsm_item_size is the size of kind k's item struct (items are fixed-size; their bytes, all of them
 * initialized, describe the item). */
size_t fsm_item_size(enum fsm_kind k);

/* JSON views for the control API (appended to out). fsm_item_json: one item; fsm_kind_json: a JSON array of a
 * kind's items. Tenants show key_hash only as its first 8 hex characters. */
void fsm_item_json(enum fsm_kind k, const void *item, struct buf *out);
void fsm_kind_json(const struct fsm *f, enum fsm_kind k, struct buf *out);

/* fsm_cmd_encode appends a command to out. value_json (borrowed; NULL for delete) must be a JSON object.
 * Returns 0 or -EINVAL with a message in err (bad kind/op/key, value not an object or invalid for the kind —
 * the same checks fsm_apply makes, so a write can be refused before it is proposed). For merge only the
 * fields given are checked. */
int fsm_cmd_encode(struct buf *out, const char *id, enum fsm_op op, enum fsm_kind kind, const char *key,
                   const char *value_json, int64_t ts, char *err, size_t errlen);

/* Names: fsm_kind_name(FSM_POLICY) = "policy"; fsm_kind_parse accepts the singular or the plural
 * ("policies", "pins", "drains", "tenants", "prices", "providers"): 0 or -EINVAL. */
const char *fsm_kind_name(enum fsm_kind k);
int fsm_kind_parse(const char *s, size_t len, enum fsm_kind *out);

/* fsm_key_valid: 1..FSM_NAME_MAX-1 printable ASCII characters, no space, quote or backslash. */
bool fsm_key_valid(const char *key);

#endif
