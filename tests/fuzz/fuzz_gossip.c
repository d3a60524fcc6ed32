/* libFuzzer target for proto/gossip_codec: arbitrary bytes as a packet (SWIM, load, cache or spend report, load
 * digest), a node meta and a push-pull table; a digest's deltas are also applied to a full report
 * (cluster/load_delta.h).
 * Whatever decodes must re-encode (a SWIM message within its size bound), decode again to an equal struct,
 * and re-encode to the same bytes; whatever is rejected must leave the output zeroed. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/load_delta.h"
#include "proto/gossip_codec.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool all_zero(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return false;
  return true;
}

/* A decoded string is NUL-terminated inside its array; compare as strings. */
#define SAME_STR(a, b) (memchr((a), 0, sizeof(a)) && strcmp((a), (b)) == 0)

static void check_update(const struct gossip_update *a, const struct gossip_update *b) {
  CHECK(memcmp(a->id, b->id, GOSSIP_ID_LEN) == 0);
  CHECK(SAME_STR(a->name, b->name));
  CHECK(SAME_STR(a->addr, b->addr));
  CHECK(a->incarnation == b->incarnation);
  CHECK(a->state == b->state && (int)a->state >= GOSSIP_ALIVE && (int)a->state <= GOSSIP_LEFT);
  CHECK(memcmp(a->from, b->from, GOSSIP_ID_LEN) == 0);
  CHECK(a->meta_len == b->meta_len && a->meta_len <= GOSSIP_META_MAX);
  CHECK(memcmp(a->meta, b->meta, a->meta_len) == 0);
}

static void check_msg(const struct gossip_msg *a, const struct gossip_msg *b) {
  CHECK(a->type == b->type && (int)a->type >= GOSSIP_PING && (int)a->type <= GOSSIP_GOSSIP);
  CHECK(a->seq == b->seq);
  CHECK(memcmp(a->from, b->from, GOSSIP_ID_LEN) == 0);
  CHECK(SAME_STR(a->from_addr, b->from_addr));
  CHECK(memcmp(a->target, b->target, GOSSIP_ID_LEN) == 0);
  CHECK(SAME_STR(a->target_addr, b->target_addr));
  CHECK(a->nupdates == b->nupdates && a->nupdates >= 0 && a->nupdates <= GOSSIP_MAX_UPDATES);
  for (int i = 0; i < a->nupdates; i++)
    check_update(&a->updates[i], &b->updates[i]);
}

static void check_load(const struct gossip_load *a, const struct gossip_load *b) {
  CHECK(memcmp(a->from, b->from, GOSSIP_ID_LEN) == 0);
  CHECK(a->seq == b->seq && a->age_ms == b->age_ms);
  CHECK(a->ntargets == b->ntargets && a->ntargets >= 0 && a->ntargets <= GOSSIP_LOAD_TARGETS);
  for (int i = 0; i < a->ntargets; i++) {
    const struct gossip_target_load *x = &a->targets[i], *y = &b->targets[i];
    CHECK(SAME_STR(x->name, y->name) && SAME_STR(x->kind, y->kind));
    CHECK(x->nmodels == y->nmodels && x->nmodels >= 0 && x->nmodels <= GOSSIP_LOAD_MODELS);
    for (int j = 0; j < x->nmodels; j++)
      CHECK(SAME_STR(x->models[j], y->models[j]));
    CHECK(x->healthy == y->healthy && x->gpu_degraded == y->gpu_degraded);
    /* == also holds for -0.0 vs 0.0, which proto3 does not keep apart; NaN never decodes */
    CHECK(x->waiting == y->waiting && x->running == y->running && x->kv_usage == y->kv_usage);
    CHECK(x->kv_capacity_tokens == y->kv_capacity_tokens);
    CHECK(x->prefix_hit_rate == y->prefix_hit_rate && x->prompt_tps == y->prompt_tps);
    CHECK(x->gen_tps == y->gen_tps && x->ttft_p50_ms == y->ttft_p50_ms);
    CHECK(x->inflight == y->inflight);
  }
}

