/* Metering on the request path: the cost a response reports (usage.cost, OpenRouter's convention), and the
 * request record handed to the observers, whose durable keeping the end of a complete answer waits for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/amount.h"
#include "route/proxy_int.h"

/* Owned by itself: freed when every observer that keeps the record called back, which may be after p ended. */
struct proxy_meter_wait {
  struct proxy *p; /* NULL once p ended first */
  void (*then)(struct proxy *p);
  int pending; /* observers yet to call back (+1 while proxy_conclude is still handing the record out) */
};

void proxy_meter_cost(struct proxy *p) {
  const struct router_meter *m = &p->r->meter;
  /* A request forwarded by another agent is priced there, once: the answer it relays gets the cost. */
  p->costed = !p->local_only && m->cost && p->usage.present &&
              m->cost(m->arg, p->model, &p->usage, &p->cost_nano, p->currency);
  if (!p->costed) return;
  char a[32];
  amount_format(p->cost_nano, a, sizeof a);
  snprintf(p->cost_text, sizeof p->cost_text, ",\"cost\":%s", a);
}

int proxy_meter_split(struct proxy *p, struct slice json, struct slice parts[3]) {
  struct slice u = p->usage.span;
  parts[0] = json;
  if (!p->costed || !u.base || u.len < 2 || u.base < json.base || u.base + u.len > json.base + json.len)
    return 1;
  const char *close = u.base + u.len - 1; /* the usage object's '}' */
  bool empty = true;                      /* {} or { }: no member to follow */
  for (const char *c = u.base + 1; c < close && empty; c++)
    empty = *c == ' ' || *c == '\t' || *c == '\n' || *c == '\r';
  parts[0] = slice_make(json.base, (size_t)(close - json.base));
  parts[1] = empty ? slice_cstr(p->cost_text + 1) : slice_cstr(p->cost_text); /* {} -> {"cost":X} */
  parts[2] = slice_make(close, (size_t)(json.base + json.len - close));
  return 3;
}

static void record_done_cb(void *arg, int status) {
  struct proxy_meter_wait *w = arg;
  if (--w->pending > 0) return;
  struct proxy *p = w->p;
  void (*then)(struct proxy *) = w->then;
  free(w);
  if (!p) return; /* p ended first (its client left) */
  p->wait = NULL;
  then(p); /* a failed commit is retried by the observer: the client is not made to wait for the disk */
}

bool proxy_conclude(struct proxy *p, int status, void (*then)(struct proxy *p)) {
  struct router *r = p->r;
  if (p->recorded) return false;
  p->recorded = true;
  struct request_record rec;
  proxy_record(p, status, &rec);
  struct proxy_meter_wait *w = NULL;
  for (int i = 0; i < r->nobservers; i++) {
    const struct request_observer *o = &r->observers[i];
    if (o->on_record) o->on_record(o->arg, &rec);
    if (!o->keep) continue;
    if (then && !w) {
      w = xmalloc(sizeof *w);
      *w = (struct proxy_meter_wait){.p = p, .then = then, .pending = 1};
    }
    if (o->keep(o->arg, &rec, w ? record_done_cb : NULL, w) && w) w->pending++;
  }
  if (!w) return false;
  if (--w->pending == 0) { /* nobody kept it, or every keeper is done already */
    free(w);
    return false;
  }
  p->wait = w;
  return true;
}

void proxy_meter_detach(struct proxy *p) {
  if (p->wait) p->wait->p = NULL;
  p->wait = NULL;
}
