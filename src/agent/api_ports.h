/* The agent's side of the interfaces api/ defines for what it needs of the agent (api/mesh_port.h,
 * api/control_port.h). */
#ifndef IM_AGENT_API_PORTS_H
#define IM_AGENT_API_PORTS_H

#include "agent/config.h"
#include "agent/control.h"
#include "agent/mesh.h"
#include "api/control_port.h"
#include "api/mesh_port.h"

/* api_mesh_of returns the membership interface over m (borrowed; NULL: alone, ctx NULL). */
struct api_mesh api_mesh_of(struct mesh *m);
/* api_control_of returns the control-plane interface over c (NULL: none, ctx NULL), with m (NULL: alone) and
 * cfg's node name and admin token (all borrowed). */
struct api_control api_control_of(struct control *c, struct mesh *m, const struct agent_config *cfg);

#endif
