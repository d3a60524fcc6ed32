/* The spend book: what each tenant spent, here and mesh-wide, for its budget (DESIGN §8). Pure: no I/O.
 *
 * Every node counts the cost of the requests it took in as ingress ("local" figures: per tenant the current
 * UTC day, month and all time) and reports those figures to the others (gossip spend reports). A node's view
 * of a tenant's spend in a period is its own figure plus the newest figure each other node reported for that
 * period. Figures are absolute, so a report lost, repeated or reordered never counts twice: per (sender,
 * tenant) only the newest (boot, seq) is kept. A sender's figures stay after it left (its spend happened).
 *
 * Not thread-safe: one owner (the agent's loop). Memory is bounded: SPEND_TENANTS tenants, SPEND_NODES
 * senders per tenant; beyond, new names are not tracked (counted in spend_book_dropped). */
#ifndef IM_LEDGER_SPEND_H
#define IM_LEDGER_SPEND_H

#include <stdbool.h>
#include <stdint.h>

#include "core/period.h"

#define SPEND_TENANTS 1024
#define SPEND_NODES 1024
#define SPEND_NAME_MAX 64 /* a tenant name with its NUL */
#define SPEND_NODE_ID_LEN 32

/* One tenant's figures (nano-units of the prices' currency). */
struct spend_figures {
  int64_t day_start, day_nano;     /* unix seconds of the day's 00:00 UTC; spend since */
  int64_t month_start, month_nano; /* the first of the month, 00:00 UTC; spend since */
  int64_t total_nano;
};

struct spend_book;

/* spend_book_new returns an empty book, owned by the caller (free with spend_book_free). */
struct spend_book *spend_book_new(void);
void spend_book_free(struct spend_book *b);

/* spend_book_add counts nano (>= 0) spent by tenant at this node at unix time now_s (figures of an earlier
 * day or month are reset first). An empty tenant name is ignored. */
void spend_book_add(struct spend_book *b, const char *tenant, int64_t nano, int64_t now_s);

/* spend_book_seed adds f (as read back from this node's ledger at start, for the periods holding now_s) to
 * tenant's local figures. */
void spend_book_seed(struct spend_book *b, const char *tenant, const struct spend_figures *f, int64_t now_s);

/* spend_book_merge keeps f as node's figures for tenant when (boot, seq) is newer than what was kept. */
void spend_book_merge(struct spend_book *b, const uint8_t node[SPEND_NODE_ID_LEN], uint64_t boot,
                      uint64_t seq, const char *tenant, const struct spend_figures *f);

/* spend_book_spent is tenant's spend in period p as of now_s: this node's plus every reporter's. */
int64_t spend_book_spent(const struct spend_book *b, const char *tenant, enum period p, int64_t now_s);

/* spend_book_local copies up to max of this node's tenants, starting at the from-th, with figures as of
 * now_s, into names (SPEND_NAME_MAX bytes each) and figs; returns how many. Tenants are in a stable order. */
int spend_book_local(const struct spend_book *b, int from, int max, int64_t now_s,
                     char (*names)[SPEND_NAME_MAX], struct spend_figures *figs);

/* spend_book_changed: did local figures change since the last spend_book_clear_changed? */
bool spend_book_changed(const struct spend_book *b);
void spend_book_clear_changed(struct spend_book *b);

/* spend_book_dropped counts updates refused for want of room (tenants or senders over the bounds). */
uint64_t spend_book_dropped(const struct spend_book *b);

#endif
