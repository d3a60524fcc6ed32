/* ZMQ SUB for KV-cache events, driven by the libuv loop through ZMQ_FD (edge-triggered: drain until EAGAIN).
 */
#include "kv/kv_sub.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/slice.h"

#define MAX_FRAMES 3

struct kv_sub {
  void *ctx, *sock;
  uv_poll_t poll;
  struct kv_sub_cb cb;
  struct kv_sub_stats st;
  bool have_seq;
  uint64_t seq;
  char endpoint[160];
};

static void closed_cb(uv_handle_t *h) {
  struct kv_sub *s = h->data;
  zmq_close(s->sock);
  zmq_ctx_term(s->ctx);
  free(s);
}

/* handle takes one whole message (frames already received) through the decoder. */
static void handle(struct kv_sub *s, zmq_msg_t *f, int nframes, bool truncated) {
  uint64_t seq;
  if (truncated || nframes != 3 || kv_events_seq(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), &seq) != 0) {
    s->st.malformed++;
    return;
  }
  struct kv_batch b;
  /* Decode once to validate (no callback), then deliver: a malformed batch changes nothing. */
  if (kv_events_decode(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), &b, NULL, NULL) != 0) {
    s->st.malformed++;
    log_debug("malformed KV event batch dropped", "endpoint=%s seq=%llu", s->endpoint,
              (unsigned long long)seq);
    return;
  }
  if (s->have_seq && seq != s->seq + 1) {
    s->st.gaps++;
    log_info("KV event sequence skipped", "endpoint=%s expected=%llu got=%llu", s->endpoint,
             (unsigned long long)(s->seq + 1), (unsigned long long)seq);
    if (s->cb.gap) s->cb.gap(s->cb.arg);
  }
  s->have_seq = true;
  s->seq = seq;
  kv_events_decode(zmq_msg_data(&f[2]), zmq_msg_size(&f[2]), &b, s->cb.event, s->cb.arg);
  s->st.batches++;
  s->st.events += (uint64_t)b.nevents;
  s->st.skipped += (uint64_t)b.nskipped;
  s->st.last_ns = clock_mono_ns();
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  struct kv_sub *s = h->data;
  (void)status;
  (void)events;
  for (;;) {
    uint32_t zev = 0;
    size_t zl = sizeof zev;
    if (zmq_getsockopt(s->sock, ZMQ_EVENTS, &zev, &zl) != 0 || !(zev & ZMQ_POLLIN)) return;
    zmq_msg_t f[MAX_FRAMES];
    int n = 0;
    bool more = true, truncated = false;
    while (more) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, s->sock, ZMQ_DONTWAIT) < 0) { /* a multipart message arrives whole: not expected */
        zmq_msg_close(&m);
        break;
      }
      more = zmq_msg_more(&m);
      if (n < MAX_FRAMES) {
        f[n++] = m;
      } else {
        truncated = true;
        zmq_msg_close(&m);
      }
    }
    handle(s, f, n, truncated);
    for (int i = 0; i < n; i++)
      zmq_msg_close(&f[i]);
  }
}

int kv_sub_start(struct kv_sub **out, uv_loop_t *loop, const char *endpoint, const struct kv_sub_cb *cb,
                 char *err, size_t errlen) {
  *out = NULL;
  struct kv_sub *s = xcalloc(1, sizeof *s);
  s->cb = *cb;
  str_copy(s->endpoint, sizeof s->endpoint, endpoint);
  s->ctx = zmq_ctx_new();
  s->sock = s->ctx ? zmq_socket(s->ctx, ZMQ_SUB) : NULL;
  int linger = 0, fd = -1;
  size_t fl = sizeof fd;
  int64_t maxmsg =
      (int64_t)KV_EVENTS_PAYLOAD_MAX; /* a larger frame would be rejected anyway: ZMQ drops the peer */
  if (!s->sock || zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
      zmq_setsockopt(s->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
      zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, "", 0) != 0 || zmq_connect(s->sock, endpoint) != 0 ||
      zmq_getsockopt(s->sock, ZMQ_FD, &fd, &fl) != 0) {
    snprintf(err, errlen, "KV events endpoint %s: %s", endpoint, zmq_strerror(zmq_errno()));
    if (s->sock) zmq_close(s->sock);
    if (s->ctx) zmq_ctx_term(s->ctx);
    free(s);
    return -EINVAL;
  }
  uv_poll_init(loop, &s->poll, fd);
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, poll_cb);
  *out = s;
  return 0;
}

const struct kv_sub_stats *kv_sub_stats_of(const struct kv_sub *s) { return &s->st; }

void kv_sub_close(struct kv_sub *s) {
  if (!s) return;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, closed_cb);
}
