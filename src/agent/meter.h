/* The agent's meter (route/record.h): prices from the control plane or the config, records to the ledger. */
#ifndef IM_AGENT_METER_H
#define IM_AGENT_METER_H

#include "agent/config.h"
#include "agent/mesh.h"
#include "ledger/spend.h"
#include "ledger/writer.h"
#include "route/record.h"
#include "route/router.h"

/* Everything borrowed; writer may be NULL (metering off: costs are still reported, nothing is recorded). */
struct meter {
  const struct agent_config *cfg;
  struct router *router;
  struct ledger_writer *writer;
  struct mesh *mesh;         /* NULL alone: every target is local */
  struct spend_book *spend;  /* tenants' spend for budgets: this node's requests are added; NULL: none kept */
};

/* meter_bind makes m the router's meter (router->meter: prices, budgets) and an observer of its requests that
 * keeps their records (spend, the ledger). Call once per router. m must outlive the router's use of it; set
 * m->writer = NULL before the writer is closed. */
void meter_bind(struct meter *m);

/* meter_price finds model's price: the control plane's, else the config's (prices:). false when none. */
bool meter_price(const struct meter *m, const char *model, struct ledger_price *out);

/* meter_to_ledger fills a ledger record from rec as this node keeps it (ingress = this node; the provider is
 * the serving node's: its --provider as membership announces it, else its name; its contribution is the cost
 * times the provider's control-plane share, 1 by default). */
void meter_to_ledger(const struct meter *m, const struct request_record *rec, int64_t now_ms,
                     struct ledger_record *out);

#endif
