/* The spend book (see spend.h): tenants in a sorted array, each with its local figures and one slot per
 * sender. */
#include "ledger/spend.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/slice.h"

struct remote {
  uint8_t node[SPEND_NODE_ID_LEN];
  uint64_t boot, seq;
  struct spend_figures f;
};

struct tenant {
  char name[SPEND_NAME_MAX];
  bool local_seen; /* this node counted or seeded something for it */
  struct spend_figures local;
  struct remote *remotes;
  int nremotes, cap;
};

struct spend_book {
  struct tenant *t; /* sorted by name */
  int n, cap;
  bool changed;
  uint64_t dropped;
};

struct spend_book *spend_book_new(void) {
  return xcalloc(1, sizeof(struct spend_book));
}

void spend_book_free(struct spend_book *b) {
  if (!b) return;
  for (int i = 0; i < b->n; i++)
    free(b->t[i].remotes);
  free(b->t);
  free(b);
}

/* find returns tenant name's entry, creating it (in order) when create is set and there is room; NULL else.
 */
static struct tenant *find(struct spend_book *b, const char *name, bool create) {
  int lo = 0, hi = b->n;
  while (lo < hi) {
    int mid = (lo + hi) / 2, c = strcmp(b->t[mid].name, name);
    if (c == 0) return &b->t[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (!create) return NULL;
  if (!name[0] || strlen(name) >= SPEND_NAME_MAX || b->n == SPEND_TENANTS) {
    b->dropped++;
    return NULL;
  }
  if (b->n == b->cap) {
    b->cap = b->cap ? 2 * b->cap : 8;
    b->t = xrealloc(b->t, (size_t)b->cap * sizeof *b->t);
  }
  memmove(&b->t[lo + 1], &b->t[lo], (size_t)(b->n - lo) * sizeof *b->t);
  b->n++;
  struct tenant *t = &b->t[lo];
  memset(t, 0, sizeof *t);
  str_copy(t->name, sizeof t->name, name);
  return t;
}

static const struct tenant *cfind(const struct spend_book *b, const char *name) {
  return find((struct spend_book *)b, name, false);
}

/* roll brings f to the day and month holding now_s: figures of an earlier period start again from 0. */
static void roll(struct spend_figures *f, int64_t now_s) {
  int64_t d = period_start(PERIOD_DAY, now_s), m = period_start(PERIOD_MONTH, now_s);
  if (f->day_start != d) f->day_start = d, f->day_nano = 0;
  if (f->month_start != m) f->month_start = m, f->month_nano = 0;
}

void spend_book_add(struct spend_book *b, const char *tenant, int64_t nano, int64_t now_s) {
  struct tenant *t = nano >= 0 ? find(b, tenant, true) : NULL;
  if (!t) return;
  roll(&t->local, now_s);
  t->local.day_nano += nano;
  t->local.month_nano += nano;
  t->local.total_nano += nano;
  t->local_seen = true;
  b->changed = true;
}

void spend_book_seed(struct spend_book *b, const char *tenant, const struct spend_figures *f, int64_t now_s) {
  struct tenant *t = find(b, tenant, true);
  if (!t) return;
  roll(&t->local, now_s);
  if (f->day_start == t->local.day_start) t->local.day_nano += f->day_nano;
  if (f->month_start == t->local.month_start) t->local.month_nano += f->month_nano;
  t->local.total_nano += f->total_nano;
  t->local_seen = true;
  b->changed = true;
}

void spend_book_merge(struct spend_book *b, const uint8_t node[SPEND_NODE_ID_LEN], uint64_t boot,
                      uint64_t seq, const char *tenant, const struct spend_figures *f) {
  struct tenant *t = find(b, tenant, true);
  if (!t) return;
  struct remote *r = NULL;
  for (int i = 0; i < t->nremotes && !r; i++)
    if (memcmp(t->remotes[i].node, node, SPEND_NODE_ID_LEN) == 0) r = &t->remotes[i];
  if (!r) {
    if (t->nremotes == SPEND_NODES) {
      b->dropped++;
      return;
    }
    if (t->nremotes == t->cap) {
      t->cap = t->cap ? 2 * t->cap : 4;
      t->remotes = xrealloc(t->remotes, (size_t)t->cap * sizeof *t->remotes);
    }
    r = &t->remotes[t->nremotes++];
    memset(r, 0, sizeof *r);
    memcpy(r->node, node, SPEND_NODE_ID_LEN);
  } else if (boot < r->boot || (boot == r->boot && seq <= r->seq)) {
    return;
  }
  r->boot = boot;
  r->seq = seq;
  r->f = *f;
}

/* figure is f's spend in period p, counting only figures of the period holding now_s. */
static int64_t figure(const struct spend_figures *f, enum period p, int64_t now_s) {
  if (p == PERIOD_DAY) return f->day_start == period_start(PERIOD_DAY, now_s) ? f->day_nano : 0;
  if (p == PERIOD_MONTH) return f->month_start == period_start(PERIOD_MONTH, now_s) ? f->month_nano : 0;
  return f->total_nano;
}

int64_t spend_book_spent(const struct spend_book *b, const char *tenant, enum period p, int64_t now_s) {
  const struct tenant *t = cfind(b, tenant);
  if (!t) return 0;
  int64_t sum = figure(&t->local, p, now_s);
  for (int i = 0; i < t->nremotes; i++)
    sum += figure(&t->remotes[i].f, p, now_s);
  return sum;
}

int spend_book_local(const struct spend_book *b, int from, int max, int64_t now_s,
                     char (*names)[SPEND_NAME_MAX], struct spend_figures *figs) {
  int n = 0, seen = 0;
  for (int i = 0; i < b->n && n < max; i++) {
    const struct tenant *t = &b->t[i];
    if (!t->local_seen || seen++ < from) continue;
    str_copy(names[n], SPEND_NAME_MAX, t->name);
    figs[n] = t->local;
    roll(&figs[n], now_s);
    n++;
  }
  return n;
}

bool spend_book_changed(const struct spend_book *b) { return b->changed; }
void spend_book_clear_changed(struct spend_book *b) { b->changed = false; }
uint64_t spend_book_dropped(const struct spend_book *b) { return b->dropped; }
