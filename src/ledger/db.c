/* The ledger's SQLite file: schema and migrations, inserts, usage and contribution queries, settlement. */
#include "ledger/db.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/slice.h"

struct ledger_db {
  sqlite3 *h;
  sqlite3_stmt *ins;
};

/* Migration i brings user_version i to i + 1. Append only: a shipped step never changes. */
static const char *const migrations[LEDGER_SCHEMA_VERSION] = {
    "CREATE TABLE usage(seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL, ts_ms INTEGER NOT NULL,"
    " tenant TEXT NOT NULL, model TEXT NOT NULL, ingress TEXT NOT NULL, serving TEXT NOT NULL,"
    " target TEXT NOT NULL, provider TEXT NOT NULL, prompt_tokens INTEGER NOT NULL,"
    " cached_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, ttft_ms REAL, duration_ms REAL,"
    " status INTEGER NOT NULL, retried INTEGER NOT NULL, hedged INTEGER NOT NULL, cost_nano INTEGER NOT NULL,"
    " contribution_nano INTEGER NOT NULL, currency TEXT NOT NULL, batch_id TEXT);"
    "CREATE INDEX usage_ts ON usage(ts_ms);"
    "CREATE INDEX usage_unpaid ON usage(provider, currency) WHERE batch_id IS NULL;"
    "CREATE TABLE batches(batch_id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, min_nano INTEGER NOT NULL);"
    "CREATE TABLE payouts(batch_id TEXT NOT NULL REFERENCES batches(batch_id), provider TEXT NOT NULL,"
    " currency TEXT NOT NULL, amount_nano INTEGER NOT NULL, records INTEGER NOT NULL,"
    " PRIMARY KEY(batch_id, provider, currency));",
    /* 2: how far the PostgreSQL outbox got (ledger/outbox.c) */
    "CREATE TABLE outbox(id INTEGER PRIMARY KEY CHECK (id = 1), sent_seq INTEGER NOT NULL);"
    "INSERT INTO outbox VALUES(1, 0);",
};

static int fail(struct ledger_db *db, int rc, const char *what, char *err, size_t errlen) {
  snprintf(err, errlen, "ledger: %s: %s", what, db && db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
  return rc == SQLITE_BUSY || rc == SQLITE_LOCKED ? -EBUSY : -EIO;
}

static int exec(struct ledger_db *db, const char *sql, const char *what, char *err, size_t errlen) {
  int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : fail(db, rc, what, err, errlen);
}

static int user_version(struct ledger_db *db, int *v) {
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -EIO;
  int rc = sqlite3_step(st);
  *v = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : -EIO;
}

static int migrate(struct ledger_db *db, char *err, size_t errlen) {
  int v, rc;
  if (user_version(db, &v) == 0 && v == LEDGER_SCHEMA_VERSION) return 0; /* the common case: no write lock */
  if ((rc = exec(db, "BEGIN IMMEDIATE", "begin migration", err, errlen)) != 0) return rc;
  if (user_version(db, &v) != 0) {
    exec(db, "ROLLBACK", "rollback", err, errlen);
    return fail(db, SQLITE_ERROR, "read the schema version", err, errlen);
  }
  if (v > LEDGER_SCHEMA_VERSION) {
    exec(db, "ROLLBACK", "rollback", err, errlen);
    snprintf(err, errlen,
             "ledger: the file has schema version %d, newer than this agent's %d: upgrade the agent", v,
             LEDGER_SCHEMA_VERSION);
    return -EPROTO;
  }
  for (; v < LEDGER_SCHEMA_VERSION; v++) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
    if ((rc = exec(db, migrations[v], "migrate the schema", err, errlen)) != 0 ||
        (rc = exec(db, sql, "set the schema version", err, errlen)) != 0) {
      sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
      return rc;
    }
  }
  return exec(db, "COMMIT", "commit migration", err, errlen);
}

