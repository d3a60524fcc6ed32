/* The agent's side of api/mesh_port.h: the membership interface over agent/mesh. */
#include "agent/api_ports.h"

static void members_json(void *ctx, struct buf *out) { mesh_members_json(ctx, out); }
static const char *node_name(const void *ctx) { return mesh_node_name(ctx); }
static const uint8_t *node_id(const void *ctx) { return mesh_node_id(ctx); }
static const char *find_node(const void *ctx, const char *name, bool *self, uint8_t *id) {
  return mesh_find_node(ctx, name, self, id);
}
static void set_drain(void *ctx, bool draining) { mesh_set_drain(ctx, draining); }

struct api_mesh api_mesh_of(struct mesh *m) {
  return (struct api_mesh){.ctx = m,
                           .members_json = members_json,
                           .node_name = node_name,
                           .node_id = node_id,
                           .find_node = find_node,
                           .set_drain = set_drain};
}
