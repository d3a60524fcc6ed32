/* Control-plane endpoints: /v1/cluster/{raft,state,_propose} and get/put/delete/list of each FSM kind. */
#include "api/control_api.h"

#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/reply.h"
#include "core/alloc.h"
#include "core/log.h"
#include "route/hop.h"

#define READ_WAIT_MS 5000
#define MAX_WAIT_MS 30000

/* query_u64 reads NAME=DIGITS from a query string; false when absent or malformed. */
static bool query_u64(struct slice q, const char *name, uint64_t *out) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < q.len;) {
    size_t end = i;
    while (end < q.len && q.base[end] != '&') end++;
    if (end - i > nl && memcmp(q.base + i, name, nl) == 0 && q.base[i + nl] == '=')
      return slice_to_u64(slice_make(q.base + i + nl + 1, end - i - nl - 1), out) == 0;
    i = end + 1;
  }
  return false;
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* url_decode: percent-decoding of a path segment into out (cap); -EINVAL when malformed or too long. */
static int url_decode(struct slice s, char *out, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < s.len; i++) {
    char ch = s.base[i];
    if (ch == '%') {
      if (i + 2 >= s.len) return -EINVAL;
      int h = hexval(s.base[i + 1]), l = hexval(s.base[i + 2]);
      if (h < 0 || l < 0) return -EINVAL;
      ch = (char)(h * 16 + l);
      i += 2;
    }
    if (n + 1 >= cap) return -EINVAL;
    out[n++] = ch;
  }
  out[n] = '\0';
  return 0;
}

void control_hop_target(const char *what, const void *body, size_t len, char *out, size_t cap) {
  uint8_t h[16];
  char hex[33];
  crypto_generichash(h, sizeof h, body, len, NULL, 0);
  sodium_bin2hex(hex, sizeof hex, h, sizeof h);
  snprintf(out, cap, "%s:%s", what, hex);
}

/* ---- reads ---- */

