/* The ledger's HTTP API: query parameters checked on the loop, the SQLite work on the thread pool. */
#include "api/ledger_api.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/reply.h"
#include "core/alloc.h"
#include "ledger/db.h"
#include "ledger/pg.h"
#include "ledger/writer.h"

enum job_kind { JOB_USAGE, JOB_CONTRIBUTIONS, JOB_PAYOUTS, JOB_SETTLE };

struct job {
  uv_work_t work;
  uv_loop_t *loop;
  struct http_req *req; /* NULL once the client left */
  char path[600], pg[1024];
  enum job_kind kind;
  char tenant[64], model[128], provider[64], batch[64];
  struct ledger_query q;
  bool csv;
  int64_t min_nano, now_ms;
  int rc;
  char err[256];
  struct buf out;
};

/* With PostgreSQL configured, the cluster-wide ledger answers. */
static void work_pg(struct job *j) {
  PGconn *c;
  j->rc = ledger_pg_connect(&c, j->pg, j->err, sizeof j->err);
  if (j->rc != 0) {
    if (j->rc == -ECONNREFUSED) j->rc = -EAGAIN;
    return;
  }
  switch (j->kind) {
  case JOB_USAGE: j->rc = ledger_pg_usage_json(c, &j->q, &j->out, j->err, sizeof j->err); break;
  case JOB_CONTRIBUTIONS: j->rc = ledger_pg_contributions_json(c, &j->out, j->err, sizeof j->err); break;
  case JOB_PAYOUTS:
    j->rc = ledger_pg_payouts(c, j->batch[0] ? j->batch : NULL, j->csv, &j->out, j->err, sizeof j->err);
    break;
  case JOB_SETTLE:
    j->rc = ledger_pg_settle(c, j->min_nano, j->now_ms, j->batch, &j->out, j->err, sizeof j->err);
    break;
  }
  PQfinish(c);
}

static void work_cb(uv_work_t *w) {
  struct job *j = w->data;
  struct ledger_db *db;
  if (j->pg[0]) {
    work_pg(j);
    return;
  }
  j->rc = ledger_db_open(&db, j->path, j->err, sizeof j->err);
  if (j->rc != 0) return;
  switch (j->kind) {
  case JOB_USAGE: j->rc = ledger_db_usage_json(db, &j->q, &j->out, j->err, sizeof j->err); break;
  case JOB_CONTRIBUTIONS: j->rc = ledger_db_contributions_json(db, &j->out, j->err, sizeof j->err); break;
  case JOB_PAYOUTS:
    j->rc = ledger_db_payouts(db, j->batch[0] ? j->batch : NULL, j->csv, &j->out, j->err, sizeof j->err);
    break;
  case JOB_SETTLE:
    j->rc = ledger_db_settle(db, j->min_nano, j->now_ms, j->batch, &j->out, j->err, sizeof j->err);
    break;
  }
  ledger_db_close(db);
}

static void after_cb(uv_work_t *w, int status) {
  struct job *j = w->data;
  if (j->req) {
    j->req->abort_cb = NULL;
    if (status != 0 || j->rc != 0) {
      int code = j->rc == -ENOENT ? 404 : j->rc == -EBUSY || j->rc == -EAGAIN ? 503 : 500;
      api_reply_error(j->req, code, status != 0 ? "the query was cancelled" : j->err,
            code == 404   ? "not_found"
            : code == 503 ? "busy"
                          : "ledger_error");
    } else {
      http_resp_send(j->req,
                     j->kind == JOB_SETTLE && strstr(j->out.base, "\"batch\":null") == NULL ? 201 : 200,
                     j->csv ? "text/csv" : "application/json", j->out.base, j->out.len, NULL, 0);
    }
  }
  buf_free(&j->out);
  free(j);
}

/* synced_cb runs the query once the journal is in SQLite; a failed fill is answered 503 (the records are safe in
 * the journal, the query would miss some). */
static void synced_cb(void *arg, int status) {
  struct job *j = arg;
  if (status == 0) {
    uv_queue_work(j->loop, &j->work, work_cb, after_cb);
    return;
  }
  if (j->req) {
    j->req->abort_cb = NULL;
    api_reply_error(j->req, 503, "the ledger could not bring its SQLite file up to date; retry shortly", "busy");
  }
  buf_free(&j->out);
  free(j);
}

/* The client left: its request ends now; the work finishes and after_cb frees the job. */
static void abort_cb(struct http_req *req) {
  ((struct job *)req->data)->req = NULL;
  http_resp_end(req);
}

