/* The PostgreSQL outbox: a thread forwards the ledger's records, in order, from the node's SQLite file to a
 * cluster-wide PostgreSQL, idempotently on (node, seq): a record sent twice (a crash between PostgreSQL's
 * commit and the outbox's own) is stored once. While PostgreSQL is down the records wait in SQLite. */
#ifndef IM_LEDGER_OUTBOX_H
#define IM_LEDGER_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ledger_outbox;

struct ledger_outbox_stats {
  uint64_t forwarded; /* records PostgreSQL acknowledged */
  uint64_t failures;  /* failed connects or transactions */
  int64_t sent_seq;   /* the last seq forwarded */
  bool connected;
};

/* ledger_outbox_start forwards the records of the SQLite ledger at sqlite_path to the PostgreSQL of conninfo
 * (a libpq connection string or URI), as node `node` (copied). Runs until ledger_outbox_stop. 0, or a
 * negative code with err set (the SQLite file cannot be opened; PostgreSQL being down is no error). */
int ledger_outbox_start(struct ledger_outbox **out, const char *sqlite_path, const char *conninfo,
                        const char *node, char *err, size_t errlen);

/* ledger_outbox_kick asks for a pass now (after a commit); any thread. */
void ledger_outbox_kick(struct ledger_outbox *o);

/* ledger_outbox_stats copies the counters (any thread). */
void ledger_outbox_stats(struct ledger_outbox *o, struct ledger_outbox_stats *out);

/* ledger_outbox_stop makes one last pass (when PostgreSQL answers), stops the thread (blocks until it has:
 * at most one transaction's time) and frees o. */
void ledger_outbox_stop(struct ledger_outbox *o);

#endif