static void respond_read(const struct api_control *ctl, struct http_req *req, const struct api_wait *w, bool timed_out) {
  const struct fsm *f = ctl->fsm(ctl->ctx);
  struct buf b = {0};
  if (timed_out && fsm_index(f) < w->min_index) {
    api_reply_error(req, 504, "the control plane did not reach that index in time on this node; retry", "index_timeout");
    return;
  }
  buf_printf(&b, "{\"index\":%llu,", (unsigned long long)fsm_index(f));
  if (w->key[0]) {
    const void *item = fsm_get(f, w->kind, w->key);
    if (!item) {
      char msg[200];
      snprintf(msg, sizeof msg, "no %s named '%s'", fsm_kind_name(w->kind), w->key);
      buf_free(&b);
      api_reply_error(req, 404, msg, "not_found");
      return;
    }
    buf_puts(&b, "\"item\":");
    fsm_item_json(w->kind, item, &b);
  } else {
    buf_puts(&b, "\"items\":");
    fsm_kind_json(f, w->kind, &b);
  }
  buf_puts(&b, "}");
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

static void respond_state(const struct api_control *ctl, struct http_req *req, const struct api_wait *w, bool timed_out) {
  if (fsm_index(ctl->fsm(ctl->ctx)) < w->min_index) {
    http_resp_send(req, 304, "application/json", NULL, 0, NULL, 0);
    return;
  }
  struct buf b = {0};
  fsm_snapshot(ctl->fsm(ctl->ctx), &b);
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

static void wait_or_answer(const struct api_control *ctl, struct http_req *req, uint64_t min_index,
                           uint32_t wait_ms,
                           void (*respond)(const struct api_control *, struct http_req *, const struct api_wait *,
                                           bool),
                           const struct api_wait *proto) {
  struct api_wait w = *proto;
  w.min_index = min_index;
  w.respond = respond;
  if (fsm_index(ctl->fsm(ctl->ctx)) >= min_index || wait_ms == 0) {
    respond(ctl, req, &w, true);
    return;
  }
  ctl->wait(ctl->ctx, ctl, req, wait_ms, &w);
}

/* ---- raft status ---- */

static void raft_status(const struct api_control *ctl, struct http_req *req) {
  struct buf b = {0};
  struct craft *raft = ctl->raft(ctl->ctx);
  uint64_t enforced = ctl->enforced_index(ctl->ctx);
  if (!raft) {
    buf_printf(&b, "{\"node\":");
    buf_json_str(&b, slice_cstr(ctl->node_name));
    buf_printf(&b, ",\"server\":false,\"state\":\"replica\",\"fsm_index\":%llu,\"enforced_index\":%llu}",
               (unsigned long long)fsm_index(ctl->fsm(ctl->ctx)), (unsigned long long)enforced);
    api_reply_json(req, 200, &b);
    buf_free(&b);
    return;
  }
  struct craft_status st;
  static const char *const roles[] = {"standby", "voter", "spare"};
  craft_status(raft, &st);
  buf_printf(&b, "{\"node\":");
  buf_json_str(&b, slice_cstr(ctl->node_name));
  buf_printf(&b, ",\"server\":true,\"id\":\"%016llx\",\"address\":", (unsigned long long)craft_id_from_pk(ctl->node_id));
  buf_json_str(&b, slice_cstr(ctl->raft_address(ctl->ctx)));
  buf_printf(&b, ",\"state\":\"%s\",\"term\":%llu,\"commit_index\":%llu,\"applied_index\":%llu,\"last_index\":%llu,"
                 "\"fsm_index\":%llu,\"leader\":",
             st.state, (unsigned long long)st.term, (unsigned long long)st.commit_index,
             (unsigned long long)st.applied_index, (unsigned long long)st.last_index, (unsigned long long)st.fsm_index);
  if (st.leader_id) {
    buf_printf(&b, "{\"id\":\"%016llx\",\"address\":", (unsigned long long)st.leader_id);
    buf_json_str(&b, slice_cstr(st.leader_address));
    buf_puts(&b, "}");
  } else {
    buf_puts(&b, "null");
  }
  buf_puts(&b, ",\"servers\":[");
  int voters = 0;
  for (int i = 0; i < st.nservers; i++) {
    buf_printf(&b, "%s{\"id\":\"%016llx\",\"address\":", i ? "," : "", (unsigned long long)st.servers[i].id);
    buf_json_str(&b, slice_cstr(st.servers[i].address));
    buf_printf(&b, ",\"role\":\"%s\"}", st.servers[i].role >= 0 && st.servers[i].role <= 2 ? roles[st.servers[i].role] : "?");
    voters += st.servers[i].role == CRAFT_VOTER;
  }
  buf_printf(&b, "],\"voters\":%d,\"transport_refused\":%llu,\"enforced_index\":%llu}", voters,
             (unsigned long long)st.transport_refused, (unsigned long long)enforced);
  api_reply_json(req, 200, &b);
  buf_free(&b);
}

/* ---- writes ---- */

/* A write's state, in its request's pool: the request is ended only when the write's callback ran, also when
 * the client went away meanwhile (gone), so the pool outlives every use of it. */
struct wctx {
  struct http_req *req;
  bool gone; /* the client went away: the write goes on, its outcome is not sent */
  enum fsm_kind kind;
  char key[FSM_NAME_MAX];
  char id[FSM_ID_MAX];
  char api_key[80]; /* a created tenant's key: shown once */
  bool internal;    /* a forwarded proposal: answer in the internal form */
};

/* The client went away: the write goes on; write_done_cb ends the request. */
static void wctx_abort_cb(struct http_req *req) { ((struct wctx *)req->data)->gone = true; }

static void write_done_cb(void *arg, int status, const struct fsm_result *res) {
  struct wctx *w = arg;
  struct http_req *req = w->req;
  char api_key[sizeof w->api_key]; /* w goes with req's pool as the reply ends req */
  memcpy(api_key, w->api_key, sizeof api_key);
  sodium_memzero(w->api_key, sizeof w->api_key);
  req->abort_cb = NULL;
  if (w->gone) {
    http_resp_end(req);
    goto out;
  }
  struct buf b = {0};
  if (w->internal) {
    if (status == 0) {
      buf_printf(&b, "{\"status\":%d,\"duplicate\":%s,\"index\":%llu,\"message\":", res->status,
                 res->duplicate ? "true" : "false", (unsigned long long)res->index);
      buf_json_str(&b, slice_cstr(res->msg));
      buf_puts(&b, "}");
      api_reply_json(req, 200, &b);
    } else {
      api_reply_error(req, 503, status == CRAFT_EUNKNOWN ? "outcome_unknown" : "not_leader", "no_leader");
    }
    buf_free(&b);
    goto out;
  }
  if (status == CRAFT_ENOTLEADER) {
    api_reply_error(req, 503, "the control plane has no leader right now (election in progress or no quorum); retry",
          "no_leader");
  } else if (status == CRAFT_EUNKNOWN) {
    char msg[200];
    snprintf(msg, sizeof msg, "leadership changed while writing: outcome unknown; retry with header "
                              "x-infermesh-command-id: %s (safe: commands are idempotent)", w->id);
    api_reply_error(req, 503, msg, "outcome_unknown");
  } else if (status != 0) {
    api_reply_error(req, 500, "the control plane failed to write (see the agent's log)", "raft_error");
  } else if (res->status != 0) {
    int code = res->status == -ENOENT ? 404 : res->status == -EEXIST ? 409 : res->status == -ENOSPC ? 507 : 400;
    api_reply_error(req, code, res->msg, code == 404 ? "not_found" : code == 409 ? "exists" : "invalid_value");
  } else {
    buf_printf(&b, "{\"index\":%llu,\"command_id\":\"%s\",\"duplicate\":%s,\"kind\":\"%s\",\"key\":",
               (unsigned long long)res->index, w->id, res->duplicate ? "true" : "false", fsm_kind_name(w->kind));
    buf_json_str(&b, slice_cstr(w->key));
    if (api_key[0]) {
      buf_puts(&b, ",\"api_key\":");
      buf_json_str(&b, slice_cstr(api_key));
    }
    buf_puts(&b, "}");
    api_reply_json(req, api_key[0] ? 201 : 200, &b);
    sodium_memzero(b.base, b.len);
    buf_free(&b);
  }
out:
  sodium_memzero(api_key, sizeof api_key);
}

static bool authorized(const struct api_control *ctl, struct http_req *req) {
  const char *tok = ctl->admin_token;
  if (!tok[0]) {
    api_reply_error(req, 403, "control-plane writes are disabled on this agent: start it with --admin-token "
                    "(or INFERMESH_ADMIN_TOKEN)", "permission_denied");
    return false;
  }
  struct slice h = http_req_header(req, "authorization");
  size_t tl = strlen(tok);
  if (h.len != 7 + tl || !slice_starts(h, "Bearer ") || sodium_memcmp(h.base + 7, tok, tl) != 0) {
    api_reply_error(req, 401, "control-plane writes need `Authorization: Bearer ADMIN_TOKEN` (infermesh --admin-token)",
          "unauthorized");
    return false;
  }
  return true;
}

/* refuse_hop answers a forwarded request that verify_hop did not accept (rc). */
static void refuse_hop(struct http_req *req, int rc, const char *msg) {
  if (rc == -EBUSY)
    api_reply_error(req, 503, "too many forwarded requests to remember: try again shortly", "server_overloaded");
  else
    api_reply_error(req, 403, rc == -EPROTO ? hop_refusal(rc) : msg, "permission_denied");
}

bool api_authorize_admin(const struct api_control *ctl, struct http_req *req, const char *hop_what) {
  if (hop_what && http_req_header(req, "x-infermesh-hop").len) {
    int rc = ctl->ctx ? ctl->verify_hop(ctl->ctx, req, hop_what) : -EACCES;
    if (rc == 0) return true;
    refuse_hop(req, rc, "forwarded request not signed with this cluster's key");
    return false;
  }
  if (!ctl->ctx) {
    api_reply_error(req, 503, "the agent is shutting down", "unavailable");
    return false;
  }
  return authorized(ctl, req);
}

static void command_id(struct http_req *req, char *out, size_t cap) {
  struct slice h = http_req_header(req, "x-infermesh-command-id");
  bool ok = h.len > 0 && h.len < cap && h.len < FSM_ID_MAX;
  for (size_t i = 0; ok && i < h.len; i++) {
    char ch = h.base[i];
    ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
         ch == '.';
  }
  if (ok) {
    memcpy(out, h.base, h.len);
    out[h.len] = '\0';
    return;
  }
  uint8_t r[12];
  char hex[25];
  randombytes_buf(r, sizeof r);
  sodium_bin2hex(hex, sizeof hex, r, sizeof r);
  snprintf(out, cap, "c-%s", hex);
}

/* tenant_key makes the API key of the tenant NAME created by command ID: a keyed hash, under a subkey of the
 * cluster key, of the two. A create retried with the same command id (the CLI retries while the outcome is
 * unknown) thus shows the key that was stored, on any node of the cluster. */
static void tenant_key(const struct keyring *kr, const char *id, const char *name, char *out, size_t cap) {
  uint8_t sub[32], raw[24];
  char b64[sodium_base64_ENCODED_LEN(24, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  crypto_generichash_state st;
  keyring_subkey(kr->keys[0], KEYRING_TENANT_KEY_ID, KEYRING_TENANT_KEY_CTX, sub);
  crypto_generichash_init(&st, sub, sizeof sub, sizeof raw);
  crypto_generichash_update(&st, (const uint8_t *)id, strlen(id) + 1); /* with the NUL: an unambiguous split */
  crypto_generichash_update(&st, (const uint8_t *)name, strlen(name));
  crypto_generichash_final(&st, raw, sizeof raw);
  sodium_bin2base64(b64, sizeof b64, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  snprintf(out, cap, "imk-%s", b64);
  sodium_memzero(sub, sizeof sub);
  sodium_memzero(raw, sizeof raw);
}

/* tenant_value builds the value of a new tenant: the body's limits plus the hash of its key (tenant_key). */
static char *tenant_value(const struct api_control *ctl, struct http_req *req, struct wctx *w, char *err, size_t errlen) {
  json_error_t je;
  json_t *v = req->body.len ? json_loadb(req->body.base, req->body.len, JSON_REJECT_DUPLICATES, &je) : json_object();
  if (!json_is_object(v)) {
    snprintf(err, errlen, "the body must be a JSON object with \"name\" and limits");
    json_decref(v);
    return NULL;
  }
  const char *name = json_string_value(json_object_get(v, "name"));
  if (!name || !fsm_key_valid(name) || json_object_get(v, "key_hash")) {
    snprintf(err, errlen, "\"name\": 1 to %d printable characters, no spaces (and no key_hash: the key is made here)",
             FSM_NAME_MAX - 1);
    json_decref(v);
    return NULL;
  }
  str_copy(w->key, sizeof w->key, name);
  uint8_t h[FSM_HASH_LEN];
  char hex[2 * FSM_HASH_LEN + 1];
  tenant_key(ctl->keyring, w->id, name, w->api_key, sizeof w->api_key);
  fsm_key_hash(w->api_key, h);
  sodium_bin2hex(hex, sizeof hex, h, sizeof h);
  json_object_set_new(v, "key_hash", json_string(hex));
  char *s = json_dumps(v, JSON_COMPACT);
  json_decref(v);
  return s;
}

/* sets_key_hash tells whether a JSON body names "key_hash" at its top level (however the name is escaped). */
static bool sets_key_hash(struct slice body) {
  json_t *v = json_loadb(body.base, body.len, 0, NULL);
  bool set = json_is_object(v) && json_object_get(v, "key_hash");
  json_decref(v);
  return set;
}

static void write_kind(const struct api_control *ctl, struct http_req *req, enum fsm_kind kind, const char *key) {
  if (!authorized(ctl, req)) return;
  struct wctx *w = pool_alloc(&req->pool, sizeof *w);
  memset(w, 0, sizeof *w);
  char err[256];
  struct buf cmd = {0};
  enum fsm_op op;
  char *value = NULL;
  w->kind = kind;
  str_copy(w->key, sizeof w->key, key);
  command_id(req, w->id, sizeof w->id);
  if (req->method == HTTP_M_POST && kind == FSM_TENANT && !key[0]) {
    op = FSM_OP_CREATE;
    if (!(value = tenant_value(ctl, req, w, err, sizeof err))) goto bad;
  } else if (req->method == HTTP_M_PUT && key[0]) {
    op = kind == FSM_TENANT ? FSM_OP_MERGE : FSM_OP_PUT; /* a tenant's key hash is never replaced by a PUT */
    if (kind == FSM_TENANT && sets_key_hash(req->body)) {
      snprintf(err, sizeof err, "a tenant's key cannot be set: revoke it and create a new tenant");
      goto bad;
    }
    value = slice_dup(req->body.len ? req->body : SLICE_LIT("{}"));
  } else if (req->method == HTTP_M_DELETE && key[0]) {
    op = FSM_OP_DELETE;
  } else {
    api_reply_error(req, 405, kind == FSM_TENANT ? "use POST /v1/cluster/tenants, PUT|DELETE /v1/cluster/tenants/NAME"
                                       : "use PUT|DELETE /v1/cluster/KIND/NAME", "method_not_allowed");
    return;
  }
  if (fsm_cmd_encode(&cmd, w->id, op, kind, w->key, value, (int64_t)time(NULL), err, sizeof err) != 0) goto bad;
  free(value);
  w->req = req;
  req->data = w;
  req->abort_cb = wctx_abort_cb;
  ctl->propose(ctl->ctx, cmd.base, cmd.len, 0, write_done_cb, w);
  buf_free(&cmd);
  return;
bad:
  free(value);
  sodium_memzero(w->api_key, sizeof w->api_key);
  api_reply_error(req, 400, err, "invalid_value");
}

static void propose_internal(const struct api_control *ctl, struct http_req *req) {
  int rc = ctl->raft(ctl->ctx) ? ctl->verify_hop(ctl->ctx, req, "ctl-propose") : -EACCES;
  if (rc != 0) {
    refuse_hop(req, rc, "forwarded proposal not signed with this cluster's key");
    return;
  }
  uint64_t hops = 0;
  slice_to_u64(http_req_header(req, "x-infermesh-hops"), &hops);
  if (hops > 8) hops = 8; /* signed, so from an agent; bounded anyway before it becomes an int */
  struct wctx *w = pool_alloc(&req->pool, sizeof *w);
  memset(w, 0, sizeof *w);
  w->internal = true;
  w->req = req;
  req->data = w;
  req->abort_cb = wctx_abort_cb;
  ctl->propose(ctl->ctx, req->body.base, req->body.len, (int)hops, write_done_cb, w);
}

/* ---- dispatch ---- */

bool api_control_handle(const struct api_control *ctl, struct http_req *req) {
  if (!slice_starts(req->path, "/v1/cluster/")) return false;
  struct slice rest = slice_make(req->path.base + 12, req->path.len - 12);
  const char *slash = memchr(rest.base, '/', rest.len);
  struct slice first = slice_make(rest.base, slash ? (size_t)(slash - rest.base) : rest.len);
  enum fsm_kind kind;
  bool get = req->method == HTTP_M_GET || req->method == HTTP_M_HEAD;
  bool is_kind = fsm_kind_parse(first.base, first.len, &kind) == 0 && first.len > strlen(fsm_kind_name(kind));
  if (!is_kind && !slice_eqz(rest, "raft") && !slice_eqz(rest, "state") && !slice_eqz(rest, "_propose")) return false;
  if (!ctl->ctx || !ctl->mesh) {
    api_reply_error(req, 409, "this agent is not in a mesh (no cluster key): there is no control plane", "standalone");
    return true;
  }
  uint64_t index = 0, wait_ms = READ_WAIT_MS;
  query_u64(req->query, "wait_ms", &wait_ms);
  if (wait_ms > MAX_WAIT_MS) wait_ms = MAX_WAIT_MS;
  struct api_wait proto = {0};
  if (slice_eqz(rest, "raft")) {
    if (get) raft_status(ctl, req);
    else api_reply_error(req, 405, "use GET /v1/cluster/raft", "method_not_allowed");
  } else if (slice_eqz(rest, "state")) {
    uint64_t after = 0;
    int rc = get ? ctl->verify_hop(ctl->ctx, req, "ctl-state") : -EACCES;
    if (rc != 0) {
      refuse_hop(req, rc, "the control-plane state is for agents of this cluster (signed with its key)");
      return true;
    }
    query_u64(req->query, "after", &after);
    wait_or_answer(ctl, req, after + 1, (uint32_t)wait_ms, respond_state, &proto);
  } else if (slice_eqz(rest, "_propose")) {
    if (req->method != HTTP_M_POST) api_reply_error(req, 405, "POST only", "method_not_allowed");
    else propose_internal(ctl, req);
  } else {
    proto.kind = kind;
    if (slash && url_decode(slice_make(slash + 1, rest.len - first.len - 1), proto.key, sizeof proto.key) != 0) {
      api_reply_error(req, 400, "malformed name in the path", "invalid_value");
      return true;
    }
    if (slash && !proto.key[0]) {
      api_reply_error(req, 404, "empty name in the path", "not_found");
      return true;
    }
    if (get) {
      query_u64(req->query, "index", &index);
      wait_or_answer(ctl, req, index, (uint32_t)wait_ms, respond_read, &proto);
    } else {
      write_kind(ctl, req, kind, proto.key);
    }
  }
  return true;
}
