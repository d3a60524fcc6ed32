/* libraft FSM callbacks over cluster/fsm: apply with the log index, snapshot and restore as JSON. */
#include "cluster/raft_fsm.h"

#include <string.h>

#include "core/log.h"

static int apply_cb(struct raft_fsm *rf, const struct raft_buffer *buf, void **result) {
  struct craft_fsm *cf = rf->data;
  /* libraft sets last_applied after this returns: this entry is the next one. */
  uint64_t index = raft_last_applied(cf->raft) + 1;
  struct fsm_result res;
  fsm_apply(cf->fsm, index, buf->base, buf->len, &res);
  if (cf->on_result) cf->on_result(cf->arg, index, &res);
  *result = NULL;
  return 0;
}

static int snapshot_cb(struct raft_fsm *rf, struct raft_buffer *bufs[], unsigned *n_bufs) {
  struct craft_fsm *cf = rf->data;
  struct buf b = {0};
  fsm_snapshot(cf->fsm, &b);
  struct raft_buffer *out = raft_malloc(sizeof *out);
  void *data = raft_malloc(b.len ? b.len : 1);
  if (!out || !data) {
    raft_free(out);
    raft_free(data);
    buf_free(&b);
    return RAFT_NOMEM;
  }
  memcpy(data, b.base, b.len);
  out->base = data;
  out->len = b.len;
  buf_free(&b);
  *bufs = out;
  *n_bufs = 1;
  return 0;
}

static int restore_cb(struct raft_fsm *rf, struct raft_buffer *buf) {
  struct craft_fsm *cf = rf->data;
  char err[200];
  int rc = fsm_restore(cf->fsm, buf->base, buf->len, err, sizeof err);
  if (rc != 0) {
    log_error("raft snapshot refused", "err=\"%s\"", err);
    return RAFT_MALFORMED;
  }
  raft_free(buf->base); /* ours on success */
  if (cf->on_restore) cf->on_restore(cf->arg);
  return 0;
}

void craft_fsm_init(struct raft_fsm *rf, struct craft_fsm *cf) {
  memset(rf, 0, sizeof *rf);
  rf->version = 1;
  rf->data = cf;
  rf->apply = apply_cb;
  rf->snapshot = snapshot_cb;
  rf->restore = restore_cb;
}
