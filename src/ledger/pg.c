/* The cluster-wide ledger in PostgreSQL: schema migrations, usage and contribution queries, settlement and
 * payout batches, answering in the same JSON as the node's SQLite ledger. */
#include "ledger/pg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/amount.h"
#include "core/slice.h"

/* Schema steps; step i brings version i to i + 1. Append only: a shipped step never changes. */
static const char *const migrations[LEDGER_PG_SCHEMA_VERSION] = {
    "CREATE TABLE IF NOT EXISTS infermesh_usage(node TEXT NOT NULL, seq BIGINT NOT NULL, request_id TEXT NOT "
    "NULL,"
    " ts_ms BIGINT NOT NULL, tenant TEXT NOT NULL, model TEXT NOT NULL, ingress TEXT NOT NULL, serving TEXT "
    "NOT NULL,"
    " target TEXT NOT NULL, provider TEXT NOT NULL, prompt_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT "
    "NULL,"
    " completion_tokens BIGINT NOT NULL, ttft_ms DOUBLE PRECISION, duration_ms DOUBLE PRECISION,"
    " status INTEGER NOT NULL, retried BOOLEAN NOT NULL, hedged BOOLEAN NOT NULL, cost_nano BIGINT NOT NULL,"
    " contribution_nano BIGINT NOT NULL, currency TEXT NOT NULL, batch_id TEXT, PRIMARY KEY(node, seq));"
    "CREATE INDEX IF NOT EXISTS infermesh_usage_ts ON infermesh_usage(ts_ms);",
    /* 2: settlement in PostgreSQL */
    "CREATE TABLE IF NOT EXISTS infermesh_batches(batch_id TEXT PRIMARY KEY, created_ms BIGINT NOT NULL,"
    " min_nano BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS infermesh_payouts(batch_id TEXT NOT NULL REFERENCES "
    "infermesh_batches(batch_id),"
    " provider TEXT NOT NULL, currency TEXT NOT NULL, amount_nano BIGINT NOT NULL, records BIGINT NOT NULL,"
    " PRIMARY KEY(batch_id, provider, currency));"
    "CREATE INDEX IF NOT EXISTS infermesh_usage_unpaid ON infermesh_usage(provider, currency) WHERE batch_id "
    "IS NULL;",
};

static bool ok(PGresult *r) {
  ExecStatusType s = PQresultStatus(r);
  bool good = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
  PQclear(r);
  return good;
}

static int fail(PGconn *c, const char *what, char *err, size_t errlen) {
  const char *m = PQerrorMessage(c);
  snprintf(err, errlen, "PostgreSQL ledger: %s: %.*s", what, (int)strcspn(m, "\n"), m);
  PQclear(PQexec(c, "ROLLBACK"));
  return -EIO;
}

static int migrate(PGconn *c, char *err, size_t errlen) {
  if (!ok(PQexec(c, "BEGIN")) || !ok(PQexec(c, "SELECT pg_advisory_xact_lock(7465011)")) ||
      !ok(PQexec(c, "CREATE TABLE IF NOT EXISTS infermesh_schema(version INTEGER NOT NULL)")))
    return fail(c, "schema", err, errlen);
  PGresult *r = PQexec(c, "SELECT COALESCE(MAX(version), 0) FROM infermesh_schema");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return fail(c, "schema version", err, errlen);
  }
  int v = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  if (v > LEDGER_PG_SCHEMA_VERSION) {
    PQclear(PQexec(c, "ROLLBACK"));
    snprintf(err, errlen, "PostgreSQL ledger schema %d is newer than this agent's %d: upgrade the agent", v,
             LEDGER_PG_SCHEMA_VERSION);
    return -EPROTO;
  }
  for (; v < LEDGER_PG_SCHEMA_VERSION; v++) {
    char sql[96];
    snprintf(sql, sizeof sql, "DELETE FROM infermesh_schema; INSERT INTO infermesh_schema VALUES(%d)", v + 1);
    if (!ok(PQexec(c, migrations[v])) || !ok(PQexec(c, sql))) return fail(c, "schema migration", err, errlen);
  }
  return ok(PQexec(c, "COMMIT")) ? 0 : fail(c, "schema commit", err, errlen);
}

