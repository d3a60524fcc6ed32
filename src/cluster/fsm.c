/* The control-plane state machine: sorted item tables per kind, idempotent command application, snapshots. */
#include "cluster/fsm_int.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/slice.h"

/* Snapshot format: 2 since a policy's "hedge" became tri-state (null: the router's default; false: never). */
#define FSM_SNAPSHOT_FORMAT 2
#define RECENT_BUCKETS 8192 /* power of two, >= 2 * FSM_RECENT */

struct table {
  void **items; /* heap items, sorted by key (the first member of every item) */
  int n, cap;
};

struct recent {
  char id[FSM_ID_MAX];
  struct fsm_result res;
  int32_t next; /* next slot in the same bucket, -1 = end */
  uint32_t bucket;
};

struct fsm {
  uint64_t index;
  struct table t[FSM_NKINDS];
  uint64_t changed[FSM_NKINDS]; /* index of the last command that changed the kind (restore: the snapshot's) */
  struct recent *recent; /* ring of FSM_RECENT: oldest at head when full */
  int nrecent, head;
  int32_t buckets[RECENT_BUCKETS]; /* slot of the newest entry per bucket, -1 = none */
};

static void recent_reset(struct fsm *f) {
  f->nrecent = f->head = 0;
  for (int i = 0; i < RECENT_BUCKETS; i++) f->buckets[i] = -1;
}

struct fsm *fsm_new(void) {
  struct fsm *f = xcalloc(1, sizeof *f);
  f->recent = xcalloc(FSM_RECENT, sizeof *f->recent);
  recent_reset(f);
  return f;
}

static void tables_free(struct table *t) {
  for (int k = 0; k < FSM_NKINDS; k++) {
    for (int i = 0; i < t[k].n; i++) free(t[k].items[i]);
    free(t[k].items);
    memset(&t[k], 0, sizeof t[k]);
  }
}

void fsm_free(struct fsm *f) {
  if (!f) return;
  tables_free(f->t);
  free(f->recent);
  free(f);
}

uint64_t fsm_index(const struct fsm *f) { return f->index; }

/* ---- tables ---- */

/* find returns the position of key, or -(insertion point) - 1. */
static int find(const struct table *t, const char *key) {
  int lo = 0, hi = t->n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    int c = strcmp((const char *)t->items[mid], key);
    if (c == 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -lo - 1;
}

static void table_insert(struct table *t, int pos, void *item) {
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 16;
    t->items = xrealloc(t->items, (size_t)t->cap * sizeof *t->items);
  }
  memmove(&t->items[pos + 1], &t->items[pos], (size_t)(t->n - pos) * sizeof *t->items);
  t->items[pos] = item;
  t->n++;
}

static void table_remove(struct table *t, int pos) {
  free(t->items[pos]);
  memmove(&t->items[pos], &t->items[pos + 1], (size_t)(t->n - pos - 1) * sizeof *t->items);
  t->n--;
}

int fsm_count(const struct fsm *f, enum fsm_kind k) { return k < FSM_NKINDS ? f->t[k].n : 0; }

const void *fsm_at(const struct fsm *f, enum fsm_kind k, int i) {
  return k < FSM_NKINDS && i >= 0 && i < f->t[k].n ? f->t[k].items[i] : NULL;
}

const void *fsm_get(const struct fsm *f, enum fsm_kind k, const char *key) {
  if (k >= FSM_NKINDS || !key) return NULL;
  int pos = find(&f->t[k], key);
  return pos >= 0 ? f->t[k].items[pos] : NULL;
}

const struct fsm_tenant *fsm_tenant_by_key(const struct fsm *f, const char *api_key) {
  uint8_t h[FSM_HASH_LEN];
  fsm_key_hash(api_key, h);
  const struct table *t = &f->t[FSM_TENANT];
  for (int i = 0; i < t->n; i++) {
    const struct fsm_tenant *tn = t->items[i];
    if (sodium_memcmp(tn->key_hash, h, FSM_HASH_LEN) == 0) return tn;
  }
  return NULL;
}

/* ---- recent command ids ---- */

static uint32_t id_bucket(const char *id) {
  uint32_t h = 2166136261u; /* FNV-1a: ids are ours (random), no need for a keyed hash */
  for (; *id; id++) h = (h ^ (uint8_t)*id) * 16777619u;
  return h & (RECENT_BUCKETS - 1);
}

