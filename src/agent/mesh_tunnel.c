/* The agent's tunnel configuration: allowed ports and local forwarders (see mesh_tunnel.h). */
#include "agent/mesh_tunnel.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/slice.h"

/* next_item takes the text up to the next ',' off rest into item: false at the end. */
static bool next_item(struct slice *rest, struct slice *item) {
  if (!rest->len) return false;
  const char *comma = memchr(rest->base, ',', rest->len);
  size_t n = comma ? (size_t)(comma - rest->base) : rest->len;
  *item = slice_make(rest->base, n);
  *rest = comma ? slice_make(comma + 1, rest->len - n - 1) : slice_make(rest->base + n, 0);
  return true;
}

static int parse_port(struct slice s, int *port) {
  uint64_t v;
  if (slice_to_u64(slice_trim(s), &v) != 0 || v == 0 || v > 65535) return -EINVAL;
  *port = (int)v;
  return 0;
}

/* One "[HOST:]PORT=NODE:PORT" entry. */
static int start_forward(struct tunnel *t, struct slice e, char *err, size_t errlen) {
  char entry[256], host[64] = "127.0.0.1";
  int lport, rport;
  e = slice_trim(e);
  if (e.len >= sizeof entry) goto bad;
  memcpy(entry, e.base, e.len);
  entry[e.len] = '\0';
  char *eq = strchr(entry, '='), *rc = strrchr(entry, ':');
  if (!eq || !rc || rc < eq) goto bad;
  *eq = '\0', *rc = '\0';
  char *lc = strrchr(entry, ':');
  if (lc) {
    *lc = '\0';
    if (str_copy(host, sizeof host, entry) >= sizeof host) goto bad;
  }
  if (parse_port(slice_cstr(lc ? lc + 1 : entry), &lport) != 0 ||
      parse_port(slice_cstr(rc + 1), &rport) != 0 || !eq[1])
    goto bad;
  struct tunnel_forward *f;
  int r = tunnel_forward_start(&f, t, host, lport, eq + 1, rport, err, errlen);
  if (r == 0) log_info("tunnel forwarder on", "listen=%s:%d node=%s port=%d", host, lport, eq + 1, rport);
  return r;
bad:
  snprintf(err, errlen, "tunnel forward '%.*s' is not [HOST:]PORT=NODE:PORT", (int)e.len, e.base);
  return -EINVAL;
}

int mesh_tunnel_configure(struct tunnel *t, const char *allow, const char *forward, char *err,
                          size_t errlen) {
  struct slice rest = slice_cstr(allow), item;
  while (next_item(&rest, &item)) {
    int port, rc;
    if (slice_trim(item).len == 0) continue;
    if (parse_port(item, &port) != 0 || ((rc = tunnel_allow(t, "127.0.0.1", port)) != 0 && rc != -EEXIST)) {
      snprintf(err, errlen, "tunnel allow: '%.*s' is not a port this node can allow (1-65535, at most %d)",
               (int)item.len, item.base, TUNNEL_ALLOW_MAX);
      return -EINVAL;
    }
  }
  rest = slice_cstr(forward);
  while (next_item(&rest, &item)) {
    if (slice_trim(item).len == 0) continue;
    int rc = start_forward(t, item, err, errlen);
    if (rc != 0) return rc;
  }
  return 0;
}