int ledger_pg_connect(PGconn **out, const char *conninfo, char *err, size_t errlen) {
  /* the configured string may be a URI or key=value pairs (expand_dbname); a dead host must not hang a call
   */
  const char *const keys[] = {"dbname", "connect_timeout", "application_name", NULL};
  const char *const vals[] = {conninfo, "3", "infermesh-ledger", NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (PQstatus(c) != CONNECTION_OK) {
    const char *m = PQerrorMessage(c);
    snprintf(err, errlen, "PostgreSQL ledger: %.*s", (int)strcspn(m, "\n"), m);
    PQfinish(c);
    return -ECONNREFUSED;
  }
  PQclear(PQexec(c, "SET synchronous_commit = on"));
  int rc = migrate(c, err, errlen);
  if (rc != 0) {
    PQfinish(c);
    return rc;
  }
  *out = c;
  return 0;
}

static int64_t i64(PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void amount_json(struct buf *out, const char *key, int64_t nano) {
  char a[40];
  amount_format(nano, a, sizeof a);
  buf_printf(out, ",\"%s\":\"%s\"", key, a);
}

int ledger_pg_usage_json(PGconn *c, const struct ledger_query *q, struct buf *out, char *err, size_t errlen) {
#define HOUR_KEY "to_char(to_timestamp(ts_ms / 1000) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24\":00:00Z\"')"
  static const char *const keys[] = {"''", "tenant", "model", "serving", "provider", HOUR_KEY};
  static const char *const names[] = {"all", "tenant", "model", "node", "provider", "hour"};
  char sql[900], since[24];
  snprintf(
      sql, sizeof sql,
      "SELECT %s AS k, currency, COUNT(*), SUM(prompt_tokens), SUM(cached_tokens), SUM(completion_tokens),"
      " SUM(cost_nano) FROM infermesh_usage WHERE ts_ms >= $1::bigint"
      " AND ($2::text IS NULL OR tenant = $2) AND ($3::text IS NULL OR model = $3)"
      " AND ($4::text IS NULL OR provider = $4) GROUP BY k, currency ORDER BY k, currency",
      keys[q->by]);
  snprintf(since, sizeof since, "%lld", (long long)q->since_ms);
  const char *params[4] = {since, q->tenant && *q->tenant ? q->tenant : NULL,
                           q->model && *q->model ? q->model : NULL,
                           q->provider && *q->provider ? q->provider : NULL};
  PGresult *r = PQexecParams(c, sql, 4, NULL, params, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return fail(c, "usage query", err, errlen);
  }
  buf_printf(out, "{\"by\":\"%s\",\"scope\":\"cluster\",\"groups\":[", names[q->by]);
  for (int i = 0; i < PQntuples(r); i++) {
    buf_puts(out, i ? ",{\"key\":" : "{\"key\":");
    buf_json_str(out, slice_cstr(PQgetvalue(r, i, 0)));
    buf_puts(out, ",\"currency\":");
    buf_json_str(out, slice_cstr(PQgetvalue(r, i, 1)));
    buf_printf(
        out, ",\"requests\":%lld,\"prompt_tokens\":%lld,\"cached_tokens\":%lld,\"completion_tokens\":%lld",
        (long long)i64(r, i, 2), (long long)i64(r, i, 3), (long long)i64(r, i, 4), (long long)i64(r, i, 5));
    amount_json(out, "cost", i64(r, i, 6));
    buf_puts(out, "}");
  }
  buf_puts(out, "]}");
  PQclear(r);
  return 0;
}

int ledger_pg_contributions_json(PGconn *c, struct buf *out, char *err, size_t errlen) {
  PGresult *r = PQexec(c, "SELECT provider, currency, COUNT(*), SUM(contribution_nano),"
                          " SUM(CASE WHEN batch_id IS NULL THEN 0 ELSE contribution_nano END)"
                          " FROM infermesh_usage GROUP BY provider, currency ORDER BY provider, currency");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return fail(c, "contributions query", err, errlen);
  }
  buf_puts(out, "{\"scope\":\"cluster\",\"providers\":[");
  for (int i = 0; i < PQntuples(r); i++) {
    int64_t earned = i64(r, i, 3), paid = i64(r, i, 4);
    buf_puts(out, i ? ",{\"provider\":" : "{\"provider\":");
    buf_json_str(out, slice_cstr(PQgetvalue(r, i, 0)));
    buf_puts(out, ",\"currency\":");
    buf_json_str(out, slice_cstr(PQgetvalue(r, i, 1)));
    buf_printf(out, ",\"records\":%lld", (long long)i64(r, i, 2));
    amount_json(out, "earned", earned);
    amount_json(out, "paid", paid);
    amount_json(out, "unpaid", earned - paid);
    buf_puts(out, "}");
  }
  buf_puts(out, "]}");
  PQclear(r);
  return 0;
}

int ledger_pg_settle(PGconn *c, int64_t min_nano, int64_t now_ms, const char *batch_id, struct buf *out,
                     char *err, size_t errlen) {
  char min[24], now[24];
  snprintf(min, sizeof min, "%lld", (long long)(min_nano > 0 ? min_nano : 1));
  snprintf(now, sizeof now, "%lld", (long long)now_ms);
  /* One settlement at a time (batches stay whole); the row locks of the UPDATE alone already keep a record
   * from being paid twice. */
  if (!ok(PQexec(c, "BEGIN")) || !ok(PQexec(c, "SELECT pg_advisory_xact_lock(7465012)")))
    return fail(c, "begin settlement", err, errlen);
  const char *p1[1] = {min};
  PGresult *g = PQexecParams(
      c,
      "SELECT provider, currency FROM infermesh_usage WHERE batch_id IS NULL AND"
      " contribution_nano > 0 GROUP BY provider, currency HAVING SUM(contribution_nano) >= $1::bigint"
      " ORDER BY provider, currency",
      1, NULL, p1, NULL, NULL, 0);
  if (PQresultStatus(g) != PGRES_TUPLES_OK) {
    PQclear(g);
    return fail(c, "settlement", err, errlen);
  }
  int n = PQntuples(g);
  if (n == 0) {
    PQclear(g);
    if (!ok(PQexec(c, "COMMIT"))) return fail(c, "commit settlement", err, errlen);
    buf_puts(out, "{\"batch\":null,\"message\":\"no provider's unpaid contributions reach the minimum\"}");
    return 0;
  }
  const char *pb[3] = {batch_id, now, min};
  if (!ok(PQexecParams(c, "INSERT INTO infermesh_batches VALUES($1, $2::bigint, $3::bigint)", 3, NULL, pb,
                       NULL, NULL, 0))) {
    PQclear(g);
    return fail(c, "settlement batch", err, errlen);
  }
  for (int i = 0; i < n; i++) {
    /* what is marked is what is paid: a record that arrived since the SELECT is in both or in neither */
    const char *pu[3] = {batch_id, PQgetvalue(g, i, 0), PQgetvalue(g, i, 1)};
    if (!ok(PQexecParams(
            c,
            "WITH u AS (UPDATE infermesh_usage SET batch_id = $1 WHERE batch_id IS NULL AND provider = $2"
            " AND currency = $3 AND contribution_nano > 0 RETURNING contribution_nano)"
            " INSERT INTO infermesh_payouts SELECT $1, $2, $3, COALESCE(SUM(contribution_nano), 0),"
            " COUNT(*) FROM u",
            3, NULL, pu, NULL, NULL, 0))) {
      PQclear(g);
      return fail(c, "settlement", err, errlen);
    }
  }
  PQclear(g);
  if (!ok(PQexec(c, "COMMIT"))) return fail(c, "commit settlement", err, errlen);
  return ledger_pg_payouts(c, batch_id, false, out, err, errlen);
}

int ledger_pg_payouts(PGconn *c, const char *batch_id, bool csv, struct buf *out, char *err, size_t errlen) {
  if (!batch_id) {
    PGresult *r =
        PQexec(c, "SELECT b.batch_id, b.created_ms, COUNT(*), SUM(p.records) FROM infermesh_batches b"
                  " JOIN infermesh_payouts p USING (batch_id) GROUP BY b.batch_id, b.created_ms"
                  " ORDER BY b.created_ms, b.batch_id");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      PQclear(r);
      return fail(c, "payouts query", err, errlen);
    }
    buf_puts(out, csv ? "batch_id,created_ms,providers,records\n" : "{\"batches\":[");
    for (int i = 0; i < PQntuples(r); i++) {
      if (csv) {
        buf_printf(out, "%s,%lld,%lld,%lld\n", PQgetvalue(r, i, 0), (long long)i64(r, i, 1),
                   (long long)i64(r, i, 2), (long long)i64(r, i, 3));
        continue;
      }
      buf_puts(out, i ? ",{\"batch\":" : "{\"batch\":");
      buf_json_str(out, slice_cstr(PQgetvalue(r, i, 0)));
      buf_printf(out, ",\"created_ms\":%lld,\"providers\":%lld,\"records\":%lld}", (long long)i64(r, i, 1),
                 (long long)i64(r, i, 2), (long long)i64(r, i, 3));
    }
    if (!csv) buf_puts(out, "]}");
    PQclear(r);
    return 0;
  }
  const char *p[1] = {batch_id};
  PGresult *r = PQexecParams(
      c,
      "SELECT b.created_ms, p.provider, p.currency, p.amount_nano, p.records FROM infermesh_batches b"
      " JOIN infermesh_payouts p USING (batch_id) WHERE b.batch_id = $1 ORDER BY p.provider, p.currency",
      1, NULL, p, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    PQclear(r);
    return fail(c, "payouts query", err, errlen);
  }
  int n = PQntuples(r);
  if (n == 0) {
    PQclear(r);
    snprintf(err, errlen, "no payout batch '%.64s'", batch_id);
    return -ENOENT;
  }
  char a[40];
  for (int i = 0; i < n; i++) {
    amount_format(i64(r, i, 3), a, sizeof a);
    if (csv) {
      if (i == 0) buf_puts(out, "batch_id,created_ms,provider,currency,amount,records\n");
      buf_printf(out, "%s,%lld,\"%s\",%s,%s,%lld\n", batch_id, (long long)i64(r, i, 0), PQgetvalue(r, i, 1),
                 PQgetvalue(r, i, 2), a, (long long)i64(r, i, 4));
      continue;
    }
    if (i == 0) {
      buf_puts(out, "{\"batch\":");
      buf_json_str(out, slice_cstr(batch_id));
      buf_printf(out, ",\"created_ms\":%lld,\"payouts\":[", (long long)i64(r, i, 0));
    } else {
      buf_puts(out, ",");
    }
    buf_puts(out, "{\"provider\":");
    buf_json_str(out, slice_cstr(PQgetvalue(r, i, 1)));
    buf_puts(out, ",\"currency\":");
    buf_json_str(out, slice_cstr(PQgetvalue(r, i, 2)));
    buf_printf(out, ",\"amount\":\"%s\",\"records\":%lld}", a, (long long)i64(r, i, 4));
  }
  if (!csv) buf_puts(out, "]}");
  PQclear(r);
  return 0;
}
