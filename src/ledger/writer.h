/* The ledger's writer: records handed over on the event loop are committed to SQLite by a thread of its own,
 * many per transaction (group commit); each submitter hears back on the loop once its record is durable. */
#ifndef IM_LEDGER_WRITER_H
#define IM_LEDGER_WRITER_H

#include <stdint.h>
#include <uv.h>

#include "ledger/record.h"

/* Called on the loop thread: status 0 once the record is committed (it survives a crash of the process), or
 * a negative code when the commit failed (the record stays queued and is retried; the caller need not wait).
 */
typedef void (*ledger_done_cb)(void *arg, int status);

struct ledger_writer;

struct ledger_writer_stats {
  uint64_t committed, batches, failures, dropped;
  uint64_t queued; /* waiting for the thread now */
};

/* ledger_writer_start opens the ledger at path (ledger_db_open) on its thread and starts it; *out is used and
 * closed on loop's thread only. 0, or a negative code with err set. */
int ledger_writer_start(struct ledger_writer **out, uv_loop_t *loop, const char *path, char *err,
                        size_t errlen);

/* ledger_writer_submit copies rec and queues it for the next commit; cb (may be NULL) runs once, on the loop,
 * with the outcome. arg must stay valid until then. After ledger_writer_close began, cb gets -ESHUTDOWN. */
void ledger_writer_submit(struct ledger_writer *w, const struct ledger_record *rec, ledger_done_cb cb,
                          void *arg);

/* ledger_writer_stats copies the counters (a snapshot). */
void ledger_writer_stats(struct ledger_writer *w, struct ledger_writer_stats *out);

/* ledger_writer_close commits what is queued (one last try), stops the thread, closes the file and frees w;
 * then calls cb(arg) on the loop. Pending callbacks run before cb. */
void ledger_writer_close(struct ledger_writer *w, void (*cb)(void *arg), void *arg);

#endif
