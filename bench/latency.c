/* latency: one keep-alive HTTP/1.1 connection, requests one at a time, per-request latency percentiles.
 *
 * Built by bench/proxy.sh with `cc -O2`; no dependencies beyond libc. Two pacing modes:
 *   closed loop (--rate 0): send the next request as soon as the previous response ends;
 *   open loop (--rate R):   request i is due at t0 + i/R; it is sent at that time (or as soon as the previous
 *                           response ends, if that is later) and its latency counts from the due time, so a
 *                           slow response also charges the requests it delayed (no coordinated omission).
 * Non-streaming responses end at the last body byte (Content-Length or chunked). Streaming (SSE) responses
 * are read to the terminal chunk; "first" is the time until the first complete SSE event (first "\n\n" in the
 * decoded body) and the body must contain "data: [DONE]".
 *
 * Output: one line of key=value pairs on stdout (microseconds), e.g.
 *   mode=closed n=3000 errors=0 p50_us=61.2 p90_us=... p99_us=... p999_us=... max_us=... mean_us=...
 * plus first_p50_us... for streams, and svc_p50_us/svc_p99_us in open-loop mode (latency from the actual
 * send).
 * --pin CPU runs the client on that CPU only.
 * `latency --free-port` prints a currently free TCP port on 127.0.0.1 and exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_CAP (1 << 20)

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until_ns(int64_t t) {
  struct timespec ts = {.tv_sec = t / 1000000000, .tv_nsec = t % 1000000000};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void die(const char *what) {
  fprintf(stderr, "latency: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int connect_to(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    fprintf(stderr, "latency: bad IPv4 address %s\n", host);
    exit(2);
  }
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) die("socket");
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
  socklen_t len = sizeof sa;
  if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0) die("getsockname");
  close(fd);
  return ntohs(sa.sin_port);
}

/* One response being read. Raw bytes accumulate in rbuf; the decoded body in body (streams only need it). */
struct resp {
  char *rbuf;
  size_t rlen; /* raw bytes held */
  size_t pos;  /* raw bytes consumed by the parser */
  int head_done;
  int status;
  int chunked;
  long long clen;       /* -1 when absent */
  long long chunk_left; /* chunked: payload bytes left in the current chunk; -1 = expecting a size line */
  int chunk_crlf;       /* chunked: a CRLF after chunk payload is still to be consumed */
  char *body;
  size_t blen;
  int64_t first_ns; /* time the first complete SSE event was seen; 0 = not yet */
  int close_after;
};

static int find_crlf(const char *p, size_t n, size_t *at) {
  for (size_t i = 0; i + 1 < n; i++)
    if (p[i] == '\r' && p[i + 1] == '\n') {
      *at = i;
      return 1;
    }
  return 0;
}

static void body_add(struct resp *r, const char *p, size_t n, int64_t t) {
  if (r->blen + n > RBUF_CAP) {
    fprintf(stderr, "latency: response body over %d bytes\n", RBUF_CAP);
    exit(1);
  }
  memcpy(r->body + r->blen, p, n);
  size_t from = r->blen > 0 ? r->blen - 1 : 0;
  r->blen += n;
  if (!r->first_ns && memmem(r->body + from, r->blen - from, "\n\n", 2)) r->first_ns = t;
}

/* Parse what is buffered. Returns 1 when the response is complete, 0 when more bytes are needed, -1 on error.
 */
