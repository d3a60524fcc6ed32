/* TLS settings of the agent config: the client-certificate map (CN -> admin or tenant) and cross-checks. */
#include "agent/config_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int add(struct agent_config *c, int source, const char *cn, size_t cnlen, const char *role,
               const char *src, char *err, size_t errlen) {
  struct config_tls *t = &c->tls;
  if (source > t->map_source) t->nmap = 0, t->map_source = source;
  if (cnlen == 0 || cnlen >= sizeof t->map[0].cn || !role[0] || strlen(role) >= sizeof t->map[0].role) {
    snprintf(err, errlen,
             "%s: '%.*s=%s' must be CN=ROLE, ROLE admin or a tenant's name (CN < %zu, ROLE < %zu "
             "characters)",
             src, (int)cnlen, cn, role, sizeof t->map[0].cn, sizeof t->map[0].role);
    return -EINVAL;
  }
  for (int i = 0; i < t->nmap; i++)
    if (strlen(t->map[i].cn) == cnlen && memcmp(t->map[i].cn, cn, cnlen) == 0) {
      snprintf(err, errlen, "%s: CN '%.*s' is mapped twice", src, (int)cnlen, cn);
      return -EINVAL;
    }
  if (t->nmap == CONFIG_TLS_MAP_MAX) {
    snprintf(err, errlen, "%s: too many client certificate mappings (at most %d)", src, CONFIG_TLS_MAP_MAX);
    return -EINVAL;
  }
  memcpy(t->map[t->nmap].cn, cn, cnlen);
  t->map[t->nmap].cn[cnlen] = '\0';
  str_copy(t->map[t->nmap].role, sizeof t->map[0].role, role);
  t->nmap++;
  return 0;
}

int config_tls_map_add(struct agent_config *c, int source, const char *spec, const char *src, char *err,
                       size_t errlen) {
  const char *eq = strrchr(spec, '=');
  if (!eq) {
    snprintf(err, errlen, "%s: '%s' must be CN=ROLE (ROLE: admin or a tenant's name)", src, spec);
    return -EINVAL;
  }
  return add(c, source, spec, (size_t)(eq - spec), eq + 1, src, err, errlen);
}

int config_tls_map_yaml(struct agent_config *c, yaml_document_t *d, yaml_node_t *map, const char *file,
                        char *err, size_t errlen) {
  if (map->type != YAML_MAPPING_NODE) {
    snprintf(err, errlen,
             "%s: tls.client_map must map certificate CNs to roles, like {ops-laptop: admin, "
             "billing-svc: team-a}",
             file);
    return -EINVAL;
  }
  char src[160];
  snprintf(src, sizeof src, "%s: tls.client_map", file);
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(d, p->key), *v = yaml_document_get_node(d, p->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE || v->type != YAML_SCALAR_NODE) {
      snprintf(err, errlen, "%s must map names to roles (admin or a tenant's name)", src);
      return -EINVAL;
    }
    const char *cn = (const char *)k->data.scalar.value;
    int rc = add(c, 1, cn, strlen(cn), (const char *)v->data.scalar.value, src, err, errlen);
    if (rc) return rc;
  }
  return 0;
}

int config_tls_check(const struct agent_config *c, char *err, size_t errlen) {
  const struct config_tls *t = &c->tls;
  if (!t->cert[0] != !t->key[0]) {
    snprintf(err, errlen,
             "TLS needs both a certificate and its key: set tls.cert and tls.key (--tls-cert, "
             "--tls-key)");
    return -EINVAL;
  }
  if (t->client_ca[0] && !t->cert[0]) {
    snprintf(err, errlen, "tls.client_ca (--tls-client-ca) needs TLS on: set tls.cert and tls.key too");
    return -EINVAL;
  }
  if (t->nmap && !t->client_ca[0]) {
    snprintf(err, errlen,
             "tls.client_map (--tls-client-map) needs tls.client_ca: only certificates it verifies "
             "are mapped");
    return -EINVAL;
  }
  for (int i = 0; i < t->nmap; i++)
    if (strcmp(t->map[i].role, "admin") == 0 && !c->cluster.admin_token[0]) {
      snprintf(err, errlen,
               "tls.client_map maps '%s' to admin, which stands for the admin token: set "
               "--admin-token (or INFERMESH_ADMIN_TOKEN) too",
               t->map[i].cn);
      return -EINVAL;
    }
  return 0;
}
