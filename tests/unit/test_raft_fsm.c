/* The state machine under real libraft (raft/fixture.h: in-memory I/O, virtual time): replication, snapshots
 * sent to a lagging server, and a leader lost mid-command with an idempotent retry on the next leader. Also the
 * membership rules of cluster/raft.h (which failed server the autopilot may remove, how many voters), and the
 * Raft transport on a real loop: address parsing (IPv4, [IPv6]) and relay backpressure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <raft.h>
#include <raft/fixture.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "cluster/fsm.h"
#include "cluster/raft.h"
#include "cluster/raft_fsm.h"
#include "cluster/raft_transport.h"

#define N 3

struct node {
  struct fsm *fsm;
  struct raft_fsm rf;
  struct craft_fsm cf;
  uint64_t last_index;
  struct fsm_result last;
  int restores; /* snapshots installed (on_restore) */
};

struct env {
  struct raft_fixture fx;
  struct node nodes[N];
};

static void on_result(void *arg, uint64_t index, const struct fsm_result *res) {
  struct node *n = arg;
  n->last_index = index;
  n->last = *res;
}

static void on_restore(void *arg) { ((struct node *)arg)->restores++; }

static int setup(void **state) {
  struct env *e = calloc(1, sizeof *e);
  struct raft_configuration conf;
  if (raft_fixture_initialize(&e->fx) != 0) return -1;
  for (int i = 0; i < N; i++) {
    struct node *n = &e->nodes[i];
    n->fsm = fsm_new();
    n->cf = (struct craft_fsm){.fsm = n->fsm, .on_result = on_result, .on_restore = on_restore, .arg = n};
    craft_fsm_init(&n->rf, &n->cf);
    if (raft_fixture_grow(&e->fx, &n->rf) != 0) return -1;
    n->cf.raft = raft_fixture_get(&e->fx, (unsigned)i);
    raft_set_pre_vote(n->cf.raft, true);
  }
  if (raft_fixture_configuration(&e->fx, N, &conf) != 0 || raft_fixture_bootstrap(&e->fx, &conf) != 0) return -1;
  raft_configuration_close(&conf);
  if (raft_fixture_start(&e->fx) != 0) return -1;
  if (!raft_fixture_step_until_has_leader(&e->fx, 10000)) return -1;
  *state = e;
  return 0;
}

static int teardown(void **state) {
  struct env *e = *state;
  raft_fixture_close(&e->fx);
  for (int i = 0; i < N; i++) fsm_free(e->nodes[i].fsm);
  free(e);
  return 0;
}

struct req {
  struct raft_apply r;
  bool done;
  int status;
};

static void apply_cb(struct raft_apply *r, int status, void *result) {
  struct req *q = (struct req *)r;
  q->done = true;
  q->status = status;
  assert_null(result); /* results travel through on_result: nothing to leak */
}

/* propose encodes a command and raft_apply's it on server i; returns raft's code. */
static int propose(struct env *e, unsigned i, struct req *q, const char *id, enum fsm_op op, enum fsm_kind k,
                   const char *key, const char *value) {
  struct buf b = {0};
  char err[200];
  assert_int_equal(fsm_cmd_encode(&b, id, op, k, key, value, 1700000000, err, sizeof err), 0);
  struct raft_buffer rb = {raft_malloc(b.len), b.len};
  memcpy(rb.base, b.base, b.len);
  buf_free(&b);
  memset(q, 0, sizeof *q);
  int rv = raft_apply(raft_fixture_get(&e->fx, i), &q->r, &rb, 1, apply_cb);
  if (rv != 0) raft_free(rb.base);
  return rv;
}

static void assert_same_state(struct env *e) {
  struct buf a = {0};
  fsm_snapshot(e->nodes[0].fsm, &a);
  for (int i = 1; i < N; i++) {
    struct buf b = {0};
    fsm_snapshot(e->nodes[i].fsm, &b);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.base, b.base, a.len);
    buf_free(&b);
  }
  buf_free(&a);
}