int ledger_db_open(struct ledger_db **out, const char *path, char *err, size_t errlen) {
  struct ledger_db *db = xcalloc(1, sizeof *db);
  int rc =
      sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    fail(db, rc, path, err, errlen);
    ledger_db_close(db);
    return -EIO;
  }
  sqlite3_busy_timeout(db->h, 5000);
  if ((rc = exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON", "set up",
                 err, errlen)) != 0 ||
      (rc = migrate(db, err, errlen)) != 0) {
    ledger_db_close(db);
    return rc;
  }
  rc = sqlite3_prepare_v2(
      db->h,
      "INSERT OR IGNORE INTO usage(seq, request_id, ts_ms, tenant, model, ingress, serving, target, provider,"
      " prompt_tokens, cached_tokens, completion_tokens, ttft_ms, duration_ms, status, retried,"
      " hedged, cost_nano, contribution_nano, currency)"
      " VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
      -1, &db->ins, NULL);
  if (rc != SQLITE_OK) {
    rc = fail(db, rc, "prepare insert", err, errlen);
    ledger_db_close(db);
    return rc;
  }
  *out = db;
  return 0;
}

void ledger_db_close(struct ledger_db *db) {
  if (!db) return;
  sqlite3_finalize(db->ins);
  sqlite3_close(db->h);
  free(db);
}

static int insert_one(struct ledger_db *db, struct ledger_record *r) {
  sqlite3_stmt *s = db->ins;
  int i = 1;
  sqlite3_reset(s);
  if (r->seq > 0)
    sqlite3_bind_int64(s, i++, r->seq);
  else
    sqlite3_bind_null(s, i++);
  sqlite3_bind_text(s, i++, r->request_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, i++, r->ts_ms);
  sqlite3_bind_text(s, i++, r->tenant, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, i++, r->model, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, i++, r->ingress, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, i++, r->serving, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, i++, r->target, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, i++, r->provider, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, i++, r->prompt_tokens);
  sqlite3_bind_int64(s, i++, r->cached_tokens);
  sqlite3_bind_int64(s, i++, r->completion_tokens);
  if (r->ttft_ms >= 0)
    sqlite3_bind_double(s, i++, r->ttft_ms);
  else
    sqlite3_bind_null(s, i++);
  sqlite3_bind_double(s, i++, r->duration_ms);
  sqlite3_bind_int(s, i++, r->status);
  sqlite3_bind_int(s, i++, r->retried);
  sqlite3_bind_int(s, i++, r->hedged);
  sqlite3_bind_int64(s, i++, r->cost_nano);
  sqlite3_bind_int64(s, i++, r->contribution_nano);
  sqlite3_bind_text(s, i++, r->currency, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_DONE) return rc;
  if (r->seq <= 0) r->seq = sqlite3_last_insert_rowid(db->h);
  return SQLITE_OK;
}

int ledger_db_max_seq(struct ledger_db *db, int64_t *seq, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db->h, "SELECT COALESCE(MAX(seq), 0) FROM usage", -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "last seq", err, errlen);
  rc = sqlite3_step(st);
  *seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? 0 : fail(db, rc, "last seq", err, errlen);
}

