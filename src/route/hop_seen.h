/* The hop signatures an agent has accepted within the clock-skew window, so that a captured x-infermesh-hop
 * header cannot be presented a second time (hop_verify). */
#ifndef IM_ROUTE_HOP_SEEN_H
#define IM_ROUTE_HOP_SEEN_H

#include <stddef.h>
#include <stdint.h>

#define HOP_SEEN_MAX_SLOTS (1u << 22) /* 64 MiB at most: ~2M signatures live at once (17k hops/s for 120 s)  \
                                       */

struct hop_seen_slot {
  uint64_t key;    /* 0: empty */
  int64_t expires; /* unix seconds after which the signature is refused by its timestamp anyway */
};

/* An open-addressing set of keys with expiry; zero-initialized is empty and ready. Expired keys are dropped
 * when the table is rebuilt (each time it reaches half full), so memory follows the live count. */
struct hop_seen {
  struct hop_seen_slot *slots; /* owned */
  size_t cap, n;
  size_t max_slots; /* a power of two >= 1024; 0: HOP_SEEN_MAX_SLOTS */
  int64_t earliest; /* no key expires before this (a lower bound, kept as keys are added) */
};

/* hop_seen_add remembers key (a signature's first 8 bytes; any value) until expires_s. Returns 0 when it was
 * not there, -EALREADY when it is (a replay), -ENOSPC when max_slots / 2 live keys leave no room. now_s
 * decides which keys have expired. */
int hop_seen_add(struct hop_seen *s, uint64_t key, int64_t expires_s, int64_t now_s);

/* hop_seen_free releases the table; s is empty and usable afterwards. */
void hop_seen_free(struct hop_seen *s);

#endif
