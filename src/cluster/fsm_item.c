/* The control-plane items as JSON: strict parsing (unknown fields, wrong types and out-of-range values are
 * refused) and formatting, per kind. Used by fsm.c for commands, merges, snapshots and the API views. */
#include "cluster/fsm_int.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/amount.h"
#include "core/period.h"
#include "core/slice.h"

static int copy_str(const char *field, const char *s, char *out, size_t cap, char *err, size_t errlen) {
  if (!s) return 0;
  if (strlen(s) >= cap) {
    snprintf(err, errlen, "%s: at most %zu characters", field, cap - 1);
    return -EINVAL;
  }
  memset(out, 0, cap); /* no bytes of an earlier value after the NUL: an item's bytes describe it */
  str_copy(out, cap, s);
  return 0;
}

/* key_field: when the value names its key too ("model": ...), it must be the key. */
static int check_key(const char *field, const char *given, const char *key, char *err, size_t errlen) {
  if (given && strcmp(given, key) != 0) {
    snprintf(err, errlen, "%s '%s' differs from the key in the path '%s'", field, given, key);
    return -EINVAL;
  }
  return 0;
}

static int str_array(const char *field, json_t *arr, char *out, size_t stride, int max, int *n, char *err,
                     size_t errlen) {
  if (!arr) return 0;
  if (!json_is_array(arr) || json_array_size(arr) > (size_t)max) {
    snprintf(err, errlen, "%s: an array of at most %d strings", field, max);
    return -EINVAL;
  }
  *n = 0;
  memset(out, 0, (size_t)max * stride); /* no earlier entries past the new count */
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    const char *s = json_string_value(v);
    if (!s || !fsm_key_valid(s) || strlen(s) >= stride) {
      snprintf(err, errlen, "%s[%zu]: a name of 1 to %zu printable characters", field, i, stride - 1);
      return -EINVAL;
    }
    str_copy(out + (size_t)*n * stride, stride, s);
    (*n)++;
  }
  return 0;
}

static bool finite_nonneg(double v) { return isfinite(v) && v >= 0; }

static int unpack(json_t *v, char *err, size_t errlen, const char *fmt, ...) {
  json_error_t je;
  va_list ap;
  va_start(ap, fmt);
  int rc = json_vunpack_ex(v, &je, 0, fmt, ap);
  va_end(ap);
  if (rc != 0) {
    snprintf(err, errlen, "%s", je.text);
    return -EINVAL;
  }
  return 0;
}

static int policy_parse(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen) {
  struct fsm_policy *p = item;
  const char *model = NULL, *strategy = NULL, *slo = NULL;
  int mq = p->max_queue, hd = (int)p->hedge_delay_ms;
  double hp = p->hedge_max_pct;
  json_t *fb = NULL, *hedge = NULL;
  if (unpack(v, err, errlen, "{s?s, s?s, s?s, s?i, s?o, s?i, s?F, s?o !}", "model", &model, "strategy", &strategy,
             "slo_class", &slo, "max_queue", &mq, "hedge", &hedge, "hedge_delay_ms", &hd, "hedge_max_pct", &hp,
             "fallbacks", &fb) ||
      check_key("model", model, key, err, errlen) ||
      copy_str("strategy", strategy, p->strategy, sizeof p->strategy, err, errlen) ||
      copy_str("slo_class", slo, p->slo_class, sizeof p->slo_class, err, errlen) ||
      str_array("fallbacks", fb, &p->fallbacks[0][0], sizeof p->fallbacks[0], FSM_FALLBACKS, &p->nfallbacks, err,
                errlen))
    return -EINVAL;
  if (p->slo_class[0] && strcmp(p->slo_class, "latency") != 0 && strcmp(p->slo_class, "throughput") != 0) {
    snprintf(err, errlen, "slo_class must be \"latency\" or \"throughput\"");
    return -EINVAL;
  }
  for (const char *c = p->strategy; *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-')) {
      snprintf(err, errlen, "strategy: lowercase letters, digits, '_' and '-' only");
      return -EINVAL;
    }
  if (hedge && !json_is_boolean(hedge) && !json_is_null(hedge)) {
    snprintf(err, errlen, "hedge: true, false or null (the router's default)");
    return -EINVAL;
  }
  if (mq < 0 || hd < 0 || hd > 600000 || !finite_nonneg(hp) || hp > 100) {
    snprintf(err, errlen, "max_queue >= 0, hedge_delay_ms in [0, 600000], hedge_max_pct in [0, 100]");
    return -EINVAL;
  }
  p->max_queue = mq;
  if (hedge) p->hedge = json_is_null(hedge) ? 0 : json_is_true(hedge) ? 1 : -1;
  p->hedge_delay_ms = (uint32_t)hd;
  p->hedge_max_pct = hp;
  return 0;
}