int ledger_db_pending(struct ledger_db *db, int max, struct ledger_record *out, int *n, int64_t *sent_seq, char *err,
                      size_t errlen) {
  sqlite3_stmt *st;
  *n = 0;
  int rc = sqlite3_prepare_v2(db->h, "SELECT sent_seq FROM outbox WHERE id = 1", -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "outbox position", err, errlen);
  rc = sqlite3_step(st);
  *sent_seq = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  sqlite3_finalize(st);
  if (rc != SQLITE_ROW) return fail(db, rc, "outbox position", err, errlen);
  rc = sqlite3_prepare_v2(db->h,
                          "SELECT seq, request_id, ts_ms, tenant, model, ingress, serving, target, provider,"
                          " prompt_tokens, cached_tokens, completion_tokens, ttft_ms, duration_ms, status, retried,"
                          " hedged, cost_nano, contribution_nano, currency FROM usage WHERE seq > ?1 ORDER BY seq"
                          " LIMIT ?2",
                          -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "outbox read", err, errlen);
  sqlite3_bind_int64(st, 1, *sent_seq);
  sqlite3_bind_int(st, 2, max);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    struct ledger_record *r = &out[(*n)++];
    int i = 0;
    memset(r, 0, sizeof *r);
    r->seq = sqlite3_column_int64(st, i++);
    str_copy(r->request_id, sizeof r->request_id, (const char *)sqlite3_column_text(st, i++));
    r->ts_ms = sqlite3_column_int64(st, i++);
    str_copy(r->tenant, sizeof r->tenant, (const char *)sqlite3_column_text(st, i++));
    str_copy(r->model, sizeof r->model, (const char *)sqlite3_column_text(st, i++));
    str_copy(r->ingress, sizeof r->ingress, (const char *)sqlite3_column_text(st, i++));
    str_copy(r->serving, sizeof r->serving, (const char *)sqlite3_column_text(st, i++));
    str_copy(r->target, sizeof r->target, (const char *)sqlite3_column_text(st, i++));
    str_copy(r->provider, sizeof r->provider, (const char *)sqlite3_column_text(st, i++));
    r->prompt_tokens = sqlite3_column_int64(st, i++);
    r->cached_tokens = sqlite3_column_int64(st, i++);
    r->completion_tokens = sqlite3_column_int64(st, i++);
    r->ttft_ms = sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_double(st, i);
    i++;
    r->duration_ms = sqlite3_column_double(st, i++);
    r->status = sqlite3_column_int(st, i++);
    r->retried = sqlite3_column_int(st, i++);
    r->hedged = sqlite3_column_int(st, i++);
    r->cost_nano = sqlite3_column_int64(st, i++);
    r->contribution_nano = sqlite3_column_int64(st, i++);
    str_copy(r->currency, sizeof r->currency, (const char *)sqlite3_column_text(st, i++));
    if (*n == max) break;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : fail(db, rc, "outbox read", err, errlen);
}

int ledger_db_mark_sent(struct ledger_db *db, int64_t seq, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db->h, "UPDATE outbox SET sent_seq = ?1 WHERE id = 1 AND sent_seq < ?1", -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "outbox update", err, errlen);
  sqlite3_bind_int64(st, 1, seq);
  rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : fail(db, rc, "outbox update", err, errlen);
}

int ledger_db_insert(struct ledger_db *db, struct ledger_record *recs, int n, char *err, size_t errlen) {
  bool given = n > 0 && recs[0].seq > 0; /* the journal's records carry theirs; the seqs set here are undone */
  int rc = exec(db, "BEGIN IMMEDIATE", "begin", err, errlen);
  if (rc != 0) return rc;
  for (int i = 0; i < n; i++) {
    if ((rc = insert_one(db, &recs[i])) != SQLITE_OK) {
      rc = fail(db, rc, "insert a usage record", err, errlen);
      sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
      for (int j = 0; j < i && !given; j++)
        recs[j].seq = 0;
      return rc;
    }
  }
  if ((rc = exec(db, "COMMIT", "commit", err, errlen)) != 0) {
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    for (int j = 0; j < n && !given; j++)
      recs[j].seq = 0;
  }
  return rc;
}

int ledger_by_parse(const char *s, enum ledger_by *out) {
  static const char *const names[] = {"", "tenant", "model", "node", "provider", "hour"};
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (s && strcmp(s, names[i]) == 0) return *out = (enum ledger_by)i, 0;
  return -EINVAL;
}

static void amount_json(struct buf *out, const char *key, int64_t nano) {
  char a[40];
  amount_format(nano, a, sizeof a);
  buf_printf(out, ",\"%s\":\"%s\"", key, a);
}

static void text_json(struct buf *out, const unsigned char *s) {
  buf_json_str(out, slice_cstr(s ? (const char *)s : ""));
}