static const struct recent *recent_find(const struct fsm *f, const char *id) {
  for (int32_t s = f->buckets[id_bucket(id)]; s >= 0; s = f->recent[s].next)
    if (strcmp(f->recent[s].id, id) == 0) return &f->recent[s];
  return NULL;
}

static void recent_add(struct fsm *f, const char *id, const struct fsm_result *res) {
  int32_t slot;
  if (f->nrecent < FSM_RECENT) {
    slot = (int32_t)((f->head + f->nrecent++) % FSM_RECENT);
  } else {
    slot = (int32_t)f->head; /* evict the oldest: unlink it from its bucket */
    f->head = (f->head + 1) % FSM_RECENT;
    struct recent *old = &f->recent[slot];
    int32_t *pp = &f->buckets[old->bucket];
    while (*pp != slot) pp = &f->recent[*pp].next;
    *pp = old->next;
  }
  struct recent *r = &f->recent[slot];
  str_copy(r->id, sizeof r->id, id);
  r->res = *res;
  r->res.duplicate = false;
  r->bucket = id_bucket(id);
  r->next = f->buckets[r->bucket];
  f->buckets[r->bucket] = slot;
}

/* ---- apply ---- */

static const char *const op_names[] = {"put", "create", "merge", "delete"};

/* fail sets the result's status and message; a message cut to fit is cut before a partial UTF-8 character (it
 * may quote a client's name, and it travels in JSON, which must be valid UTF-8). */
static void fail(struct fsm_result *res, int status, const char *fmt, const char *arg) {
  res->status = status;
  int n = snprintf(res->msg, sizeof res->msg, fmt, arg);
  if (n < 0 || (size_t)n < sizeof res->msg) return;
  size_t len = sizeof res->msg - 1, start = len;
  while (start > 0 && ((unsigned char)res->msg[start - 1] & 0xC0) == 0x80) start--; /* continuation bytes */
  if (start > 0) {
    unsigned char lead = (unsigned char)res->msg[start - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (len - (start - 1) < need) res->msg[start - 1] = '\0'; /* the last character did not fit whole */
  }
}

/* run executes one decoded command on f. */
static void run(struct fsm *f, int op, enum fsm_kind k, const char *key, json_t *value, int64_t ts,
                struct fsm_result *res) {
  const struct fsm_kind_ops *ops = &fsm_kinds[k];
  struct table *t = &f->t[k];
  int pos = find(t, key);
  char err[FSM_MSG_MAX];
  if (op == FSM_OP_DELETE) {
    if (pos < 0) {
      fail(res, -ENOENT, "no such %s", ops->name);
    return;
  }
    table_remove(t, pos);
    f->changed[k] = f->index;
    return;
  }
  if (op == FSM_OP_CREATE && pos >= 0) {
    fail(res, -EEXIST, "that %s exists already", ops->name);
    return;
  }
  if (op == FSM_OP_MERGE && pos < 0) {
    fail(res, -ENOENT, "no such %s", ops->name);
    return;
  }
  if (pos < 0 && t->n >= FSM_MAX_ITEMS) {
    fail(res, -ENOSPC, "too many items of kind %s", ops->name);
    return;
  }
  if (!json_is_object(value)) {
    fail(res, -EINVAL, "%s: the value must be a JSON object", ops->name);
    return;
  }
  void *item = xcalloc(1, ops->size);
  if (op == FSM_OP_MERGE) memcpy(item, t->items[pos], ops->size);
  str_copy(item, FSM_NAME_MAX, key);
  if (ops->parse(value, key, item, ts, err, sizeof err) != 0) {
    free(item);
    {
    fail(res, -EINVAL, "%s", err);
    return;
  }
  }
  if (pos >= 0) {
    if (memcmp(t->items[pos], item, ops->size) != 0) f->changed[k] = f->index;
    free(t->items[pos]);
    t->items[pos] = item;
  } else {
    table_insert(t, -pos - 1, item);
    f->changed[k] = f->index;
  }
}

static int op_parse(const char *s, int *op) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, op_names[i]) == 0) return *op = i, 0;
  return -EINVAL;
}

