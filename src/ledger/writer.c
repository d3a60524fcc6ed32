/* The ledger's writer thread: group commit of usage records to the journal, SQLite filled from it off the
 * request path, outcomes handed back to the loop by uv_async. */
#include "ledger/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "ledger/db.h"
#include "ledger/journal.h"

/* Records queued beyond this are dropped (and counted) while the disk refuses them: memory stays bounded. */
#define MAX_QUEUED (1 << 20)
#define BATCH_MAX 4096
#define RETRY_MS 200
#define FILL_MAX 8192          /* records moved into SQLite per transaction (one step) */
#define FILL_READ (1u << 20)   /* journal bytes read per pread */
#define IDLE_MS 20             /* the queue empty this long: fill SQLite */
#define FILL_BOUND (64u << 20) /* bytes not yet in SQLite beyond which filling runs under load too */
#define FILL_LAG_MS 1000       /* ... or once the oldest of them waited this long (queries, the outbox) */
#define TRUNCATE_AT (4u << 20) /* a journal wholly in SQLite and this large starts again from 0 */

struct item {
  struct ledger_record rec; /* a sync request: rec.seq is the last record it waits for (0: not yet known) */
  ledger_done_cb cb;
  void *arg;
};

struct queue {
  struct item *v;
  int n, cap;
};

/* An outcome for the loop: who to tell, and what. */
struct answer {
  ledger_done_cb cb;
  void *arg;
  int status;
};

struct answers {
  struct answer *v;
  int n, cap;
};

struct ledger_writer {
  uv_loop_t *loop;
  uv_async_t async;
  uv_prepare_t handoff; /* once per loop turn, before it blocks: local goes to the thread in one lock */
  struct queue local;   /* loop thread only: submitted this turn */
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cond;
  struct ledger_db *db;
  struct queue pending, syncs;   /* under mu */
  struct answers done;           /* under mu */
  bool stopping;                 /* under mu: ledger_writer_close was called */
  bool thread_done;              /* under mu: the thread has left; done holds everything */
  struct ledger_writer_stats st; /* under mu */
  void (*close_cb)(void *);
  void *close_arg;
  /* Writer thread only (and start, before it runs). */
  int jfd;
  uint64_t end_off, filled_off; /* journal bytes written; of those, in SQLite */
  uint64_t unfilled_since_ms;   /* when the oldest record not yet in SQLite was written (uv_hrtime) */
  int64_t next_seq, appended_seq, filled_seq;
  uint8_t *jbuf, *rbuf;
  size_t jbuf_cap;
  struct ledger_record *fill;
};

static void push(struct queue *q, const struct item *it) {
  if (q->n == q->cap) q->v = xrealloc(q->v, (size_t)(q->cap = q->cap ? q->cap * 2 : 64) * sizeof *q->v);
  q->v[q->n++] = *it;
}

/* tell queues the outcome of it for the loop (when someone waits for it). Under mu. */
static void tell(struct answers *a, const struct item *it, int status) {
  if (!it->cb) return;
  if (a->n == a->cap) a->v = xrealloc(a->v, (size_t)(a->cap = a->cap ? a->cap * 2 : 64) * sizeof *a->v);
  a->v[a->n++] = (struct answer){it->cb, it->arg, status};
}

/* Moves up to max items from the front of q into out (out->n = 0 first); all of them by swapping the arrays.
 */
static void take(struct queue *q, struct queue *out, int max) {
  if (q->n <= max) {
    struct queue t = *out;
    *out = *q;
    *q = t;
    q->n = 0;
    return;
  }
  int k = max;
  out->n = 0;
  for (int i = 0; i < k; i++)
    push(out, &q->v[i]);
  memmove(q->v, q->v + k, (size_t)(q->n - k) * sizeof *q->v);
  q->n -= k;
}

/* ---- the journal ---- */

