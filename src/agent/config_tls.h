/* The `tls:` settings of the agent config: the client-certificate map and the checks across the TLS keys
 * (config.c calls them). */
#ifndef IM_AGENT_CONFIG_TLS_H
#define IM_AGENT_CONFIG_TLS_H

#include <stddef.h>
#include <yaml.h>

#include "agent/config.h"

/* config_tls_map_add adds one "CN=ROLE" entry (ROLE: admin or a tenant's name) from source (1 file, 2 flag,
 * 3 environment), replacing the entries of an earlier source. 0, or -EINVAL with a message naming src. */
int config_tls_map_add(struct agent_config *c, int source, const char *spec, const char *src, char *err,
                       size_t errlen);
/* config_tls_map_yaml reads `tls.client_map` (a YAML mapping {CN: ROLE}) of document d. 0 or -EINVAL. */
int config_tls_map_yaml(struct agent_config *c, yaml_document_t *d, yaml_node_t *map, const char *file,
                        char *err, size_t errlen);
/* config_tls_check checks the TLS settings together once every source is read: cert and key go together,
 * client_ca needs them, client_map needs client_ca, and a CN mapped to admin needs an admin token. 0 or
 * -EINVAL. */
int config_tls_check(const struct agent_config *c, char *err, size_t errlen);

#endif
