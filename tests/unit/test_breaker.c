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
  store_init(&s, 64);
  add(&s, "a");
  add(&s, "b");
  struct slice m = slice_cstr("m");
  bool op;
  /* nothing known anywhere: the ceiling */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000, &op), 60000);
  /* a scraped TTFT p95 of 1.5 s: 4x */
  s.targets[0].load.ttft_p95 = 1.5;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000, &op), 6000);
  /* fast targets get the floor, slow ones the ceiling */
  s.targets[0].load.ttft_p95 = 0.05;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000, &op), 2000);
  s.targets[0].load.ttft_p95 = 100;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000, &op), 60000);
  /* a target with no history borrows the model's slowest known one */
  s.targets[0].load.ttft_p95 = 2;
  assert_int_equal(deadline_first_byte_ms(&s, 1, m, true, -1, 2000, 60000, &op), 8000);
  /* this router's own stream samples count when larger */
  for (int i = 0; i < DEADLINE_MIN_SAMPLES; i++)
    store_ttfb_observe(&s, 1, STORE_TTFB_STREAM, 3.0);
  assert_int_equal(deadline_first_byte_ms(&s, 1, m, true, -1, 2000, 60000, &op), 12000);
  /* not streaming without max_tokens or a known ITL: any length, so the TTFT part only, on progress */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, -1, 2000, 60000, &op), 8000);
  assert_true(op);
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 500, 2000, 60000, &op), 8000);
  assert_true(op);
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, 500, 2000, 60000, &op), 8000);
  assert_false(op);
  /* the TTFT part, plus 4 x max_tokens x ITL p95, not capped by the ceiling (a long generation is no hang) */
  s.targets[0].load.itl_p95 = 0.01;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 500, 2000, 60000, &op), 28000); /* 4 x 2 + 4 x 5 */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 50000, 2000, 60000, &op),
                   2008000); /* 8 s + 2000 s */
  assert_false(op);
  /* this router's whole-response p95 there when larger */
  for (int i = 0; i < DEADLINE_MIN_SAMPLES; i++)
    store_ttfb_observe(&s, 0, STORE_TTFB_FULL, 9.0);
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, false, 500, 2000, 60000, &op), 36000);
  /* target b borrows a's ITL */
  assert_int_equal(deadline_first_byte_ms(&s, 1, m, false, 100, 2000, 60000, &op), 16000); /* 4 x 3 + 4 x 1 */
  /* a queue ahead stretches it: 2 waiting behind 4 running, x1.5 */
  s.targets[0].load.waiting = 2;
  s.targets[0].load.running = 4;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000, &op), 12000); /* 4 x 2 x 1.5 */
  s.targets[0].load.waiting = s.targets[0].load.running = 0;
  /* an idle runtime reports no TTFT: this router's whole-response p95 stands in (an upper bound) */
  s.targets[0].load.ttft_p95 = -1;
  s.targets[1].load.ttft_p95 = -1;
  s.targets[1].ttfb_n[STORE_TTFB_STREAM] = 0;
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 2000, 60000, &op), 36000); /* 4 x 9 */
  /* a floor above the ceiling reads as the ceiling */
  assert_int_equal(deadline_first_byte_ms(&s, 0, m, true, -1, 9000, 5000, &op), 5000);
  /* progress: a report since the last check with tokens generated in its window */
  s.targets[0].updated_ns = 1000 * MS;
  s.targets[0].load.gen_tps = 0;
  assert_false(deadline_progressing(&s.targets[0], 500 * MS)); /* generates nothing */
  s.targets[0].load.gen_tps = 120;
  assert_true(deadline_progressing(&s.targets[0], 500 * MS));
  assert_false(deadline_progressing(&s.targets[0], 1000 * MS)); /* no report since: frozen */
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
