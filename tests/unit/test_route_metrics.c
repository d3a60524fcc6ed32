/* Per-tenant token and cost counters of the router's metrics (route/route_metrics.c): aggregated per tenant,
 * model and currency, bounded, rendered with escaped labels and exact amounts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "route/route_metrics.h"

static void test_usage_series(void **state) {
  (void)state;
  static struct route_metrics m;
  route_metrics_init(&m);
  route_metrics_usage(&m, "team-a", "llama", 100, 40, 10, 55000, "USD");
  route_metrics_usage(&m, "team-a", "llama", 50, -1, 5, 25000, "USD");
  route_metrics_usage(&m, "", "qw\"en", 7, 0, 3, 0, "");
  struct buf b = {0};
  route_metrics_render(&m, &b, 0);
  assert_non_null(strstr(
      b.base, "infermesh_tenant_tokens_total{tenant=\"team-a\",model=\"llama\",kind=\"prompt\"} 150\n"));
  assert_non_null(strstr(
      b.base, "infermesh_tenant_tokens_total{tenant=\"team-a\",model=\"llama\",kind=\"cached\"} 40\n"));
  assert_non_null(strstr(
      b.base, "infermesh_tenant_cost_total{tenant=\"team-a\",model=\"llama\",currency=\"USD\"} 0.00008\n"));
  assert_non_null(strstr(b.base, "{tenant=\"-\",model=\"qw\\\"en\",kind=\"completion\"} 3\n"));
  assert_null(strstr(b.base, "currency=\"\"")); /* no cost line without a price */
  buf_free(&b);
  /* bounded: past RM_MAX_USAGE series, the rest add up under "other" */
  for (int i = 0; i < RM_MAX_USAGE + 50; i++) {
    char model[32];
    snprintf(model, sizeof model, "m%d", i);
    route_metrics_usage(&m, "t", model, 1, 0, 1, 1, "USD");
  }
  assert_int_equal(m.nusage, RM_MAX_USAGE);
  const struct rm_usage *o = &m.usage[RM_MAX_USAGE - 1];
  assert_string_equal(o->model, "other");
  /* 2 series before, RM_MAX_USAGE - 3 more fit in their own slots, the other keys share the last one */
  assert_int_equal(o->requests, RM_MAX_USAGE + 50 - (RM_MAX_USAGE - 3));
  route_metrics_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_usage_series)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
