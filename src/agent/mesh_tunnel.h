/* The agent's tunnel configuration: extra allowed ports and local forwarders (cluster.tunnel_allow,
 * cluster.tunnel_forward), applied to the mesh's tunnel (tunnel/tunnel.h). */
#ifndef IM_AGENT_MESH_TUNNEL_H
#define IM_AGENT_MESH_TUNNEL_H

#include <stddef.h>

#include "tunnel/tunnel.h"

/* mesh_tunnel_configure allows the ports listed in allow ("PORT,PORT,..."; "" = none) on t, relayed to
 * 127.0.0.1, and starts the forwarders listed in forward ("[HOST:]PORT=NODE:PORT,..."; HOST defaults to
 * 127.0.0.1; the forwarders are owned by t). 0, or -EINVAL / a listen error with a message for the user in
 * err (the entry is named). */
int mesh_tunnel_configure(struct tunnel *t, const char *allow, const char *forward, char *err, size_t errlen);

#endif
