/* Tenants in the agent config: the YAML list and the flag/environment specs, checked and stored hashed. */
#include "agent/config_tenants.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

/* Append t (already parsed) from source, replacing the tenants of an earlier source. */
static int add(struct agent_config *c, int source, const struct tenant_conf *t, char *err, size_t errlen) {
  if (source > c->tenants_source) {
    c->ntenants = 0;
    c->tenants_source = source;
  }
  if (c->ntenants == TENANTS_MAX) {
    snprintf(err, errlen, "too many tenants (at most %d)", TENANTS_MAX);
    return -EINVAL;
  }
  int rc = tenant_conf_check(t, c->tenants, c->ntenants, err, errlen);
  if (rc) return rc;
  c->tenants[c->ntenants++] = *t;
  return 0;
}

int config_tenant_add(struct agent_config *c, int source, char *spec, char *err, size_t errlen) {
  struct tenant_conf t;
  char why[200];
  int rc = tenant_conf_parse(&t, spec, why, sizeof why);
  if (rc == 0) rc = add(c, source, &t, why, sizeof why);
  sodium_memzero(&t, sizeof t);
  if (rc) snprintf(err, errlen, "%s: %s", source == 3 ? "INFERMESH_TENANTS" : "--tenant", why);
  return rc;
}

int config_tenants_yaml(struct agent_config *c, yaml_document_t *d, yaml_node_t *seq, const char *file,
                        char *err, size_t errlen) {
  if (seq->type != YAML_SEQUENCE_NODE) {
    snprintf(err, errlen, "%s: 'tenants' must be a list like [{name: team-a, key: \"sk-...\", weight: 2}]",
             file);
    return -EINVAL;
  }
  for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
    yaml_node_t *m = yaml_document_get_node(d, *it);
    struct tenant_conf t;
    char why[200];
    int rc = 0;
    tenant_conf_default(&t);
    if (!m || m->type != YAML_MAPPING_NODE) {
      snprintf(err, errlen, "%s: each tenant must be a mapping like {name: team-a, key: \"sk-...\"}", file);
      return -EINVAL;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top && !rc; p++) {
      yaml_node_t *k = yaml_document_get_node(d, p->key), *v = yaml_document_get_node(d, p->value);
      if (k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "models") == 0 &&
          v->type == YAML_SEQUENCE_NODE) { /* models: [llama-3-8b, qwen-7b] limits the tenant to these */
        for (yaml_node_item_t *mi = v->data.sequence.items.start; mi < v->data.sequence.items.top && !rc; mi++) {
          yaml_node_t *mv = yaml_document_get_node(d, *mi);
          if (!mv || mv->type != YAML_SCALAR_NODE) {
            snprintf(why, sizeof why, "tenant models must be a list of model names");
            rc = -EINVAL;
          } else {
            rc = tenant_conf_set(&t, "model", (const char *)mv->data.scalar.value, why, sizeof why);
          }
        }
        continue;
      }
      if (k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
        snprintf(why, sizeof why, "tenant settings must be single values");
        rc = -EINVAL;
        break;
      }
      const char *ks = (const char *)k->data.scalar.value;
      rc = tenant_conf_set(&t, ks, (const char *)v->data.scalar.value, why, sizeof why);
      if (strcmp(ks, "key") == 0) sodium_memzero(v->data.scalar.value, v->data.scalar.length);
    }
    if (rc == 0) rc = add(c, 1, &t, why, sizeof why);
    sodium_memzero(&t, sizeof t);
    if (rc) {
      snprintf(err, errlen, "%s: %s", file, why);
      return rc;
    }
  }
  return 0;
}
