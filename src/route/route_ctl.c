/* Control-plane routing constraints: drains and pins as per-target bitmaps. */
#include "route/route_ctl.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void route_ctl_init(struct route_ctl *c, const char *self_node, const char *self_zone) {
  memset(c, 0, sizeof *c);
  str_copy(c->self_node, sizeof c->self_node, self_node ? self_node : "");
  str_copy(c->self_zone, sizeof c->self_zone, self_zone ? self_zone : "");
  c->stale = true;
}

void route_ctl_free(struct route_ctl *c) {
  for (int j = 0; j < c->npins; j++)
    free(c->pins[j].allow);
  free(c->deny);
  c->deny = NULL;
  c->words = 0;
  free(c->drains);
  free(c->pins);
  free(c->policies);
  free(c->prices);
  free(c->providers);
  c->providers = NULL;
  c->nproviders = 0;
  c->drains = NULL;
  c->pins = NULL;
  c->policies = NULL;
  c->prices = NULL;
  c->ndrains = c->npins = c->npolicies = c->nprices = 0;
}

void route_ctl_sync(struct route_ctl *c, const struct fsm *f) {
  struct route_ctl_policy *old = c->policies;
  int nold = c->npolicies;
  c->policies = NULL;
  c->npolicies = 0;
  route_ctl_free(c);
  int nd = fsm_count(f, FSM_DRAIN), np = fsm_count(f, FSM_PIN);
  if (nd > 0) c->drains = xcalloc((size_t)nd, sizeof *c->drains);
  if (np > 0) c->pins = xcalloc((size_t)np, sizeof *c->pins);
  for (int i = 0; i < nd; i++) {
    const struct fsm_drain *d = fsm_at(f, FSM_DRAIN, i);
    str_copy(c->drains[i], sizeof c->drains[i], d->node);
  }
  for (int i = 0; i < np; i++)
    c->pins[i].pin = *(const struct fsm_pin *)fsm_at(f, FSM_PIN, i);
  c->ndrains = nd;
  c->npins = np;
  int npol = fsm_count(f, FSM_POLICY);
  if (npol > 0) c->policies = xcalloc((size_t)npol, sizeof *c->policies);
  for (int i = 0, j = 0; i < npol; i++) {
    const struct fsm_policy *fp = fsm_at(f, FSM_POLICY, i);
    str_copy(c->policies[i].model, sizeof c->policies[i].model, fp->model);
    str_copy(c->policies[i].strategy, sizeof c->policies[i].strategy, fp->strategy);
    struct route_ctl_policy *cp = &c->policies[i];
    str_copy(cp->slo, sizeof cp->slo, fp->slo_class);
    cp->max_queue = fp->max_queue;
    cp->hedge = fp->hedge;
    cp->hedge_delay_ms = fp->hedge_delay_ms;
    cp->hedge_max_frac = fp->hedge_max_pct / 100.0;
    if (cp->hedge > 0 && cp->hedge_max_frac <= 0) cp->hedge_max_frac = ROUTE_CTL_HEDGE_FRAC; /* its own cap */
    adm_bucket_init(&cp->credit, 0, 1, 0); /* one hedge of credit to start with, like the router's */
    while (j < nold && strcmp(old[j].model, cp->model) < 0) j++; /* both lists in the FSM's key order */
    if (j < nold && strcmp(old[j].model, cp->model) == 0 && old[j].hedge_max_frac == cp->hedge_max_frac)
      cp->credit = old[j].credit;
    cp->nfallbacks = fp->nfallbacks;
    memcpy(cp->fallbacks, fp->fallbacks, sizeof cp->fallbacks);
  }
  free(old);
  c->npolicies = npol;
  int nprice = fsm_count(f, FSM_PRICE);
  if (nprice > 0) c->prices = xcalloc((size_t)nprice, sizeof *c->prices);
  for (int i = 0; i < nprice; i++) c->prices[i] = *(const struct fsm_price *)fsm_at(f, FSM_PRICE, i);
  c->nprices = nprice;
  int nprov = fsm_count(f, FSM_PROVIDER);
  if (nprov > 0) c->providers = xcalloc((size_t)nprov, sizeof *c->providers);
  for (int i = 0; i < nprov; i++) c->providers[i] = *(const struct fsm_provider *)fsm_at(f, FSM_PROVIDER, i);
  c->nproviders = nprov;
  c->stale = true;
}