int ledger_db_usage_json(struct ledger_db *db, const struct ledger_query *q, struct buf *out, char *err,
                         size_t errlen) {
  static const char *const keys[] = {"''",       "tenant",
                                     "model",    "serving",
                                     "provider", "strftime('%Y-%m-%dT%H:00:00Z', ts_ms / 1000, 'unixepoch')"};
  static const char *const names[] = {"all", "tenant", "model", "node", "provider", "hour"};
  char sql[768];
  snprintf(
      sql, sizeof sql,
      "SELECT %s AS k, currency, COUNT(*), SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens),"
      " SUM(cost_nano) FROM usage WHERE ts_ms >= ?1 AND (?2 IS NULL OR tenant = ?2)"
      " AND (?3 IS NULL OR model = ?3) AND (?4 IS NULL OR provider = ?4) GROUP BY k, currency ORDER BY k",
      keys[q->by]);
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db->h, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "usage query", err, errlen);
  sqlite3_bind_int64(st, 1, q->since_ms);
  const char *f[3] = {q->tenant, q->model, q->provider};
  for (int i = 0; i < 3; i++)
    if (f[i] && *f[i]) sqlite3_bind_text(st, 2 + i, f[i], -1, SQLITE_STATIC);
  buf_printf(out, "{\"by\":\"%s\",\"scope\":\"node\",\"groups\":[", names[q->by]);
  int n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    buf_puts(out, n++ ? ",{\"key\":" : "{\"key\":");
    text_json(out, sqlite3_column_text(st, 0));
    buf_puts(out, ",\"currency\":");
    text_json(out, sqlite3_column_text(st, 1));
    buf_printf(out,
               ",\"requests\":%lld,\"prompt_tokens\":%lld,\"cached_tokens\":%lld,\"completion_tokens\":%lld",
               (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3),
               (long long)sqlite3_column_int64(st, 4), (long long)sqlite3_column_int64(st, 5));
    amount_json(out, "cost", sqlite3_column_int64(st, 6));
    buf_puts(out, "}");
  }
  sqlite3_finalize(st);
  buf_puts(out, "]}");
  return rc == SQLITE_DONE ? 0 : fail(db, rc, "usage query", err, errlen);
}

int ledger_db_spend(struct ledger_db *db, int64_t day_start_s, int64_t month_start_s,
                    void (*cb)(void *arg, const char *tenant, const struct spend_figures *f), void *arg, char *err,
                    size_t errlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db->h,
                              "SELECT tenant, SUM(CASE WHEN ts_ms >= ?1 THEN cost_nano ELSE 0 END),"
                              " SUM(CASE WHEN ts_ms >= ?2 THEN cost_nano ELSE 0 END), SUM(cost_nano)"
                              " FROM usage WHERE tenant != '' GROUP BY tenant",
                              -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "spend query", err, errlen);
  sqlite3_bind_int64(st, 1, day_start_s * 1000);
  sqlite3_bind_int64(st, 2, month_start_s * 1000);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    struct spend_figures f = {.day_start = day_start_s,
                              .day_nano = sqlite3_column_int64(st, 1),
                              .month_start = month_start_s,
                              .month_nano = sqlite3_column_int64(st, 2),
                              .total_nano = sqlite3_column_int64(st, 3)};
    cb(arg, (const char *)sqlite3_column_text(st, 0), &f);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : fail(db, rc, "spend query", err, errlen);
}

int ledger_db_contributions_json(struct ledger_db *db, struct buf *out, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db->h,
                              "SELECT provider, currency, COUNT(*), SUM(contribution_nano),"
                              " SUM(CASE WHEN batch_id IS NULL THEN 0 ELSE contribution_nano END)"
                              " FROM usage GROUP BY provider, currency ORDER BY provider, currency",
                              -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "contributions query", err, errlen);
  buf_puts(out, "{\"providers\":[");
  int n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    int64_t earned = sqlite3_column_int64(st, 3), paid = sqlite3_column_int64(st, 4);
    buf_puts(out, n++ ? ",{\"provider\":" : "{\"provider\":");
    text_json(out, sqlite3_column_text(st, 0));
    buf_puts(out, ",\"currency\":");
    text_json(out, sqlite3_column_text(st, 1));
    buf_printf(out, ",\"records\":%lld", (long long)sqlite3_column_int64(st, 2));
    amount_json(out, "earned", earned);
    amount_json(out, "paid", paid);
    amount_json(out, "unpaid", earned - paid);
    buf_puts(out, "}");
  }
  sqlite3_finalize(st);
  buf_puts(out, "]}");
  return rc == SQLITE_DONE ? 0 : fail(db, rc, "contributions query", err, errlen);
}

