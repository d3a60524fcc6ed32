/* KV-cache event decoding against messages built the way vLLM's msgspec encoder lays out its KVEventBatch
 * (vllm/distributed/kv_events.py): array_like structs (vLLM <= 0.10, SGLang) and map structs (later vLLM),
 * tagged events, int and bytes block hashes, the optional medium and trailing fields added later. Also the
 * sim-engine's encoder round trip, a real ZMQ PUB -> SUB exchange on the loop, and the prefix index's
 * removal API the events drive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/clock.h"
#include "kv/kv_events.h"
#include "kv/kv_pub.h"
#include "kv/kv_sub.h"
#include "state/prefix_index.h"

#define MAXEV 16
struct got {
  int n;
  struct kv_event ev[MAXEV];
  uint64_t hashes[MAXEV][8];
};

static void collect_cb(void *arg, const struct kv_event *ev) {
  struct got *g = arg;
  if (g->n >= MAXEV) return;
  g->ev[g->n] = *ev;
  for (int i = 0; i < ev->nhashes && i < 8; i++)
    g->hashes[g->n][i] = ev->hashes[i];
  g->ev[g->n].hashes = g->hashes[g->n];
  g->n++;
}

static void str(msgpack_packer *pk, const char *s) {
  msgpack_pack_str(pk, strlen(s));
  msgpack_pack_str_body(pk, s, strlen(s));
}

static void bin(msgpack_packer *pk, const void *p, size_t n) {
  msgpack_pack_bin(pk, n);
  msgpack_pack_bin_body(pk, p, n);
}

/* vLLM 0.9-0.10 / SGLang: [ts, [["BlockStored", hashes, parent, token_ids, block_size, lora_id], ...]] */
static void test_array_form_int_hashes(void **state) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_double(&pk, 1733600000.25);
  msgpack_pack_array(&pk, 3);
  msgpack_pack_array(&pk, 6); /* no medium: omitted by older senders */
  str(&pk, "BlockStored");
  msgpack_pack_array(&pk, 2);
  msgpack_pack_uint64(&pk, 0xFFFFFFFFFFFFFFF0ull);
  msgpack_pack_int64(&pk, -5); /* Python's hash() is signed */
  msgpack_pack_nil(&pk);
  msgpack_pack_array(&pk, 32);
  for (int i = 0; i < 32; i++)
    msgpack_pack_int(&pk, 1000 + i);
  msgpack_pack_int(&pk, 16);
  msgpack_pack_nil(&pk);
  msgpack_pack_array(&pk, 2);
  str(&pk, "BlockRemoved");
  msgpack_pack_array(&pk, 1);
  msgpack_pack_uint64(&pk, 7);
  msgpack_pack_array(&pk, 1);
  str(&pk, "AllBlocksCleared");
  struct got g = {0};
  struct kv_batch b;
  assert_int_equal(kv_events_decode(sb.data, sb.size, &b, collect_cb, &g), 0);
  assert_int_equal(b.nevents, 3);
  assert_int_equal(b.dp_rank, -1);
  assert_true(b.ts > 1733600000.2 && b.ts < 1733600000.3);
  assert_int_equal(g.n, 3);
  assert_int_equal(g.ev[0].kind, KV_EV_STORED);
  assert_int_equal(g.ev[0].nhashes, 2);
  assert_true(g.ev[0].hashes[0] == 0xFFFFFFFFFFFFFFF0ull);
  assert_true(g.ev[0].hashes[1] == (uint64_t)-5);
  assert_false(g.ev[0].has_parent);
  assert_int_equal(g.ev[0].ntokens, 32);
  assert_int_equal(g.ev[0].block_size, 16);
  assert_int_equal(g.ev[1].kind, KV_EV_REMOVED);
  assert_true(g.ev[1].hashes[0] == 7);
  assert_int_equal(g.ev[2].kind, KV_EV_CLEARED);
  msgpack_sbuffer_destroy(&sb);
}

/* Later vLLM: map structs, bytes (sha256) hashes, medium, lora_name/extra_keys/group_idx, a dp rank; CPU-tier
 * events are skipped; an unknown event kind is skipped, not an error. */
