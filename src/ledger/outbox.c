/* The PostgreSQL outbox: read unsent records from SQLite, insert them in PostgreSQL (ON CONFLICT DO NOTHING),
 * then move the SQLite position; reconnect with backoff while PostgreSQL is down. */
#include "ledger/outbox.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/log.h"
#include "ledger/db.h"
#include "ledger/pg.h"

#define BATCH 512
#define POLL_MS 250
#define BACKOFF_MAX_MS 5000

struct ledger_outbox {
  char sqlite_path[600], conninfo[1024], node[96];
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cond;
  bool stop, kicked;             /* under mu */
  struct ledger_outbox_stats st; /* under mu */
  PGconn *pg;                    /* thread only */
  struct ledger_record *batch;   /* thread only */
};

static void pg_close(struct ledger_outbox *o) {
  if (o->pg) PQfinish(o->pg);
  o->pg = NULL;
}

static int pg_connect(struct ledger_outbox *o, char *err, size_t errlen) {
  return ledger_pg_connect(&o->pg, o->conninfo, err, errlen);
}

#define NCOLS 21

/* One multi-row INSERT of recs[0..n) (ON CONFLICT DO NOTHING: a resend after a crash is stored once). */
static int pg_send(struct ledger_outbox *o, const struct ledger_record *recs, int n, char *err,
                   size_t errlen) {
  static char text[BATCH][NCOLS][40];
  const char **vals = xcalloc((size_t)n * NCOLS, sizeof *vals);
  struct buf sql = {0};
  buf_puts(
      &sql,
      "INSERT INTO infermesh_usage(node, seq, request_id, ts_ms, tenant, model, ingress, serving, target,"
      " provider, prompt_tokens, cached_tokens, completion_tokens, ttft_ms, duration_ms, status, retried,"
      " hedged, cost_nano, contribution_nano, currency) VALUES ");
  for (int i = 0; i < n; i++) {
    const struct ledger_record *r = &recs[i];
    const char **v = vals + (size_t)i * NCOLS;
    char(*t)[40] = text[i];
    snprintf(t[1], 40, "%lld", (long long)r->seq);
    snprintf(t[3], 40, "%lld", (long long)r->ts_ms);
    snprintf(t[10], 40, "%lld", (long long)r->prompt_tokens);
    snprintf(t[11], 40, "%lld", (long long)r->cached_tokens);
    snprintf(t[12], 40, "%lld", (long long)r->completion_tokens);
    snprintf(t[13], 40, "%.3f", r->ttft_ms);
    snprintf(t[14], 40, "%.3f", r->duration_ms);
    snprintf(t[15], 40, "%d", r->status);
    snprintf(t[18], 40, "%lld", (long long)r->cost_nano);
    snprintf(t[19], 40, "%lld", (long long)r->contribution_nano);
    const char *cols[NCOLS] = {o->node,
                               t[1],
                               r->request_id,
                               t[3],
                               r->tenant,
                               r->model,
                               r->ingress,
                               r->serving,
                               r->target,
                               r->provider,
                               t[10],
                               t[11],
                               t[12],
                               r->ttft_ms < 0 ? NULL : t[13],
                               t[14],
                               t[15],
                               r->retried ? "true" : "false",
                               r->hedged ? "true" : "false",
                               t[18],
                               t[19],
                               r->currency};
    memcpy(v, cols, sizeof cols);
    buf_puts(&sql, i ? ",(" : "(");
    for (int c = 0; c < NCOLS; c++)
      buf_printf(&sql, "%s$%d", c ? "," : "", i * NCOLS + c + 1);
    buf_puts(&sql, ")");
  }
  buf_puts(&sql, " ON CONFLICT (node, seq) DO NOTHING");
  PGresult *res = PQexecParams(o->pg, sql.base, n * NCOLS, NULL, vals, NULL, NULL, 0);
  int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? 0 : -EIO;
  if (rc) snprintf(err, errlen, "%s", PQresultErrorMessage(res));
  PQclear(res);
  buf_free(&sql);
  free(vals);
  return rc;
}

