/* The ledger's writer thread: group commit of usage records, outcomes handed back to the loop by uv_async. */
#include "ledger/writer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ledger/db.h"

/* Records queued beyond this are dropped (and counted) while the disk refuses them: memory stays bounded. */
#define MAX_QUEUED (1 << 20)
#define BATCH_MAX 4096
#define RETRY_MS 200

struct item {
  struct ledger_record rec;
  ledger_done_cb cb;
  void *arg;
  int status;
};

struct queue {
  struct item *v;
  int n, cap;
};

struct ledger_writer {
  uv_loop_t *loop;
  uv_async_t async;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cond;
  struct ledger_db *db;
  struct queue pending, done;    /* under mu */
  bool stopping;                 /* under mu: ledger_writer_close was called */
  bool thread_done;              /* under mu: the thread has left; done holds everything */
  struct ledger_writer_stats st; /* under mu */
  void (*close_cb)(void *);
  void *close_arg;
};

static void push(struct queue *q, const struct item *it) {
  if (q->n == q->cap) q->v = xrealloc(q->v, (size_t)(q->cap = q->cap ? q->cap * 2 : 64) * sizeof *q->v);
  q->v[q->n++] = *it;
}

/* Moves up to max items from the front of q into out (out->n = 0 first). */
static void take(struct queue *q, struct queue *out, int max) {
  int k = q->n < max ? q->n : max;
  out->n = 0;
  for (int i = 0; i < k; i++)
    push(out, &q->v[i]);
  memmove(q->v, q->v + k, (size_t)(q->n - k) * sizeof *q->v);
  q->n -= k;
}

static void thread_main(void *arg) {
  struct ledger_writer *w = arg;
  struct queue batch = {0};
  struct ledger_record *recs = xcalloc(BATCH_MAX, sizeof *recs);
  char err[256];
  uv_mutex_lock(&w->mu);
  for (;;) {
    while (w->pending.n == 0 && !w->stopping)
      uv_cond_wait(&w->cond, &w->mu);
    if (w->pending.n == 0) break;
    take(&w->pending, &batch, BATCH_MAX);
    uv_mutex_unlock(&w->mu);
    for (int i = 0; i < batch.n; i++)
      recs[i] = batch.v[i].rec;
    int rc = ledger_db_insert(w->db, recs, batch.n, err, sizeof err);
    uv_mutex_lock(&w->mu);
    if (rc == 0) {
      w->st.committed += (uint64_t)batch.n;
      w->st.batches++;
      for (int i = 0; i < batch.n; i++) {
        batch.v[i].status = 0;
        push(&w->done, &batch.v[i]);
      }
    } else {
      /* Tell the submitters, keep the records at the front for the next try, and wait a little. */
      w->st.failures++;
      log_warn("ledger: commit failed; records kept and retried", "records=%d err=\"%s\"", batch.n, err);
      struct queue keep = {0};
      for (int i = 0; i < batch.n; i++) {
        struct item notify = batch.v[i];
        notify.status = rc;
        if (notify.cb) push(&w->done, &notify);
        batch.v[i].cb = NULL; /* the retry is silent */
        push(&keep, &batch.v[i]);
      }
      for (int i = 0; i < w->pending.n; i++) {
        if (keep.n < MAX_QUEUED) {
          push(&keep, &w->pending.v[i]);
          continue;
        }
        w->st.dropped++; /* over the bound: dropped, and its submitter told (it must not wait forever) */
        if (w->pending.v[i].cb) {
          w->pending.v[i].status = -ENOBUFS;
          push(&w->done, &w->pending.v[i]);
        }
      }
      free(w->pending.v);
      w->pending = keep;
      uv_async_send(&w->async);
      if (w->stopping) break; /* one last try on close */
      uv_mutex_unlock(&w->mu);
      uv_sleep(RETRY_MS);
      uv_mutex_lock(&w->mu);
      continue;
    }
    uv_async_send(&w->async);
  }
  /* Anything still queued when stopping is answered: it was not committed. */
  for (int i = 0; i < w->pending.n; i++)
    if (w->pending.v[i].cb) {
      w->pending.v[i].status = -ESHUTDOWN;
      push(&w->done, &w->pending.v[i]);
    }
  w->pending.n = 0;
  w->thread_done = true;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
  free(batch.v);
  free(recs);
}

static void closed_cb(uv_handle_t *h) {
  struct ledger_writer *w = h->data;
  void (*cb)(void *) = w->close_cb;
  void *arg = w->close_arg;
  uv_mutex_destroy(&w->mu);
  uv_cond_destroy(&w->cond);
  free(w->pending.v);
  free(w->done.v);
  free(w);
  if (cb) cb(arg);
}

static void async_cb(uv_async_t *a) {
  struct ledger_writer *w = a->data;
  uv_mutex_lock(&w->mu);
  struct queue done = w->done;
  w->done = (struct queue){0};
  bool finished = w->thread_done && w->stopping;
  uv_mutex_unlock(&w->mu);
  for (int i = 0; i < done.n; i++)
    if (done.v[i].cb) done.v[i].cb(done.v[i].arg, done.v[i].status);
  free(done.v);
  if (finished && !uv_is_closing((uv_handle_t *)&w->async)) {
    uv_thread_join(&w->thread);
    ledger_db_close(w->db);
    w->db = NULL;
    uv_close((uv_handle_t *)&w->async, closed_cb);
  }
}

int ledger_writer_start(struct ledger_writer **out, uv_loop_t *loop, const char *path, char *err,
                        size_t errlen) {
  struct ledger_writer *w = xcalloc(1, sizeof *w);
  int rc = ledger_db_open(&w->db, path, err, errlen);
  if (rc != 0) {
    free(w);
    return rc;
  }
  w->loop = loop;
  uv_mutex_init(&w->mu);
  uv_cond_init(&w->cond);
  uv_async_init(loop, &w->async, async_cb);
  w->async.data = w;
  if ((rc = uv_thread_create(&w->thread, thread_main, w)) != 0) {
    snprintf(err, errlen, "ledger: cannot start the writer thread: %s", uv_strerror(rc));
    ledger_db_close(w->db);
    w->db = NULL;
    uv_close((uv_handle_t *)&w->async, closed_cb);
    return rc;
  }
  *out = w;
  return 0;
}

void ledger_writer_submit(struct ledger_writer *w, const struct ledger_record *rec, ledger_done_cb cb,
                          void *arg) {
  struct item it = {.rec = *rec, .cb = cb, .arg = arg};
  uv_mutex_lock(&w->mu);
  if (w->stopping) {
    it.status = -ESHUTDOWN;
    if (cb) push(&w->done, &it);
    uv_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
    return;
  }
  if (w->pending.n >= MAX_QUEUED) {
    w->st.dropped++;
    it.status = -ENOBUFS;
    if (cb) push(&w->done, &it);
    uv_mutex_unlock(&w->mu);
    uv_async_send(&w->async);
    return;
  }
  push(&w->pending, &it);
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->mu);
}

void ledger_writer_stats(struct ledger_writer *w, struct ledger_writer_stats *out) {
  uv_mutex_lock(&w->mu);
  *out = w->st;
  out->queued = (uint64_t)w->pending.n;
  uv_mutex_unlock(&w->mu);
}

void ledger_writer_close(struct ledger_writer *w, void (*cb)(void *arg), void *arg) {
  uv_mutex_lock(&w->mu);
  w->stopping = true;
  w->close_cb = cb;
  w->close_arg = arg;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
}
