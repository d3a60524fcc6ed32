/* TLS at the agent's listener: certificate load and SIGHUP reload, client certificates mapped to credentials.
 */
#include "agent/ingress_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "net/tls.h"
#include "route/tenants.h"

static int load(const struct config_tls *c, struct tls_ctx **out, char *err, size_t errlen) {
  struct tls_files f = {c->cert, c->key, c->client_ca};
  return tls_ctx_load(&f, out, err, errlen);
}

int ingress_tls_start(struct ingress_tls *t, uv_loop_t *loop, const struct agent_config *cfg,
                      struct http_server *srv, char *err, size_t errlen) {
  memset(t, 0, sizeof *t);
  t->loop = loop;
  t->cfg = &cfg->tls;
  t->admin_token = cfg->cluster.admin_token;
  t->srv = srv;
  t->work.data = t;
  if (!t->cfg->cert[0]) return 0;
  struct tls_ctx *x;
  int rc = load(t->cfg, &x, err, errlen);
  if (rc) return rc;
  char desc[320];
  tls_ctx_describe(x, desc, sizeof desc);
  http_server_set_tls(srv, x);
  log_info("TLS certificate loaded", "%s client_ca=%s client_map=%d", desc,
           t->cfg->client_ca[0] ? "yes" : "no", t->cfg->nmap);
  for (int i = 0; i < t->cfg->nmap; i++) {
    const struct config_tls_map *m = &t->cfg->map[i];
    if (strcmp(m->role, "admin") == 0)
      snprintf(t->creds[i], sizeof t->creds[i], "Bearer %s", t->admin_token);
    else if (tenants_peer_credential(m->role, t->creds[i], sizeof t->creds[i]) != 0)
      t->creds[i][0] = '\0';
  }
  return 0;
}

static void reload_work_cb(uv_work_t *w) {
  struct ingress_tls *t = w->data;
  t->rc = load(t->cfg, &t->loaded, t->err, sizeof t->err);
}

static void reload_done_cb(uv_work_t *w, int status) {
  struct ingress_tls *t = w->data;
  t->busy = false;
  if (t->rc != 0) {
    log_error("TLS certificate reload failed: keeping the current certificate", "err=\"%s\"", t->err);
  } else if (t->stopped) {
    tls_ctx_free(t->loaded);
  } else {
    char desc[320];
    tls_ctx_describe(t->loaded, desc, sizeof desc);
    http_server_set_tls(t->srv, t->loaded);
    log_info("TLS certificate reloaded: new connections use it", "%s", desc);
  }
  t->loaded = NULL;
  if (t->again && !t->stopped) {
    t->again = false;
    ingress_tls_reload(t);
  }
}

void ingress_tls_reload(struct ingress_tls *t) {
  if (!t->cfg || !t->cfg->cert[0] || t->stopped) return;
  if (t->busy) { /* a SIGHUP during a reload: read the files once more afterwards */
    t->again = true;
    return;
  }
  t->busy = true;
  if (uv_queue_work(t->loop, &t->work, reload_work_cb, reload_done_cb) != 0) t->busy = false;
}

void ingress_tls_stop(struct ingress_tls *t) { t->stopped = true; }

void ingress_tls_credential(struct ingress_tls *t, const struct api_route *rt, struct http_req *req,
                            int ntenants) {
  const char *cn = t->cfg && t->cfg->nmap ? http_req_client_cn(req) : NULL;
  if (!cn || http_req_header(req, "authorization").base || req->nheaders >= HTTP_MAX_HEADERS) return;
  for (int i = 0; i < t->cfg->nmap; i++) {
    if (strcmp(t->cfg->map[i].cn, cn) != 0 || !t->creds[i][0]) continue;
    bool admin = strcmp(t->cfg->map[i].role, "admin") == 0;
    if (admin ? rt->need == API_OPEN || rt->need == API_TENANT : ntenants == 0) return;
    req->headers[req->nheaders++] =
        (struct http_header){SLICE_LIT("Authorization"), slice_make(t->creds[i], strlen(t->creds[i]))};
    return;
  }
}
