/* The Raft autopilot of a server agent: on every server tick the configuration follows gossip — servers are
 * added and promoted (craft_reconcile), failed ones removed (craft_autopilot; the rules are in cluster/raft.h).
 *
 * A server counts as failed once gossip has not reported it alive for the dead-server grace, or at once when
 * gossip says it left gracefully. The grace is 30 s, or INFERMESH_RAFT_DEAD_GRACE_MS (milliseconds, read on
 * every tick; tests use ~2 s). */
#include "agent/control_int.h"

#include <stdlib.h>

#include "core/log.h"
#include "core/slice.h"

#define DEAD_GRACE_MS 30000u
#define DEAD_GRACE_MAX_MS 86400000u /* a day */
#define AUTOPILOT_MAX 64             /* servers looked at (control.c asks gossip for as many) */

/* dead_grace_ms reads INFERMESH_RAFT_DEAD_GRACE_MS; an invalid value is reported once and ignored. */
static unsigned dead_grace_ms(void) {
  static bool warned;
  const char *e = getenv("INFERMESH_RAFT_DEAD_GRACE_MS");
  uint64_t v;
  if (!e || !*e) return DEAD_GRACE_MS;
  if (slice_to_u64(slice_cstr(e), &v) == 0 && v <= DEAD_GRACE_MAX_MS) return (unsigned)v;
  if (!warned) log_warn("INFERMESH_RAFT_DEAD_GRACE_MS ignored: not milliseconds up to a day", "value=\"%s\"", e);
  warned = true;
  return DEAD_GRACE_MS;
}

void control_autopilot(struct control *c, const struct mesh_server *sv, int n) {
  struct craft_server alive[AUTOPILOT_MAX];
  struct mesh_server left_sv[AUTOPILOT_MAX];
  uint64_t left[AUTOPILOT_MAX];
  if (n > AUTOPILOT_MAX) n = AUTOPILOT_MAX;
  for (int i = 0; i < n; i++) {
    alive[i].id = craft_id_from_pk(sv[i].id);
    str_copy(alive[i].address, sizeof alive[i].address, sv[i].raft_addr);
    alive[i].role = CRAFT_VOTER;
  }
  int nleft = mesh_left_servers(c->env.mesh, left_sv, AUTOPILOT_MAX);
  for (int i = 0; i < nleft; i++) left[i] = craft_id_from_pk(left_sv[i].id);
  craft_autopilot(c->raft, alive, n, left, nleft, dead_grace_ms());
  craft_reconcile(c->raft, alive, n); /* does nothing while the removal is in flight */
}
