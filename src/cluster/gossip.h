/* The gossip transport: runs SWIM (cluster/swim.h) over encrypted UDP datagrams and TCP push-pull on one
 * port, spreads this node's load to every gateway (full reports direct, compact deltas over the relay grid of
 * cluster/load_grid.h), and serves invite joins. One libuv loop. */
#ifndef IM_CLUSTER_GOSSIP_H
#define IM_CLUSTER_GOSSIP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cluster/identity.h"
#include "cluster/keyring.h"
#include "cluster/swim.h"
#include "proto/gossip_msg.h"

struct gossip_config {
  char bind_host[64];               /* UDP and TCP listen address (default 127.0.0.1) */
  int bind_port;                    /* default 7946; 0 = any free port */
  char advertise[GOSSIP_ADDR_MAX];  /* what others use to reach us; "" = bind host:port */
  struct swim_config swim;
  uint32_t load_min_interval_ms;    /* a changed load report goes out at most this often (100) */
  uint32_t load_max_interval_ms;    /* an unchanged one still goes out this often, as a heartbeat (500) */
  uint32_t load_full_interval_ms;   /* a full report (names, models, capacity) refreshes every gateway this
                                     * often (10000); between them, reports are deltas over the relay grid */
  uint32_t load_relay_ms;           /* a relay batches its row's deltas this long before forwarding (50) */
  uint32_t load_budget_bytes_s;     /* full refreshes to all gateways together stay within this (8 KiB/s): in
                                     * a big mesh they come less often than load_full_interval_ms; 0 = no bound */
  uint32_t tcp_timeout_ms;          /* push-pull and join exchanges (5000) */
  uint64_t boot_id;                 /* this process's life, higher than any earlier life of this node (its
                                     * load reports carry it); 0 = the wall clock in microseconds at start */
};

/* gossip_config_default fills c: 127.0.0.1:7946, swim_config_default, load push 100/500 ms, full refresh
 * 10 s within 8 KiB/s, relay batching 50 ms, TCP 5 s. */
void gossip_config_default(struct gossip_config *c);

struct gossip_counters {
  uint64_t udp_in, udp_out, bytes_in, bytes_out, dropped_auth, dropped_malformed, dropped_send;
  uint64_t pushpull_in, pushpull_out, pushpull_failed, loads_in, loads_out, joins_served, joins_refused;
  uint64_t caches_in, caches_out;
  uint64_t load_bytes_out, cache_bytes_out; /* of bytes_out: load and cache reports (the rest is SWIM) */
  uint64_t spends_in, spends_out;
};

/* Callbacks into the agent; pointers are valid only during the call.
 * member: a member changed (swim event); meta is the decoded meta of an ALIVE member, else NULL.
 * load:   a load report from member `from`, received now (in full, or a delta applied to its last full
 *         report); its signals were age_ms old when sent.
 * cache:  a cache report from member `from` (reordered or replayed ones are dropped before).
 * spend:  a spend report from alive member `from` (not deduplicated: figures are absolute, see gossip.proto). */
struct gossip_callbacks {
  void (*member)(void *user, const struct swim_member *m, enum swim_event ev, const struct gossip_meta *meta);
  void (*load)(void *user, const struct gossip_load *l);
  void (*cache)(void *user, const struct gossip_cache *c);
  void (*spend)(void *user, const struct gossip_spend *s);
};

struct gossip;

/* gossip_start binds UDP and TCP on cfg->bind_host:bind_port and starts SWIM for this node (identity id,
 * keyring kr — both borrowed and kept alive by the caller until gossip_close has completed), with its name,
 * meta and starting incarnation. Returns 0 and *out, or a negative code with a message in err ("gossip port
 * 7946 is in use: pass --gossip HOST:PORT"). */
int gossip_start(struct gossip **out, uv_loop_t *loop, const struct gossip_config *cfg, const struct identity *id,
                 struct keyring *kr, const char *name, const struct gossip_meta *meta,
                 const struct gossip_callbacks *cb, void *user, char *err, size_t errlen);
/* gossip_set_stream_handler shares the gossip TCP port with another protocol (the agent-to-agent tunnel):
 * an incoming connection whose first byte is not 0 (a gossip frame's always is) is handed to cb(arg, fd, pre,
 * len): fd is the connected socket, now owned by cb; pre[0, len) the bytes already read (borrowed for the
 * call). Counted as malformed and closed while no handler is set. */
typedef void (*gossip_stream_cb)(void *arg, uv_os_sock_t fd, const uint8_t *pre, size_t len);
void gossip_set_stream_handler(struct gossip *g, gossip_stream_cb cb, void *arg);
/* gossip_join starts joining through seed gossip addresses (host:port, numeric); push-pulls with each. */
void gossip_join(struct gossip *g, const char *const *addrs, int n);
/* gossip_set_meta re-announces this node's meta (raises its incarnation). */
void gossip_set_meta(struct gossip *g, const struct gossip_meta *meta);
/* gossip_publish_load hands over this node's current load (copied); it reaches every alive gateway at most
 * every load_min_interval_ms when it changed, and every load_max_interval_ms anyway: in full when its layout
 * (targets, models, capacity) changed, to a gateway new to this node, and every load_full_interval_ms (less
 * often where that would exceed load_budget_bytes_s); otherwise as a delta relayed over the grid, so a
 * gateway's callback sees it within about load_relay_ms plus two datagrams' transit. */
void gossip_publish_load(struct gossip *g, const struct gossip_load *l);
/* gossip_send_cache sends c (borrowed; from, boot and seq are stamped here) to every alive gateway now and
 * returns the bytes that went out (UDP payloads). Pacing and budgets are the caller's (agent/kv_mesh.c). */
uint64_t gossip_send_cache(struct gossip *g, const struct gossip_cache *c);
/* gossip_send_spend sends s (its from, boot and seq are filled here) to every alive gateway now. The caller
 * paces it (a report of absolute figures: losing one costs only freshness). */
void gossip_send_spend(struct gossip *g, struct gossip_spend *s);
/* gossip_leave announces a graceful leave; done_cb runs once it has been disseminated (or after 2 s). */
void gossip_leave(struct gossip *g, void (*done_cb)(void *arg), void *arg);
/* gossip_close stops everything; closed_cb (may be NULL) runs when no handle of g is left on the loop, and g
 * is freed after it. */
void gossip_close(struct gossip *g, void (*closed_cb)(void *arg), void *arg);

/* Read access for the API and the agent. */
const struct swim *gossip_swim(const struct gossip *g);
const struct gossip_counters *gossip_counters(const struct gossip *g);
const char *gossip_advertise(const struct gossip *g);
int gossip_port(const struct gossip *g);

/* gossip_fetch_keyring joins with an invite: it connects to the token's seeds in turn (blocking, at most
 * timeout_ms each — call it before the loop runs), proves the token, and receives the cluster keyring into
 * *kr. While no seed answers it tries them all again with a growing pause (250 ms up to 4 s, a log line per
 * failed try) for up to retry_ms (0: one round). Returns 0, -EACCES at once when a seed refuses (expired or
 * not for this cluster), or -EHOSTUNREACH with a message once retry_ms has passed. */
int gossip_fetch_keyring(const char *token, const struct identity *id, struct keyring *kr, uint32_t timeout_ms,
                         uint32_t retry_ms, char *err, size_t errlen);

#endif
