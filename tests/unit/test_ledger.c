/* The ledger on a real SQLite file: costs, queries, settlement exactly once, the writer's group commit, and
 * a writer killed with SIGKILL keeps every record it acknowledged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "ledger/db.h"
#include "ledger/journal.h"
#include "ledger/writer.h"

static char dir[256];
static int64_t scalar(const char *path, const char *sql);

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

static struct ledger_record rec(int i, const char *tenant, const char *provider, int64_t cost) {
  struct ledger_record r = {.ts_ms = 1700000000000LL + i * 1000,
                            .prompt_tokens = 100,
                            .cached_tokens = 40,
                            .completion_tokens = 10,
                            .ttft_ms = 12.5,
                            .duration_ms = 80,
                            .status = 200,
                            .cost_nano = cost,
                            .contribution_nano = cost};
  snprintf(r.request_id, sizeof r.request_id, "req-%d", i);
  snprintf(r.tenant, sizeof r.tenant, "%s", tenant);
  snprintf(r.model, sizeof r.model, "%s", i % 2 ? "llama" : "qwen");
  snprintf(r.ingress, sizeof r.ingress, "n1");
  snprintf(r.serving, sizeof r.serving, "%s", provider);
  snprintf(r.target, sizeof r.target, "%s/vllm0", provider);
  snprintf(r.provider, sizeof r.provider, "%s", provider);
  snprintf(r.currency, sizeof r.currency, "USD");
  return r;
}

static void test_cost_and_amounts(void **state) {
  (void)state;
  struct ledger_price p = {.prompt_per_mtok = 0.5, .cached_per_mtok = 0.25, .completion_per_mtok = 1.5};
  /* 60 uncached x 0.5 + 40 cached x 0.25 + 10 x 1.5 = 55 per million tokens = 55,000 nano */
  assert_int_equal(ledger_cost_nano(&p, 100, 40, 10), 55000);
  p.cached_per_mtok = -1; /* cached tokens at the prompt price */
  assert_int_equal(ledger_cost_nano(&p, 100, 40, 10), 65000);
  assert_int_equal(ledger_cost_nano(NULL, 100, 40, 10), 0);
  assert_int_equal(ledger_cost_nano(&p, 100, 400, 0), 50000); /* cached beyond the prompt is clipped */
  char a[40];
  amount_format(55000, a, sizeof a);
  assert_string_equal(a, "0.000055");
  amount_format(25 * LEDGER_NANO, a, sizeof a);
  assert_string_equal(a, "25");
  amount_format(-1500000000LL, a, sizeof a);
  assert_string_equal(a, "-1.5");
  int64_t n;
  assert_int_equal(amount_parse("25.00", &n), 0);
  assert_int_equal(n, 25 * LEDGER_NANO);
  assert_int_equal(amount_parse("0.000000001", &n), 0);
  assert_int_equal(n, 1);
  const char *bad[] = {"", "-1", "1.", ".5", "1e3", "1.0000000001", "abc", "99999999999", "1,5"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(amount_parse(bad[i], &n), -EINVAL);
}