static int parse(struct resp *r, int64_t t) {
  if (!r->head_done) {
    char *end = memmem(r->rbuf, r->rlen, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t hlen = (size_t)(end - r->rbuf) + 4;
    if (sscanf(r->rbuf, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    r->clen = -1;
    char *line = memchr(r->rbuf, '\n', hlen) + 1;
    while (line < r->rbuf + hlen - 2) {
      char *eol = memchr(line, '\n', (size_t)(r->rbuf + hlen - line));
      if (!eol) break;
      if (!strncasecmp(line, "content-length:", 15))
        r->clen = strtoll(line + 15, NULL, 10);
      else if (!strncasecmp(line, "transfer-encoding:", 18) &&
               memmem(line, (size_t)(eol - line), "chunked", 7))
        r->chunked = 1;
      else if (!strncasecmp(line, "connection:", 11) && memmem(line, (size_t)(eol - line), "close", 5))
        r->close_after = 1;
      line = eol + 1;
    }
    r->head_done = 1;
    r->pos = hlen;
    r->chunk_left = -1;
    if (!r->chunked && r->clen < 0) return -1; /* read-until-close bodies are not expected here */
  }
  if (!r->chunked) {
    size_t avail = r->rlen - r->pos;
    size_t want = (size_t)r->clen - r->blen;
    size_t take = avail < want ? avail : want;
    body_add(r, r->rbuf + r->pos, take, t);
    r->pos += take;
    return r->blen == (size_t)r->clen ? 1 : 0;
  }
  for (;;) {
    if (r->chunk_crlf) {
      if (r->rlen - r->pos < 2) return 0;
      if (r->rbuf[r->pos] != '\r' || r->rbuf[r->pos + 1] != '\n') return -1;
      r->pos += 2;
      r->chunk_crlf = 0;
    }
    if (r->chunk_left < 0) {
      size_t at;
      if (!find_crlf(r->rbuf + r->pos, r->rlen - r->pos, &at)) return 0;
      char *endp;
      long long sz = strtoll(r->rbuf + r->pos, &endp, 16);
      if (endp == r->rbuf + r->pos || sz < 0) return -1;
      r->pos += at + 2;
      if (sz == 0) {
        /* last chunk: no trailers expected, just the final CRLF */
        if (r->rlen - r->pos < 2) {
          r->pos -= at + 2; /* re-parse the size line when the CRLF arrives */
          return 0;
        }
        r->pos += 2;
        return 1;
      }
      r->chunk_left = sz;
    }
    size_t avail = r->rlen - r->pos;
    if (avail == 0) return 0;
    size_t take = avail < (size_t)r->chunk_left ? avail : (size_t)r->chunk_left;
    body_add(r, r->rbuf + r->pos, take, t);
    r->pos += take;
    r->chunk_left -= (long long)take;
    if (r->chunk_left == 0) {
      r->chunk_left = -1;
      r->chunk_crlf = 1;
    }
  }
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array, in microseconds */
static double pct(const int64_t *v, int n, double p) {
  int k = (int)((p / 100.0) * n + 0.999999);
  if (k < 1) k = 1;
  if (k > n) k = n;
  return (double)v[k - 1] / 1000.0;
}

static void report(const char *prefix, int64_t *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_i64);
  double sum = 0;
  for (int i = 0; i < n; i++)
    sum += (double)v[i];
  printf(" %sp50_us=%.1f %sp90_us=%.1f %sp99_us=%.1f %sp999_us=%.1f %smax_us=%.1f %smean_us=%.1f", prefix,
         pct(v, n, 50), prefix, pct(v, n, 90), prefix, pct(v, n, 99), prefix, pct(v, n, 99.9), prefix,
         (double)v[n - 1] / 1000.0, prefix, sum / n / 1000.0);
}

static void usage(void) {
  fprintf(
      stderr,
      "usage: latency --port P [--host 127.0.0.1] [--path /v1/chat/completions] --body JSON [--stream]\n"
      "               [--n 3000] [--warmup 300] [--rate R (requests/s; 0 = closed loop)] [--spin-us 100]\n"
      "               [--pin CPU (run on that CPU only)]\n"
      "       latency --free-port\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *path = "/v1/chat/completions", *body = NULL;
  int port = 0, n = 3000, warmup = 300, stream = 0;
  double rate = 0, spin_us = 100;
  int pin = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--free-port")) {
      printf("%d\n", free_port());
      return 0;
    } else if (!strcmp(a, "--stream")) {
      stream = 1;
    } else if (!v) {
      usage();
    } else if (!strcmp(a, "--host")) {
      host = v, i++;
    } else if (!strcmp(a, "--port")) {
      port = (int)strtol(v, NULL, 10), i++;
    } else if (!strcmp(a, "--path")) {
      path = v, i++;
    } else if (!strcmp(a, "--body")) {
      body = v, i++;
    } else if (!strcmp(a, "--n")) {
      n = (int)strtol(v, NULL, 10), i++;
    } else if (!strcmp(a, "--warmup")) {
      warmup = (int)strtol(v, NULL, 10), i++;
    } else if (!strcmp(a, "--rate")) {
      rate = strtod(v, NULL), i++;
    } else if (!strcmp(a, "--pin")) {
      pin = (int)strtol(v, NULL, 10), i++;
    } else if (!strcmp(a, "--spin-us")) {
      spin_us = strtod(v, NULL), i++;
    } else {
      usage();
    }
  }
  if (port <= 0 || port > 65535 || !body || n <= 0 || warmup < 0 || rate < 0) usage();
  if (pin >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(pin, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
  }

  char req[8192];
  int reqlen =
      snprintf(req, sizeof req,
               "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
               "Accept: %s\r\nContent-Length: %zu\r\n\r\n%s",
               path, host, port, stream ? "text/event-stream" : "application/json", strlen(body), body);
  if (reqlen < 0 || reqlen >= (int)sizeof req) {
    fprintf(stderr, "latency: request too large\n");
    return 2;
  }

  struct resp r = {.rbuf = malloc(RBUF_CAP), .body = malloc(RBUF_CAP)};
  int64_t *lat = calloc((size_t)n, sizeof *lat), *svc = calloc((size_t)n, sizeof *svc),
          *first = calloc((size_t)n, sizeof *first);
  if (!r.rbuf || !r.body || !lat || !svc || !first) die("malloc");

  int fd = connect_to(host, port);
  int errors = 0, reconnects = 0;
  const int64_t period = rate > 0 ? (int64_t)(1e9 / rate) : 0;
  const int64_t spin = (int64_t)(spin_us * 1000);
  int64_t t0 = 0;
  for (int i = 0; i < warmup + n; i++) {
    int measured = i >= warmup;
    int64_t due = 0;
    if (period) {
      if (i == warmup || i == 0) t0 = now_ns() + period;
      due = t0 + (int64_t)(measured ? i - warmup : i) * period;
      int64_t t = now_ns();
      if (due - t > spin) sleep_until_ns(due - spin);
      while (now_ns() < due) {
      }
    }
    int64_t sent = now_ns();
    if (!period) due = sent;
    for (int off = 0; off < reqlen;) {
      ssize_t w = write(fd, req + off, (size_t)(reqlen - off));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) die("write");
      off += (int)w;
    }
    r.rlen = r.pos = 0, r.head_done = 0, r.status = 0, r.chunked = 0, r.clen = -1, r.chunk_left = -1;
    r.chunk_crlf = 0, r.blen = 0, r.first_ns = 0, r.close_after = 0;
    int done = 0;
    int64_t t = 0;
    while (!done) {
      if (r.rlen == RBUF_CAP) {
        fprintf(stderr, "latency: response over %d bytes\n", RBUF_CAP);
        return 1;
      }
      ssize_t got = read(fd, r.rbuf + r.rlen, RBUF_CAP - r.rlen);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        fprintf(stderr, "latency: connection closed mid-response (request %d)\n", i);
        return 1;
      }
      t = now_ns();
      r.rlen += (size_t)got;
      int p = parse(&r, t);
      if (p < 0) {
        fprintf(stderr, "latency: malformed response (request %d): %.200s\n", i, r.rbuf);
        return 1;
      }
      done = p;
    }
    if (r.pos != r.rlen) {
      fprintf(stderr, "latency: %zu unexpected bytes after the response\n", r.rlen - r.pos);
      return 1;
    }
    int ok = r.status == 200;
    if (ok && stream) ok = memmem(r.body, r.blen, "data: [DONE]", 12) != NULL && r.first_ns != 0;
    if (ok && !stream) ok = memmem(r.body, r.blen, "\"choices\"", 9) != NULL;
    if (!ok) {
      if (errors < 3) fprintf(stderr, "latency: bad response %d: %.300s\n", r.status, r.body);
      errors++;
    }
    if (measured) {
      int k = i - warmup;
      lat[k] = t - due;
      svc[k] = t - sent;
      first[k] = stream ? r.first_ns - due : 0;
    }
    if (r.close_after) {
      close(fd);
      fd = connect_to(host, port);
      reconnects++;
    }
  }
  close(fd);

  printf("mode=%s rate=%.0f n=%d errors=%d reconnects=%d", period ? "open" : "closed", rate, n, errors,
         reconnects);
  report("", lat, n);
  if (period) {
    qsort(svc, (size_t)n, sizeof *svc, cmp_i64);
    printf(" svc_p50_us=%.1f svc_p99_us=%.1f", pct(svc, n, 50), pct(svc, n, 99));
  }
  if (stream) report("first_", first, n);
  printf("\n");
  return errors ? 1 : 0;
}