double route_ctl_provider_share(const struct route_ctl *c, const char *provider) {
  int lo = 0, hi = c->nproviders - 1;
  while (lo <= hi) { /* sorted by name, as the FSM keeps them */
    int mid = (lo + hi) / 2, cmp = strcmp(c->providers[mid].name, provider);
    if (cmp == 0) return c->providers[mid].share;
    if (cmp < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return 1;
}

const struct fsm_price *route_ctl_price(const struct route_ctl *c, const char *model) {
  int lo = 0, hi = c->nprices - 1;
  while (lo <= hi) { /* the FSM keeps items sorted by key */
    int mid = (lo + hi) / 2, cmp = strcmp(c->prices[mid].model, model);
    if (cmp == 0) return &c->prices[mid];
    if (cmp < 0)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return NULL;
}

/* cmp_key orders like strcmp (unsigned bytes), a slice against a NUL-terminated key. */
static int cmp_key(struct slice a, const char *b) {
  size_t bl = strlen(b), n = a.len < bl ? a.len : bl;
  int c = memcmp(a.base, b, n);
  return c ? c : a.len < bl ? -1 : a.len > bl;
}

struct route_ctl_policy *route_ctl_policy(const struct route_ctl *c, struct slice model) {
  int lo = 0, hi = c->npolicies - 1; /* the FSM's key order: binary search, the request path asks often */
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2, r = cmp_key(model, c->policies[mid].model);
    if (r == 0) return &c->policies[mid];
    if (r < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  return NULL;
}

/* target_node: the node name target t runs on (this node's for its own targets). */
static const char *target_node(const struct route_ctl *c, const struct target *t) {
  return t->remote || t->node[0] ? t->node : c->self_node;
}

static bool pin_allows(const struct route_ctl *c, const struct fsm_pin *p, const struct target *t) {
  if (p->nnodes == 0 && p->nzones == 0) return true;
  const char *node = target_node(c, t);
  for (int i = 0; i < p->nnodes; i++)
    if (strcmp(p->nodes[i], node) == 0) return true;
  const char *zone = !t->remote && !t->node[0] ? c->self_zone : t->zone;
  for (int i = 0; zone[0] && i < p->nzones; i++)
    if (strcmp(p->zones[i], zone) == 0) return true;
  return false;
}

static void recompute(struct route_ctl *c, const struct store *s) {
  int words = (s->ntargets + 63) / 64 + 1;
  if (words != c->words) {
    free(c->deny);
    c->deny = xcalloc((size_t)words, sizeof *c->deny);
    for (int j = 0; j < c->npins; j++) {
      free(c->pins[j].allow);
      c->pins[j].allow = xcalloc((size_t)words, sizeof *c->pins[j].allow);
    }
    c->words = words;
  }
  memset(c->deny, 0, (size_t)words * sizeof *c->deny);
  for (int j = 0; j < c->npins; j++)
    memset(c->pins[j].allow, 0, (size_t)words * sizeof *c->pins[j].allow);
  for (int i = 0; i < s->ntargets; i++) {
    const struct target *t = &s->targets[i];
    const char *node = target_node(c, t);
    uint64_t bit = (uint64_t)1 << (i % 64);
    for (int k = 0; k < c->ndrains; k++)
      if (strcmp(c->drains[k], node) == 0) c->deny[i / 64] |= bit;
    for (int j = 0; j < c->npins; j++)
      if (pin_allows(c, &c->pins[j].pin, t)) c->pins[j].allow[i / 64] |= bit;
  }
  c->seen_gen = s->placement_gen;
  c->stale = false;
}

int route_ctl_filter(struct route_ctl *c, const struct store *s, struct slice model, int *ids, int n) {
  if (c->ndrains == 0 && c->npins == 0) return n;
  if (c->stale || c->seen_gen != s->placement_gen) recompute(c, s);
  const uint64_t *allow = NULL;
  for (int lo = 0, hi = c->npins - 1; lo <= hi && !allow;) { /* pins are in the FSM's key order */
    int mid = lo + (hi - lo) / 2, r = cmp_key(model, c->pins[mid].pin.model);
    if (r == 0) allow = c->pins[mid].allow;
    else if (r < 0) hi = mid - 1;
    else lo = mid + 1;
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    int id = ids[i];
    uint64_t bit = (uint64_t)1 << (id % 64);
    if (c->deny[id / 64] & bit) continue;
    if (allow && !(allow[id / 64] & bit)) continue;
    ids[m++] = id;
  }
  return m;
}