static void test_apply_replicates(void **state) {
  struct env *e = *state;
  unsigned l = raft_fixture_leader_index(&e->fx);
  struct req q;
  assert_int_equal(propose(e, l, &q, "c1", FSM_OP_PUT, FSM_POLICY, "m1", "{\"strategy\":\"ours\"}"), 0);
  raft_index idx = q.r.index;
  assert_true(raft_fixture_step_until_applied(&e->fx, N, idx, 5000));
  assert_true(q.done);
  assert_int_equal(q.status, 0);
  assert_int_equal(e->nodes[l].last_index, idx);
  assert_int_equal(e->nodes[l].last.status, 0);
  for (int i = 0; i < N; i++) {
    assert_non_null(fsm_policy(e->nodes[i].fsm, "m1"));
    assert_int_equal(fsm_index(e->nodes[i].fsm), idx);
  }
  /* a refused command is committed too, changes nothing anywhere, and its error reaches the proposer */
  assert_int_equal(propose(e, l, &q, "c2", FSM_OP_DELETE, FSM_POLICY, "absent", NULL), 0);
  assert_true(raft_fixture_step_until_applied(&e->fx, N, q.r.index, 5000));
  assert_int_equal(q.status, 0);
  assert_int_equal(e->nodes[l].last.status, -ENOENT);
  /* a follower refuses to propose */
  unsigned f = (l + 1) % N;
  assert_int_equal(propose(e, f, &q, "c3", FSM_OP_PUT, FSM_DRAIN, "n", "{}"), RAFT_NOTLEADER);
  assert_same_state(e);
}

static void test_snapshot_to_lagging_server(void **state) {
  struct env *e = *state;
  unsigned l = raft_fixture_leader_index(&e->fx);
  unsigned lag = (l + 1) % N;
  for (int i = 0; i < N; i++) {
    raft_set_snapshot_threshold(raft_fixture_get(&e->fx, (unsigned)i), 4);
    raft_set_snapshot_trailing(raft_fixture_get(&e->fx, (unsigned)i), 1);
  }
  raft_fixture_kill(&e->fx, lag);
  struct req q;
  raft_index idx = 0;
  for (int i = 0; i < 12; i++) {
    char id[16], key[16];
    snprintf(id, sizeof id, "s%d", i);
    snprintf(key, sizeof key, "m%d", i % 5);
    assert_int_equal(propose(e, l, &q, id, FSM_OP_PUT, FSM_PRICE, key, "{\"prompt_per_mtok\":1.5}"), 0);
    idx = q.r.index;
    assert_true(raft_fixture_step_until_applied(&e->fx, l, idx, 5000));
  }
  assert_int_equal(fsm_count(e->nodes[lag].fsm, FSM_PRICE), 0);
  /* the leader compacted its log: the lagging server can only catch up from a snapshot */
  assert_true(raft_fixture_get(&e->fx, l)->log.snapshot.last_index > 0);
  raft_fixture_revive(&e->fx, lag);
  assert_true(raft_fixture_step_until_applied(&e->fx, lag, idx, 10000));
  assert_int_equal(fsm_count(e->nodes[lag].fsm, FSM_PRICE), 5);
  assert_true(e->nodes[lag].restores >= 1); /* told, so that readers waiting for an index are answered */
  assert_same_state(e);
  /* command ids came with the snapshot: a retry of an old command is recognised by the server that only
   * has the snapshot too (every server reports what it applied) */
  assert_int_equal(propose(e, l, &q, "s0", FSM_OP_DELETE, FSM_PRICE, "m0", NULL), 0);
  assert_true(raft_fixture_step_until_applied(&e->fx, N, q.r.index, 5000));
  assert_true(e->nodes[lag].last.duplicate);
  assert_non_null(fsm_price(e->nodes[lag].fsm, "m0"));
}