static void test_map_form_bytes_hashes_medium(void **state) {
  uint8_t h1[32], h2[32], parent[32];
  memset(h1, 0x11, sizeof h1);
  memset(h2, 0x22, sizeof h2);
  memset(parent, 0x33, sizeof parent);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 3);
  str(&pk, "ts");
  msgpack_pack_double(&pk, 5.5);
  str(&pk, "events");
  msgpack_pack_array(&pk, 4);
  msgpack_pack_map(&pk, 11);
  str(&pk, "type");
  str(&pk, "BlockStored");
  str(&pk, "block_hashes");
  msgpack_pack_array(&pk, 2);
  bin(&pk, h1, sizeof h1);
  bin(&pk, h2, sizeof h2);
  str(&pk, "parent_block_hash");
  bin(&pk, parent, sizeof parent);
  str(&pk, "token_ids");
  msgpack_pack_array(&pk, 0);
  str(&pk, "block_size");
  msgpack_pack_int(&pk, 16);
  str(&pk, "lora_id");
  msgpack_pack_nil(&pk);
  str(&pk, "medium");
  str(&pk, "GPU");
  str(&pk, "lora_name");
  msgpack_pack_nil(&pk);
  str(&pk, "extra_keys");
  msgpack_pack_array(&pk, 2);
  msgpack_pack_nil(&pk);
  msgpack_pack_array(&pk, 1);
  str(&pk, "salt");
  str(&pk, "group_idx");
  msgpack_pack_int(&pk, 0);
  str(&pk, "kv_cache_spec_kind");
  str(&pk, "full_attention");
  msgpack_pack_map(&pk, 3); /* offloaded to CPU: not what the GPU holds */
  str(&pk, "type");
  str(&pk, "BlockRemoved");
  str(&pk, "block_hashes");
  msgpack_pack_array(&pk, 1);
  bin(&pk, h1, sizeof h1);
  str(&pk, "medium");
  str(&pk, "CPU");
  msgpack_pack_map(&pk, 1);
  str(&pk, "type");
  str(&pk, "SomethingNew");
  msgpack_pack_map(&pk, 3);
  str(&pk, "type");
  str(&pk, "BlockRemoved");
  str(&pk, "block_hashes");
  msgpack_pack_array(&pk, 1);
  bin(&pk, h2, sizeof h2);
  str(&pk, "medium");
  str(&pk, "GPU");
  str(&pk, "data_parallel_rank");
  msgpack_pack_int(&pk, 3);
  struct got g = {0};
  struct kv_batch b;
  assert_int_equal(kv_events_decode(sb.data, sb.size, &b, collect_cb, &g), 0);
  assert_int_equal(b.dp_rank, 3);
  assert_int_equal(b.nevents, 2);
  assert_int_equal(b.nskipped, 2);
  assert_int_equal(g.n, 2);
  assert_int_equal(g.ev[0].kind, KV_EV_STORED);
  assert_true(g.ev[0].has_parent);
  assert_true(g.ev[0].parent == kv_hash_bytes(parent, sizeof parent));
  assert_true(g.ev[0].hashes[0] == kv_hash_bytes(h1, sizeof h1));
  assert_true(g.ev[0].hashes[1] == kv_hash_bytes(h2, sizeof h2));
  assert_int_equal(g.ev[1].kind, KV_EV_REMOVED);
  assert_true(g.ev[1].hashes[0] == kv_hash_bytes(h2, sizeof h2));
  msgpack_sbuffer_destroy(&sb);
}

/* Malformed batches are rejected whole, before any callback; a 5-byte array32 claiming 4 billion items is
 * refused without allocating for it. */
static void test_malformed_rejected_whole(void **state) {
  struct got g = {0};
  struct kv_batch b;
  static const uint8_t huge[] = {0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff};
  assert_int_equal(kv_events_decode(huge, sizeof huge, &b, collect_cb, &g), -EINVAL);
  static const uint8_t trailing[] = {0x92, 0x00, 0x90, 0x00};
  assert_int_equal(kv_events_decode(trailing, sizeof trailing, &b, collect_cb, &g), -EINVAL);
  static const uint8_t not_batch[] = {0xa3, 'a', 'b', 'c'};
  assert_int_equal(kv_events_decode(not_batch, sizeof not_batch, &b, collect_cb, &g), -EINVAL);
  /* a good event followed by a BlockStored whose hashes are not a list: nothing is delivered */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_array(&pk, 1);
  str(&pk, "AllBlocksCleared");
  msgpack_pack_array(&pk, 2);
  str(&pk, "BlockStored");
  str(&pk, "oops");
  assert_int_equal(kv_events_decode(sb.data, sb.size, &b, collect_cb, &g), -EINVAL);
  assert_int_equal(g.n, 0);
  msgpack_sbuffer_destroy(&sb);
  uint64_t seq;
  assert_int_equal(kv_events_seq("\0\0\0\0\0\0\1\2", 8, &seq), 0);
  assert_true(seq == 258);
  assert_int_equal(kv_events_seq("\1\2", 2, &seq), -EINVAL);
}

