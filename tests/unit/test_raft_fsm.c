/* The state machine under real libraft (raft/fixture.h: in-memory I/O, virtual time): replication, snapshots
 * sent to a lagging server, and a leader lost mid-command with an idempotent retry on the next leader. */
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

#include "cluster/fsm.h"
#include "cluster/raft_fsm.h"

#define N 3

struct node {
  struct fsm *fsm;
  struct raft_fsm rf;
  struct craft_fsm cf;
  uint64_t last_index;
  struct fsm_result last;
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

static int setup(void **state) {
  struct env *e = calloc(1, sizeof *e);
  struct raft_configuration conf;
  if (raft_fixture_initialize(&e->fx) != 0) return -1;
  for (int i = 0; i < N; i++) {
    struct node *n = &e->nodes[i];
    n->fsm = fsm_new();
    n->cf = (struct craft_fsm){n->fsm, NULL, on_result, n};
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_apply_replicates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_snapshot_to_lagging_server, setup, teardown),
      cmocka_unit_test_setup_teardown(test_leader_loss_idempotent_retry, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