static void test_leader_loss_idempotent_retry(void **state) {
  struct env *e = *state;
  unsigned l = raft_fixture_leader_index(&e->fx);
  struct req q1, q2, q3;
  /* 1. committed, but the client never heard: the retry on a new leader is recognised, not applied twice */
  assert_int_equal(propose(e, l, &q1, "t-create", FSM_OP_CREATE, FSM_TENANT, "acme", "{\"rps\":5}"), 0);
  raft_index first = q1.r.index;
  assert_true(raft_fixture_step_until_applied(&e->fx, N, first, 5000));
  raft_fixture_depose(&e->fx);
  assert_true(raft_fixture_step_until_has_leader(&e->fx, 10000));
  unsigned l2 = raft_fixture_leader_index(&e->fx);
  assert_int_equal(propose(e, l2, &q2, "t-create", FSM_OP_CREATE, FSM_TENANT, "acme", "{\"rps\":5}"), 0);
  assert_true(raft_fixture_step_until_applied(&e->fx, N, q2.r.index, 5000));
  assert_int_equal(q2.status, 0);
  assert_true(e->nodes[l2].last.duplicate);
  assert_int_equal(e->nodes[l2].last.status, 0); /* not -EEXIST: the first outcome */
  assert_int_equal(e->nodes[l2].last.index, first);
  /* 2. proposed, then the leader dies before replicating: outcome unknown to the client, which retries */
  l = raft_fixture_leader_index(&e->fx);
  assert_int_equal(propose(e, l, &q1, "d-1", FSM_OP_PUT, FSM_DRAIN, "gpu-a", "{\"reason\":\"x\"}"), 0);
  raft_fixture_kill(&e->fx, l);
  assert_true(raft_fixture_step_until_has_no_leader(&e->fx, 5000) || true);
  bool elected = false;
  for (int t = 0; t < 100 && !elected; t++) {
    raft_fixture_step_until_elapsed(&e->fx, 100);
    for (unsigned i = 0; i < N; i++)
      if (i != l && raft_state(raft_fixture_get(&e->fx, i)) == RAFT_LEADER) elected = true, l2 = i;
  }
  assert_true(elected);
  assert_int_equal(propose(e, l2, &q3, "d-1", FSM_OP_PUT, FSM_DRAIN, "gpu-a", "{\"reason\":\"x\"}"), 0);
  unsigned other = 3 - l - l2;
  assert_true(raft_fixture_step_until_applied(&e->fx, other, q3.r.index, 5000));
  assert_int_equal(q3.status, 0);
  /* the old leader comes back: its orphan entry is discarded, it catches up, its client learns the loss */
  raft_fixture_revive(&e->fx, l);
  assert_true(raft_fixture_step_until_applied(&e->fx, N, q3.r.index, 10000));
  for (int t = 0; t < 20 && !q1.done; t++) raft_fixture_step_until_elapsed(&e->fx, 100);
  assert_true(q1.done);
  assert_int_not_equal(q1.status, 0);
  for (int i = 0; i < N; i++) {
    assert_true(fsm_drained(e->nodes[i].fsm, "gpu-a"));
    assert_int_equal(fsm_count(e->nodes[i].fsm, FSM_TENANT), 1);
  }
  assert_same_state(e);
}

/* ---- membership rules ---- */

static int pick(const int *roles, const bool *failed, int n) {
  struct craft_server conf[8];
  for (int i = 0; i < n; i++) {
    conf[i].id = (uint64_t)(i + 1);
    conf[i].role = roles[i];
    snprintf(conf[i].address, sizeof conf[i].address, "127.0.0.1:%d", 7000 + i);
  }
  return craft_pick_removal(conf, failed, NULL, n, 1); /* server 1 (index 0) is the leader */
}

static void test_pick_removal_left(void **state) {
  (void)state;
  struct craft_server conf[3];
  for (int i = 0; i < 3; i++) {
    conf[i].id = (uint64_t)(i + 1);
    conf[i].role = CRAFT_VOTER;
    snprintf(conf[i].address, sizeof conf[i].address, "127.0.0.1:%d", 7000 + i);
  }
  /* Two voters, the other one left: removed (a majority of the one that remains), scaling 2 -> 1. */
  bool failed2[2] = {false, true}, left2[2] = {false, true};
  assert_int_equal(craft_pick_removal(conf, failed2, left2, 2, 1), 1);
  /* ... but one that only went silent is not: the leader may be the one cut off. */
  assert_int_equal(craft_pick_removal(conf, failed2, NULL, 2, 1), CRAFT_REMOVE_UNSAFE);
  /* Three voters, one left and one silent: only the leader is healthy, nothing goes; with the silent one back,
   * the one that left goes. */
  bool failed3[3] = {false, true, true}, left3[3] = {false, false, true};
  assert_int_equal(craft_pick_removal(conf, failed3, left3, 3, 1), CRAFT_REMOVE_UNSAFE);
  bool failed3b[3] = {false, false, true};
  assert_int_equal(craft_pick_removal(conf, failed3b, left3, 3, 1), 2);
}

