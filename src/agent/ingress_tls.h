/* TLS at the agent's listener: loads the certificate at start, reloads it on SIGHUP (off the loop), and turns
 * a verified client certificate into the credential its configured role stands for (config tls.client_map).
 */
#ifndef IM_AGENT_INGRESS_TLS_H
#define IM_AGENT_INGRESS_TLS_H

#include <stdbool.h>
#include <uv.h>

#include "agent/config.h"
#include "api/routes.h"
#include "net/http_server.h"

struct ingress_tls {
  uv_loop_t *loop;
  const struct config_tls *cfg; /* borrowed from the agent's config */
  const char *admin_token;      /* borrowed: what an admin certificate stands for */
  struct http_server *srv;      /* borrowed: the listener whose context a reload replaces */
  uv_work_t work;
  struct tls_ctx *loaded; /* a reload's result, handed over on the loop */
  int rc;
  char err[512];
  bool busy, again, stopped;
  /* The Authorization value each map entry stands for ("" when its role has none: admin without a token). */
  char creds[CONFIG_TLS_MAP_MAX][320];
};

/* ingress_tls_start loads cfg's certificate and key into srv (which must listen already) and prepares the
 * client map. With TLS off (no cert) it only records that. Returns 0, or -EINVAL with a message in err. t is
 * owned by the caller and must outlive any reload in flight (until the loop ends). */
int ingress_tls_start(struct ingress_tls *t, uv_loop_t *loop, const struct agent_config *cfg,
                      struct http_server *srv, char *err, size_t errlen);
/* ingress_tls_reload rereads the files in the thread pool, then makes them the listener's context for new
 * connections (open ones keep theirs); a certificate or key that does not load leaves the current one in
 * place and logs why. A no-op with TLS off or after ingress_tls_stop. */
void ingress_tls_reload(struct ingress_tls *t);
/* ingress_tls_stop: no reload takes effect any more (the listener is draining). */
void ingress_tls_stop(struct ingress_tls *t);
/* ingress_tls_credential gives req, when it came with a verified client certificate whose CN is mapped and
 * carries no Authorization header of its own, the Authorization its role stands for: the admin token for
 * routes that take it (never for inference, whose Authorization may be passed to runtimes), a tenant's
 * credential (route/tenants.h) when tenants are configured (ntenants > 0). */
void ingress_tls_credential(struct ingress_tls *t, const struct api_route *rt, struct http_req *req,
                            int ntenants);

#endif