/* write_all writes buf[0, len) to fd (retrying short writes and EINTR): 0 or a negative errno. */
static int write_all(int fd, const uint8_t *buf, size_t len) {
  while (len) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* append gives batch's records their seqs and writes them to the journal with one write: 0, or a negative
 * errno with err (a partial write is cut off again, so the journal ends where it did). */
static int append(struct ledger_writer *w, struct queue *batch, char *err, size_t errlen) {
  size_t need = (size_t)batch->n * JOURNAL_ENTRY_MAX;
  if (w->jbuf_cap < need) w->jbuf = xrealloc(w->jbuf, w->jbuf_cap = need);
  size_t len = 0;
  for (int i = 0; i < batch->n; i++) {
    batch->v[i].rec.seq = w->next_seq + i;
    len += journal_encode(&batch->v[i].rec, w->jbuf + len, JOURNAL_ENTRY_MAX);
  }
  int rc = write_all(w->jfd, w->jbuf, len);
  if (rc != 0) {
    snprintf(err, errlen, "ledger: journal write: %s", strerror(-rc));
    if (ftruncate(w->jfd, (off_t)w->end_off) != 0)
      log_warn("ledger: cannot cut a partial journal write", "err=\"%s\"", strerror(errno));
    return rc;
  }
  w->next_seq += batch->n;
  w->appended_seq = w->next_seq - 1;
  if (w->end_off == w->filled_off) w->unfilled_since_ms = uv_hrtime() / 1000000u;
  w->end_off += len;
  return 0;
}

/* fill_step moves up to FILL_MAX journal records past filled_off into SQLite in one transaction and, once all
 * are in and the journal is large, empties the journal. 0, or a negative code with err. */
static int fill_step(struct ledger_writer *w, char *err, size_t errlen) {
  int n = 0;
  uint64_t off = w->filled_off;
  while (n < FILL_MAX && off < w->end_off) {
    size_t want = w->end_off - off < FILL_READ ? (size_t)(w->end_off - off) : FILL_READ;
    ssize_t got = pread(w->jfd, w->rbuf, want, (off_t)off);
    if (got <= 0) {
      snprintf(err, errlen, "ledger: journal read: %s", got < 0 ? strerror(errno) : "short file");
      return -EIO;
    }
    size_t pos = 0, used;
    while (n < FILL_MAX && journal_decode(w->rbuf + pos, (size_t)got - pos, &w->fill[n], &used) == 0) {
      pos += used;
      n++;
    }
    if (pos == 0 && n > 0) break; /* store what came before; the next step meets this entry first */
    if (pos == 0) {
      snprintf(err, errlen, "ledger: the journal entry at byte %llu is damaged", (unsigned long long)off);
      return -EIO;
    }
    off += pos;
  }
  if (n > 0) {
    int rc = ledger_db_insert(w->db, w->fill, n, err, errlen);
    if (rc != 0) return rc;
    w->filled_seq = w->fill[n - 1].seq;
  }
  w->filled_off = off;
  if (w->filled_off == w->end_off && w->end_off >= TRUNCATE_AT && ftruncate(w->jfd, 0) == 0)
    w->filled_off = w->end_off = 0;
  return 0;
}

/* answer_syncs gives each sync request the last record it waits for, and hands those satisfied (or, when
 * filling failed, all with rc) to the loop. Under mu. */
static void answer_syncs(struct ledger_writer *w, int rc) {
  int keep = 0;
  for (int i = 0; i < w->syncs.n; i++) {
    struct item *s = &w->syncs.v[i];
    if (s->rec.seq == 0) s->rec.seq = w->appended_seq > 0 ? w->appended_seq : -1;
    if (rc == 0 && s->rec.seq > w->filled_seq) {
      w->syncs.v[keep++] = *s;
      continue;
    }
    tell(&w->done, s, rc);
  }
  w->syncs.n = keep;
}

/* commit_batch appends a batch and answers its submitters; on failure the records stay queued (at the front)
 * and are retried after RETRY_MS (at once when stopping). Called and returns with mu held; 0 or the error. */
static int commit_batch(struct ledger_writer *w, struct queue *batch) {
  char err[256];
  take(&w->pending, batch, BATCH_MAX);
  uv_mutex_unlock(&w->mu);
  int rc = append(w, batch, err, sizeof err);
  uv_mutex_lock(&w->mu);
  if (rc == 0) {
    w->st.committed += (uint64_t)batch->n;
    w->st.batches++;
    for (int i = 0; i < batch->n; i++)
      tell(&w->done, &batch->v[i], 0);
    uv_async_send(&w->async);
    return 0;
  }
  /* Tell the submitters, keep the records at the front for the next try, and wait a little. */
  w->st.failures++;
  log_warn("ledger: commit failed; records kept and retried", "records=%d err=\"%s\"", batch->n, err);
  struct queue keep = {0};
  for (int i = 0; i < batch->n; i++) {
    tell(&w->done, &batch->v[i], rc);
    batch->v[i].cb = NULL; /* the retry is silent */
    push(&keep, &batch->v[i]);
  }
  for (int i = 0; i < w->pending.n; i++) {
    if (keep.n < MAX_QUEUED) {
      push(&keep, &w->pending.v[i]);
      continue;
    }
    w->st.dropped++; /* over the bound: dropped, and its submitter told (it must not wait forever) */
    tell(&w->done, &w->pending.v[i], -ENOBUFS);
  }
  free(w->pending.v);
  w->pending = keep;
  uv_async_send(&w->async);
  if (w->stopping) return rc; /* that was the last try */
  uv_mutex_unlock(&w->mu);
  uv_sleep(RETRY_MS);
  uv_mutex_lock(&w->mu);
  return rc;
}

/* fill_once runs one fill step and answers the sync requests it satisfied. Called and returns with mu held.
 */
static void fill_once(struct ledger_writer *w) {
  char err[256];
  uv_mutex_unlock(&w->mu);
  int rc = fill_step(w, err, sizeof err);
  uv_mutex_lock(&w->mu);
  if (rc != 0) {
    w->st.failures++;
    log_warn("ledger: filling SQLite from the journal failed; retried", "err=\"%s\"", err);
  }
  w->st.filled_seq = (uint64_t)w->filled_seq;
  w->st.unfilled_bytes = w->end_off - w->filled_off;
  answer_syncs(w, rc);
  uv_async_send(&w->async);
  if (rc != 0 && !w->stopping) {
    uv_mutex_unlock(&w->mu);
    uv_sleep(RETRY_MS);
    uv_mutex_lock(&w->mu);
  }
}

static void thread_main(void *arg) {
  struct ledger_writer *w = arg;
  struct queue batch = {0};
  uv_mutex_lock(&w->mu);
  for (;;) {
    bool unfilled = w->filled_off < w->end_off;
    if (w->pending.n == 0 && w->syncs.n == 0 && !w->stopping) {
      if (!unfilled) {
        uv_cond_wait(&w->cond, &w->mu);
        continue;
      }
      if (uv_cond_timedwait(&w->cond, &w->mu, (uint64_t)IDLE_MS * 1000000u) == 0) continue; /* woken: work */
      fill_once(w); /* idle: move the journal into SQLite */
      continue;
    }
    if (w->pending.n > 0) {
      if (commit_batch(w, &batch) != 0 && w->stopping) break;
      /* Under load, fill anyway once too much or too old waits: queries and the outbox lag at most ~1 s. */
      if (w->end_off - w->filled_off > FILL_BOUND ||
          (w->end_off > w->filled_off && uv_hrtime() / 1000000u - w->unfilled_since_ms >= FILL_LAG_MS))
        fill_once(w);
      continue;
    }
    if (w->syncs.n > 0 && !w->stopping) { /* a reader waits: fill until it is answered */
      answer_syncs(w, 0);
      if (w->syncs.n > 0)
        fill_once(w);
      else
        uv_async_send(&w->async);
      continue;
    }
    /* Stopping with nothing queued: SQLite gets the rest of the journal, so the file is whole for whoever
     * reads it next (on failure the journal keeps it for the next start). */
    uint64_t before = w->filled_off;
    if (w->filled_off < w->end_off) fill_once(w);
    if (w->filled_off < w->end_off && w->filled_off != before) continue;
    if (w->filled_off == w->end_off && w->end_off > 0 && ftruncate(w->jfd, 0) == 0)
      w->filled_off = w->end_off = 0;
    break;
  }
  /* Anything still queued when stopping is answered: it was not committed. */
  for (int i = 0; i < w->pending.n; i++)
    tell(&w->done, &w->pending.v[i], -ESHUTDOWN);
  w->pending.n = 0;
  answer_syncs(w, -ESHUTDOWN);
  w->thread_done = true;
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
  free(batch.v);
}

static void closed_cb(uv_handle_t *h) {
  struct ledger_writer *w = h->data;
  void (*cb)(void *) = w->close_cb;
  void *arg = w->close_arg;
  uv_mutex_destroy(&w->mu);
  uv_cond_destroy(&w->cond);
  free(w->pending.v);
  free(w->done.v);
  free(w->syncs.v);
  free(w->local.v);
  free(w->jbuf);
  free(w->rbuf);
  free(w->fill);
  free(w);
  if (cb) cb(arg);
}

static void handoff_closed_cb(uv_handle_t *h) {
  struct ledger_writer *w = h->data;
  uv_close((uv_handle_t *)&w->async, closed_cb);
}

static void async_cb(uv_async_t *a) {
  struct ledger_writer *w = a->data;
  uv_mutex_lock(&w->mu);
  struct answers done = w->done;
  w->done = (struct answers){0};
  bool finished = w->thread_done && w->stopping;
  uv_mutex_unlock(&w->mu);
  for (int i = 0; i < done.n; i++)
    done.v[i].cb(done.v[i].arg, done.v[i].status);
  free(done.v);
  if (finished && !uv_is_closing((uv_handle_t *)&w->async)) {
    uv_thread_join(&w->thread);
    ledger_db_close(w->db);
    w->db = NULL;
    if (w->jfd >= 0) close(w->jfd);
    w->jfd = -1;
    uv_close((uv_handle_t *)&w->async, closed_cb);
  }
}

/* recover opens the journal next to the ledger, moves every whole entry into SQLite (once: by seq), cuts off
 * a torn or damaged tail and empties it; next_seq follows the highest seq stored. 0 or a negative code with
 * err. */
static int recover(struct ledger_writer *w, const char *path, char *err, size_t errlen) {
  char jpath[640];
  if (journal_path(path, jpath, sizeof jpath) != 0) {
    snprintf(err, errlen, "ledger: journal path too long");
    return -ENAMETOOLONG;
  }
  w->jfd = open(jpath, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (w->jfd < 0) {
    snprintf(err, errlen, "ledger: cannot open %s: %s", jpath, strerror(errno));
    return -errno;
  }
  off_t size = lseek(w->jfd, 0, SEEK_END);
  w->end_off = size > 0 ? (uint64_t)size : 0;
  w->filled_off = 0;
  uint64_t recovered = 0;
  while (w->filled_off < w->end_off) {
    uint64_t before = w->filled_off;
    int rc = fill_step(w, err, errlen);
    if (rc == -EIO && strstr(err, "damaged")) { /* a crash mid-write, or damage: keep what came before */
      log_warn("ledger: journal tail cut off", "bytes=%llu at=%llu",
               (unsigned long long)(w->end_off - w->filled_off), (unsigned long long)w->filled_off);
      w->end_off = w->filled_off;
      break;
    }
    if (rc != 0) return rc;
    recovered += w->filled_off - before;
  }
  if (ftruncate(w->jfd, 0) != 0) {
    snprintf(err, errlen, "ledger: cannot empty the journal %s: %s", jpath, strerror(errno));
    return -errno;
  }
  w->end_off = w->filled_off = 0;
  int64_t max = 0;
  int rc = ledger_db_max_seq(w->db, &max, err, errlen);
  if (rc != 0) return rc;
  w->next_seq = max + 1;
  w->appended_seq = w->filled_seq = max;
  if (recovered)
    log_info("ledger: journal moved into SQLite at start", "bytes=%llu", (unsigned long long)recovered);
  return 0;
}

int ledger_writer_start(struct ledger_writer **out, uv_loop_t *loop, const char *path, char *err,
                        size_t errlen) {
  struct ledger_writer *w = xcalloc(1, sizeof *w);
  w->jfd = -1;
  w->rbuf = xmalloc(FILL_READ);
  w->fill = xcalloc(FILL_MAX, sizeof *w->fill);
  int rc = ledger_db_open(&w->db, path, err, errlen);
  if (rc == 0) rc = recover(w, path, err, errlen);
  if (rc != 0) {
    ledger_db_close(w->db);
    if (w->jfd >= 0) close(w->jfd);
    free(w->rbuf);
    free(w->fill);
    free(w);
    return rc;
  }
  w->loop = loop;
  uv_mutex_init(&w->mu);
  uv_cond_init(&w->cond);
  uv_async_init(loop, &w->async, async_cb);
  w->async.data = w;
  uv_prepare_init(loop, &w->handoff);
  w->handoff.data = w;
  if ((rc = uv_thread_create(&w->thread, thread_main, w)) != 0) {
    snprintf(err, errlen, "ledger: cannot start the writer thread: %s", uv_strerror(rc));
    ledger_db_close(w->db);
    w->db = NULL;
    close(w->jfd);
    w->jfd = -1;
    uv_close((uv_handle_t *)&w->handoff, handoff_closed_cb); /* then the async handle, which frees w */
    return rc;
  }
  *out = w;
  return 0;
}

/* handoff_cb moves the records submitted during this loop turn to the thread: one lock and one wake-up per
 * turn, however many requests ended in it. Over MAX_QUEUED (the disk refusing them for long) or after close
 * began, records are answered at once instead. */
static void handoff_cb(uv_prepare_t *h) {
  struct ledger_writer *w = h->data;
  uv_prepare_stop(h);
  if (w->local.n == 0) return;
  uv_mutex_lock(&w->mu);
  if (w->pending.n == 0 && !w->stopping &&
      w->local.n <= MAX_QUEUED) { /* the usual case: hand the array over */
    take(&w->local, &w->pending, w->local.n);
    uv_cond_signal(&w->cond);
    uv_mutex_unlock(&w->mu);
    return;
  }
  for (int i = 0; i < w->local.n; i++) {
    struct item *it = &w->local.v[i];
    if (w->stopping || w->pending.n >= MAX_QUEUED) {
      w->st.dropped += !w->stopping;
      tell(&w->done, it, w->stopping ? -ESHUTDOWN : -ENOBUFS);
    } else {
      push(&w->pending, it);
    }
  }
  bool answered = w->stopping || w->done.n > 0;
  w->local.n = 0;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->mu);
  if (answered) uv_async_send(&w->async);
}

/* answer_now hands it to the loop at once with status, and unlocks mu. */
static void answer_now(struct ledger_writer *w, struct item *it, int status) {
  tell(&w->done, it, status);
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
}

void ledger_writer_submit(struct ledger_writer *w, const struct ledger_record *rec, ledger_done_cb cb,
                          void *arg) {
  if (w->local.n == 0) uv_prepare_start(&w->handoff, handoff_cb);
  push(&w->local, &(struct item){.rec = *rec, .cb = cb, .arg = arg});
}

void ledger_writer_sync(struct ledger_writer *w, ledger_done_cb cb, void *arg) {
  struct item it = {.cb = cb, .arg = arg};
  uv_mutex_lock(&w->mu);
  if (w->stopping) {
    answer_now(w, &it, -ESHUTDOWN);
    return;
  }
  push(&w->syncs, &it);
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
  handoff_cb(&w->handoff); /* what this turn submitted is committed with the rest */
  uv_close((uv_handle_t *)&w->handoff, NULL);
  uv_mutex_lock(&w->mu);
  w->stopping = true;
  w->close_cb = cb;
  w->close_arg = arg;
  uv_cond_signal(&w->cond);
  uv_mutex_unlock(&w->mu);
  uv_async_send(&w->async);
}
