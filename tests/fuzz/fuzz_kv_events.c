/* libFuzzer target for kv/kv_events: arbitrary bytes as a KV-cache event payload (what a runtime's ZMQ
 * publisher, or anyone who can reach the agent's subscriber, sends) and as a sequence frame. A rejected batch
 * delivers no event; an accepted one delivers exactly nevents events within their bounds, and decoding it
 * again gives the same events (the decoder is a pure function). */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "kv/kv_events.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct tally {
  int n;
  uint64_t digest; /* of every event's fields and hashes, in order */
};

static void tally_cb(void *arg, const struct kv_event *ev) {
  struct tally *t = arg;
  CHECK(ev->kind == KV_EV_STORED || ev->kind == KV_EV_REMOVED || ev->kind == KV_EV_CLEARED);
  CHECK(ev->nhashes >= 0 && ev->nhashes <= KV_EVENT_MAX_HASHES);
  CHECK(ev->nhashes == 0 || ev->hashes);
  CHECK(ev->block_size >= 0 && ev->ntokens >= 0);
  uint64_t d = t->digest * 31 + (uint64_t)ev->kind;
  for (int i = 0; i < ev->nhashes; i++)
    d = d * 1099511628211ull ^ ev->hashes[i];
  d = d * 31 + (ev->has_parent ? ev->parent : 7) + (uint64_t)ev->block_size;
  t->digest = d;
  t->n++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tally a = {0}, b = {0};
  struct kv_batch ba, bb;
  int rc = kv_events_decode(data, size, &ba, tally_cb, &a);
  if (rc != 0) {
    CHECK(rc == -EINVAL && a.n == 0 && ba.nevents == 0 && ba.dp_rank == -1);
  } else {
    CHECK(a.n == ba.nevents && ba.nskipped >= 0);
    CHECK(kv_events_decode(data, size, &bb, tally_cb, &b) == 0);
    CHECK(b.n == a.n && b.digest == a.digest && bb.nskipped == ba.nskipped && bb.dp_rank == ba.dp_rank);
  }
  uint64_t seq;
  CHECK((kv_events_seq(data, size, &seq) == 0) == (size == 8));
  return 0;
}
