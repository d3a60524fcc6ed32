/* The cluster-wide ledger in PostgreSQL: connection with a versioned, self-migrating schema, and the same
 * queries and settlement as the node's SQLite file (ledger/db.h), over every node's records. Every call
 * blocks: never on an event loop (the outbox thread and uv_queue_work call them). */
#ifndef IM_LEDGER_PG_H
#define IM_LEDGER_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "ledger/db.h"

/* The PostgreSQL schema version this build writes (table infermesh_schema; migrated on connect). */
#define LEDGER_PG_SCHEMA_VERSION 2

/* ledger_pg_connect connects to conninfo (a libpq URI or key=value string; a 3 s connect timeout) and brings
 * the schema to LEDGER_PG_SCHEMA_VERSION under an advisory lock. 0 and *out (PQfinish it), or -ECONNREFUSED
 * (cannot connect), -EPROTO (a newer schema), -EIO, with err set. */
int ledger_pg_connect(PGconn **out, const char *conninfo, char *err, size_t errlen);

/* The same answers as ledger_db_usage_json, ledger_db_contributions_json, ledger_db_settle and
 * ledger_db_payouts, over the records of every node. Settlement marks each record paid in one transaction,
 * with an UPDATE ... WHERE batch_id IS NULL that row locks serialize: two settles at once never pay a record
 * twice, and a crash before the commit pays nothing. */
int ledger_pg_usage_json(PGconn *c, const struct ledger_query *q, struct buf *out, char *err, size_t errlen);
int ledger_pg_contributions_json(PGconn *c, struct buf *out, char *err, size_t errlen);
int ledger_pg_settle(PGconn *c, int64_t min_nano, int64_t now_ms, const char *batch_id, struct buf *out,
                     char *err, size_t errlen);
int ledger_pg_payouts(PGconn *c, const char *batch_id, bool csv, struct buf *out, char *err, size_t errlen);

#endif