/* One query parameter into out; false (and a 400 answered) when it is malformed. */
static bool param(struct http_req *req, const char *name, char *out, size_t cap) {
  int rc = http_query_get(req->query, name, out, cap);
  if (rc == -ENOENT) out[0] = '\0';
  if (rc == -EINVAL) {
    char msg[96];
    snprintf(msg, sizeof msg, "query parameter '%s' is malformed or too long", name);
    api_reply_error(req, 400, msg, "invalid_value");
    return false;
  }
  return true;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int ledger_parse_since(const char *s, int64_t now, int64_t *out_ms) {
  char *end;
  size_t n = strlen(s);
  if (n == 0) return -EINVAL;
  if (n >= 2 && strchr("smhd", s[n - 1]) && s[0] >= '0' && s[0] <= '9') {
    long long v = strtoll(s, &end, 10);
    if (end != s + n - 1 || v < 0 || v > 100LL * 365 * 86400) return -EINVAL;
    long long unit = s[n - 1] == 's' ? 1 : s[n - 1] == 'm' ? 60 : s[n - 1] == 'h' ? 3600 : 86400;
    *out_ms = now - v * unit * 1000;
    return 0;
  }
  struct tm tm = {0};
  const char *rest = strptime(s, "%Y-%m-%d", &tm);
  if (rest &&
      (*rest == '\0' || ((*rest == 'T' || *rest == ' ') && (rest = strptime(rest + 1, "%H:%M:%S", &tm)) &&
                         (strcmp(rest, "Z") == 0 || *rest == '\0')))) {
    *out_ms = (int64_t)timegm(&tm) * 1000;
    return 0;
  }
  long long v = strtoll(s, &end, 10);
  if (*end || v < 0) return -EINVAL;
  *out_ms = v;
  return 0;
}

static bool usage_params(struct http_req *req, struct job *j, const char *tenant) {
  char by[16], since[40];
  if (!param(req, "tenant", j->tenant, sizeof j->tenant) || !param(req, "model", j->model, sizeof j->model) ||
      !param(req, "provider", j->provider, sizeof j->provider) || !param(req, "by", by, sizeof by) ||
      !param(req, "since", since, sizeof since))
    return false;
  if (ledger_by_parse(by, &j->q.by) != 0) {
    api_reply_error(req, 400, "by: one of tenant, model, node, provider, hour", "invalid_value");
    return false;
  }
  if (since[0] && ledger_parse_since(since, now_ms(), &j->q.since_ms) != 0) {
    api_reply_error(req, 400, "since: a duration (30m, 1h, 7d), an ISO-8601 UTC time (2026-12-07T10:00:00Z) or unix ms",
          "invalid_value");
    return false;
  }
  if (tenant) { /* a tenant's key reads its own usage only */
    if (j->tenant[0] && strcmp(j->tenant, tenant) != 0) {
      api_reply_error(req, 403, "a tenant's key reads its own tenant's usage only", "permission_denied");
      return false;
    }
    str_copy(j->tenant, sizeof j->tenant, tenant);
  }
  j->q.tenant = j->tenant;
  j->q.model = j->model;
  j->q.provider = j->provider;
  return true;
}

static bool settle_params(struct http_req *req, struct job *j) {
  char min[40];
  if (!param(req, "min_amount", min, sizeof min)) return false;
  if (!min[0]) str_copy(min, sizeof min, "0");
  if (amount_parse(min, &j->min_nano) != 0) {
    api_reply_error(req, 400, "min_amount: a decimal amount >= 0 with at most 9 decimals, e.g. 25.00", "invalid_value");
    return false;
  }
  uint8_t r[4];
  char hex[9];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  j->now_ms = now_ms();
  time_t t = (time_t)(j->now_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char ts[32];
  strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
  snprintf(j->batch, sizeof j->batch, "b-%s-%s", ts, hex);
  return true;
}

bool ledger_api_handle(struct ledger_api *l, struct http_req *req, const char *tenant) {
  if (!slice_starts(req->path, "/v1/ledger/")) return false;
  struct slice rest = slice_make(req->path.base + 11, req->path.len - 11);
  if (!l->enabled) {
    api_reply_error(req, 404, "metering is off on this agent (ledger.enabled: false)", "ledger_disabled");
    return true;
  }
  struct job *j = xcalloc(1, sizeof *j);
  str_copy(j->path, sizeof j->path, l->path);
  str_copy(j->pg, sizeof j->pg, l->pg);
  char fmt[8];
  bool ok = true;
  if (slice_eqz(rest, "usage")) {
    j->kind = JOB_USAGE;
    ok = usage_params(req, j, tenant);
  } else if (slice_eqz(rest, "contributions")) {
    j->kind = JOB_CONTRIBUTIONS;
  } else if (slice_eqz(rest, "settle")) {
    j->kind = JOB_SETTLE;
    ok = settle_params(req, j);
  } else if (slice_eqz(rest, "payouts") || slice_starts(rest, "payouts/")) {
    j->kind = JOB_PAYOUTS;
    if (rest.len > 8 && (rest.len - 8 >= sizeof j->batch || memchr(rest.base + 8, '/', rest.len - 8))) {
      api_reply_error(req, 404, "no such payout batch", "not_found");
      ok = false;
    } else if (rest.len > 8) {
      memcpy(j->batch, rest.base + 8, rest.len - 8);
      j->batch[rest.len - 8] = '\0';
    }
    if (ok && (ok = param(req, "format", fmt, sizeof fmt))) {
      j->csv = strcmp(fmt, "csv") == 0;
      if (fmt[0] && !j->csv && strcmp(fmt, "json") != 0) {
        api_reply_error(req, 400, "format: csv or json", "invalid_value");
        ok = false;
      }
    }
  } else {
    free(j);
    return false;
  }
  if (!ok) {
    free(j);
    return true;
  }
  j->req = req;
  req->data = j;
  req->abort_cb = abort_cb;
  j->work.data = j;
  j->loop = l->loop;
  if (l->writer && !j->pg[0]) /* this node's SQLite: every record acknowledged so far in it first */
    ledger_writer_sync(l->writer, synced_cb, j);
  else
    uv_queue_work(l->loop, &j->work, work_cb, after_cb);
  return true;
}
