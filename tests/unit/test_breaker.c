/* The per-target circuit breaker (route/breaker.c) and the first-byte deadline (route/deadline.c): pure
 * logic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "route/breaker.h"
#include "route/deadline.h"

#define MS 1000000ull

static void test_breaker_opens_after_n_failures(void **state) {
  (void)state;
  struct breaker_opts o = {.failures = 3, .backoff_ms = 1000, .backoff_max_ms = 4000};
  struct breaker b = {0};
  uint64_t t = 1000 * MS;
  for (int i = 0; i < 2; i++) {
    assert_true(breaker_available(&b, &o, t));
    breaker_on_send(&b, t);
    breaker_failure(&b, &o, t);
  }
  assert_int_equal(b.state, BREAKER_CLOSED);
  breaker_success(&b); /* a success between resets the count */
  for (int i = 0; i < 3; i++)
    breaker_failure(&b, &o, t);
  assert_int_equal(b.state, BREAKER_OPEN);
  assert_int_equal(b.opens, 1);
  assert_false(breaker_available(&b, &o, t + 999 * MS));
  /* backoff over: exactly one probe goes */
  assert_true(breaker_available(&b, &o, t + 1000 * MS));
  breaker_on_send(&b, t + 1000 * MS);
  assert_int_equal(b.state, BREAKER_HALF_OPEN);
  assert_false(breaker_available(&b, &o, t + 1001 * MS));
  /* the probe fails: open again for twice as long */
  breaker_failure(&b, &o, t + 1100 * MS);
  assert_int_equal(b.state, BREAKER_OPEN);
  assert_int_equal(b.backoff_ms, 2000);
  assert_false(breaker_available(&b, &o, t + 3099 * MS));
  assert_true(breaker_available(&b, &o, t + 3100 * MS));
  breaker_on_send(&b, t + 3100 * MS);
  breaker_failure(&b, &o, t + 3200 * MS);
  assert_int_equal(b.backoff_ms, 4000);
  breaker_on_send(&b, t + 7200 * MS);
  breaker_failure(&b, &o, t + 7300 * MS);
  assert_int_equal(b.backoff_ms, 4000); /* capped */
  /* a successful probe closes it */
  breaker_on_send(&b, t + 11300 * MS);
  breaker_success(&b);
  assert_int_equal(b.state, BREAKER_CLOSED);
  assert_true(breaker_available(&b, &o, t + 11301 * MS));
  assert_int_equal(b.opens, 4);
}

static void test_breaker_cancelled_probe_frees_the_slot(void **state) {
  (void)state;
  struct breaker_opts o = {.failures = 1, .backoff_ms = 10, .backoff_max_ms = 100};
  struct breaker b = {0};
  breaker_failure(&b, &o, 0);
  breaker_on_send(&b, 10 * MS);
  assert_false(breaker_available(&b, &o, 11 * MS));
  breaker_cancelled(&b); /* the client went away: no verdict, the next request probes */
  assert_true(breaker_available(&b, &o, 11 * MS));
  assert_int_equal(b.state, BREAKER_HALF_OPEN);
}

static void test_breaker_off(void **state) {
  (void)state;
  struct breaker_opts o = {.failures = 0, .backoff_ms = 10, .backoff_max_ms = 100};
  struct breaker b = {0};
  for (int i = 0; i < 100; i++)
    breaker_failure(&b, &o, 0);
  assert_true(breaker_available(&b, &o, 0));
  assert_int_equal(b.state, BREAKER_CLOSED);
}

static void add(struct store *s, const char *name) {
  char url[64];
  int port = 9000 + s->ntargets;
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  int id = store_add_target(s, name, url, "vllm");
  const char *models[] = {"m"};
  store_set_models(s, id, models, 1);
  s->targets[id].load.ttft_p50 = s->targets[id].load.ttft_p95 = -1;
  s->targets[id].load.itl_p50 = s->targets[id].load.itl_p95 = -1;
}

static void test_deadline_from_observed_ttft(void **state) {
  (void)state;
  static struct store s;
  store_init(&s);
  add(&s, "a");
  add(&s, "b");
  struct slice m = slice_cstr("m");
  /* nothing known anywhere: the ceiling */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000), 60000);
  /* a scraped TTFT p95 of 1.5 s: 4x */
  s.targets[0].load.ttft_p95 = 1.5;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000), 6000);
  /* fast targets get the floor, slow ones the ceiling */
  s.targets[0].load.ttft_p95 = 0.05;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000), 2000);
  s.targets[0].load.ttft_p95 = 100;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000), 60000);
  /* a target with no history borrows the model's slowest known one */
  s.targets[0].load.ttft_p95 = 2;
  assert_int_equal(deadline_first_byte_ms(&s, 1, m, true, -1, 2000, 60000), 8000);
  /* this router's own stream samples count when larger */
  for (int i = 0; i < DEADLINE_MIN_SAMPLES; i++)
    store_ttfb_observe(&s, 1, STORE_TTFB_STREAM, 3.0);
  assert_int_equal(deadline_first_byte_ms(&s, 1, m, true, -1, 2000, 60000), 12000);
  /* not streaming: the whole response; unknown without max_tokens (any length), so the ceiling */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, -1, 2000, 60000), 60000);
  /* ... or without the runtime's ITL */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 500, 2000, 60000), 60000);
  /* TTFT + max_tokens x ITL when the runtime reports both */
  s.targets[0].load.itl_p95 = 0.01;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 500, 2000, 60000), 28000); /* 4 x (2 + 5) */
  for (int i = 0; i < DEADLINE_MIN_SAMPLES; i++)
    store_ttfb_observe(&s, 0, STORE_TTFB_FULL, 9.0);
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 500, 2000, 60000), 36000);
  /* a queue ahead stretches it: 2 waiting behind 4 running, x1.5 */
  s.targets[0].load.waiting = 2;
  s.targets[0].load.running = 4;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000), 12000); /* 4 x 2 x 1.5 */
  s.targets[0].load.waiting = s.targets[0].load.running = 0;
  /* a floor above the ceiling reads as the ceiling */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 9000, 5000), 5000);
  store_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_breaker_opens_after_n_failures),
      cmocka_unit_test(test_breaker_cancelled_probe_frees_the_slot),
      cmocka_unit_test(test_breaker_off),
      cmocka_unit_test(test_deadline_from_observed_ttft),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