void fsm_apply(struct fsm *f, uint64_t index, const void *cmd, size_t len, struct fsm_result *res) {
  memset(res, 0, sizeof *res);
  if (index > f->index) f->index = index;
  res->index = f->index;
  json_error_t je;
  json_t *root = json_loadb(cmd, len, JSON_REJECT_DUPLICATES, &je);
  const char *id = NULL, *op_s = NULL, *kind_s = NULL, *key = NULL;
  json_t *value = NULL;
  json_int_t ts = 0;
  int op;
  enum fsm_kind k;
  if (!root || json_unpack_ex(root, &je, 0, "{s:s, s:s, s:s, s:s, s?o, s?I !}", "id", &id, "op", &op_s, "kind",
                              &kind_s, "key", &key, "value", &value, "ts", &ts) != 0) {
    fail(res, -EINVAL, "malformed command: %s", je.text);
    goto done;
  }
  if (id[0] == '\0' || strlen(id) >= FSM_ID_MAX) {
    fail(res, -EINVAL, "command id: 1 to %s characters", "63");
    goto done;
  }
  const struct recent *r = recent_find(f, id);
  if (r) {
    *res = r->res;
    res->duplicate = true;
    goto done;
  }
  if (op_parse(op_s, &op) != 0) fail(res, -EINVAL, "unknown op '%s'", op_s);
  else if (fsm_kind_parse(kind_s, strlen(kind_s), &k) != 0) fail(res, -EINVAL, "unknown kind '%s'", kind_s);
  else if (!fsm_key_valid(key)) fail(res, -EINVAL, "bad key '%s': 1 to 127 printable characters, no spaces", key);
  else run(f, op, k, key, value, ts, res);
  recent_add(f, id, res);
done:
  json_decref(root);
}

/* ---- commands ---- */

int fsm_cmd_encode(struct buf *out, const char *id, enum fsm_op op, enum fsm_kind kind, const char *key,
                   const char *value_json, int64_t ts, char *err, size_t errlen) {
  json_error_t je;
  json_t *value = NULL;
  if (!id || !id[0] || strlen(id) >= FSM_ID_MAX || (unsigned)op > FSM_OP_DELETE || kind >= FSM_NKINDS) {
    snprintf(err, errlen, "bad command id, op or kind");
    return -EINVAL;
  }
  if (!fsm_key_valid(key)) {
    snprintf(err, errlen, "bad name '%s': 1 to %d printable characters, no spaces or quotes", key, FSM_NAME_MAX - 1);
    return -EINVAL;
  }
  if (op != FSM_OP_DELETE) {
    value = json_loads(value_json ? value_json : "{}", JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(value)) {
      snprintf(err, errlen, "the body must be a JSON object%s%s", value ? "" : ": ", value ? "" : je.text);
      json_decref(value);
      return -EINVAL;
    }
    /* The same checks as apply, on a scratch item (a merge overlays an item we cannot see here). */
    void *scratch = xcalloc(1, fsm_kinds[kind].size);
    str_copy(scratch, FSM_NAME_MAX, key);
    int rc = fsm_kinds[kind].parse(value, key, scratch, ts, err, errlen);
    free(scratch);
    if (rc != 0 && op != FSM_OP_MERGE) {
      json_decref(value);
      return -EINVAL;
    }
  }
  json_t *cmd = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id", id, "op", op_names[op], "kind",
                          fsm_kinds[kind].name, "key", key, "ts", (json_int_t)ts);
  if (value) json_object_set_new(cmd, "value", value);
  char *s = json_dumps(cmd, JSON_COMPACT);
  if (!s) abort();
  buf_puts(out, s);
  free(s);
  json_decref(cmd);
  return 0;
}

/* ---- views and snapshots ---- */

void fsm_kind_json(const struct fsm *f, enum fsm_kind k, struct buf *out) {
  buf_puts(out, "[");
  for (int i = 0; i < f->t[k].n; i++) {
    if (i) buf_puts(out, ",");
    fsm_item_json(k, f->t[k].items[i], out);
  }
  buf_puts(out, "]");
}