static json_t *policy_json(const void *item, bool full) {
  const struct fsm_policy *p = item;
  json_t *fb = json_array();
  for (int i = 0; i < p->nfallbacks; i++) json_array_append_new(fb, json_string(p->fallbacks[i]));
  return json_pack("{s:s, s:s, s:s, s:i, s:o, s:i, s:f, s:o}", "model", p->model, "strategy", p->strategy,
                   "slo_class", p->slo_class, "max_queue", (int)p->max_queue, "hedge",
                   p->hedge == 0 ? json_null() : json_boolean(p->hedge > 0),
                   "hedge_delay_ms", (int)p->hedge_delay_ms, "hedge_max_pct", p->hedge_max_pct, "fallbacks", fb);
}

static int pin_parse(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen) {
  struct fsm_pin *p = item;
  const char *model = NULL;
  json_t *nodes = NULL, *zones = NULL;
  if (unpack(v, err, errlen, "{s?s, s?o, s?o !}", "model", &model, "nodes", &nodes, "zones", &zones) ||
      check_key("model", model, key, err, errlen) ||
      str_array("nodes", nodes, &p->nodes[0][0], sizeof p->nodes[0], FSM_PIN_MAX, &p->nnodes, err, errlen) ||
      str_array("zones", zones, &p->zones[0][0], sizeof p->zones[0], FSM_PIN_MAX, &p->nzones, err, errlen))
    return -EINVAL;
  if (p->nnodes == 0 && p->nzones == 0) {
    snprintf(err, errlen, "a pin names at least one node or zone (to remove it, delete the pin)");
    return -EINVAL;
  }
  return 0;
}

static json_t *pin_json(const void *item, bool full) {
  const struct fsm_pin *p = item;
  json_t *nodes = json_array(), *zones = json_array();
  for (int i = 0; i < p->nnodes; i++) json_array_append_new(nodes, json_string(p->nodes[i]));
  for (int i = 0; i < p->nzones; i++) json_array_append_new(zones, json_string(p->zones[i]));
  return json_pack("{s:s, s:o, s:o}", "model", p->model, "nodes", nodes, "zones", zones);
}

static int drain_parse(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen) {
  struct fsm_drain *d = item;
  const char *node = NULL, *reason = NULL;
  json_int_t since = d->since ? d->since : ts;
  if (unpack(v, err, errlen, "{s?s, s?s, s?I !}", "node", &node, "reason", &reason, "since", &since) ||
      check_key("node", node, key, err, errlen) ||
      copy_str("reason", reason, d->reason, sizeof d->reason, err, errlen))
    return -EINVAL;
  d->since = since;
  return 0;
}

static json_t *drain_json(const void *item, bool full) {
  const struct fsm_drain *d = item;
  return json_pack("{s:s, s:s, s:I}", "node", d->node, "reason", d->reason, "since", (json_int_t)d->since);
}

/* budget_parse reads a budget given as a JSON number or a decimal string ("25.00"; null or 0: none). */
static int budget_parse(json_t *b, int64_t *nano, char *err, size_t errlen) {
  if (!b) return 0;
  if (json_is_null(b)) {
    *nano = 0;
    return 0;
  }
  char text[48];
  if (json_is_string(b) && json_string_length(b) < sizeof text) {
    str_copy(text, sizeof text, json_string_value(b));
  } else if (json_is_number(b) && isfinite(json_number_value(b))) {
    snprintf(text, sizeof text, "%.9f", json_number_value(b));
  } else {
    text[0] = '-';
    text[1] = '\0';
  }
  if (amount_parse(text, nano) != 0) {
    snprintf(err, errlen, "budget: an amount >= 0 with at most 9 decimals, e.g. 25.00 (0 or null: no budget)");
    return -EINVAL;
  }
  return 0;
}