static void check_cache(const struct gossip_cache *a, const struct gossip_cache *b) {
  CHECK(memcmp(a->from, b->from, GOSSIP_ID_LEN) == 0 && memcmp(a->target_node, b->target_node, GOSSIP_ID_LEN) == 0);
  CHECK(a->boot == b->boot && a->seq == b->seq && SAME_STR(a->target, b->target));
  CHECK(a->source == b->source && (a->source == GOSSIP_CACHE_ENGINE || a->source == GOSSIP_CACHE_ROUTE));
  CHECK(a->cleared == b->cleared);
  CHECK(a->nstored == b->nstored && a->nremoved == b->nremoved && a->nstored >= 0 && a->nremoved >= 0 &&
        a->nstored + a->nremoved <= GOSSIP_CACHE_HASHES);
  CHECK(memcmp(a->stored, b->stored, sizeof a->stored[0] * (size_t)a->nstored) == 0);
  CHECK(memcmp(a->removed, b->removed, sizeof a->removed[0] * (size_t)a->nremoved) == 0);
}

static void check_spend(const struct gossip_spend *a, const struct gossip_spend *b) {
  CHECK(memcmp(a->from, b->from, GOSSIP_ID_LEN) == 0);
  CHECK(a->boot == b->boot && a->seq == b->seq);
  CHECK(a->ntenants == b->ntenants && a->ntenants >= 0 && a->ntenants <= GOSSIP_SPEND_TENANTS);
  for (int i = 0; i < a->ntenants; i++) {
    const struct gossip_tenant_spend *x = &a->tenants[i], *y = &b->tenants[i];
    CHECK(SAME_STR(x->tenant, y->tenant));
    CHECK(x->day_start == y->day_start && x->day_nano == y->day_nano && x->day_nano >= 0);
    CHECK(x->month_start == y->month_start && x->month_nano == y->month_nano && x->month_nano >= 0);
    CHECK(x->total_nano == y->total_nano && x->total_nano >= 0);
  }
}

static void check_digest(const struct gossip_load_digest *a, const struct gossip_load_digest *b) {
  static struct gossip_load base, out;
  CHECK(a->forward == b->forward);
  CHECK(a->nentries == b->nentries && a->nentries >= 0 && a->nentries <= GOSSIP_DIGEST_ENTRIES);
  for (int i = 0; i < a->nentries; i++) {
    const struct gossip_load_delta *x = &a->entries[i];
    CHECK(memcmp(x, &b->entries[i], sizeof *x) == 0);
    CHECK(x->ntargets >= 0 && x->ntargets <= GOSSIP_LOAD_TARGETS);
    /* a base that matches all but the numbers: applying must give finite numbers, or refuse */
    memset(&base, 0, sizeof base);
    memcpy(base.from, x->node, GOSSIP_SHORT_ID);
    base.boot = x->boot;
    base.ntargets = x->ntargets;
    int rc = load_delta_apply(&base, x, &out);
    CHECK(rc == 0 || rc == -ESTALE);
    for (int t = 0; rc == 0 && t < out.ntargets; t++)
      CHECK(out.targets[t].waiting == out.targets[t].waiting && out.targets[t].gen_tps == out.targets[t].gen_tps);
  }
}

static void check_meta(const struct gossip_meta *a, const struct gossip_meta *b) {
  CHECK(a->roles == b->roles && a->draining == b->draining);
  CHECK(SAME_STR(a->zone, b->zone) && SAME_STR(a->api_addr, b->api_addr));
  CHECK(a->nlabels == b->nlabels && a->nlabels >= 0 && a->nlabels <= GOSSIP_META_LABELS);
  for (int i = 0; i < a->nlabels; i++)
    CHECK(SAME_STR(a->label_key[i], b->label_key[i]) && SAME_STR(a->label_value[i], b->label_value[i]));
  CHECK(a->nmodels == b->nmodels && a->nmodels >= 0 && a->nmodels <= GOSSIP_META_MODELS);
  for (int i = 0; i < a->nmodels; i++) {
    CHECK(SAME_STR(a->models[i].name, b->models[i].name) && SAME_STR(a->models[i].kind, b->models[i].kind));
    CHECK(a->models[i].capacity_tokens == b->models[i].capacity_tokens);
  }
}

