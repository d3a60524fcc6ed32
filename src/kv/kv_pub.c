/* vLLM-compatible KV-cache event publisher over ZMQ PUB (for the simulated engine). */
#include "kv/kv_pub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/slice.h"
#include "kv/kv_events.h"

struct run {
  int start, n; /* hashes[start .. start+n) */
  bool has_parent;
  uint64_t parent;
  int block_size;
};

struct kv_pub {
  void *ctx, *sock;
  char ipc_path[256]; /* an ipc:// endpoint's socket file, removed on close ("" otherwise) */
  uint64_t seq, batches;
  bool cleared;
  uint64_t *stored;
  int nstored, capstored;
  struct run *runs;
  int nruns, capruns;
  uint64_t *removed;
  int nremoved, capremoved;
};

int kv_pub_open(struct kv_pub **out, const char *endpoint, char *err, size_t errlen) {
  *out = NULL;
  struct kv_pub *p = xcalloc(1, sizeof *p);
  p->ctx = zmq_ctx_new();
  p->sock = p->ctx ? zmq_socket(p->ctx, ZMQ_PUB) : NULL;
  if (!p->sock) {
    snprintf(err, errlen, "cannot make a ZMQ socket: %s", zmq_strerror(zmq_errno()));
    kv_pub_close(p);
    return -ENOMEM;
  }
  int linger = 0, hwm = 100000;
  zmq_setsockopt(p->sock, ZMQ_LINGER, &linger, sizeof linger);
  zmq_setsockopt(p->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
  if (zmq_bind(p->sock, endpoint) != 0) {
    int e = zmq_errno();
    snprintf(err, errlen, "cannot bind KV events endpoint %s: %s", endpoint, zmq_strerror(e));
    kv_pub_close(p);
    return e == EADDRINUSE ? -EADDRINUSE : -EINVAL;
  }
  if (strncmp(endpoint, "ipc://", 6) == 0) str_copy(p->ipc_path, sizeof p->ipc_path, endpoint + 6);
  *out = p;
  return 0;
}

void kv_pub_stored(struct kv_pub *p, uint64_t hash, bool has_parent, uint64_t parent, int block_size) {
  struct run *last = p->nruns ? &p->runs[p->nruns - 1] : NULL;
  bool extends = last && has_parent && last->block_size == block_size &&
                 last->start + last->n == p->nstored && p->stored[p->nstored - 1] == parent;
  if (p->nstored == p->capstored) {
    p->capstored = p->capstored ? 2 * p->capstored : 64;
    p->stored = xrealloc(p->stored, (size_t)p->capstored * sizeof *p->stored);
  }
  p->stored[p->nstored++] = hash;
  if (extends) {
    last->n++;
    return;
  }
  if (p->nruns == p->capruns) {
    p->capruns = p->capruns ? 2 * p->capruns : 16;
    p->runs = xrealloc(p->runs, (size_t)p->capruns * sizeof *p->runs);
  }
  p->runs[p->nruns++] = (struct run){
      .start = p->nstored - 1, .n = 1, .has_parent = has_parent, .parent = parent, .block_size = block_size};
}

void kv_pub_removed(struct kv_pub *p, uint64_t hash) {
  /* A batch lists removals before stores: a block stored and evicted within one batch goes out first. */
  for (int i = 0; i < p->nstored; i++)
    if (p->stored[i] == hash) {
      kv_pub_flush(p);
      break;
    }
  if (p->nremoved == p->capremoved) {
    p->capremoved = p->capremoved ? 2 * p->capremoved : 64;
    p->removed = xrealloc(p->removed, (size_t)p->capremoved * sizeof *p->removed);
  }
  p->removed[p->nremoved++] = hash;
}

void kv_pub_cleared(struct kv_pub *p) {
  p->cleared = true;
  p->nstored = p->nruns = p->nremoved = 0;
}

void kv_pub_flush(struct kv_pub *p) {
  if (!p->cleared && !p->nruns && !p->nremoved) return;
  /* Removals first: a block evicted and then stored again within one batch must end up present. */
  struct kv_stored_block_run *runs = xcalloc((size_t)p->nruns + 1, sizeof *runs);
  for (int i = 0; i < p->nruns; i++)
    runs[i] = (struct kv_stored_block_run){.hashes = p->stored + p->runs[i].start,
                                           .nhashes = p->runs[i].n,
                                           .has_parent = p->runs[i].has_parent,
                                           .parent = p->runs[i].parent,
                                           .block_size = p->runs[i].block_size};
  char *payload;
  size_t len;
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  kv_events_encode((double)now.tv_sec + now.tv_nsec / 1e9, p->cleared, p->removed, p->nremoved, runs,
                   p->nruns, &payload, &len);
  free(runs);
  uint8_t seq[8];
  for (int i = 0; i < 8; i++)
    seq[i] = (uint8_t)(p->seq >> (56 - 8 * i));
  p->seq++;
  if (zmq_send(p->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_send(p->sock, seq, 8, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_send(p->sock, payload, len, ZMQ_DONTWAIT) < 0)
    log_debug("KV event batch not sent", "err=\"%s\"", zmq_strerror(zmq_errno()));
  else
    p->batches++;
  free(payload);
  p->cleared = false;
  p->nstored = p->nruns = p->nremoved = 0;
}

uint64_t kv_pub_batches(const struct kv_pub *p) { return p->batches; }

void kv_pub_close(struct kv_pub *p) {
  if (!p) return;
  if (p->sock) zmq_close(p->sock);
  if (p->ctx) zmq_ctx_term(p->ctx);
  if (p->ipc_path[0]) unlink(p->ipc_path);
  free(p->stored);
  free(p->runs);
  free(p->removed);
  free(p);
}
