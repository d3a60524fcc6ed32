/* The route table and the authorization decision (api/routes.c), and the README's matrix rendered from it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "net/http_req.h"

static const struct api_route *find(int method, const char *path, bool *known) {
  return api_route_find(method, slice_cstr(path), known);
}

static void test_paths_and_methods(void **state) {
  (void)state;
  bool known;
  const struct api_route *r = find(HTTP_M_GET, "/v1/cluster/targets", &known);
  assert_non_null(r);
  assert_int_equal(r->op, API_OP_TARGETS);
  assert_int_equal(find(HTTP_M_HEAD, "/metrics", NULL)->op, API_OP_METRICS);
  assert_int_equal(find(HTTP_M_POST, "/v1/cluster/targets/vllm-0/load", NULL)->op, API_OP_MODEL_CTL);
  assert_int_equal(find(HTTP_M_POST, "/v1/cluster/nodes/n2/drain", NULL)->op, API_OP_DRAIN);
  assert_int_equal(find(HTTP_M_POST, "/v1/cluster/nodes/n2/undrain", NULL)->op, API_OP_DRAIN);
  /* control-plane kinds: plural only, with or without a name, names may hold slashes */
  assert_int_equal(find(HTTP_M_GET, "/v1/cluster/policies", NULL)->op, API_OP_CTL_READ);
  assert_int_equal(find(HTTP_M_PUT, "/v1/cluster/pins/meta-llama/Llama-3", NULL)->op, API_OP_CTL_WRITE);
  assert_int_equal(find(HTTP_M_DELETE, "/v1/cluster/tenants/a", NULL)->op, API_OP_CTL_WRITE);
  assert_null(find(HTTP_M_GET, "/v1/cluster/policy", &known));
  assert_false(known);
  assert_null(find(HTTP_M_GET, "/v1/cluster/policies/", &known));
  assert_null(find(HTTP_M_POST, "/v1/cluster/nodes//drain", &known));
  assert_false(known);
  assert_null(find(HTTP_M_POST, "/v1/cluster/nodes/n2/drain/x", &known));
  assert_false(known);
  /* a known path under another method */
  assert_null(find(HTTP_M_GET, "/v1/cluster/leave", &known));
  assert_true(known);
  char allow[64];
  api_route_allowed(slice_cstr("/v1/cluster/leave"), allow, sizeof allow);
  assert_string_equal(allow, "POST");
  api_route_allowed(slice_cstr("/v1/cluster/drains/n1"), allow, sizeof allow);
  assert_string_equal(allow, "GET, HEAD, POST, PUT, DELETE");
  assert_null(find(HTTP_M_GET, "/v1/clusterx/status", &known));
  assert_false(known);
  assert_null(find(HTTP_M_PATCH, "/v1/cluster/status", &known));
  assert_true(known);
}

static enum api_verdict verdict(int method, const char *path, const struct api_creds *c, const char *auth,
                                bool hop) {
  const struct api_route *r = find(method, path, NULL);
  assert_non_null(r);
  return api_authorize(r, c, slice_cstr(auth), hop);
}

static void test_admin_routes_need_the_admin_token(void **state) {
  (void)state;
  struct api_creds c = {.admin_token = "adm", .read_token = "rd", .keys_required = false};
  /* loopback is not authorization: without tenants, a change still needs the admin token */
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "", false), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "Bearer adm", false), API_ALLOW);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "bearer adm", false), API_ALLOW);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "Bearer ad", false), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "Bearer admx", false), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "Bearer rd", false), API_FORBIDDEN);
  c.tenant_key = true;
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "Bearer sk-1", false), API_FORBIDDEN);
  c.tenant_key = false;
  /* a hop header does not open leave (no agent forwards it), but lets a forwarded drain reach its handler,
   * which verifies the signature */
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "", true), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/nodes/n2/drain", &c, "", true), API_ALLOW);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/nodes/n2/drain", &c, "", false), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_PUT, "/v1/cluster/policies/m", &c, "", true), API_UNAUTH);
  /* no admin token configured: every change is refused, with a reason of its own */
  c.admin_token = "";
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/leave", &c, "Bearer ", false), API_NO_ADMIN);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/targets/t/load", &c, "", false), API_NO_ADMIN);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/nodes/n2/drain", &c, "", true), API_ALLOW);
}

static void test_views_need_a_token_with_tenants(void **state) {
  (void)state;
  struct api_creds c = {.admin_token = "adm", .read_token = "rd", .keys_required = false};
  assert_int_equal(verdict(HTTP_M_GET, "/metrics", &c, "", false), API_ALLOW);
  c.keys_required = true;
  assert_int_equal(verdict(HTTP_M_GET, "/metrics", &c, "", false), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_GET, "/metrics", &c, "Bearer rd", false), API_ALLOW);
  assert_int_equal(verdict(HTTP_M_GET, "/v1/cluster/events", &c, "Bearer adm", false), API_ALLOW);
  assert_int_equal(verdict(HTTP_M_GET, "/v1/cluster/members", &c, "Bearer x", false), API_UNAUTH);
  assert_int_equal(verdict(HTTP_M_GET, "/v1/cluster/members", &c, "", true),
                   API_UNAUTH); /* hops read nothing */
  c.tenant_key = true;
  assert_int_equal(verdict(HTTP_M_GET, "/v1/cluster/status", &c, "Bearer sk", false), API_FORBIDDEN);
  /* an empty read token is no token: "Bearer " does not match it */
  c.tenant_key = false;
  c.read_token = "";
  assert_int_equal(verdict(HTTP_M_GET, "/metrics", &c, "Bearer ", false), API_UNAUTH);
  /* probes stay open; inference is the router's (tenant keys) */
  assert_int_equal(verdict(HTTP_M_GET, "/healthz", &c, "", false), API_ALLOW);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/chat/completions", &c, "", false), API_ALLOW);
  /* agent-only routes */
  assert_int_equal(verdict(HTTP_M_GET, "/v1/cluster/state", &c, "Bearer adm", false), API_AGENTS_ONLY);
  assert_int_equal(verdict(HTTP_M_POST, "/v1/cluster/_propose", &c, "", true), API_ALLOW);
}

/* The README's matrix is the table's: `make test` fails when one changes without the other. */
static void test_readme_holds_the_matrix(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s/README.md", IM_SOURCE_DIR);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  static char readme[1 << 20];
  size_t n = fread(readme, 1, sizeof readme - 1, f);
  fclose(f);
  readme[n] = '\0';
  struct buf md = {0};
  api_routes_markdown(&md);
  buf_puts(&md, "");
  bool found = strstr(readme, md.base) != NULL;
  if (!found)
    fprintf(stderr,
            "README.md does not hold the authorization matrix of src/api/routes.c; it should read:\n%s",
            md.base);
  buf_free(&md);
  assert_true(found);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_paths_and_methods),
      cmocka_unit_test(test_admin_routes_need_the_admin_token),
      cmocka_unit_test(test_views_need_a_token_with_tenants),
      cmocka_unit_test(test_readme_holds_the_matrix),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
