/* A model's policy at request time (DESIGN §6, §9): fallback models when the model asked for has no target,
 * and the policy's bound on the model's queued requests. */
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "route/proxy_int.h"

static bool serves_now(struct proxy *p) {
  struct router_cands c;
  return proxy_candidates(p, &c) > 0;
}

bool proxy_fallback(struct proxy *p, bool need_candidates) {
  struct router *r = p->r;
  if (p->fallback_from[0]) return false; /* one switch: fallbacks of fallbacks are not followed */
  /* A forwarded request was routed (and its tenant checked) by the node that sent it: never switch here. */
  if (p->local_only) return false;
  const struct route_ctl_policy *cp = route_ctl_policy(&r->ctl, p->oai.model);
  if (!cp || cp->nfallbacks == 0) return false;
  const struct tenant_conf *tc = NULL;
  if (r->opts.ntenants) {
    if (p->tenant < 0 || p->tenant >= r->opts.ntenants) return false; /* its tenant is gone: no new model */
    tc = &r->opts.tenants[p->tenant];
  }
  char asked[sizeof p->fallback_from];
  size_t n = p->oai.model.len < sizeof asked ? p->oai.model.len : sizeof asked - 1;
  memcpy(asked, p->oai.model.base, n);
  asked[n] = '\0';
  for (int i = 0; i < cp->nfallbacks; i++) {
    const char *fb = cp->fallbacks[i];
    struct slice m = slice_cstr(fb);
    if (slice_eqz(m, asked) || !store_model_known(r->store, m) || (tc && !tenant_model_allowed(tc, m))) continue;
    struct slice was = p->oai.model;
    p->oai.model = m;
    if (need_candidates && !serves_now(p)) {
      p->oai.model = was;
      continue;
    }
    str_copy(p->fallback_from, sizeof p->fallback_from, asked);
    str_copy(p->model, sizeof p->model, fb);
    p->oai.model = slice_cstr(p->model);
    log_info("model fallback", "id=%s asked=\"%s\" served_as=\"%s\"", p->request_id, p->fallback_from, p->model);
    return true;
  }
  return false;
}

bool proxy_alias(struct proxy *p) {
  const char *m = model_alias_find(p->r->opts.aliases, p->r->opts.naliases, p->oai.model);
  if (!m) return false;
  str_copy(p->model, sizeof p->model, m);
  p->oai.model = slice_cstr(p->model);
  p->aliased = true;
  return true;
}

void proxy_fallback_body(struct proxy *p) {
  struct slice raw = p->oai.model_raw;
  struct slice body = p->req->body;
  for (int i = 0; i < p->nparts; i++) {
    struct slice s = p->parts[i];
    bool in_body = s.base >= body.base && s.base + s.len <= body.base + body.len;
    if (!in_body || raw.base < s.base || raw.base + raw.len > s.base + s.len) continue;
    /* parts[i] = before | model | after: two more parts, the rest shifted up. */
    memmove(&p->parts[i + 3], &p->parts[i + 1], (size_t)(p->nparts - i - 1) * sizeof p->parts[0]);
    p->parts[i] = slice_make(s.base, (size_t)(raw.base - s.base));
    p->parts[i + 1] = slice_cstr(p->model);
    p->parts[i + 2] = slice_make(raw.base + raw.len, (size_t)(s.base + s.len - (raw.base + raw.len)));
    p->nparts += 2;
    return;
  }
}

int proxy_model_queued(const struct proxy *p) {
  const struct admission *a = &p->r->adm;
  int n = 0;
  for (int i = 0; i < a->nq; i++) {
    const struct proxy *q = a->q[i].udata;
    if (!a->q[i].dead && strcmp(q->model, p->model) == 0) n++;
  }
  return n;
}
