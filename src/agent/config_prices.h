/* Prices in the agent config: the YAML `prices:` list and the --price / INFERMESH_PRICES specs. */
#ifndef IM_AGENT_CONFIG_PRICES_H
#define IM_AGENT_CONFIG_PRICES_H

#include <stddef.h>
#include <yaml.h>

#include "agent/config.h"

/* config_price_add adds a price from a spec "model=M,prompt=X,completion=Y[,cached=Z][,currency=C]"
 * (modified) of source (2 flag, 3 environment), replacing the prices of an earlier source. 0 or -EINVAL with
 * err. */
int config_price_add(struct agent_config *c, int source, char *spec, char *err, size_t errlen);

/* config_prices_yaml reads seq (a sequence of mappings {model, prompt, completion, cached, currency}) of
 * document d, replacing the prices of an earlier source. 0 or -EINVAL with a message naming file. */
int config_prices_yaml(struct agent_config *c, yaml_document_t *d, yaml_node_t *seq, const char *file,
                       char *err, size_t errlen);

#endif