void fsm_snapshot(const struct fsm *f, struct buf *out) {
  json_t *items = json_object(), *recent = json_array();
  for (int k = 0; k < FSM_NKINDS; k++) {
    json_t *arr = json_array();
    for (int i = 0; i < f->t[k].n; i++) json_array_append_new(arr, fsm_kinds[k].to_json(f->t[k].items[i], true));
    json_object_set_new(items, fsm_kinds[k].plural, arr);
  }
  for (int i = 0; i < f->nrecent; i++) {
    const struct recent *r = &f->recent[(f->head + i) % FSM_RECENT];
    json_array_append_new(recent, json_pack("[s, i, I, s]", r->id, r->res.status, (json_int_t)r->res.index,
                                            r->res.msg));
  }
  json_t *root = json_pack("{s:i, s:I, s:o, s:o}", "format", FSM_SNAPSHOT_FORMAT, "index", (json_int_t)f->index, "items", items,
                           "recent", recent);
  char *s = json_dumps(root, JSON_COMPACT);
  if (!s) abort();
  buf_puts(out, s);
  free(s);
  json_decref(root);
}

static int restore_into(struct fsm *f, json_t *root, char *err, size_t errlen) {
  json_error_t je;
  json_int_t index;
  int format;
  json_t *items, *recent;
  if (json_unpack_ex(root, &je, 0, "{s:i, s:I, s:o, s:o}", "format", &format, "index", &index, "items", &items,
                     "recent", &recent) != 0 || format < 1 || format > FSM_SNAPSHOT_FORMAT || index < 0 ||
      !json_is_object(items) ||
      !json_is_array(recent) || json_array_size(recent) > FSM_RECENT) {
    snprintf(err, errlen, "snapshot: %s", format < 1 || format > FSM_SNAPSHOT_FORMAT ? "unknown format" : je.text);
    return -EINVAL;
  }
  f->index = (uint64_t)index;
  for (int k = 0; k < FSM_NKINDS; k++) f->changed[k] = f->index;
  for (int k = 0; k < FSM_NKINDS; k++) {
    json_t *arr = json_object_get(items, fsm_kinds[k].plural), *v;
    size_t i;
    if (!arr) continue;
    if (!json_is_array(arr) || json_array_size(arr) > FSM_MAX_ITEMS) goto bad;
    json_array_foreach(arr, i, v) {
      const char *key = json_string_value(json_object_get(v, fsm_kinds[k].keyfield));
      if (!key || !fsm_key_valid(key)) goto bad;
      int pos = find(&f->t[k], key);
      if (pos >= 0) goto bad;
      /* Format 1 wrote every policy's "hedge" as false, which then meant nothing was set: the router's default. */
      if (format == 1 && k == FSM_POLICY && json_is_false(json_object_get(v, "hedge"))) json_object_del(v, "hedge");
      void *item = xcalloc(1, fsm_kinds[k].size);
      str_copy(item, FSM_NAME_MAX, key);
      if (fsm_kinds[k].parse(v, key, item, 0, err, errlen) != 0) {
        free(item);
        return -EINVAL;
      }
      table_insert(&f->t[k], -pos - 1, item);
    }
  }
  size_t i;
  json_t *v;
  json_array_foreach(recent, i, v) {
    const char *id, *msg;
    int status;
    json_int_t idx;
    if (json_unpack(v, "[s, i, I, s]", &id, &status, &idx, &msg) != 0 || !id[0] || strlen(id) >= FSM_ID_MAX ||
        recent_find(f, id))
      goto bad;
    struct fsm_result res = {.status = status, .index = (uint64_t)idx};
    str_copy(res.msg, sizeof res.msg, msg);
    recent_add(f, id, &res);
  }
  return 0;
bad:
  snprintf(err, errlen, "snapshot: malformed or duplicate item or command id");
  return -EINVAL;
}

int fsm_restore(struct fsm *f, const void *buf, size_t len, char *err, size_t errlen) {
  json_error_t je;
  json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "snapshot: %s", je.text);
    return -EINVAL;
  }
  struct fsm *n = fsm_new();
  int rc = restore_into(n, root, err, errlen);
  json_decref(root);
  if (rc != 0) {
    fsm_free(n);
    return rc;
  }
  /* Swap: f takes n's state, n takes f's old state and is freed. */
  struct fsm tmp = *f;
  *f = *n;
  *n = tmp;
  fsm_free(n);
  return 0;
}

uint64_t fsm_kind_changed(const struct fsm *f, enum fsm_kind k) { return f->changed[k]; }

size_t fsm_item_size(enum fsm_kind k) { return fsm_kinds[k].size; }
