/* What one upstream attempt sends: the model under the name the target's runtime knows, its API key. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "route/proxy_int.h"

/* JSON-escape name into out (no quotes); false when it does not fit. */
static bool json_escape(const char *name, char *out, size_t cap) {
  size_t n = 0;
  for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
    char tmp[8];
    size_t k;
    if (*c == '"' || *c == '\\')
      tmp[0] = '\\', tmp[1] = (char)*c, k = 2;
    else if (*c < 0x20)
      k = (size_t)snprintf(tmp, sizeof tmp, "\\u%04x", *c);
    else
      tmp[0] = (char)*c, k = 1;
    if (n + k >= cap) return false;
    memcpy(out + n, tmp, k);
    n += k;
  }
  out[n] = '\0';
  return true;
}

size_t proxy_leg_body(struct proxy *p, struct leg *l, const struct target *t) {
  size_t total = 0;
  memcpy(l->parts, p->parts, (size_t)p->nparts * sizeof p->parts[0]);
  l->nparts = p->nparts;
  bool rename = !t->remote && t->alias[0] && t->upstream_model[0] && slice_eqz(p->oai.model, t->alias) &&
                json_escape(t->upstream_model, l->model_json, sizeof l->model_json);
  l->renamed = rename;
  /* The model's bytes are either the client's (oai.model_raw, inside one part) or a part of their own that
   * proxy_fallback_body put there (p->model). */
  struct slice raw = p->oai.model_raw;
  for (int i = 0; rename && i < l->nparts; i++) {
    struct slice s = l->parts[i];
    if (s.base == p->model) {
      l->parts[i] = slice_cstr(l->model_json);
      break;
    }
    if (!raw.base || raw.base < s.base || raw.base + raw.len > s.base + s.len || l->nparts + 2 > 7) continue;
    memmove(&l->parts[i + 3], &l->parts[i + 1], (size_t)(l->nparts - i - 1) * sizeof l->parts[0]);
    l->parts[i] = slice_make(s.base, (size_t)(raw.base - s.base));
    l->parts[i + 1] = slice_cstr(l->model_json);
    l->parts[i + 2] = slice_make(raw.base + raw.len, (size_t)(s.base + s.len - (raw.base + raw.len)));
    l->nparts += 2;
    break;
  }
  for (int i = 0; i < l->nparts; i++)
    total += l->parts[i].len;
  return total;
}

bool proxy_has_usage_object(struct slice json) {
  const char *p = json.base, *end = json.base + json.len;
  while (p < end && (p = memmem(p, (size_t)(end - p), "\"usage\"", 7)) != NULL) {
    p += 7;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n' || *p == ':'))
      p++;
    if (p < end && *p == '{') return true;
  }
  return false;
}

bool proxy_renames(const struct proxy *p, const struct leg *l) { return p->aliased || (l && l->renamed); }

void proxy_client_json(const struct proxy *p, struct slice json, struct buf *out) {
  struct slice m;
  struct slice asked = p->oai.model_raw;
  if (!asked.len || jscan_top_string(json.base, json.len, "model", &m) != 0) {
    buf_append_slice(out, json);
    return;
  }
  buf_append(out, json.base, (size_t)(m.base - json.base));
  buf_append_slice(out, asked);
  buf_append(out, m.base + m.len, (size_t)(json.base + json.len - (m.base + m.len)));
}

struct slice proxy_upstream_auth(struct proxy *p, const struct target *t, char *buf, size_t cap) {
  if (!t->remote && t->api_key[0]) {
    snprintf(buf, cap, "Bearer %s", t->api_key);
    return slice_cstr(buf);
  }
  return p->r->opts.ntenants ? slice_make(NULL, 0) : http_req_header(p->req, "authorization");
}