/* Marks one provider's unpaid records up to max_seq as paid in batch_id and records its payout. */
static int settle_group(struct ledger_db *db, const char *batch_id, const char *provider,
                        const char *currency, int64_t max_seq, int64_t amount, int64_t records) {
  sqlite3_stmt *up, *ins;
  if (sqlite3_prepare_v2(
          db->h,
          "UPDATE usage SET batch_id = ?1 WHERE batch_id IS NULL AND provider = ?2 AND currency = ?3"
          " AND seq <= ?4 AND contribution_nano > 0",
          -1, &up, NULL) != SQLITE_OK)
    return SQLITE_ERROR;
  sqlite3_bind_text(up, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(up, 2, provider, -1, SQLITE_STATIC);
  sqlite3_bind_text(up, 3, currency, -1, SQLITE_STATIC);
  sqlite3_bind_int64(up, 4, max_seq);
  int rc = sqlite3_step(up);
  sqlite3_finalize(up);
  if (rc != SQLITE_DONE) return rc;
  if (sqlite3_prepare_v2(db->h, "INSERT INTO payouts VALUES(?1, ?2, ?3, ?4, ?5)", -1, &ins, NULL) !=
      SQLITE_OK)
    return SQLITE_ERROR;
  sqlite3_bind_text(ins, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(ins, 2, provider, -1, SQLITE_STATIC);
  sqlite3_bind_text(ins, 3, currency, -1, SQLITE_STATIC);
  sqlite3_bind_int64(ins, 4, amount);
  sqlite3_bind_int64(ins, 5, records);
  rc = sqlite3_step(ins);
  sqlite3_finalize(ins);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

struct group {
  char provider[64], currency[8];
  int64_t amount, records, max_seq;
};

static int insert_batch(struct ledger_db *db, const char *batch_id, int64_t now_ms, int64_t min_nano) {
  sqlite3_stmt *b;
  if (sqlite3_prepare_v2(db->h, "INSERT INTO batches VALUES(?1, ?2, ?3)", -1, &b, NULL) != SQLITE_OK)
    return SQLITE_ERROR;
  sqlite3_bind_text(b, 1, batch_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(b, 2, now_ms);
  sqlite3_bind_int64(b, 3, min_nano);
  int rc = sqlite3_step(b);
  sqlite3_finalize(b);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The providers (and currencies) whose unpaid contributions reach min_nano; *n of them in a new array. */
static int qualifying(struct ledger_db *db, int64_t min_nano, struct group **out, int *n) {
  sqlite3_stmt *st;
  int rc =
      sqlite3_prepare_v2(db->h,
                         "SELECT provider, currency, SUM(contribution_nano), COUNT(*), MAX(seq) FROM usage"
                         " WHERE batch_id IS NULL AND contribution_nano > 0 GROUP BY provider, currency"
                         " HAVING SUM(contribution_nano) >= ?1",
                         -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  sqlite3_bind_int64(st, 1, min_nano > 0 ? min_nano : 1);
  int cap = 0;
  *out = NULL;
  *n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) *out = xrealloc(*out, (size_t)(cap = cap ? cap * 2 : 8) * sizeof **out);
    struct group *g = &(*out)[(*n)++];
    str_copy(g->provider, sizeof g->provider, (const char *)sqlite3_column_text(st, 0));
    str_copy(g->currency, sizeof g->currency, (const char *)sqlite3_column_text(st, 1));
    g->amount = sqlite3_column_int64(st, 2);
    g->records = sqlite3_column_int64(st, 3);
    g->max_seq = sqlite3_column_int64(st, 4);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int ledger_db_settle(struct ledger_db *db, int64_t min_nano, int64_t now_ms, const char *batch_id,
                     struct buf *out, char *err, size_t errlen) {
  int rc =
      exec(db, "BEGIN IMMEDIATE", "begin settlement", err, errlen); /* the write lock, for the whole step */
  if (rc != 0) return rc;
  struct group *g = NULL;
  int n = 0;
  rc = qualifying(db, min_nano, &g, &n);
  if (rc == SQLITE_OK && n > 0) rc = insert_batch(db, batch_id, now_ms, min_nano);
  for (int i = 0; i < n && rc == SQLITE_OK; i++)
    rc = settle_group(db, batch_id, g[i].provider, g[i].currency, g[i].max_seq, g[i].amount, g[i].records);
  free(g);
  if (rc != SQLITE_OK) {
    rc = fail(db, rc, "settlement", err, errlen);
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  if ((rc = exec(db, "COMMIT", "commit settlement", err, errlen)) != 0) {
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
  }
  if (n == 0) {
    buf_puts(out, "{\"batch\":null,\"message\":\"no provider's unpaid contributions reach the minimum\"}");
    return 0;
  }
  return ledger_db_payouts(db, batch_id, false, out, err, errlen);
}

/* One batch as JSON or CSV lines. */
static int one_batch(struct ledger_db *db, const char *batch_id, bool csv, struct buf *out, char *err,
                     size_t errlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(
      db->h,
      "SELECT b.created_ms, p.provider, p.currency, p.amount_nano, p.records FROM batches b"
      " JOIN payouts p USING(batch_id) WHERE b.batch_id = ?1 ORDER BY p.provider, p.currency",
      -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "payouts query", err, errlen);
  sqlite3_bind_text(st, 1, batch_id, -1, SQLITE_STATIC);
  int n = 0;
  char a[40];
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    amount_format(sqlite3_column_int64(st, 3), a, sizeof a);
    if (csv) {
      if (n++ == 0) buf_puts(out, "batch_id,created_ms,provider,currency,amount,records\n");
      /* provider names are printable without spaces (checked where they are set), but quote them anyway */
      buf_printf(out, "%s,%lld,\"%s\",%s,%s,%lld\n", batch_id, (long long)sqlite3_column_int64(st, 0),
                 sqlite3_column_text(st, 1), sqlite3_column_text(st, 2), a,
                 (long long)sqlite3_column_int64(st, 4));
      continue;
    }
    if (n++ == 0) {
      buf_puts(out, "{\"batch\":");
      buf_json_str(out, slice_cstr(batch_id));
      buf_printf(out, ",\"created_ms\":%lld,\"payouts\":[", (long long)sqlite3_column_int64(st, 0));
    } else {
      buf_puts(out, ",");
    }
    buf_puts(out, "{\"provider\":");
    text_json(out, sqlite3_column_text(st, 1));
    buf_puts(out, ",\"currency\":");
    text_json(out, sqlite3_column_text(st, 2));
    buf_printf(out, ",\"amount\":\"%s\",\"records\":%lld}", a, (long long)sqlite3_column_int64(st, 4));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return fail(db, rc, "payouts query", err, errlen);
  if (n == 0) {
    snprintf(err, errlen, "no payout batch '%.64s'", batch_id);
    return -ENOENT;
  }
  if (!csv) buf_puts(out, "]}");
  return 0;
}

int ledger_db_payouts(struct ledger_db *db, const char *batch_id, bool csv, struct buf *out, char *err,
                      size_t errlen) {
  if (batch_id) return one_batch(db, batch_id, csv, out, err, errlen);
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(
      db->h,
      "SELECT b.batch_id, b.created_ms, COUNT(*), SUM(p.records) FROM batches b"
      " JOIN payouts p USING(batch_id) GROUP BY b.batch_id ORDER BY b.created_ms, b.batch_id",
      -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(db, rc, "payouts query", err, errlen);
  if (csv)
    buf_puts(out, "batch_id,created_ms,providers,records\n");
  else
    buf_puts(out, "{\"batches\":[");
  int n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (csv) {
      buf_printf(out, "%s,%lld,%lld,%lld\n", sqlite3_column_text(st, 0),
                 (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
                 (long long)sqlite3_column_int64(st, 3));
      continue;
    }
    buf_puts(out, n++ ? ",{\"batch\":" : "{\"batch\":");
    text_json(out, sqlite3_column_text(st, 0));
    buf_printf(out, ",\"created_ms\":%lld,\"providers\":%lld,\"records\":%lld}",
               (long long)sqlite3_column_int64(st, 1), (long long)sqlite3_column_int64(st, 2),
               (long long)sqlite3_column_int64(st, 3));
  }
  sqlite3_finalize(st);
  if (!csv) buf_puts(out, "]}");
  return rc == SQLITE_DONE ? 0 : fail(db, rc, "payouts query", err, errlen);
}