static void test_queries_and_settlement(void **state) {
  (void)state;
  char path[300], err[256];
  path_of(path, sizeof path, "q.db");
  struct ledger_db *db;
  assert_int_equal(ledger_db_open(&db, path, err, sizeof err), 0);
  struct ledger_record r[6] = {rec(0, "team-a", "gpu-a", 3 * LEDGER_NANO),
                               rec(1, "team-a", "gpu-a", 2 * LEDGER_NANO),
                               rec(2, "team-b", "gpu-b", LEDGER_NANO / 2),
                               rec(3, "team-b", "gpu-a", LEDGER_NANO),
                               rec(4, "", "gpu-c", 0),
                               rec(5, "team-b", "gpu-b", LEDGER_NANO / 4)};
  assert_int_equal(ledger_db_insert(db, r, 6, err, sizeof err), 0);
  assert_true(r[0].seq > 0 && r[5].seq == r[0].seq + 5);
  struct buf b = {0};
  struct ledger_query q = {.by = LEDGER_BY_TENANT};
  assert_int_equal(ledger_db_usage_json(db, &q, &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base,
                         "{\"key\":\"team-a\",\"currency\":\"USD\",\"requests\":2,\"prompt_tokens\":200,"
                         "\"cached_tokens\":80,\"completion_tokens\":20,\"cost\":\"5\"}"));
  assert_non_null(strstr(b.base, "\"key\":\"team-b\",\"currency\":\"USD\",\"requests\":3"));
  assert_non_null(strstr(b.base, "\"cost\":\"1.75\""));
  buf_reset(&b);
  q = (struct ledger_query){.by = LEDGER_BY_NONE, .tenant = "team-b", .provider = "gpu-b"};
  assert_int_equal(ledger_db_usage_json(db, &q, &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base, "\"requests\":2"));
  assert_non_null(strstr(b.base, "\"cost\":\"0.75\""));
  buf_reset(&b);
  q = (struct ledger_query){.by = LEDGER_BY_HOUR, .since_ms = 1700000003000LL};
  assert_int_equal(ledger_db_usage_json(db, &q, &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base, "\"key\":\"2023-11-14T22:00:00Z\""));
  assert_non_null(strstr(b.base, "\"requests\":3"));
  /* settle at 1.00: gpu-a (6) qualifies, gpu-b (0.75) does not, gpu-c earned nothing */
  buf_reset(&b);
  assert_int_equal(ledger_db_settle(db, LEDGER_NANO, 1700000100000LL, "b-1", &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base, "{\"batch\":\"b-1\",\"created_ms\":1700000100000,\"payouts\":[{\"provider\":"
                                 "\"gpu-a\",\"currency\":\"USD\",\"amount\":\"6\",\"records\":3}]}"));
  buf_reset(&b);
  assert_int_equal(ledger_db_settle(db, LEDGER_NANO, 1700000100001LL, "b-2", &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base, "\"batch\":null")); /* nothing new reaches the minimum: no empty batch */
  buf_reset(&b);
  assert_int_equal(ledger_db_contributions_json(db, &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base,
                         "{\"provider\":\"gpu-a\",\"currency\":\"USD\",\"records\":3,\"earned\":\"6\","
                         "\"paid\":\"6\",\"unpaid\":\"0\"}"));
  assert_non_null(strstr(b.base,
                         "\"provider\":\"gpu-b\",\"currency\":\"USD\",\"records\":2,\"earned\":\"0.75\","
                         "\"paid\":\"0\",\"unpaid\":\"0.75\""));
  buf_reset(&b);
  assert_int_equal(ledger_db_payouts(db, "b-1", true, &b, err, sizeof err), 0);
  assert_string_equal(b.base, "batch_id,created_ms,provider,currency,amount,records\n"
                              "b-1,1700000100000,\"gpu-a\",USD,6,3\n");
  buf_reset(&b);
  assert_int_equal(ledger_db_payouts(db, "nope", false, &b, err, sizeof err), -ENOENT);
  assert_int_equal(ledger_db_payouts(db, NULL, false, &b, err, sizeof err), 0);
  assert_non_null(strstr(b.base,
                         "{\"batches\":[{\"batch\":\"b-1\",\"created_ms\":1700000100000,\"providers\":1,"
                         "\"records\":3}]}"));
  buf_free(&b);
  ledger_db_close(db);
  /* reopened: same schema, same rows; a file from a newer version is refused untouched */
  assert_int_equal(ledger_db_open(&db, path, err, sizeof err), 0);
  ledger_db_close(db);
  sqlite3 *h;
  assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
  assert_int_equal(sqlite3_exec(h, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(h);
  assert_int_equal(ledger_db_open(&db, path, err, sizeof err), -EPROTO);
  assert_non_null(strstr(err, "newer"));
}

/* A version-1 file (before the outbox) is migrated in place; the outbox reads what is pending, in order. */
static void test_migration_and_outbox_position(void **state) {
  (void)state;
  char path[300], err[256];
  path_of(path, sizeof path, "m.db");
  struct ledger_db *db;
  assert_int_equal(ledger_db_open(&db, path, err, sizeof err), 0);
  struct ledger_record r[3] = {rec(0, "t", "p", 1), rec(1, "t", "p", 2), rec(2, "t", "p", 3)};
  assert_int_equal(ledger_db_insert(db, r, 3, err, sizeof err), 0);
  ledger_db_close(db);
  sqlite3 *h;
  assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
  assert_int_equal(sqlite3_exec(h, "DROP TABLE outbox; PRAGMA user_version=1", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(h);
  assert_int_equal(ledger_db_open(&db, path, err, sizeof err), 0);
  assert_int_equal(scalar(path, "PRAGMA user_version"), LEDGER_SCHEMA_VERSION);
  struct ledger_record out[2];
  int n;
  int64_t sent;
  assert_int_equal(ledger_db_pending(db, 2, out, &n, &sent, err, sizeof err), 0);
  assert_int_equal(n, 2);
  assert_int_equal(sent, 0);
  assert_string_equal(out[0].request_id, "req-0");
  assert_int_equal(out[1].cost_nano, 2);
  assert_true(out[0].ttft_ms == 12.5);
  assert_int_equal(ledger_db_mark_sent(db, out[1].seq, err, sizeof err), 0);
  assert_int_equal(ledger_db_mark_sent(db, out[0].seq, err, sizeof err), 0); /* never moves back */
  assert_int_equal(ledger_db_pending(db, 2, out, &n, &sent, err, sizeof err), 0);
  assert_int_equal(n, 1);
  assert_string_equal(out[0].request_id, "req-2");
  assert_int_equal(sent, out[0].seq - 1);
  ledger_db_close(db);
}

/* ---- two settles at once, on two connections ---- */

struct settler {
  char path[300], id[16];
  int rc;
  struct buf out;
};

static void settle_thread(void *arg) {
  struct settler *s = arg;
  struct ledger_db *db;
  char err[256];
  s->rc = ledger_db_open(&db, s->path, err, sizeof err);
  if (s->rc == 0) {
    s->rc = ledger_db_settle(db, 1, 1700000200000LL, s->id, &s->out, err, sizeof err);
    ledger_db_close(db);
  }
}

static int64_t scalar(const char *path, const char *sql) {
  sqlite3 *h;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return v;
}

static void test_concurrent_settles_pay_once(void **state) {
  (void)state;
  char path[300], err[256];
  path_of(path, sizeof path, "c.db");
  struct ledger_db *db;
  assert_int_equal(ledger_db_open(&db, path, err, sizeof err), 0);
  static struct ledger_record r[2000];
  for (int i = 0; i < 2000; i++)
    r[i] = rec(i, "t", i % 3 ? "p1" : "p2", 1000 + i);
  assert_int_equal(ledger_db_insert(db, r, 2000, err, sizeof err), 0);
  ledger_db_close(db);
  for (int round = 0; round < 5; round++) {
    struct settler s[2] = {{.rc = -1}, {.rc = -1}};
    uv_thread_t th[2];
    for (int i = 0; i < 2; i++) {
      snprintf(s[i].path, sizeof s[i].path, "%s", path);
      snprintf(s[i].id, sizeof s[i].id, "r%d-%d", round, i);
      uv_thread_create(&th[i], settle_thread, &s[i]);
    }
    for (int i = 0; i < 2; i++) {
      uv_thread_join(&th[i]);
      assert_int_equal(s[i].rc, 0);
      buf_free(&s[i].out);
    }
    if (round == 2) { /* more work arrives between rounds */
      assert_int_equal(ledger_db_open(&db, path, err, sizeof err), 0);
      for (int i = 0; i < 2000; i++)
        r[i] = rec(10000 + i, "t", "p1", 7);
      assert_int_equal(ledger_db_insert(db, r, 2000, err, sizeof err), 0);
      ledger_db_close(db);
    }
  }
  /* every record paid, in exactly one batch, and the payouts add up to the records */
  assert_int_equal(scalar(path, "SELECT COUNT(*) FROM usage WHERE batch_id IS NULL"), 0);
  assert_int_equal(scalar(path, "SELECT SUM(amount_nano) FROM payouts"),
                   scalar(path, "SELECT SUM(contribution_nano) FROM usage"));
  assert_int_equal(scalar(path, "SELECT SUM(records) FROM payouts"), 4000);
  assert_int_equal(
      scalar(path, "SELECT COUNT(*) FROM (SELECT p.batch_id FROM payouts p JOIN usage u ON"
                   " u.batch_id = p.batch_id AND u.provider = p.provider GROUP BY p.batch_id, p.provider"
                   " HAVING SUM(u.contribution_nano) != MAX(p.amount_nano))"),
      0);
}

/* ---- the journal ---- */

static void test_journal_codec(void **state) {
  (void)state;
  struct ledger_record r = rec(7, "team-a", "acme", 123456789), back;
  r.seq = 42;
  r.retried = true;
  r.ttft_ms = -1;
  snprintf(r.currency, sizeof r.currency, "EUR");
  uint8_t buf[JOURNAL_ENTRY_MAX];
  size_t n = journal_encode(&r, buf, sizeof buf), used = 0;
  assert_true(n > 0 && n <= sizeof buf);
  assert_int_equal(journal_decode(buf, n, &back, &used), 0);
  assert_int_equal(used, n);
  assert_int_equal(back.seq, 42);
  assert_string_equal(back.request_id, "req-7");
  assert_string_equal(back.tenant, "team-a");
  assert_string_equal(back.currency, "EUR");
  assert_true(back.retried && !back.hedged && back.ttft_ms == -1 && back.cost_nano == 123456789);
  for (size_t cut = 0; cut < n; cut++) /* a torn entry is incomplete, never something else */
    assert_int_equal(journal_decode(buf, cut, &back, &used), -EAGAIN);
  buf[n - 3] ^= 0x40; /* damage: the checksum catches it */
  assert_int_equal(journal_decode(buf, n, &back, &used), -EINVAL);
  /* the longest record fits */
  struct ledger_record big = r;
  memset(big.target, 'x', sizeof big.target - 1);
  memset(big.model, 'm', sizeof big.model - 1);
  memset(big.request_id, 'r', sizeof big.request_id - 1);
  n = journal_encode(&big, buf, sizeof buf);
  assert_int_equal(journal_decode(buf, n, &back, &used), 0);
  assert_string_equal(back.target, big.target);
}

/* ---- the writer ---- */

struct acks {
  int ok, failed;
};

static void ack_cb(void *arg, int status) {
  struct acks *a = arg;
  if (status == 0)
    a->ok++;
  else
    a->failed++;
}

static void closed(void *arg) { *(int *)arg = 1; }

static void test_writer_group_commit(void **state) {
  (void)state;
  char path[300], err[256];
  path_of(path, sizeof path, "w.db");
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ledger_writer *w;
  assert_int_equal(ledger_writer_start(&w, &loop, path, err, sizeof err), 0);
  struct acks a = {0};
  for (int i = 0; i < 20000; i++) {
    struct ledger_record r = rec(i, "t", "p", 5);
    ledger_writer_submit(w, &r, ack_cb, &a);
  }
  while (a.ok + a.failed < 20000)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(a.ok, 20000);
  struct ledger_writer_stats st;
  ledger_writer_stats(w, &st);
  assert_int_equal(st.committed, 20000);
  assert_true(st.batches < 20000); /* grouped */
  /* a reader's sync: every acknowledged record is in SQLite when it is answered */
  struct acks synced = {0};
  ledger_writer_sync(w, ack_cb, &synced);
  while (synced.ok + synced.failed < 1)
    uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(synced.ok, 1);
  assert_int_equal(scalar(path, "SELECT COUNT(*) FROM usage"), 20000);
  for (int i = 0; i < 100; i++) {
    struct ledger_record r = rec(20000 + i, "t", "p", 5);
    ledger_writer_submit(w, &r, ack_cb, &a);
  }
  while (a.ok + a.failed < 20100)
    uv_run(&loop, UV_RUN_ONCE);
  int done = 0;
  ledger_writer_close(w, closed, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(scalar(path, "SELECT COUNT(*) FROM usage"), 20100); /* closing filled SQLite */
}

/* A journal left by a crash, its last entry torn: the next start moves the whole entries into SQLite, once, and
 * goes on numbering after them. */
static void test_journal_recovery(void **state) {
  (void)state;
  char path[300], jpath[300], err[256];
  path_of(path, sizeof path, "j.db");
  assert_int_equal(journal_path(path, jpath, sizeof jpath), 0);
  FILE *f = fopen(jpath, "wb");
  assert_non_null(f);
  uint8_t buf[JOURNAL_ENTRY_MAX];
  size_t n = 0;
  for (int i = 1; i <= 3; i++) {
    struct ledger_record r = rec(i, "t", "p", 5);
    r.seq = i;
    n = journal_encode(&r, buf, sizeof buf);
    assert_int_equal(fwrite(buf, 1, n, f), n);
    if (i == 2) assert_int_equal(fwrite(buf, 1, n, f), n); /* a second copy: stored once */
  }
  assert_int_equal(fwrite(buf, 1, n / 2, f), n / 2); /* torn */
  fclose(f);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ledger_writer *w;
  assert_int_equal(ledger_writer_start(&w, &loop, path, err, sizeof err), 0);
  assert_int_equal(scalar(path, "SELECT COUNT(*) FROM usage"), 3);
  struct acks a = {0};
  struct ledger_record r = rec(9, "t", "p", 5);
  ledger_writer_submit(w, &r, ack_cb, &a);
  while (a.ok + a.failed < 1)
    uv_run(&loop, UV_RUN_ONCE);
  int done = 0;
  ledger_writer_close(w, closed, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(scalar(path, "SELECT MAX(seq) FROM usage"), 4);
  struct stat st;
  assert_int_equal(stat(jpath, &st), 0);
  assert_int_equal(st.st_size, 0); /* all in SQLite */
}

/* A child commits records and writes each acknowledged request number to a pipe; the parent kills it with
 * SIGKILL mid-stream: every number it read must be in the file, once. */
static void child_writes(const char *path, int fd) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ledger_writer *w;
  char err[256];
  if (ledger_writer_start(&w, &loop, path, err, sizeof err) != 0) _exit(3);
  for (int i = 0;; i++) {
    struct ledger_record r = rec(i, "t", "p", 5);
    ledger_writer_submit(w, &r, (ledger_done_cb)NULL, NULL);
    if (i % 64 == 63) {
      /* acknowledge after the commit: wait until the writer has this batch */
      struct ledger_writer_stats st;
      do {
        uv_run(&loop, UV_RUN_NOWAIT);
        ledger_writer_stats(w, &st);
      } while (st.committed < (uint64_t)i + 1);
      int upto = i + 1;
      if (write(fd, &upto, sizeof upto) != sizeof upto) _exit(4);
    }
  }
}

static void test_writer_survives_sigkill(void **state) {
  (void)state;
  char path[300];
  path_of(path, sizeof path, "k.db");
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    child_writes(path, p[1]);
    _exit(0);
  }
  close(p[1]);
  int acked = 0, v;
  while (acked < 20000 && read(p[0], &v, sizeof v) == sizeof v)
    acked = v;
  kill(pid, SIGKILL);
  int status;
  waitpid(pid, &status, 0);
  while (read(p[0], &v, sizeof v) == sizeof v)
    acked = v; /* acks written before the kill */
  close(p[0]);
  assert_true(WIFSIGNALED(status));
  assert_true(acked >= 20000);
  /* The acknowledged records are in the journal; the next start moves them into SQLite. */
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ledger_writer *w;
  char err[256];
  assert_int_equal(ledger_writer_start(&w, &loop, path, err, sizeof err), 0);
  int done = 0;
  ledger_writer_close(w, closed, &done);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT COUNT(DISTINCT request_id) FROM usage WHERE seq <= %d", acked);
  assert_int_equal(scalar(path, sql), acked);
  assert_int_equal(scalar(path, "SELECT COUNT(*) - COUNT(DISTINCT request_id) FROM usage"), 0);
}

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/im-ledger-XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cost_and_amounts),
      cmocka_unit_test(test_queries_and_settlement),
      cmocka_unit_test(test_concurrent_settles_pay_once),
      cmocka_unit_test(test_migration_and_outbox_position),
      cmocka_unit_test(test_journal_codec),
      cmocka_unit_test(test_journal_recovery),
      cmocka_unit_test(test_writer_group_commit),
      cmocka_unit_test(test_writer_survives_sigkill),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