static void test_pick_removal(void **state) {
  (void)state;
  const int V = CRAFT_VOTER, S = CRAFT_SPARE, B = CRAFT_STANDBY;
  /* nothing failed; the leader itself is never picked */
  assert_int_equal(pick((int[]){V, V, V}, (bool[]){false, false, false}, 3), CRAFT_REMOVE_NONE);
  assert_int_equal(pick((int[]){V, V, V}, (bool[]){true, false, false}, 3), CRAFT_REMOVE_NONE);
  /* 3 voters: one failed leaves 2 of 3 healthy (a majority): removed; two failed: kept */
  assert_int_equal(pick((int[]){V, V, V}, (bool[]){false, false, true}, 3), 2);
  assert_int_equal(pick((int[]){V, V, V}, (bool[]){false, true, true}, 3), CRAFT_REMOVE_UNSAFE);
  /* 2 voters, one failed: 1 of 2 is no majority */
  assert_int_equal(pick((int[]){V, V}, (bool[]){false, true}, 2), CRAFT_REMOVE_UNSAFE);
  /* 4 voters: one failed ok (3 of 4), two not (2 of 4) */
  assert_int_equal(pick((int[]){V, V, V, V}, (bool[]){false, false, true, false}, 4), 2);
  assert_int_equal(pick((int[]){V, V, V, V}, (bool[]){false, true, true, false}, 4), CRAFT_REMOVE_UNSAFE);
  /* 5 voters: two failed ok (3 of 5), one at a time, the first; three failed not */
  assert_int_equal(pick((int[]){V, V, V, V, V}, (bool[]){false, false, true, true, false}, 5), 2);
  assert_int_equal(pick((int[]){V, V, V, V, V}, (bool[]){false, true, true, true, false}, 5), CRAFT_REMOVE_UNSAFE);
  /* after the first removal the rule holds again for the second: 4 voters, 1 failed */
  assert_int_equal(pick((int[]){V, V, V, V}, (bool[]){false, false, false, true}, 4), 3);
  /* non-voters do not count toward quorum: removed first, even when the failed voters must stay */
  assert_int_equal(pick((int[]){V, V, V, S}, (bool[]){false, true, true, true}, 4), 3);
  assert_int_equal(pick((int[]){V, V, B, V}, (bool[]){false, false, true, true}, 4), 2);
  /* spares do not make a failed voter's removal safe: 2 voters + 2 healthy spares, one voter failed */
  assert_int_equal(pick((int[]){V, V, S, S}, (bool[]){false, true, false, false}, 4), CRAFT_REMOVE_UNSAFE);
}

static void test_desired_voters(void **state) {
  (void)state;
  const int want[] = {1, 1, 1, 3, 3, 5, 5, 5, 5, 5};
  for (int h = 0; h < 10; h++) assert_int_equal(craft_desired_voters(h), want[h]);
}

/* ---- transport ---- */

static void test_parse_addr(void **state) {
  (void)state;
  struct sockaddr_storage sa;
  assert_int_equal(rtx_parse_addr("127.0.0.1:7000", &sa), 0);
  assert_int_equal(sa.ss_family, AF_INET);
  assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 7000);
  assert_int_equal(rtx_parse_addr("localhost:1", &sa), 0);
  assert_int_equal(sa.ss_family, AF_INET);
  assert_int_equal(rtx_parse_addr("[::1]:65535", &sa), 0);
  assert_int_equal(sa.ss_family, AF_INET6);
  assert_int_equal(ntohs(((struct sockaddr_in6 *)&sa)->sin6_port), 65535);
  assert_int_equal(rtx_parse_addr("[fe80::1:2]:7001", &sa), 0);
  assert_int_equal(sa.ss_family, AF_INET6);
  const char *bad[] = {"", ":7000", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:7x",
                       "::1:7000", "[::1]", "[::1:7000", "::1]:7000", "[]:7000", "[127.0.0.1]:7000",
                       "host.example:7000", "[::1]x:7000"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (rtx_parse_addr(bad[i], &sa) != RAFT_INVALID) fail_msg("accepted '%s'", bad[i]);
  }
}

#define CHUNK 65536
#define WRITE_AHEAD (1u << 20) /* the sender keeps at most this much queued on its own stream */
#define SEND_CAP (512u << 20)

/* Two transports on one loop: "raft a" dials "raft b"; a writes a byte pattern; b does not read until both
 * relay directions paused, then reads and checks everything. */
