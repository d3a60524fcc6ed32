/* Budget periods (core/period) and the spend book (ledger/spend): calendar bounds in UTC, local spend rolling
 * over at midnight and month ends, reports merged by (boot, seq) so none counts twice, and the bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/period.h"
#include "ledger/spend.h"

/* 2026-12-07T22:30:00Z and friends. */
#define DEC7 1796682600LL
#define DEC7_MIDNIGHT 1796601600LL
#define DEC8_MIDNIGHT 1796688000LL
#define DEC1_MIDNIGHT 1796083200LL
#define JAN1_2027 1798761600LL

static void test_period_bounds(void **state) {
  (void)state;
  assert_int_equal(period_start(PERIOD_DAY, DEC7), DEC7_MIDNIGHT);
  assert_int_equal(period_end(PERIOD_DAY, DEC7), DEC8_MIDNIGHT);
  assert_int_equal(period_start(PERIOD_MONTH, DEC7), DEC1_MIDNIGHT);
  assert_int_equal(period_end(PERIOD_MONTH, DEC7), JAN1_2027); /* December ends in the next year */
  assert_int_equal(period_start(PERIOD_MONTH, DEC1_MIDNIGHT), DEC1_MIDNIGHT);
  assert_int_equal(period_start(PERIOD_MONTH, DEC1_MIDNIGHT - 1), 1793491200LL); /* 2026-11-01 */
  /* 2028 is a leap year: February has 29 days. */
  assert_int_equal(period_end(PERIOD_MONTH, 1833753600LL /* 2028-02-10 */), 1835481600LL /* 2028-03-01 */);
  assert_int_equal(period_start(PERIOD_TOTAL, DEC7), 0);
  assert_true(period_end(PERIOD_TOTAL, DEC7) == INT64_MAX);
  enum period p;
  assert_int_equal(period_parse("day", &p), 0);
  assert_int_equal(p, PERIOD_DAY);
  assert_int_equal(period_parse("month", &p), 0);
  assert_int_equal(period_parse("total", &p), 0);
  assert_int_equal(p, PERIOD_TOTAL);
  assert_int_not_equal(period_parse("week", &p), 0);
  assert_string_equal(period_name(PERIOD_MONTH), "month");
}

static void test_local_spend_rolls_over(void **state) {
  (void)state;
  struct spend_book *b = spend_book_new();
  spend_book_add(b, "team-a", 300, DEC7);
  spend_book_add(b, "team-a", 200, DEC7 + 60);
  spend_book_add(b, "", 999, DEC7); /* no tenant: not counted */
  assert_int_equal(spend_book_spent(b, "team-a", PERIOD_DAY, DEC7 + 60), 500);
  assert_int_equal(spend_book_spent(b, "team-b", PERIOD_DAY, DEC7 + 60), 0);
  /* The next day: the day starts from 0, the month and the total keep counting. */
  assert_int_equal(spend_book_spent(b, "team-a", PERIOD_DAY, DEC8_MIDNIGHT + 1), 0);
  spend_book_add(b, "team-a", 50, DEC8_MIDNIGHT + 1);
  assert_int_equal(spend_book_spent(b, "team-a", PERIOD_DAY, DEC8_MIDNIGHT + 1), 50);
  assert_int_equal(spend_book_spent(b, "team-a", PERIOD_MONTH, DEC8_MIDNIGHT + 1), 550);
  /* The next month. */
  assert_int_equal(spend_book_spent(b, "team-a", PERIOD_MONTH, JAN1_2027 + 5), 0);
  assert_int_equal(spend_book_spent(b, "team-a", PERIOD_TOTAL, JAN1_2027 + 5), 550);
  assert_true(spend_book_changed(b));
  spend_book_clear_changed(b);
  assert_false(spend_book_changed(b));
  spend_book_free(b);
}