static struct gossip_packet p1, p2;
static uint8_t enc1[GOSSIP_PACKET_INPUT_MAX], enc2[GOSSIP_PACKET_INPUT_MAX];

static void fuzz_packet(const uint8_t *data, size_t size) {
  if (gossip_decode_packet(data, size, &p1) != 0) {
    CHECK(all_zero(&p1, sizeof p1));
    return;
  }
  int n1 = gossip_encode_packet(&p1, enc1, sizeof enc1);
  CHECK(n1 > 0);
  if (p1.kind == GOSSIP_PKT_SWIM) CHECK((size_t)n1 <= gossip_swim_size_bound(&p1.u.swim));
  memset(&p2, 0xa5, sizeof p2);
  CHECK(gossip_decode_packet(enc1, (size_t)n1, &p2) == 0);
  CHECK(p1.kind == p2.kind);
  if (p1.kind == GOSSIP_PKT_SWIM)
    check_msg(&p1.u.swim, &p2.u.swim);
  else if (p1.kind == GOSSIP_PKT_SPEND)
    check_spend(&p1.u.spend, &p2.u.spend);
  else if (p1.kind == GOSSIP_PKT_LOAD)
    check_load(&p1.u.load, &p2.u.load);
  else if (p1.kind == GOSSIP_PKT_DIGEST)
    check_digest(&p1.u.digest, &p2.u.digest);
  else
    check_cache(&p1.u.cache, &p2.u.cache);
  int n2 = gossip_encode_packet(&p2, enc2, sizeof enc2);
  CHECK(n2 == n1 && memcmp(enc1, enc2, (size_t)n1) == 0);
  CHECK(gossip_encode_packet(&p2, enc2, (size_t)n1 - 1) == -ENOSPC);
}

static void fuzz_meta(const uint8_t *data, size_t size) {
  static struct gossip_meta m1, m2;
  if (gossip_decode_meta(data, size, &m1) != 0) {
    CHECK(all_zero(&m1, sizeof m1));
    return;
  }
  int n1 = gossip_encode_meta(&m1, enc1, 4096); /* canonical re-encoding may exceed the input's length */
  CHECK(n1 >= 0);
  if (n1 > GOSSIP_META_MAX) return;
  memset(&m2, 0xa5, sizeof m2);
  CHECK(gossip_decode_meta(enc1, (size_t)n1, &m2) == 0);
  check_meta(&m1, &m2);
  int n2 = gossip_encode_meta(&m2, enc2, sizeof enc2);
  CHECK(n2 == n1 && memcmp(enc1, enc2, (size_t)n1) == 0);
}

static void fuzz_pushpull(const uint8_t *data, size_t size) {
  struct gossip_pushpull a, b;
  if (gossip_decode_pushpull(data, size, &a) != 0) {
    CHECK(all_zero(&a, sizeof a));
    return;
  }
  CHECK(a.nmembers >= 0 && a.nmembers <= GOSSIP_PUSHPULL_MAX && (a.nmembers == 0) == (a.members == NULL));
  uint8_t *o1, *o2;
  size_t l1, l2;
  CHECK(gossip_encode_pushpull(&a, &o1, &l1) == 0);
  CHECK(gossip_decode_pushpull(o1, l1, &b) == 0);
  CHECK(a.join == b.join && memcmp(a.from, b.from, GOSSIP_ID_LEN) == 0 && a.nmembers == b.nmembers);
  for (int i = 0; i < a.nmembers; i++)
    check_update(&a.members[i], &b.members[i]);
  CHECK(gossip_encode_pushpull(&b, &o2, &l2) == 0);
  CHECK(l1 == l2 && memcmp(o1, o2, l1) == 0);
  free(o1);
  free(o2);
  gossip_pushpull_free(&a);
  gossip_pushpull_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_packet(data, size);
  fuzz_meta(data, size);
  fuzz_pushpull(data, size);
  return 0;
}