/* One pass: forward what is pending, batch by batch. Returns 0 when all is sent, else a negative code. */
static int pass(struct ledger_outbox *o, struct ledger_db *db, char *err, size_t errlen) {
  for (;;) {
    int n;
    int64_t sent;
    int rc = ledger_db_pending(db, BATCH, o->batch, &n, &sent, err, errlen);
    if (rc != 0 || n == 0) return rc;
    if (!o->pg && (rc = pg_connect(o, err, errlen)) != 0) return rc;
    if ((rc = pg_send(o, o->batch, n, err, errlen)) != 0) {
      pg_close(o); /* a broken connection is rebuilt on the next try */
      return rc;
    }
    /* PostgreSQL has them: move the position. A crash before this line resends them, stored once. */
    if ((rc = ledger_db_mark_sent(db, o->batch[n - 1].seq, err, errlen)) != 0) return rc;
    uv_mutex_lock(&o->mu);
    o->st.forwarded += (uint64_t)n;
    o->st.sent_seq = o->batch[n - 1].seq;
    uv_mutex_unlock(&o->mu);
  }
}

static void thread_main(void *arg) {
  struct ledger_outbox *o = arg;
  struct ledger_db *db = NULL;
  char err[512];
  int backoff = 0;
  bool warned = false;
  uv_mutex_lock(&o->mu);
  for (;;) {
    bool stopping = o->stop;
    o->kicked = false;
    uv_mutex_unlock(&o->mu);
    if (stopping && !o->pg) { /* no last pass without PostgreSQL: the records wait in SQLite */
      uv_mutex_lock(&o->mu);
      break;
    }
    int rc = db ? 0 : ledger_db_open(&db, o->sqlite_path, err, sizeof err);
    if (rc == 0) rc = pass(o, db, err, sizeof err);
    uv_mutex_lock(&o->mu);
    o->st.connected = o->pg != NULL;
    if (rc != 0) {
      o->st.failures++;
      if (!warned)
        log_warn("ledger outbox: records wait in SQLite until PostgreSQL answers", "err=\"%.*s\"",
                 (int)strcspn(err, "\n"), err);
      warned = true;
      backoff = backoff ? (backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2) : 200;
    } else {
      if (warned)
        log_info("ledger outbox: PostgreSQL answers again", "sent_seq=%lld", (long long)o->st.sent_seq);
      warned = false;
      backoff = 0;
    }
    if (stopping) break;
    if (!o->kicked && !o->stop)
      uv_cond_timedwait(&o->cond, &o->mu, (uint64_t)(backoff ? backoff : POLL_MS) * 1000000);
  }
  uv_mutex_unlock(&o->mu);
  pg_close(o);
  ledger_db_close(db);
}

int ledger_outbox_start(struct ledger_outbox **out, const char *sqlite_path, const char *conninfo,
                        const char *node, char *err, size_t errlen) {
  struct ledger_outbox *o = xcalloc(1, sizeof *o);
  struct ledger_db *probe;
  int rc = ledger_db_open(&probe, sqlite_path, err, errlen); /* fail now, not in the thread */
  if (rc != 0) {
    free(o);
    return rc;
  }
  ledger_db_close(probe);
  str_copy(o->sqlite_path, sizeof o->sqlite_path, sqlite_path);
  str_copy(o->conninfo, sizeof o->conninfo, conninfo);
  str_copy(o->node, sizeof o->node, node);
  o->batch = xcalloc(BATCH, sizeof *o->batch);
  uv_mutex_init(&o->mu);
  uv_cond_init(&o->cond);
  if ((rc = uv_thread_create(&o->thread, thread_main, o)) != 0) {
    snprintf(err, errlen, "ledger outbox: cannot start its thread: %s", uv_strerror(rc));
    uv_mutex_destroy(&o->mu);
    uv_cond_destroy(&o->cond);
    free(o->batch);
    free(o);
    return rc;
  }
  *out = o;
  return 0;
}

void ledger_outbox_kick(struct ledger_outbox *o) {
  uv_mutex_lock(&o->mu);
  o->kicked = true;
  uv_cond_signal(&o->cond);
  uv_mutex_unlock(&o->mu);
}

void ledger_outbox_stats(struct ledger_outbox *o, struct ledger_outbox_stats *out) {
  uv_mutex_lock(&o->mu);
  *out = o->st;
  uv_mutex_unlock(&o->mu);
}

void ledger_outbox_stop(struct ledger_outbox *o) {
  uv_mutex_lock(&o->mu);
  o->stop = true;
  uv_cond_signal(&o->cond);
  uv_mutex_unlock(&o->mu);
  uv_thread_join(&o->thread);
  uv_mutex_destroy(&o->mu);
  uv_cond_destroy(&o->cond);
  free(o->batch);
  free(o);
}
