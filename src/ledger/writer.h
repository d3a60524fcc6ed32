/* The ledger's writer: records handed over on the event loop are appended to the journal (ledger/journal.h) by a
 * thread of its own, many per write (group commit); each submitter hears back on the loop once its record is
 * durable. The same thread moves the journal into SQLite when it is idle (IDLE_MS without a record), when a
 * reader asks (ledger_writer_sync), and under load once the oldest record not in SQLite waited FILL_LAG_MS (1 s)
 * or FILL_BOUND bytes wait, in transactions of up to 8,192 records; at start it moves whatever the last run left
 * there. So a request pays for a journal append; the SQLite inserts are batched, and deferred to idle time
 * while bursts last under a second. */
#ifndef IM_LEDGER_WRITER_H
#define IM_LEDGER_WRITER_H

#include <stdint.h>
#include <uv.h>

#include "ledger/record.h"

/* Called on the loop thread: status 0 once the record is in the journal (it survives a crash of the process),
 * or a negative code when the append failed (the record stays queued and is retried; the caller need not wait).
 */
typedef void (*ledger_done_cb)(void *arg, int status);

struct ledger_writer;

struct ledger_writer_stats {
  uint64_t committed, batches, failures, dropped;
  uint64_t queued;         /* waiting for the thread now */
  uint64_t filled_seq;     /* every record up to this seq is in SQLite */
  uint64_t unfilled_bytes; /* journal bytes not yet in SQLite */
};

/* ledger_writer_start opens the ledger at path (ledger_db_open) on its thread and starts it; *out is used and
 * closed on loop's thread only. 0, or a negative code with err set. */
int ledger_writer_start(struct ledger_writer **out, uv_loop_t *loop, const char *path, char *err,
                        size_t errlen);

/* ledger_writer_submit copies rec and queues it for the next commit; cb (may be NULL) runs once, on the loop,
 * with the outcome. arg must stay valid until then. After ledger_writer_close began, cb gets -ESHUTDOWN. */
void ledger_writer_submit(struct ledger_writer *w, const struct ledger_record *rec, ledger_done_cb cb,
                          void *arg);

/* ledger_writer_sync calls cb (on the loop) once every record acknowledged before this call is in SQLite
 * (status 0), or with a negative code when filling failed or the writer closes: what a reader of the SQLite
 * file calls first. arg must stay valid until then. */
void ledger_writer_sync(struct ledger_writer *w, ledger_done_cb cb, void *arg);

/* ledger_writer_stats copies the counters (a snapshot). */
void ledger_writer_stats(struct ledger_writer *w, struct ledger_writer_stats *out);

/* ledger_writer_close commits what is queued (one last try), moves the journal into SQLite, stops the thread,
 * closes the files and frees w; then calls cb(arg) on the loop. Pending callbacks run before cb. */
void ledger_writer_close(struct ledger_writer *w, void (*cb)(void *arg), void *arg);

#endif
