/* The ledger's SQLite file: usage records, payout batches. Every call blocks (disk I/O): never call it on an
 * event loop — the writer thread (ledger/writer.h) and uv_queue_work do. One connection per thread; WAL lets
 * readers run beside the writer. */
#ifndef IM_LEDGER_DB_H
#define IM_LEDGER_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "ledger/record.h"
#include "ledger/spend.h"

#define LEDGER_DB_FILE "ledger.db"
#define LEDGER_SCHEMA_VERSION 2

struct ledger_db;

/* ledger_db_open opens (creating and migrating to LEDGER_SCHEMA_VERSION) the ledger at path: WAL,
 * synchronous=NORMAL (a commit survives a crash of the process; a power loss may cost the last commits),
 * a 5 s busy timeout. Returns 0 and *out (free with ledger_db_close), or a negative code with err set
 * (a file from a newer version is refused, not changed). */
int ledger_db_open(struct ledger_db **out, const char *path, char *err, size_t errlen);
void ledger_db_close(struct ledger_db *db);

/* ledger_db_insert stores recs[0..n) in one transaction. A record with seq > 0 keeps it, and one whose seq is
 * stored already is skipped (filling from the journal twice stores it once); seq <= 0 gets the next one, set in
 * the record. Either every record has a seq or none has. 0, or a negative code with err set (then none is stored). */
int ledger_db_insert(struct ledger_db *db, struct ledger_record *recs, int n, char *err, size_t errlen);

/* ledger_db_max_seq reads the highest seq stored (0 when none). 0 or a negative code with err set. */
int ledger_db_max_seq(struct ledger_db *db, int64_t *seq, char *err, size_t errlen);

/* ledger_db_pending reads, in seq order, up to max records not yet forwarded to PostgreSQL into out[0..*n) and
 * the outbox's position into *sent_seq. 0 or a negative code with err set. */
int ledger_db_pending(struct ledger_db *db, int max, struct ledger_record *out, int *n, int64_t *sent_seq, char *err,
                      size_t errlen);

/* ledger_db_mark_sent records that every record up to seq reached PostgreSQL (the position only moves on). */
int ledger_db_mark_sent(struct ledger_db *db, int64_t seq, char *err, size_t errlen);

/* ledger_db_spend calls cb once per tenant of this file's records with its spend (cost) in the day that began at
 * day_start_s, in the month that began at month_start_s (unix seconds) and in all; the figures' starts are set to
 * those. The budget's seed at start (ledger/spend.h). 0 or a negative code with err set. */
int ledger_db_spend(struct ledger_db *db, int64_t day_start_s, int64_t month_start_s,
                    void (*cb)(void *arg, const char *tenant, const struct spend_figures *f), void *arg, char *err,
                    size_t errlen);

/* What a usage query selects and how it groups. Strings are borrowed; NULL or "" = any. */
enum ledger_by {
  LEDGER_BY_NONE,
  LEDGER_BY_TENANT,
  LEDGER_BY_MODEL,
  LEDGER_BY_NODE,
  LEDGER_BY_PROVIDER,
  LEDGER_BY_HOUR
};
struct ledger_query {
  int64_t since_ms; /* records that ended at or after this unix time (0 = all) */
  const char *tenant, *model, *provider;
  enum ledger_by by;
};

/* ledger_by_parse reads "tenant", "model", "node", "provider", "hour" (or "" = none): 0 or -EINVAL. */
int ledger_by_parse(const char *s, enum ledger_by *out);

/* ledger_db_usage_json appends {"by":...,"groups":[{"key":..,"currency":..,"requests":..,"prompt_tokens":..,
 * "cached_tokens":..,"completion_tokens":..,"cost":"1.25"}...]} to out (amounts as decimal strings, exact).
 * 0 or a negative code with err set. */
int ledger_db_usage_json(struct ledger_db *db, const struct ledger_query *q, struct buf *out, char *err,
                         size_t errlen);

/* ledger_db_contributions_json appends {"providers":[{"provider":..,"currency":..,"records":..,"earned":..,
 * "paid":..,"unpaid":..}...]} to out. */
int ledger_db_contributions_json(struct ledger_db *db, struct buf *out, char *err, size_t errlen);

/* ledger_db_settle groups each provider's unpaid contributions that add up to at least min_nano (per
 * currency) into one payout batch named batch_id and marks them paid, all in one transaction that holds the
 * write lock: two settles at once serialize (the second sees them paid), and a crash before the commit pays
 * nothing. Appends the batch as ledger_db_payouts_json would, or {"batch":null,...} when nothing qualified.
 * 0 or a negative code with err set. */
int ledger_db_settle(struct ledger_db *db, int64_t min_nano, int64_t now_ms, const char *batch_id,
                     struct buf *out, char *err, size_t errlen);

/* ledger_db_payouts_json appends one batch (batch_id; -ENOENT when there is none) or, with batch_id NULL, the
 * list of batches. csv: one line per provider of the batch (header: batch_id,created_ms,provider,currency,
 * amount,records) instead of JSON. */
int ledger_db_payouts(struct ledger_db *db, const char *batch_id, bool csv, struct buf *out, char *err,
                      size_t errlen);

#endif
