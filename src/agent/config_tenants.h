/* The `tenants:` list of the agent's YAML config (config.c calls it). */
#ifndef IM_AGENT_CONFIG_TENANTS_H
#define IM_AGENT_CONFIG_TENANTS_H

#include <stddef.h>
#include <yaml.h>

#include "agent/config.h"

/* config_tenants_yaml reads seq (a YAML sequence of mappings) of document d into c's tenants, replacing those
 * of any earlier source. Each key value is hashed and then wiped from the document's memory. 0, or -EINVAL
 * with a message naming file in err. */
int config_tenants_yaml(struct agent_config *c, yaml_document_t *d, yaml_node_t *seq, const char *file,
                        char *err, size_t errlen);

#endif
