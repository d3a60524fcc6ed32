/* Budget spend across the mesh (see budget_sync.h). */
#include "agent/budget_sync.h"

#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/slice.h"

static void on_report(void *arg, const struct gossip_spend *sp) {
  struct budget_sync *s = arg;
  for (int i = 0; i < sp->ntenants; i++) {
    const struct gossip_tenant_spend *t = &sp->tenants[i];
    struct spend_figures f = {.day_start = t->day_start,
                              .day_nano = t->day_nano,
                              .month_start = t->month_start,
                              .month_nano = t->month_nano,
                              .total_nano = t->total_nano};
    spend_book_merge(s->book, sp->from, sp->boot, sp->seq, t->tenant, &f);
  }
}

/* send_round reports every tenant this node has spend for, one datagram per GOSSIP_SPEND_TENANTS. */
static void send_round(struct budget_sync *s) {
  int64_t now = clock_wall_s();
  char names[GOSSIP_SPEND_TENANTS][SPEND_NAME_MAX];
  struct spend_figures figs[GOSSIP_SPEND_TENANTS];
  _Static_assert(sizeof names[0] == sizeof((struct gossip_tenant_spend *)0)->tenant, "tenant name sizes");
  for (int from = 0;; from += GOSSIP_SPEND_TENANTS) {
    int n = spend_book_local(s->book, from, GOSSIP_SPEND_TENANTS, now, names, figs);
    if (n == 0) break;
    struct gossip_spend sp = {.ntenants = n};
    for (int i = 0; i < n; i++) {
      struct gossip_tenant_spend *t = &sp.tenants[i];
      str_copy(t->tenant, sizeof t->tenant, names[i]);
      t->day_start = figs[i].day_start;
      t->day_nano = figs[i].day_nano;
      t->month_start = figs[i].month_start;
      t->month_nano = figs[i].month_nano;
      t->total_nano = figs[i].total_nano;
    }
    mesh_send_spend(s->mesh, &sp);
    if (n < GOSSIP_SPEND_TENANTS) break;
  }
}

static void timer_cb(uv_timer_t *t) {
  struct budget_sync *s = t->data;
  uint64_t now = clock_mono_ns() / 1000000, since = now - s->sent_ms;
  uint64_t every = (uint64_t)mesh_num_alive(s->mesh) * BUDGET_SYNC_MS_PER_MEMBER;
  if (every < BUDGET_SYNC_MIN_MS) every = BUDGET_SYNC_MIN_MS;
  if (every > BUDGET_SYNC_MAX_MS) every = BUDGET_SYNC_MAX_MS;
  if (since < every || (!spend_book_changed(s->book) && since < BUDGET_SYNC_MAX_MS)) return;
  spend_book_clear_changed(s->book);
  s->sent_ms = now;
  send_round(s);
}

void budget_sync_start(struct budget_sync *s, uv_loop_t *loop, struct spend_book *book, struct mesh *mesh) {
  memset(s, 0, sizeof *s);
  s->book = book;
  s->mesh = mesh;
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  mesh_on_spend(mesh, on_report, s);
  uv_timer_start(&s->timer, timer_cb, BUDGET_SYNC_MIN_MS, BUDGET_SYNC_MIN_MS);
}

static void closed(uv_handle_t *h) {
  struct budget_sync *s = h->data;
  if (s->closed_cb) s->closed_cb(s->closed_arg);
}

void budget_sync_close(struct budget_sync *s, void (*cb)(void *arg), void *arg) {
  mesh_on_spend(s->mesh, NULL, NULL);
  s->closed_cb = cb;
  s->closed_arg = arg;
  uv_close((uv_handle_t *)&s->timer, closed);
}
