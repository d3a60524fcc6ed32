/* The ledger's HTTP API: GET /v1/ledger/usage, /contributions, /payouts[/ID]; POST /v1/ledger/settle. Queries
 * run on libuv's thread pool, each on a connection of its own (WAL: beside the writer). */
#ifndef IM_API_LEDGER_API_H
#define IM_API_LEDGER_API_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "ledger/writer.h"
#include "net/http_server.h"

/* Owned by the agent; path is the ledger file. */
struct ledger_api {
  uv_loop_t *loop;
  char path[600];
  char pg[1024]; /* the cluster-wide PostgreSQL ledger (ledger.postgres): queries and settlement read it; "" none */
  bool enabled;  /* false: every call answers 404 "metering is off on this agent" */
  struct ledger_writer *writer; /* borrowed; asked to bring SQLite up to date before each query; NULL: none */
};

/* ledger_api_handle answers req, a route of the ledger (api/routes.c: API_OP_LEDGER_*), and returns true;
 * false when its path is not the ledger's. tenant (borrowed for the call) scopes a usage query to one tenant
 * (a tenant's key asked); NULL reads everything. Bad parameters get a 400 in OpenAI's error format. */
bool ledger_api_handle(struct ledger_api *l, struct http_req *req, const char *tenant);

/* ledger_parse_since reads a --since value: a duration back from now_ms ("90s", "30m", "1h", "7d"), an
 * ISO-8601 UTC time ("2026-12-07T10:00:00Z", or a date "2026-12-07"), or unix milliseconds. 0 or -EINVAL. */
int ledger_parse_since(const char *s, int64_t now_ms, int64_t *out_ms);

#endif
