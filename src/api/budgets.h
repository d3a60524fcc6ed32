/* GET /v1/ledger/budgets: each tenant's budget, what it spent in the budget's period as this node knows the
 * mesh's spend, what is left and when the period resets. */
#ifndef IM_API_BUDGETS_H
#define IM_API_BUDGETS_H

#include <stdint.h>

#include "core/buf.h"
#include "ledger/spend.h"
#include "route/tenants.h"

/* budgets_json appends {"budgets": [...]} for tenants t[0..n) (only the one named scope when scope is not
 * NULL) with spend from book (borrowed; NULL: nothing spent) as of unix time now_s. A tenant without a budget
 * shows "budget": null and its spend this month. Amounts are decimal strings; "resets_at" is ISO 8601 UTC,
 * null for a total budget. */
void budgets_json(const struct tenant_conf *t, int n, const char *scope, const struct spend_book *book,
                  int64_t now_s, struct buf *out);

#endif
