/* The HTTP server's global bounds as the process sees them: the descriptor limit and the metrics. */
#include <dirent.h>
#include <sys/resource.h>

#include "net/http_server.h"

uint64_t http_raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rlim_t want = rl.rlim_max;
  if (want == RLIM_INFINITY || want > (rlim_t)1 << 20) want = (rlim_t)1 << 20; /* beyond nr_open it fails */
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    struct rlimit nl = {want, rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &nl) == 0) rl.rlim_cur = want;
  }
  return rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
}

/* open_fds counts the entries of /proc/self/fd (less the one the count itself holds); -1 if unreadable. */
static long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1;
}

void http_server_metrics(struct http_server *s, struct buf *out) {
  struct rlimit rl;
  long fds = open_fds();
  if (fds >= 0)
    buf_printf(out,
               "# HELP process_open_fds Open file descriptors of the agent.\n# TYPE process_open_fds gauge\n"
               "process_open_fds %ld\n",
               fds);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    buf_printf(out,
               "# HELP process_max_fds The soft RLIMIT_NOFILE of the agent.\n# TYPE process_max_fds gauge\n"
               "process_max_fds %llu\n",
               (unsigned long long)rl.rlim_cur);
  buf_printf(
      out,
      "# HELP infermesh_http_connections Open client connections of the HTTP listener.\n"
      "# TYPE infermesh_http_connections gauge\ninfermesh_http_connections %d\n"
      "# HELP infermesh_http_fd_reserve Descriptors kept free: a connection accepted within them gets 503.\n"
      "# TYPE infermesh_http_fd_reserve gauge\ninfermesh_http_fd_reserve %d\n"
      "# HELP infermesh_http_buffered_body_bytes Bytes of large request bodies held now (the global budget's "
      "use).\n# TYPE infermesh_http_buffered_body_bytes gauge\ninfermesh_http_buffered_body_bytes %zu\n"
      "# HELP infermesh_http_buffered_body_limit_bytes The global budget for large request bodies (0: "
      "none).\n"
      "# TYPE infermesh_http_buffered_body_limit_bytes gauge\ninfermesh_http_buffered_body_limit_bytes %zu\n"
      "# HELP infermesh_http_refused_total Connections or requests the HTTP server refused: 503 for want of "
      "descriptors or of body budget, GOAWAY to an HTTP/2 client that reset too many streams.\n# TYPE "
      "infermesh_http_refused_total counter\n"
      "infermesh_http_refused_total{reason=\"descriptors\"} %llu\n"
      "infermesh_http_refused_total{reason=\"body_budget\"} %llu\n"
      "infermesh_http_refused_total{reason=\"rapid_reset\"} %llu\n"
      "# HELP infermesh_http2_connections_total HTTP/2 connections (h2c with prior knowledge, or h2 over "
      "TLS).\n"
      "# TYPE infermesh_http2_connections_total counter\ninfermesh_http2_connections_total %llu\n"
      "# HELP infermesh_http2_streams_total HTTP/2 requests handled.\n"
      "# TYPE infermesh_http2_streams_total counter\ninfermesh_http2_streams_total %llu\n",
      s->nconns, s->limits.fd_reserve, s->buffered_bodies, s->limits.max_buffered_bodies,
      (unsigned long long)s->refused_fds, (unsigned long long)s->refused_budget,
      (unsigned long long)s->refused_rapid_reset, (unsigned long long)s->h2_conns,
      (unsigned long long)s->h2_streams);
  if (s->tls)
    buf_printf(out,
               "# HELP infermesh_tls_handshake_failures_total TLS handshakes the listener refused or that failed "
               "(old protocols, plaintext, client certificates that did not verify).\n"
               "# TYPE infermesh_tls_handshake_failures_total counter\ninfermesh_tls_handshake_failures_total %llu\n",
               (unsigned long long)s->tls_refused);
}