static int tenant_parse(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen) {
  struct fsm_tenant *t = item;
  const char *name = NULL, *hash = NULL;
  double rps = t->rps, weight = t->created ? t->weight : 1;
  json_int_t tpm = t->tokens_per_min, created = t->created ? t->created : ts;
  int mc = t->max_concurrent, prio = t->priority, revoked = t->revoked;
  json_t *models = NULL, *budget = NULL;
  const char *period = NULL;
  if (unpack(v, err, errlen, "{s?s, s?s, s?F, s?I, s?i, s?F, s?i, s?b, s?I, s?o, s?o, s?s !}", "name", &name,
             "key_hash", &hash, "rps", &rps, "tokens_per_min", &tpm, "max_concurrent", &mc, "weight", &weight,
             "priority", &prio, "revoked", &revoked, "created", &created, "models", &models, "budget", &budget,
             "period", &period) ||
      budget_parse(budget, &t->budget_nano, err, errlen) ||
      check_key("name", name, key, err, errlen) ||
      str_array("models", models, &t->models[0][0], sizeof t->models[0], FSM_TENANT_MODELS, &t->nmodels, err,
                errlen))
    return -EINVAL;
  if (hash) {
    size_t bin_len;
    if (strlen(hash) != 2 * FSM_HASH_LEN ||
        sodium_hex2bin(t->key_hash, sizeof t->key_hash, hash, strlen(hash), NULL, &bin_len, NULL) != 0 ||
        bin_len != FSM_HASH_LEN) {
      snprintf(err, errlen, "key_hash: %d hex characters", 2 * FSM_HASH_LEN);
      return -EINVAL;
    }
  }
  if (!finite_nonneg(rps) || tpm < 0 || mc < 0 || !finite_nonneg(weight) || weight == 0 || weight > 1e6) {
    snprintf(err, errlen, "rps, tokens_per_min and max_concurrent >= 0 (0 = unlimited); weight in (0, 1e6]");
    return -EINVAL;
  }
  enum period pe = (enum period)t->period;
  if (period && period_parse(period, &pe) != 0) {
    snprintf(err, errlen, "period: day, month or total");
    return -EINVAL;
  }
  t->period = (int32_t)pe;
  t->rps = rps;
  t->tokens_per_min = tpm;
  t->max_concurrent = mc;
  t->weight = weight;
  t->priority = prio;
  t->revoked = revoked != 0;
  t->created = created;
  return 0;
}

static json_t *tenant_json(const void *item, bool full) {
  const struct fsm_tenant *t = item;
  char hex[2 * FSM_HASH_LEN + 1];
  sodium_bin2hex(hex, sizeof hex, t->key_hash, sizeof t->key_hash);
  if (!full) hex[8] = '\0'; /* a fingerprint is enough to tell keys apart */
  json_t *models = json_array();
  for (int i = 0; i < t->nmodels; i++) json_array_append_new(models, json_string(t->models[i]));
  json_t *j = json_pack("{s:s, s:s, s:f, s:I, s:i, s:f, s:i, s:b, s:I, s:o}", full ? "key_hash" : "key_hash_prefix",
                        hex, "name", t->name, "rps", t->rps, "tokens_per_min", (json_int_t)t->tokens_per_min,
                        "max_concurrent", (int)t->max_concurrent, "weight", t->weight, "priority", (int)t->priority,
                        "revoked", (int)t->revoked, "created", (json_int_t)t->created, "models", models);
  if (t->budget_nano > 0) {
    char amount[32];
    amount_format(t->budget_nano, amount, sizeof amount);
    json_object_set_new(j, "budget", json_string(amount));
    json_object_set_new(j, "period", json_string(period_name((enum period)t->period)));
  }
  return j;
}

static int provider_parse(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen) {
  (void)ts;
  struct fsm_provider *p = item;
  const char *name = NULL;
  double share = 1; /* the only field: absent means the default */
  json_t *sj = json_object_get(v, "share");
  if (sj && !json_is_number(sj)) {
    snprintf(err, errlen, "share must be a number in [0, 1]");
    return -EINVAL;
  }
  if (unpack(v, err, errlen, "{s?s, s?F !}", "name", &name, "share", &share) ||
      check_key("name", name, key, err, errlen))
    return -EINVAL;
  if (!(isfinite(share) && share >= 0 && share <= 1)) {
    snprintf(err, errlen, "share: the part of the cost a provider earns, in [0, 1]");
    return -EINVAL;
  }
  p->share = share;
  return 0;
}

static json_t *provider_json(const void *item, bool full) {
  (void)full;
  const struct fsm_provider *p = item;
  return json_pack("{s:s, s:f}", "name", p->name, "share", p->share);
}

static bool currency_valid(const char *c) {
  return strlen(c) == 3 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z' && c[2] >= 'A' && c[2] <= 'Z';
}

