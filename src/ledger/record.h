/* One usage record: what a request that reached a runtime consumed, and what it cost. A plain value. */
#ifndef IM_LEDGER_RECORD_H
#define IM_LEDGER_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/amount.h"

/* Money is kept in nano-units of its currency (core/amount.h): exact sums, 9.2e9 units at most per value. */
#define LEDGER_NANO AMOUNT_NANO

struct ledger_record {
  int64_t seq; /* set by the ledger when stored: 1, 2, ... per data dir */
  char request_id[64];
  int64_t ts_ms;   /* unix milliseconds when the request ended */
  char tenant[64]; /* "" without tenants */
  char model[128];
  char ingress[64]; /* node that answered the client (where the record is kept) */
  char serving[64]; /* node whose runtime served it */
  char target[160];
  char provider[64]; /* the serving node's provider (who is paid for it) */
  int64_t prompt_tokens, cached_tokens, completion_tokens;
  double ttft_ms, duration_ms; /* ttft_ms < 0: no first token */
  int status;                  /* what the client saw */
  bool retried, hedged;
  int64_t cost_nano;         /* price x tokens */
  int64_t contribution_nano; /* cost x the provider's share */
  char currency[8];
};

/* A model's price per million tokens. cached_per_mtok < 0: cached prompt tokens cost the prompt price. */
struct ledger_price {
  double prompt_per_mtok, cached_per_mtok, completion_per_mtok;
  char currency[8];
};

/* A configured price: the model it is for, and the price. */
struct ledger_price_conf {
  char model[128];
  struct ledger_price price;
};

/* ledger_price_conf_set sets field `key` ("model", "prompt", "completion", "cached", "currency"; prices per
 * million tokens, >= 0; currency 3 capital letters) of c from text. c starts as ledger_price_conf_default.
 * 0 or -EINVAL with a message in err. */
void ledger_price_conf_default(struct ledger_price_conf *c);
int ledger_price_conf_set(struct ledger_price_conf *c, const char *key, const char *value, char *err, size_t errlen);

/* ledger_price_conf_parse reads a spec "model=M,prompt=0.5,completion=1.5[,cached=0.25][,currency=USD]"
 * (spec is modified) and checks that model, prompt and completion are set. 0 or -EINVAL with err. */
int ledger_price_conf_parse(struct ledger_price_conf *c, char *spec, char *err, size_t errlen);

/* ledger_cost_nano is what r's tokens cost at price p, in nano-units (rounded to the nearest); 0 when p is
 * NULL. Cached tokens are part of prompt_tokens (as OpenAI's usage counts them) and cost the cached price. */
int64_t ledger_cost_nano(const struct ledger_price *p, int64_t prompt_tokens, int64_t cached_tokens,
                         int64_t completion_tokens);


#endif
