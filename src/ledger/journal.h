/* The ledger's journal: usage records appended to a flat file, the durable step on the request path.
 *
 * The writer thread (ledger/writer.c) appends each group of records with one write(2) and acknowledges them:
 * once write returned, a record survives a crash of the process (it is in the page cache; a power loss may
 * cost what the kernel had not written back, as with SQLite's synchronous=NORMAL). The SQLite tables the
 * queries read are filled from the journal later, in large transactions, when the writer is idle, when a
 * reader asks (ledger_writer_sync) or when the journal grew past a bound; records carry their seq, so filling
 * twice (a crash between the insert and the truncation) stores each once.
 *
 * File: DATA_DIR/ledger.journal (beside ledger.db; one journal per ledger file). Entry: [u32 LE payload
 * length][u32 LE XXH32 of the payload][payload]; payload: seq, ts_ms, prompt, cached, completion tokens (i64
 * LE), ttft_ms, duration_ms (IEEE double LE), status (i32 LE), flags (u8: 1 retried, 2 hedged), cost_nano,
 * contribution_nano (i64 LE), then request_id, tenant, model, ingress, serving, target, provider, currency,
 * each as a u8 length and its bytes. A torn entry at the end (a crash mid-write) is cut off when the journal
 * is read back. */
#ifndef IM_LEDGER_JOURNAL_H
#define IM_LEDGER_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ledger/record.h"

#define JOURNAL_ENTRY_MAX 1024 /* an encoded record never exceeds this */

/* journal_encode writes r as one entry into out (cap >= JOURNAL_ENTRY_MAX); returns its length. */
size_t journal_encode(const struct ledger_record *r, uint8_t *out, size_t cap);

/* journal_decode reads the entry at in[0, len) into *r and its length into *used. 0; -EAGAIN when in holds
 * only part of an entry; -EINVAL when the bytes are not an entry (bad length, checksum or field). *r is fully
 * written on success only. */
int journal_decode(const uint8_t *in, size_t len, struct ledger_record *r, size_t *used);

/* journal_path writes the journal's path for the ledger file at db_path into out: db_path with ".db" replaced
 * by (or, without it, followed by) ".journal". 0 or -ENAMETOOLONG. */
int journal_path(const char *db_path, char *out, size_t cap);

#endif
