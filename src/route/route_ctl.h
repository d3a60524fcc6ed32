/* Control-plane routing constraints (DESIGN §4, §6): durable drains and model pins from the Raft FSM.
 *
 * The agent copies the FSM's drains and pins here whenever its index changes (route_ctl_sync, loop thread);
 * the proxy filters its candidates with route_ctl_filter. Per-target verdicts (drained node; allowed by each
 * pin) are precomputed as bitmaps and recomputed only when the FSM copy or the store's target set changes, so
 * the hot path is a few bit tests, and nothing at all while no drain or pin exists. Not thread-safe. */
#ifndef IM_ROUTE_ROUTE_CTL_H
#define IM_ROUTE_ROUTE_CTL_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/fsm.h"
#include "route/admission.h"
#include "core/slice.h"
#include "state/store.h"

/* The hedged share of a model whose policy turns hedging on without a cap (the router's default cap, 5%). */
#define ROUTE_CTL_HEDGE_FRAC 0.05

struct route_ctl_pin {
  struct fsm_pin pin;              /* copy */
  uint64_t *allow;                 /* owned: targets on an allowed node / in an allowed zone (words bits) */
};

/* A model's routing policy from the FSM, as the router uses it. */
struct route_ctl_policy {
  char model[FSM_NAME_MAX];
  char strategy[32]; /* state/policy.h name; "" = the router's default */
  char slo[16];      /* "", "latency" or "throughput": the class of requests that do not say */
  int max_queue;     /* requests of this model that may wait in the admission queue; 0 = only the router's bound */
  int hedge;         /* fsm_policy.hedge: 0 the router's default, 1 hedge latency-class requests, -1 never */
  uint32_t hedge_delay_ms;  /* fixed hedge delay; 0 = the target's observed p95 time to first byte */
  double hedge_max_frac;    /* cap on this model's hedged share (0..1); 0 = the router's cap (hedge 1 without a
                               cap: ROUTE_CTL_HEDGE_FRAC, so the router's cap of 0 does not starve it) */
  struct adm_bucket credit; /* its hedge credit when hedge_max_frac > 0 (+frac per request, -1 per hedge) */
  int nfallbacks;
  char fallbacks[FSM_FALLBACKS][FSM_NAME_MAX]; /* tried in order when no target serves the model */
};

struct route_ctl {
  char self_node[64], self_zone[32]; /* this node's name and zone (for its own targets, node "") */
  int ndrains, npins, npolicies, nprices, nproviders;
  struct fsm_price *prices;          /* owned: copies, in the FSM's key (model) order */
  struct fsm_provider *providers;    /* owned: copies, in the FSM's key (name) order */
  struct route_ctl_policy *policies; /* owned */
  char (*drains)[FSM_NAME_MAX];   /* owned: drained node names */
  struct route_ctl_pin *pins;     /* owned */
  uint64_t *deny;                 /* owned: targets of drained nodes, a bitmap of words words ... */
  int words;                      /* ... sized for the store's targets at the last recompute */
  uint64_t seen_gen;              /* store->placement_gen the bitmaps were computed for */
  bool stale;                     /* the constraints changed since: recompute */
};

/* route_ctl_init: no constraints; self_node/self_zone (copied, may be "") name this node. */
void route_ctl_init(struct route_ctl *c, const char *self_node, const char *self_zone);
void route_ctl_free(struct route_ctl *c);

/* route_ctl_sync replaces the constraints by f's drains, pins, policies, prices and providers (f borrowed, only
 * during the call).
 * A policy whose hedging settings did not change keeps its hedge credit. */
void route_ctl_sync(struct route_ctl *c, const struct fsm *f);

/* route_ctl_policy returns model's policy, or NULL when it has none. Valid until the next sync; the caller may
 * take from and add to its credit bucket (the only field meant to change). */
struct route_ctl_policy *route_ctl_policy(const struct route_ctl *c, struct slice model);

/* route_ctl_price returns model's price from the control plane, or NULL. Valid until the next sync. */
const struct fsm_price *route_ctl_price(const struct route_ctl *c, const char *model);

/* route_ctl_provider_share is the part of a served request's cost provider earns: its control-plane share, 1
 * when it has none. */
double route_ctl_provider_share(const struct route_ctl *c, const char *provider);

/* route_ctl_filter removes from ids[0..n) the targets of s the constraints rule out for model (a drained
 * node's targets; with a pin for model, targets whose node is not among its nodes nor its zones — this node's
 * zone for its own targets, the zone a remote node announces in its membership for the others). Order is kept;
 * returns the new count. Recomputes the bitmaps first when s's placement changed (a target added, a node's
 * name or zone changed). */
int route_ctl_filter(struct route_ctl *c, const struct store *s, struct slice model, int *ids, int n);

#endif
