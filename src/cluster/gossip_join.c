/* Joining with an invite token: fetch the cluster keyring from a seed over TCP (blocking, before the loop). */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/gossip.h"
#include "cluster/gossip_tcp.h"
#include "cluster/invite.h"
#include "core/clock.h"
#include "core/log.h"

/* Wait for fd to be ready for events until deadline (monotonic ms). 0 ready, -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline) {
  for (;;) {
    uint64_t now = clock_mono_ns() / 1000000u;
    if (now >= deadline) return -ETIMEDOUT;
    struct pollfd p = {fd, events, 0};
    int rc = poll(&p, 1, (int)(deadline - now));
    if (rc > 0) return 0;
    if (rc < 0 && errno != EINTR) return -errno;
  }
}

static int io_all(int fd, uint8_t *buf, size_t len, bool wr, uint64_t deadline) {
  size_t done = 0;
  while (done < len) {
    int rc = wait_fd(fd, wr ? POLLOUT : POLLIN, deadline);
    if (rc) return rc;
    ssize_t n = wr ? send(fd, buf + done, len - done, MSG_NOSIGNAL) : recv(fd, buf + done, len - done, 0);
    if (n == 0) return -ECONNRESET;
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -errno;
    }
    done += (size_t)n;
  }
  return 0;
}

/* One attempt against one seed. Returns 0 (kr filled), -EACCES (refused, reason in err) or another error. */
static int try_seed(const char *seed, const struct invite *inv, const struct identity *id, struct keyring *kr,
                    uint32_t timeout_ms, char *err, size_t errlen) {
  struct sockaddr_storage sa;
  if (gossip_parse_addr(seed, &sa) != 0) {
    snprintf(err, errlen, "bad seed address '%s' in the token", seed);
    return -EINVAL;
  }
  uint64_t deadline = clock_mono_ns() / 1000000u + timeout_ms;
  int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  socklen_t salen = sa.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  int rc = connect(fd, (struct sockaddr *)&sa, salen);
  if (rc != 0 && errno != EINPROGRESS) {
    rc = -errno;
    goto out;
  }
  if ((rc = wait_fd(fd, POLLOUT, deadline)) != 0) goto out;
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
  if (soerr) {
    rc = -soerr;
    goto out;
  }
  uint8_t frame[5 + 512];
  int n = invite_join_request(inv, id->pk, frame + 5, sizeof frame - 5);
  if (n < 0) {
    rc = n;
    goto out;
  }
  uint32_t fl = (uint32_t)n + 1;
  frame[0] = (uint8_t)(fl >> 24), frame[1] = (uint8_t)(fl >> 16), frame[2] = (uint8_t)(fl >> 8), frame[3] = (uint8_t)fl;
  frame[4] = FRAME_JOIN_REQ;
  if ((rc = io_all(fd, frame, (size_t)n + 5, true, deadline)) != 0) goto out;
  uint8_t hdr[5], reply[2048];
  if ((rc = io_all(fd, hdr, 5, false, deadline)) != 0) goto out;
  uint32_t rl = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
  if (rl < 1 || rl - 1 > sizeof reply - 1) {
    rc = -EPROTO;
    goto out;
  }
  if ((rc = io_all(fd, reply, rl - 1, false, deadline)) != 0) goto out;
  if (hdr[4] == FRAME_JOIN_DENY) {
    reply[rl - 1] = '\0';
    snprintf(err, errlen, "seed %s refused the invite: %s", seed, (char *)reply);
    rc = -EACCES;
  } else if (hdr[4] == FRAME_JOIN_OK) {
    rc = invite_open_keyring(inv, reply, rl - 1, kr) == 0 ? 0 : -EPROTO;
    if (rc) snprintf(err, errlen, "seed %s sent a keyring this token cannot open", seed);
  } else {
    rc = -EPROTO;
  }
out:
  close(fd);
  return rc;
}

int gossip_fetch_keyring(const char *token, const struct identity *id, struct keyring *kr,
                         uint32_t timeout_ms, uint32_t retry_ms, char *err, size_t errlen) {
  struct invite inv;
  char why[256] = "";
  if (invite_parse(token, &inv, err, errlen) != 0) return -EINVAL;
  uint64_t start = clock_mono_ns() / 1000000u, give_up = start + retry_ms;
  uint32_t backoff = 250;
  for (int attempt = 1;; attempt++) {
    for (int i = 0; i < inv.nseeds; i++) {
      why[0] = '\0';
      int rc = try_seed(inv.seeds[i], &inv, id, kr, timeout_ms, why, sizeof why);
      if (rc == 0) {
        if (attempt > 1 || i > 0)
          log_info("invite join: got the cluster key", "seed=%s attempt=%d", inv.seeds[i], attempt);
        invite_wipe(&inv);
        return 0;
      }
      if (rc == -EACCES) { /* the seed answered: retrying cannot change its mind */
        snprintf(err, errlen, "%s", why);
        invite_wipe(&inv);
        return rc;
      }
      if (!why[0]) snprintf(why, sizeof why, "%s: %s", inv.seeds[i], strerror(-rc));
      log_warn("invite join: seed not reachable", "attempt=%d seed=%s err=\"%s\"", attempt, inv.seeds[i],
               why);
    }
    uint64_t now = clock_mono_ns() / 1000000u;
    if (now + backoff > give_up) break;
    log_info("invite join: retrying the seeds", "attempt=%d retry_in_ms=%u gives_up_in_ms=%llu", attempt + 1,
             backoff, (unsigned long long)(give_up - now));
    struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    backoff = backoff < 4000 ? backoff * 2 : 4000;
  }
  snprintf(err, errlen, "could not reach any seed of the invite for %llu s (%s); is an agent running there?",
           (unsigned long long)((clock_mono_ns() / 1000000u - start + 500) / 1000), why);
  invite_wipe(&inv);
  return -EHOSTUNREACH;
}