struct relay_env {
  uv_loop_t loop;
  struct keyring kr;
  struct raft_uv_transport ta, tb;
  struct raft_uv_connect creq;
  uv_stream_t *a, *b;
  uv_timer_t tick;
  uint64_t sent, received, held_at, a_queue_held;
  size_t total; /* 0: send until both directions pause; else this many bytes, reading at once */
  bool reading, mismatch, failed_connect;
  int closed;
  uint64_t start_ms;
};

static uint8_t pattern(uint64_t i) { return (uint8_t)(i * 131 + (i >> 13) * 7 + 3); }

static void rt_closed_cb(struct raft_uv_transport *t) { ((struct relay_env *)t->data)->closed++; }
static void stream_closed_cb(uv_handle_t *h) { raft_free(h); }

static void relay_accept_cb(struct raft_uv_transport *t, raft_id id, const char *address, uv_stream_t *stream) {
  struct relay_env *e = t->data;
  assert_int_equal(id, 1);
  assert_null(e->b);
  e->b = stream;
}

static void relay_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status) {
  struct relay_env *e = req->data;
  if (status != 0) e->failed_connect = true;
  e->a = stream;
}

static void relay_write_done(uv_write_t *w, int status) {
  free(w->data);
  free(w);
}

static void relay_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  static char slab[CHUNK];
  b->base = slab;
  b->len = sizeof slab;
}

static void relay_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  struct relay_env *e = s->data;
  if (n < 0) {
    e->mismatch = true; /* the relay must not close */
    uv_read_stop(s);
    return;
  }
  for (ssize_t i = 0; i < n; i++)
    if ((uint8_t)b->base[i] != pattern(e->received + (uint64_t)i)) e->mismatch = true;
  e->received += (uint64_t)n;
}

static void relay_tick(uv_timer_t *t) {
  struct relay_env *e = t->data;
  bool done = e->failed_connect || e->mismatch || uv_now(&e->loop) - e->start_ms > 40000;
  if (!done && e->a && e->b) {
    uint64_t limit = e->total ? e->total : SEND_CAP;
    while (!e->held_at && e->sent < limit && uv_stream_get_write_queue_size(e->a) < WRITE_AHEAD) {
      uint8_t *buf = malloc(CHUNK);
      for (int i = 0; i < CHUNK; i++) buf[i] = pattern(e->sent + (uint64_t)i);
      uv_write_t *w = malloc(sizeof *w);
      w->data = buf;
      uv_buf_t ub = uv_buf_init((char *)buf, CHUNK);
      assert_int_equal(uv_write(w, e->a, &ub, 1, relay_write_done), 0);
      e->sent += CHUNK;
    }
    if (!e->held_at && !e->total && rt_counters(&e->ta)->relay_pauses > 0 && rt_counters(&e->tb)->relay_pauses > 0) {
      e->held_at = e->sent; /* both directions hold back: now drain */
      e->a_queue_held = uv_stream_get_write_queue_size(e->a);
    }
    if (!e->reading && (e->held_at || e->total)) {
      e->b->data = e;
      uv_read_start(e->b, relay_alloc, relay_read);
      e->reading = true;
    }
    done = e->reading && e->received == e->sent && (e->held_at || e->sent == e->total);
  }
  if (!done) return;
  uv_timer_stop(t);
  uv_close((uv_handle_t *)t, NULL);
  if (e->a) uv_close((uv_handle_t *)e->a, stream_closed_cb);
  if (e->b) uv_close((uv_handle_t *)e->b, stream_closed_cb);
  e->ta.close(&e->ta, rt_closed_cb);
  e->tb.close(&e->tb, rt_closed_cb);
}

static int free_tcp_port(int family) {
  int fd = socket(family, SOCK_STREAM, 0);
  struct sockaddr_storage sa;
  socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  memset(&sa, 0, sizeof sa);
  sa.ss_family = (sa_family_t)family;
  if (family == AF_INET6) ((struct sockaddr_in6 *)&sa)->sin6_addr = in6addr_loopback;
  else ((struct sockaddr_in *)&sa)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = -1;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, len) == 0 && getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port : ((struct sockaddr_in6 *)&sa)->sin6_port);
  if (fd >= 0) close(fd);
  return port;
}