static void test_reports_merge_once(void **state) {
  (void)state;
  struct spend_book *b = spend_book_new();
  uint8_t n1[SPEND_NODE_ID_LEN], n2[SPEND_NODE_ID_LEN];
  memset(n1, 1, sizeof n1);
  memset(n2, 2, sizeof n2);
  spend_book_add(b, "t", 100, DEC7);
  struct spend_figures f = {.day_start = DEC7_MIDNIGHT,
                            .day_nano = 1000,
                            .month_start = DEC1_MIDNIGHT,
                            .month_nano = 4000,
                            .total_nano = 9000};
  spend_book_merge(b, n1, 5, 10, "t", &f);
  spend_book_merge(b, n1, 5, 10, "t", &f); /* the same report again: absolute figures, still counted once */
  assert_int_equal(spend_book_spent(b, "t", PERIOD_DAY, DEC7), 1100);
  struct spend_figures older = f;
  older.day_nano = 1;
  spend_book_merge(b, n1, 5, 9, "t", &older); /* reordered: older, ignored */
  assert_int_equal(spend_book_spent(b, "t", PERIOD_DAY, DEC7), 1100);
  struct spend_figures newer = f;
  newer.day_nano = 1500;
  spend_book_merge(b, n1, 6, 1, "t", &newer); /* a restarted sender (new boot) counts from seq 1 */
  spend_book_merge(b, n2, 1, 1, "t", &f);
  assert_int_equal(spend_book_spent(b, "t", PERIOD_DAY, DEC7), 100 + 1500 + 1000);
  assert_int_equal(spend_book_spent(b, "t", PERIOD_MONTH, DEC7), 100 + 4000 + 4000);
  assert_int_equal(spend_book_spent(b, "t", PERIOD_TOTAL, DEC7), 100 + 9000 + 9000);
  /* A report of yesterday's day figure does not count today. */
  struct spend_figures stale = f;
  stale.day_start = DEC7_MIDNIGHT - 86400;
  spend_book_merge(b, n2, 1, 2, "t", &stale);
  assert_int_equal(spend_book_spent(b, "t", PERIOD_DAY, DEC7), 100 + 1500);
  /* Only this node's own tenants are reported. */
  char names[4][SPEND_NAME_MAX];
  struct spend_figures figs[4];
  spend_book_merge(b, n2, 1, 3, "remote-only", &f);
  assert_int_equal(spend_book_local(b, 0, 4, DEC7, names, figs), 1);
  assert_string_equal(names[0], "t");
  assert_int_equal(figs[0].day_nano, 100);
  assert_int_equal(spend_book_local(b, 1, 4, DEC7, names, figs), 0);
  spend_book_free(b);
}

static void test_seed_and_bounds(void **state) {
  (void)state;
  struct spend_book *b = spend_book_new();
  struct spend_figures seed = {.day_start = DEC7_MIDNIGHT,
                               .day_nano = 7,
                               .month_start = DEC1_MIDNIGHT,
                               .month_nano = 70,
                               .total_nano = 700};
  spend_book_seed(b, "t", &seed, DEC7);
  spend_book_add(b, "t", 1, DEC7);
  assert_int_equal(spend_book_spent(b, "t", PERIOD_DAY, DEC7), 8);
  assert_int_equal(spend_book_spent(b, "t", PERIOD_TOTAL, DEC7), 701);
  char name[80];
  memset(name, 'x', sizeof name);
  name[sizeof name - 1] = '\0';
  spend_book_add(b, name, 1, DEC7); /* too long to be a tenant name */
  assert_int_equal(spend_book_dropped(b), 1);
  /* Names are kept in order, so paging through them is stable. */
  for (int i = 0; i < 20; i++) {
    char t[8];
    snprintf(t, sizeof t, "t%02d", 19 - i);
    spend_book_add(b, t, 1, DEC7);
  }
  char names[8][SPEND_NAME_MAX];
  struct spend_figures figs[8];
  int total = 0, n;
  for (int from = 0; (n = spend_book_local(b, from, 8, DEC7, names, figs)) > 0; from += n)
    total += n;
  assert_int_equal(total, 21);
  assert_int_equal(spend_book_local(b, 0, 8, DEC7, names, figs), 8);
  assert_string_equal(names[0], "t");
  assert_string_equal(names[1], "t00");
  spend_book_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_period_bounds),
      cmocka_unit_test(test_local_spend_rolls_over),
      cmocka_unit_test(test_reports_merge_once),
      cmocka_unit_test(test_seed_and_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