/* What the simulated engine sends decodes to what it meant. */
static void test_encoder_round_trip(void **state) {
  uint64_t run1[3] = {1, 2, 3}, run2[1] = {9}, rm[2] = {4, 5};
  struct kv_stored_block_run runs[2] = {{run1, 3, false, 0, 16}, {run2, 1, true, 3, 16}};
  char *p;
  size_t n;
  kv_events_encode(12.0, true, rm, 2, runs, 2, &p, &n);
  struct got g = {0};
  struct kv_batch b;
  assert_int_equal(kv_events_decode(p, n, &b, collect_cb, &g), 0);
  free(p);
  assert_int_equal(g.n, 4);
  assert_int_equal(g.ev[0].kind, KV_EV_CLEARED);
  assert_int_equal(g.ev[1].kind, KV_EV_REMOVED);
  assert_int_equal(g.ev[1].nhashes, 2);
  assert_int_equal(g.ev[2].kind, KV_EV_STORED);
  assert_int_equal(g.ev[2].nhashes, 3);
  assert_true(g.ev[2].hashes[2] == 3);
  assert_int_equal(g.ev[3].kind, KV_EV_STORED);
  assert_true(g.ev[3].has_parent && g.ev[3].parent == 3 && g.ev[3].hashes[0] == 9);
}

/* A real PUB -> SUB exchange on the loop: stored runs arrive as published, in order, and a
 * stored-then-evicted block within one batch ends up removed (the publisher flushes before the removal). */
struct subgot {
  struct got g;
  int gaps, warm;
};
/* Warm-up batches (block 100) only say the subscription is through; the rest is collected. */
static void sub_event_cb(void *arg, const struct kv_event *ev) {
  struct subgot *sg = arg;
  if (ev->kind == KV_EV_STORED && ev->nhashes == 1 && ev->hashes[0] == 100)
    sg->warm++;
  else
    collect_cb(&sg->g, ev);
}
static void sub_gap_cb(void *arg) { ((struct subgot *)arg)->gaps++; }

static void test_pub_sub_over_zmq(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  char err[256], ep[128];
  snprintf(ep, sizeof ep, "ipc:///tmp/im-kv-test-%d", (int)getpid());
  struct kv_pub *pub;
  assert_int_equal(kv_pub_open(&pub, ep, err, sizeof err), 0);
  struct subgot sg = {0};
  struct kv_sub_cb cb = {.event = sub_event_cb, .gap = sub_gap_cb, .arg = &sg};
  struct kv_sub *sub;
  assert_int_equal(kv_sub_start(&sub, &loop, ep, &cb, err, sizeof err), 0);
  /* PUB drops until the subscription reached it: publish until something arrives */
  uint64_t end = clock_mono_ns() + 5000000000ull;
  while (sg.warm == 0 && clock_mono_ns() < end) {
    kv_pub_stored(pub, 100, false, 0, 16);
    kv_pub_flush(pub);
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(10000);
  }
  assert_true(sg.warm > 0);
  int before = sg.g.n;
  assert_int_equal(before, 0);
  kv_pub_stored(pub, 1, false, 0, 16);
  kv_pub_stored(pub, 2, true, 1, 16);
  kv_pub_removed(pub, 2); /* flushes the stores first */
  kv_pub_flush(pub);
  end = clock_mono_ns() + 5000000000ull;
  while (sg.g.n < before + 2 && clock_mono_ns() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
  }
  assert_int_equal(sg.g.n, before + 2);
  assert_int_equal(sg.g.ev[before].kind, KV_EV_STORED);
  assert_int_equal(sg.g.ev[before].nhashes, 2); /* one run: 2 extends 1 */
  assert_int_equal(sg.g.ev[before + 1].kind, KV_EV_REMOVED);
  assert_int_equal(sg.gaps, 0);
  assert_int_equal(kv_sub_stats_of(sub)->malformed, 0);
  kv_sub_close(sub);
  kv_pub_close(pub);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(access(ep + 6, F_OK), -1); /* the socket file went with the publisher */
}

/* The reported-block set: removal and clearing, and a linear match that does not assume prefix closure. */
static void test_prefix_index_remove(void **state) {
  struct prefix_index ix;
  assert_int_equal(prefix_index_init(&ix, 100), 0);
  uint64_t h[5] = {11, 12, 13, 14, 15};
  prefix_index_add_in_order(&ix, h, 5);
  assert_int_equal(prefix_index_match_linear(&ix, h, 5), 5);
  assert_true(prefix_index_remove(&ix, 13));
  assert_false(prefix_index_remove(&ix, 13));
  assert_int_equal(prefix_index_size(&ix), 4);
  assert_int_equal(prefix_index_match_linear(&ix, h, 5), 2);
  assert_true(prefix_index_contains(&ix, 14));
  prefix_index_clear(&ix);
  assert_int_equal(prefix_index_size(&ix), 0);
  assert_int_equal(prefix_index_match_linear(&ix, h, 5), 0);
  prefix_index_add_in_order(&ix, h, 5); /* reusable after a clear */
  assert_int_equal(prefix_index_match_linear(&ix, h, 5), 5);
  prefix_index_free(&ix);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_array_form_int_hashes),    cmocka_unit_test(test_map_form_bytes_hashes_medium),
      cmocka_unit_test(test_malformed_rejected_whole), cmocka_unit_test(test_encoder_round_trip),
      cmocka_unit_test(test_pub_sub_over_zmq),         cmocka_unit_test(test_prefix_index_remove),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
