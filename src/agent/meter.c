/* The agent's meter: what a request costs, and its usage record handed to the ledger's writer. */
#include "agent/meter.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/slice.h"

bool meter_price(const struct meter *m, const char *model, struct ledger_price *out) {
  const struct fsm_price *fp = route_ctl_price(&m->router->ctl, model);
  if (fp) {
    out->prompt_per_mtok = fp->prompt_per_mtok;
    out->completion_per_mtok = fp->completion_per_mtok;
    out->cached_per_mtok = fp->cached_prompt_per_mtok;
    str_copy(out->currency, sizeof out->currency, fp->currency);
    return true;
  }
  for (int i = 0; i < m->cfg->nprices; i++)
    if (strcmp(m->cfg->prices[i].model, model) == 0) {
      *out = m->cfg->prices[i].price;
      return true;
    }
  return false;
}

static bool cost_cb(void *arg, const char *model, const struct oai_usage *u, int64_t *nano,
                    char currency[8]) {
  struct ledger_price p;
  if (!u->present || !meter_price(arg, model, &p)) return false;
  *nano = ledger_cost_nano(&p, u->prompt_tokens > 0 ? u->prompt_tokens : 0, u->cached_tokens,
                           u->completion_tokens > 0 ? u->completion_tokens : 0);
  str_copy(currency, 8, p.currency);
  return true;
}

static int64_t tokens(int64_t n) { return n > 0 ? n : 0; }

/* share_of is nano x share in [0, 1], rounded to the nearest nano-unit (exact for 0 and 1). */
static int64_t share_of(int64_t nano, double share) {
  if (share >= 1) return nano;
  if (share <= 0) return 0;
  return (int64_t)llround((double)nano * share);
}

void meter_to_ledger(const struct meter *m, const struct request_record *rec, int64_t now_ms,
                     struct ledger_record *out) {
  const struct agent_config *cfg = m->cfg;
  memset(out, 0, sizeof *out);
  str_copy(out->request_id, sizeof out->request_id, rec->request_id);
  out->ts_ms = now_ms;
  str_copy(out->tenant, sizeof out->tenant, rec->tenant);
  str_copy(out->model, sizeof out->model, rec->model);
  str_copy(out->ingress, sizeof out->ingress, cfg->node_name);
  bool local = !rec->serving_node[0] || strcmp(rec->serving_node, cfg->node_name) == 0;
  str_copy(out->serving, sizeof out->serving, local ? cfg->node_name : rec->serving_node);
  str_copy(out->target, sizeof out->target, rec->target);
  const char *prov = local ? (cfg->provider[0] ? cfg->provider : NULL)
                           : m->mesh ? mesh_node_provider(m->mesh, rec->serving_node) : NULL;
  str_copy(out->provider, sizeof out->provider, prov ? prov : out->serving);
  out->prompt_tokens = tokens(rec->prompt_tokens);
  out->cached_tokens = tokens(rec->cached_tokens);
  out->completion_tokens = tokens(rec->completion_tokens);
  out->ttft_ms = rec->ttft_ms;
  out->duration_ms = rec->duration_ms;
  out->status = rec->status;
  out->retried = rec->attempts > 1;
  out->hedged = rec->hedged;
  out->cost_nano = rec->cost_nano;
  out->contribution_nano = share_of(rec->cost_nano, route_ctl_provider_share(&m->router->ctl, out->provider));
  str_copy(out->currency, sizeof out->currency, rec->currency[0] ? rec->currency : "USD");
}

/* The ledger's observer (keep, route/record.h): the record adds to its tenant's spend and goes to the ledger. */
static bool record_cb(void *arg, const struct request_record *rec, void (*done)(void *, int),
                      void *done_arg) {
  struct meter *m = arg;
  if (rec->forwarded || !rec->reached_runtime) return false;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (m->spend && rec->tenant[0] && rec->cost_nano > 0) spend_book_add(m->spend, rec->tenant, rec->cost_nano, ts.tv_sec);
  if (!m->writer) return false;
  struct ledger_record lr;
  meter_to_ledger(m, rec, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, &lr);
  ledger_writer_submit(m->writer, &lr, done, done_arg);
  return done != NULL;
}

static int64_t spent_cb(void *arg, const char *tenant, enum period p, int64_t now_s) {
  const struct meter *m = arg;
  return m->spend ? spend_book_spent(m->spend, tenant, p, now_s) : 0;
}

void meter_bind(struct meter *m) {
  m->router->meter = (struct router_meter){.cost = cost_cb, .spent = spent_cb, .arg = m};
  router_observe(m->router, &(struct request_observer){.keep = record_cb, .arg = m});
}
