/* The budgets view (see budgets.h). */
#include "api/budgets.h"

#include <string.h>

#include "core/amount.h"
#include "core/period.h"
#include "core/slice.h"

static void amount_str(struct buf *out, const char *key, int64_t nano) {
  char a[32];
  amount_format(nano, a, sizeof a);
  buf_printf(out, ",\"%s\":\"%s\"", key, a);
}

void budgets_json(const struct tenant_conf *t, int n, const char *scope, const struct spend_book *book,
                  int64_t now_s, struct buf *out) {
  buf_puts(out, "{\"budgets\":[");
  int k = 0;
  for (int i = 0; i < n; i++) {
    if (!t[i].name[0] || (scope && strcmp(scope, t[i].name) != 0)) continue;
    bool has = t[i].budget_nano > 0;
    enum period p = has ? t[i].period : PERIOD_MONTH;
    int64_t spent = book ? spend_book_spent(book, t[i].name, p, now_s) : 0;
    buf_puts(out, k++ ? ",{\"tenant\":" : "{\"tenant\":");
    buf_json_str(out, slice_cstr(t[i].name));
    buf_printf(out, ",\"period\":\"%s\"", period_name(p));
    amount_str(out, "spent", spent);
    if (has) {
      amount_str(out, "budget", t[i].budget_nano);
      amount_str(out, "remaining", spent < t[i].budget_nano ? t[i].budget_nano - spent : 0);
      buf_printf(out, ",\"exhausted\":%s", spent >= t[i].budget_nano ? "true" : "false");
    } else {
      buf_puts(out, ",\"budget\":null");
    }
    if (p == PERIOD_TOTAL) {
      buf_puts(out, ",\"resets_at\":null}");
    } else {
      char when[32];
      period_format_utc(period_end(p, now_s), when, sizeof when);
      buf_printf(out, ",\"resets_at\":\"%s\"}", when);
    }
  }
  buf_puts(out, "]}");
}