static int price_parse(json_t *v, const char *key, void *item, int64_t ts, char *err, size_t errlen) {
  struct fsm_price *p = item;
  const char *model = NULL, *cur = NULL;
  bool fresh = !p->currency[0];
  double in = p->prompt_per_mtok, out = p->completion_per_mtok;
  double cached = fresh ? -1 : p->cached_prompt_per_mtok;
  if (fresh) str_copy(p->currency, sizeof p->currency, "USD");
  static const char *const nums[] = {"prompt_per_mtok", "completion_per_mtok", "cached_prompt_per_mtok"};
  for (int i = 0; i < 3; i++) {
    json_t *n = json_object_get(v, nums[i]);
    if (n && !json_is_number(n)) {
      snprintf(err, errlen, "%s must be a number (a price per million tokens)", nums[i]);
      return -EINVAL;
    }
  }
  if (unpack(v, err, errlen, "{s?s, s?F, s?F, s?F, s?s !}", "model", &model, "prompt_per_mtok", &in,
             "completion_per_mtok", &out, "cached_prompt_per_mtok", &cached, "currency", &cur) ||
      check_key("model", model, key, err, errlen) ||
      copy_str("currency", cur, p->currency, sizeof p->currency, err, errlen))
    return -EINVAL;
  if (!finite_nonneg(in) || !finite_nonneg(out) || !(isfinite(cached) && cached >= -1)) {
    snprintf(err, errlen, "prices are numbers >= 0 (per million tokens)");
    return -EINVAL;
  }
  if (!currency_valid(p->currency)) {
    snprintf(err, errlen, "currency: an ISO 4217 code of 3 capital letters, e.g. USD or EUR");
    return -EINVAL;
  }
  p->prompt_per_mtok = in;
  p->completion_per_mtok = out;
  p->cached_prompt_per_mtok = cached < 0 ? -1 : cached;
  return 0;
}

static json_t *price_json(const void *item, bool full) {
  const struct fsm_price *p = item;
  json_t *j = json_pack("{s:s, s:f, s:f, s:s}", "model", p->model, "prompt_per_mtok", p->prompt_per_mtok,
                        "completion_per_mtok", p->completion_per_mtok, "currency", p->currency);
  if (p->cached_prompt_per_mtok >= 0)
    json_object_set_new(j, "cached_prompt_per_mtok", json_real(p->cached_prompt_per_mtok));
  return j;
}

const struct fsm_kind_ops fsm_kinds[FSM_NKINDS] = {
    [FSM_POLICY] = {"policy", "policies", "model", sizeof(struct fsm_policy), policy_parse, policy_json},
    [FSM_PIN] = {"pin", "pins", "model", sizeof(struct fsm_pin), pin_parse, pin_json},
    [FSM_DRAIN] = {"drain", "drains", "node", sizeof(struct fsm_drain), drain_parse, drain_json},
    [FSM_TENANT] = {"tenant", "tenants", "name", sizeof(struct fsm_tenant), tenant_parse, tenant_json},
    [FSM_PRICE] = {"price", "prices", "model", sizeof(struct fsm_price), price_parse, price_json},
    [FSM_PROVIDER] = {"provider", "providers", "name", sizeof(struct fsm_provider), provider_parse, provider_json},
};

const char *fsm_kind_name(enum fsm_kind k) { return k < FSM_NKINDS ? fsm_kinds[k].name : "?"; }

int fsm_kind_parse(const char *s, size_t len, enum fsm_kind *out) {
  for (int k = 0; k < FSM_NKINDS; k++) {
    struct slice in = slice_make(s, len);
    if (slice_eqz(in, fsm_kinds[k].name) || slice_eqz(in, fsm_kinds[k].plural)) {
      *out = (enum fsm_kind)k;
      return 0;
    }
  }
  return -EINVAL;
}

bool fsm_key_valid(const char *key) {
  size_t n = strnlen(key, FSM_NAME_MAX);
  if (n == 0 || n == FSM_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)key[i];
    if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\') return false;
  }
  return true;
}

void fsm_key_hash(const char *api_key, uint8_t out[FSM_HASH_LEN]) {
  static const uint8_t ctx[] = "infermesh tenant api key v1......"; /* fixed 32-byte BLAKE2b key: domain separation */
  if (sodium_init() < 0) abort();
  crypto_generichash(out, FSM_HASH_LEN, (const uint8_t *)api_key, strlen(api_key), ctx, 32);
}

void fsm_item_json(enum fsm_kind k, const void *item, struct buf *out) {
  json_t *j = fsm_kinds[k].to_json(item, false);
  char *s = json_dumps(j, JSON_COMPACT);
  if (!s) abort();
  buf_puts(out, s);
  free(s);
  json_decref(j);
}
