/* Prices in the agent config: the YAML list and the flag/environment specs, checked and stored. */
#include "agent/config_prices.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Append p from source, replacing the prices of an earlier source; a model priced twice is an error. */
static int add(struct agent_config *c, int source, const struct ledger_price_conf *p, char *err,
               size_t errlen) {
  if (source > c->prices_source) {
    c->nprices = 0;
    c->prices_source = source;
  }
  for (int i = 0; i < c->nprices; i++)
    if (strcmp(c->prices[i].model, p->model) == 0) {
      snprintf(err, errlen, "model '%s' is priced twice", p->model);
      return -EINVAL;
    }
  if (c->nprices == CONFIG_MAX_PRICES) {
    snprintf(err, errlen, "too many prices (at most %d)", CONFIG_MAX_PRICES);
    return -EINVAL;
  }
  c->prices[c->nprices++] = *p;
  return 0;
}

int config_price_add(struct agent_config *c, int source, char *spec, char *err, size_t errlen) {
  struct ledger_price_conf p;
  char why[200];
  int rc = ledger_price_conf_parse(&p, spec, why, sizeof why);
  if (rc == 0) rc = add(c, source, &p, why, sizeof why);
  if (rc) snprintf(err, errlen, "%s: %s", source == 3 ? "INFERMESH_PRICES" : "--price", why);
  return rc;
}

int config_prices_yaml(struct agent_config *c, yaml_document_t *d, yaml_node_t *seq, const char *file,
                       char *err, size_t errlen) {
  static const char example[] = "[{model: llama, prompt: 0.5, completion: 1.5}]";
  if (seq->type != YAML_SEQUENCE_NODE) {
    snprintf(err, errlen, "%s: 'prices' must be a list like %s", file, example);
    return -EINVAL;
  }
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *m = yaml_document_get_node(d, *it);
    struct ledger_price_conf p;
    char why[200];
    int rc = 0;
    ledger_price_conf_default(&p);
    if (!m || m->type != YAML_MAPPING_NODE) {
      snprintf(err, errlen, "%s: each price must be a mapping like %s", file, example + 1);
      return -EINVAL;
    }
    for (yaml_node_pair_t *kv = m->data.mapping.pairs.start; kv < m->data.mapping.pairs.top && !rc; kv++) {
      yaml_node_t *k = yaml_document_get_node(d, kv->key), *v = yaml_document_get_node(d, kv->value);
      if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
        snprintf(why, sizeof why, "price settings are KEY: VALUE scalars");
        rc = -EINVAL;
        break;
      }
      rc = ledger_price_conf_set(&p, (const char *)k->data.scalar.value, (const char *)v->data.scalar.value,
                                 why, sizeof why);
    }
    if (rc == 0 && (!p.model[0] || p.price.prompt_per_mtok < 0 || p.price.completion_per_mtok < 0)) {
      snprintf(why, sizeof why, "a price needs model, prompt and completion (per million tokens)");
      rc = -EINVAL;
    }
    if (rc == 0) rc = add(c, 1, &p, why, sizeof why);
    if (rc) {
      snprintf(err, errlen, "%s: prices: %s", file, why);
      return rc;
    }
  }
  return 0;
}
