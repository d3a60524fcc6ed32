/* libFuzzer target for api/routes.c: the first byte picks the method, the rest is the request path. Route
 * lookup must stay inside the path (copied to an exact-size allocation), agree with itself (a route found is
 * a known path; its Allow list names the method), and the decision must never let a request without a
 * credential or hop through to a change of the mesh. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/routes.h"
#include "net/http_req.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const int methods[] = {HTTP_M_GET,    HTTP_M_HEAD,  HTTP_M_POST,   HTTP_M_PUT,
                                HTTP_M_DELETE, HTTP_M_PATCH, HTTP_M_OPTIONS};
  if (size < 1) return 0;
  int method = methods[data[0] % (sizeof methods / sizeof methods[0])];
  size_t n = size - 1;
  char *path = malloc(n ? n : 1);
  memcpy(path, data + 1, n);
  bool known = false;
  const struct api_route *r = api_route_find(method, slice_make(path, n), &known);
  char allow[64];
  api_route_allowed(slice_make(path, n), allow, sizeof allow);
  CHECK(!r || known);
  CHECK(!known || allow[0]);
  if (r) {
    CHECK(strstr(allow, http_method_name(method)) != NULL);
    struct api_creds keys = {.admin_token = "admin", .read_token = "read", .keys_required = true};
    enum api_verdict v = api_authorize(r, &keys, slice_make(NULL, 0), false);
    CHECK(v == API_ALLOW ? r->need == API_OPEN || r->need == API_TENANT : v != API_ALLOW);
    if (r->need == API_ADMIN) CHECK(api_authorize(r, &keys, slice_cstr("Bearer admin"), false) == API_ALLOW);
  }
  free(path);
  return 0;
}
