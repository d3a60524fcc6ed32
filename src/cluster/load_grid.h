/* The relay grid of compact load reports: n members (every alive member, sorted by id, the same list on every
 * node once membership has settled) laid out row by row in ceil(n / ceil(sqrt(n))) rows of even length (they
 * differ by one at most). A member sends its delta to the other members of its row; each member relays what
 * its row sent it, in one datagram per gateway, to the members of other rows whose column, modulo the length
 * of the relay's row, is the relay's column. So every member
 * hears every other member's report exactly once, through at most one relay, and each sends about
 * 2 * sqrt(n) datagrams per round instead of n. Pure functions, no state. */
#ifndef IM_CLUSTER_LOAD_GRID_H
#define IM_CLUSTER_LOAD_GRID_H

#include <stdbool.h>

/* load_grid_same_row: members a and b (indexes in 0..n) share a row (phase one: a sends its delta to b). */
bool load_grid_same_row(int n, int a, int b);

/* load_grid_relays_to: relay r forwards what its row sent it to member m (phase two). */
bool load_grid_relays_to(int n, int r, int m);

#endif
