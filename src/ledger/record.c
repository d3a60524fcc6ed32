/* Costs and amounts: prices per million tokens to exact nano-unit sums, and back to text. */
#include "ledger/record.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t ledger_cost_nano(const struct ledger_price *p, int64_t prompt_tokens, int64_t cached_tokens,
                         int64_t completion_tokens) {
  if (!p) return 0;
  if (cached_tokens < 0) cached_tokens = 0;
  if (cached_tokens > prompt_tokens) cached_tokens = prompt_tokens;
  double cached_price = p->cached_per_mtok >= 0 ? p->cached_per_mtok : p->prompt_per_mtok;
  /* price per 1e6 tokens, in nano-units per token: price * 1e9 / 1e6 = price * 1000 */
  double nano = ((double)(prompt_tokens - cached_tokens) * p->prompt_per_mtok +
                 (double)cached_tokens * cached_price + (double)completion_tokens * p->completion_per_mtok) *
                1000.0;
  if (!(nano > 0)) return 0;
  if (nano > 9e18) return INT64_MAX;
  return llround(nano);
}

void ledger_price_conf_default(struct ledger_price_conf *c) {
  memset(c, 0, sizeof *c);
  c->price.prompt_per_mtok = c->price.completion_per_mtok = -1; /* unset: required */
  c->price.cached_per_mtok = -1;
  snprintf(c->price.currency, sizeof c->price.currency, "USD");
}

int ledger_price_conf_set(struct ledger_price_conf *c, const char *key, const char *value, char *err, size_t errlen) {
  double *num = strcmp(key, "prompt") == 0       ? &c->price.prompt_per_mtok
                : strcmp(key, "completion") == 0 ? &c->price.completion_per_mtok
                : strcmp(key, "cached") == 0     ? &c->price.cached_per_mtok
                                                 : NULL;
  if (num) {
    char *end;
    errno = 0;
    double d = strtod(value, &end);
    if (!*value || *end || errno || !isfinite(d) || d < 0) {
      snprintf(err, errlen, "price %s '%.40s' is not a number >= 0 (per million tokens)", key, value);
      return -EINVAL;
    }
    *num = d;
    return 0;
  }
  if (strcmp(key, "model") == 0) {
    if (!*value || strlen(value) >= sizeof c->model) {
      snprintf(err, errlen, "price model: 1 to %zu characters", sizeof c->model - 1);
      return -EINVAL;
    }
    snprintf(c->model, sizeof c->model, "%s", value);
    return 0;
  }
  if (strcmp(key, "currency") == 0) {
    if (strlen(value) != 3 || !isupper((unsigned char)value[0]) || !isupper((unsigned char)value[1]) ||
        !isupper((unsigned char)value[2])) {
      snprintf(err, errlen, "price currency '%.20s': an ISO 4217 code of 3 capital letters, e.g. USD", value);
      return -EINVAL;
    }
    snprintf(c->price.currency, sizeof c->price.currency, "%s", value);
    return 0;
  }
  snprintf(err, errlen, "unknown price setting '%.40s' (model, prompt, completion, cached, currency)", key);
  return -EINVAL;
}

int ledger_price_conf_parse(struct ledger_price_conf *c, char *spec, char *err, size_t errlen) {
  ledger_price_conf_default(c);
  for (char *s = spec, *next; s && *s; s = next) {
    next = strchr(s, ',');
    if (next) *next++ = '\0';
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, errlen, "price setting '%.60s' is not KEY=VALUE (e.g. model=llama,prompt=0.5,completion=1.5)",
               s);
      return -EINVAL;
    }
    *eq = '\0';
    int rc = ledger_price_conf_set(c, s, eq + 1, err, errlen);
    if (rc) return rc;
  }
  if (!c->model[0] || c->price.prompt_per_mtok < 0 || c->price.completion_per_mtok < 0) {
    snprintf(err, errlen, "a price needs model, prompt and completion (per million tokens)");
    return -EINVAL;
  }
  return 0;
}
