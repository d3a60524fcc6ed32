/* libFuzzer target for cluster/fsm: the replicated state machine's command and snapshot parsers, which read
 * bytes that arrive from the network (control API writes, the Raft log, snapshots installed by a leader).
 *
 * Each input is used
 *   - as one command, and line by line as a sequence of commands, applied to a fresh FSM: apply never
 *     crashes, the index becomes exactly the given one after every apply, a status is 0 or a negative errno;
 *     the snapshot taken afterwards restores into a fresh FSM whose snapshot is byte-identical; a refused
 *     restore leaves the FSM unchanged;
 *   - as the value of fsm_cmd_encode (the control API's check before proposing), with op and kind from the
 *     first byte: an accepted put must then apply with status 0 on a fresh FSM (same checks as apply);
 *   - as a snapshot given to fsm_restore: accepted or refused (-EINVAL, message set), never a crash; an
 *     accepted one snapshots to a fixed point (snapshot -> restore -> snapshot is byte-identical).
 * Everything is freed (LeakSanitizer). Inputs are copied to exact-size allocations so ASan sees overreads. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/fsm.h"
#include "core/buf.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool status_ok(int s) { return s == 0 || s == -EINVAL || s == -ENOENT || s == -EEXIST || s == -ENOSPC; }

static void apply_checked(struct fsm *f, const void *cmd, size_t len) {
  uint64_t next = fsm_index(f) + 1;
  struct fsm_result res;
  fsm_apply(f, next, cmd, len, &res);
  CHECK(fsm_index(f) == next);
  CHECK(status_ok(res.status));
  CHECK(memchr(res.msg, '\0', sizeof res.msg) != NULL);
  if (res.duplicate)
    CHECK(res.index < next);
  else
    CHECK(res.index == next);
  if (res.status != 0) CHECK(res.msg[0] != '\0');
}

/* snapshot(f) restores into a fresh FSM that snapshots to the same bytes. */
static void check_roundtrip(const struct fsm *f) {
  struct buf a = {0}, b = {0};
  fsm_snapshot(f, &a);
  struct fsm *g = fsm_new();
  char err[256] = "";
  int rc = fsm_restore(g, a.base, a.len, err, sizeof err);
  if (rc != 0) fprintf(stderr, "restore of own snapshot failed: %s\n%.*s\n", err, (int)a.len, a.base);
  CHECK(rc == 0);
  CHECK(fsm_index(g) == fsm_index(f));
  fsm_snapshot(g, &b);
  if (a.len != b.len || memcmp(a.base, b.base, a.len) != 0)
    fprintf(stderr, "snapshot differs after restore:\n%.*s\n%.*s\n", (int)a.len, a.base, (int)b.len, b.base);
  CHECK(a.len == b.len && memcmp(a.base, b.base, a.len) == 0);
  for (int k = 0; k < FSM_NKINDS; k++) CHECK(fsm_count(g, (enum fsm_kind)k) == fsm_count(f, (enum fsm_kind)k));
  fsm_free(g);
  buf_free(&a);
  buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0;
  uint8_t *b = malloc(size ? size : 1);
  memcpy(b, data, size);

  /* 1. The whole input as one command, then line by line as a sequence. */
  struct fsm *f = fsm_new();
  CHECK(fsm_index(f) == 0);
  apply_checked(f, b, size);
  size_t start = 0;
  for (size_t i = 0; i <= size; i++) {
    if (i == size || b[i] == '\n') {
      size_t n = i - start;
      uint8_t *line = malloc(n ? n : 1);
      memcpy(line, b + start, n);
      apply_checked(f, line, n);
      free(line);
      start = i + 1;
    }
  }
  check_roundtrip(f);

  /* A refused restore leaves f unchanged; an accepted one reaches a snapshot fixed point. */
  struct buf before = {0}, after = {0};
  fsm_snapshot(f, &before);
  char err[256] = "";
  int rc = fsm_restore(f, b, size, err, sizeof err);
  CHECK(rc == 0 || rc == -EINVAL);
  if (rc != 0) {
    CHECK(err[0] != '\0');
    fsm_snapshot(f, &after);
    CHECK(before.len == after.len && memcmp(before.base, after.base, before.len) == 0);
  } else {
    check_roundtrip(f);
    /* It keeps working: one more command advances the index by one. */
    apply_checked(f, "{}", 2);
  }
  buf_free(&before);
  buf_free(&after);
  fsm_free(f);

  /* 2. The control API's pre-proposal check: byte 0 picks op and kind, the rest is the value. */
  if (size >= 1) {
    enum fsm_op op = (enum fsm_op)(b[0] & 3);
    enum fsm_kind kind = (enum fsm_kind)((b[0] >> 2) % FSM_NKINDS);
    char *value = malloc(size);
    memcpy(value, b + 1, size - 1);
    value[size - 1] = '\0';
    struct buf cmd = {0};
    char e2[256] = "";
    rc = fsm_cmd_encode(&cmd, "fuzz-1", op, kind, "model-a", op == FSM_OP_DELETE ? NULL : value, 1800000000, e2,
                        sizeof e2);
    CHECK(rc == 0 || rc == -EINVAL);
    if (rc == 0) {
      struct fsm *g = fsm_new();
      struct fsm_result res;
      fsm_apply(g, 1, cmd.base, cmd.len, &res);
      CHECK(fsm_index(g) == 1);
      if (op == FSM_OP_PUT || op == FSM_OP_CREATE) {
        if (res.status != 0) fprintf(stderr, "encoded %.*s refused: %s\n", (int)cmd.len, cmd.base, res.msg);
        CHECK(res.status == 0);
        CHECK(fsm_count(g, kind) == 1);
        /* A merge of the same value onto it is accepted too. */
        struct buf m = {0};
        char e3[256];
        if (fsm_cmd_encode(&m, "fuzz-2", FSM_OP_MERGE, kind, "model-a", value, 1800000001, e3, sizeof e3) == 0) {
          fsm_apply(g, 2, m.base, m.len, &res);
          if (res.status != 0) fprintf(stderr, "encoded merge %.*s refused: %s\n", (int)m.len, m.base, res.msg);
          CHECK(res.status == 0);
        }
        buf_free(&m);
      } else {
        CHECK(res.status == -ENOENT);
      }
      check_roundtrip(g);
      fsm_free(g);
    } else {
      CHECK(e2[0] != '\0');
    }
    buf_free(&cmd);
    free(value);
  }

  free(b);
  return 0;
}
