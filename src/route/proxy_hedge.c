/* Hedging of latency-class requests (DESIGN §6): after a delay near the chosen target's p95 time to first
 * byte, a copy goes to the second-best target; the first to send its first byte wins and the other is
 * cancelled at once (its connection closes, so the runtime aborts it). Hedges are capped at a share of all
 * requests. */
#include <math.h>
#include <stdlib.h>

#include "core/alloc.h"
#include "core/log.h"
#include "route/proxy_int.h"

/* The second-best target: among the candidates not tried yet that have room for the request, the one the
 * routing policy picks (the same ranking as the first send's, which excluded it as tried). -1 when none. */
static bool has_room(const void *arg, const struct target *t) {
  const struct proxy *p = arg;
  return !adm_target_saturated(&p->r->adm.o, t, p->kv_need);
}

static int second_best(struct proxy *p, uint64_t now) {
  struct router_cands c;
  if (proxy_candidates(p, &c) == 0 || router_cands_keep(p->r, &c, has_room, p) == 0) return -1;
  return proxy_pick(p, &c, now);
}

void proxy_hedge_fire(struct proxy *p) {
  struct router *r = p->r;
  p->hedge_due = 0;
  if (p->winner || p->client_started || p->hedged) return;
  struct leg *primary = p->legs[0].up ? &p->legs[0] : p->legs[1].up ? &p->legs[1] : NULL;
  if (!primary) return; /* between a failure and its retry */
  struct leg *spare = primary == &p->legs[0] ? &p->legs[1] : &p->legs[0];
  uint64_t now = proxy_now(r);
  int id = second_best(p, now);
  if (id < 0) return;
  struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, p->oai.model);
  struct adm_bucket *credit = cp && cp->hedge_max_frac > 0 ? &cp->credit : &r->hedge_credit;
  if (adm_bucket_take(credit, 1, now) != 0) return; /* over the cap */
  p->hedged = true;
  r->metrics.hedges_sent++;
  log_debug("hedge", "id=%s primary=%s copy=%s after_ms=%.1f", p->request_id,
            r->store->targets[primary->target].name, r->store->targets[id].name,
            (double)(now - primary->t_sent) / 1e6);
  proxy_leg_send(p, spare, id, true);
}

void proxy_hedge_arm(struct proxy *p) {
  struct router *r = p->r;
  /* The model's policy may turn hedging on (hedge true, its own cap and delay) or off (hedge false). */
  const struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, p->oai.model);
  int mode = cp ? cp->hedge : 0;
  bool capped = cp && cp->hedge_max_frac > 0 ? false : r->opts.hedge_max_fraction <= 0;
  if (!p->slo_latency || p->hedge_armed || p->local_only || mode < 0 || (mode == 0 && capped)) return;
  struct leg *l = p->legs[0].up ? &p->legs[0] : &p->legs[1];
  if (!l->up) return;
  p->hedge_armed = true;
  double d = (double)r->opts.hedge_delay_ms / 1000.0;
  const struct target *t = &r->store->targets[l->target];
  double q;
  if (cp && cp->hedge_delay_ms > 0)
    d = cp->hedge_delay_ms / 1000.0;
  else if (store_ttfb_quantile(t, p->oai.stream == 1 ? STORE_TTFB_STREAM : STORE_TTFB_FULL, 0.95,
                               r->opts.hedge_min_samples, &q))
    d = q;
  uint64_t ms = (uint64_t)ceil(d * 1000.0);
  p->hedge_due = l->t_sent + (ms < 1 ? 1 : ms) * 1000000u;
}

void proxy_hedge_lost(struct proxy *p, struct leg *l) {
  struct router *r = p->r;
  r->io.ops->cancel(r->io.ctx, l->up); /* closes its connection: the runtime sees the abort and frees it */
  l->up = NULL;
  breaker_cancelled(&r->breakers[l->target]);
  proxy_leg_release(l);
  r->metrics.hedges_cancelled++;
  /* A loser sent no data frame (else it would have won): what it cost is its prompt. */
  r->metrics.hedge_wasted_tokens += (uint64_t)(p->prompt_est > 0 ? p->prompt_est : 0);
}