/* run_relay sends through a pair of transports over host ("127.0.0.1" or "[::1]"); total 0: until both relay
 * directions pause (backpressure), else total bytes. */
static void run_relay(struct relay_env *e, int family, const char *host, size_t total) {
  char addr_a[64], addr_b[64];
  memset(e, 0, sizeof *e);
  e->total = total;
  randombytes_buf(e->kr.keys[0], KEYRING_KEY_LEN);
  e->kr.nkeys = 1;
  assert_int_equal(uv_loop_init(&e->loop), 0);
  snprintf(addr_a, sizeof addr_a, "%s:%d", host, free_tcp_port(family));
  snprintf(addr_b, sizeof addr_b, "%s:%d", host, free_tcp_port(family));
  assert_int_equal(rt_init(&e->ta, &e->loop, &e->kr), 0);
  assert_int_equal(rt_init(&e->tb, &e->loop, &e->kr), 0);
  e->ta.data = e->tb.data = e;
  assert_int_equal(e->ta.init(&e->ta, 1, addr_a), 0);
  assert_int_equal(e->tb.init(&e->tb, 2, addr_b), 0);
  assert_int_equal(e->tb.listen(&e->tb, relay_accept_cb), 0);
  e->creq.data = e;
  assert_int_equal(e->ta.connect(&e->ta, &e->creq, 2, addr_b, relay_connect_cb), 0);
  uv_timer_init(&e->loop, &e->tick);
  e->tick.data = e;
  e->start_ms = uv_now(&e->loop);
  uv_timer_start(&e->tick, relay_tick, 1, 2);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  assert_int_equal(e->closed, 2);
  assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void free_relay(struct relay_env *e) {
  rt_free(&e->ta);
  rt_free(&e->tb);
}

static void test_relay_backpressure(void **state) {
  (void)state;
  struct relay_env *e = calloc(1, sizeof *e);
  run_relay(e, AF_INET, "127.0.0.1", 0);
  const struct rt_counters *ca = rt_counters(&e->ta), *cb = rt_counters(&e->tb);
  print_message("relay: held after %llu MiB; pauses a=%llu b=%llu; queue max a=%llu b=%llu; raft a queued %llu\n",
                (unsigned long long)(e->held_at >> 20), (unsigned long long)ca->relay_pauses,
                (unsigned long long)cb->relay_pauses, (unsigned long long)ca->relay_queue_max,
                (unsigned long long)cb->relay_queue_max, (unsigned long long)e->a_queue_held);
  assert_false(e->failed_connect);
  assert_false(e->mismatch);
  assert_true(e->held_at > 0); /* both directions paused before SEND_CAP */
  assert_int_equal(e->received, e->sent);
  /* each direction stopped near the mark: no unbounded buffering (slack: the frames of one read) */
  assert_true(ca->relay_queue_max <= RT_QUEUE_HIGH + 4 * CHUNK);
  assert_true(cb->relay_queue_max <= RT_QUEUE_HIGH + 4 * CHUNK);
  assert_true(ca->relay_queue_max > RT_QUEUE_HIGH && cb->relay_queue_max > RT_QUEUE_HIGH);
  assert_true(e->a_queue_held > 0); /* the sender's own stream was held back */
  assert_int_equal(ca->connected, 1);
  assert_int_equal(cb->accepted, 1);
  free_relay(e);
  free(e);
}

static void test_relay_ipv6(void **state) {
  (void)state;
  if (free_tcp_port(AF_INET6) < 0) {
    print_message("no IPv6 loopback: skipped\n");
    skip();
  }
  struct relay_env *e = calloc(1, sizeof *e);
  run_relay(e, AF_INET6, "[::1]", 4u << 20);
  assert_false(e->failed_connect);
  assert_false(e->mismatch);
  assert_int_equal(e->received, 4u << 20);
  assert_int_equal(rt_counters(&e->tb)->accepted, 1);
  free_relay(e);
  free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_apply_replicates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_to_lagging_server, setup, teardown),
      cmocka_unit_test_setup_teardown(test_leader_loss_idempotent_retry, setup, teardown),
      cmocka_unit_test(test_pick_removal), cmocka_unit_test(test_pick_removal_left),
      cmocka_unit_test(test_desired_voters),
      cmocka_unit_test(test_parse_addr),
      cmocka_unit_test(test_relay_backpressure),
      cmocka_unit_test(test_relay_ipv6),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
