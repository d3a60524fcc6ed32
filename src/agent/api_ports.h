/* The agent's side of the interfaces api/ defines for what it needs of the agent (api/mesh_port.h). */
#ifndef IM_AGENT_API_PORTS_H
#define IM_AGENT_API_PORTS_H

#include "agent/mesh.h"
#include "api/mesh_port.h"

/* api_mesh_of returns the membership interface over m (borrowed; NULL: alone, ctx NULL). */
struct api_mesh api_mesh_of(struct mesh *m);

#endif
