/* vLLM / SGLang KV-cache event batches: msgpack (msgpack-c) to struct kv_event, and back for the simulator.
 */
#include "kv/kv_events.h"

#include <errno.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/alloc.h"

uint64_t kv_hash_bytes(const void *p, size_t len) { return XXH3_64bits(p, len); }

int kv_events_seq(const void *frame, size_t len, uint64_t *seq) {
  if (len != 8) return -EINVAL;
  const uint8_t *b = frame;
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | b[i];
  *seq = v;
  return 0;
}

/* ---- a bounds pre-pass ----
 * msgpack-c allocates a container's element array from its declared count before reading the elements, so a
 * 5-byte array32 header could ask for 100 GB. Every element takes at least one byte, so a well-formed input
 * never has more elements pending than bytes left: check that in one pass over the headers before unpacking,
 * which bounds msgpack-c's allocation to O(len). Returns 0 when the input is one object covering len bytes.
 */
static int be(const uint8_t *p, int n, uint64_t *v) {
  *v = 0;
  for (int i = 0; i < n; i++)
    *v = *v << 8 | p[i];
  return n;
}

static int precheck(const uint8_t *p, size_t len) {
  size_t off = 0;
  uint64_t pending = 1;
  while (pending > 0) {
    if (off >= len) return -EINVAL;
    uint8_t c = p[off++];
    pending--;
    uint64_t n = 0, skip = 0, add = 0;
    size_t left = len - off;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
      /* fixint, nil, bool */
    } else if (c >= 0x80 && c <= 0x8f) {
      add = 2ull * (c & 0x0f);
    } else if (c >= 0x90 && c <= 0x9f) {
      add = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
      skip = c & 0x1f;
    } else {
      static const uint8_t fixed[] = {
          [0xca - 0xc4] = 4, [0xcb - 0xc4] = 8, [0xcc - 0xc4] = 1, [0xcd - 0xc4] = 2, [0xce - 0xc4] = 4,
          [0xcf - 0xc4] = 8, [0xd0 - 0xc4] = 1, [0xd1 - 0xc4] = 2, [0xd2 - 0xc4] = 4, [0xd3 - 0xc4] = 8,
          [0xd4 - 0xc4] = 2, [0xd5 - 0xc4] = 3, [0xd6 - 0xc4] = 5, [0xd7 - 0xc4] = 9, [0xd8 - 0xc4] = 17};
      int w = 0; /* width of a length field */
      switch (c) {
      case 0xc4:
      case 0xd9: w = 1; break; /* bin8, str8 */
      case 0xc5:
      case 0xda: w = 2; break;
      case 0xc6:
      case 0xdb: w = 4; break;
      case 0xc7: w = 1; break; /* ext8/16/32: length, then a type byte */
      case 0xc8: w = 2; break;
      case 0xc9: w = 4; break;
      case 0xdc:
      case 0xde: w = 2; break; /* array16, map16 */
      case 0xdd:
      case 0xdf: w = 4; break;
      default:
        if (c < 0xc4 || c > 0xd8) return -EINVAL; /* 0xc1: never used */
        skip = fixed[c - 0xc4];
      }
      if (w) {
        if (left < (size_t)w) return -EINVAL;
        off += (size_t)be(p + off, w, &n);
        left = len - off;
        if (c == 0xdc || c == 0xdd)
          add = n;
        else if (c == 0xde || c == 0xdf)
          add = 2 * n;
        else
          skip = n + (c >= 0xc7 && c <= 0xc9 ? 1 : 0);
      }
    }
    if (skip > left) return -EINVAL;
    off += skip;
    pending += add;
    if (pending > len - off) return -EINVAL;
  }
  return off == len ? 0 : -EINVAL;
}

/* ---- reading the object tree ---- */

struct dec {
  uint64_t hashes[KV_EVENT_MAX_HASHES];
};

static bool is_str(const msgpack_object *o, const char *s) {
  size_t n = strlen(s);
  return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

static bool is_nil(const msgpack_object *o) { return o->type == MSGPACK_OBJECT_NIL; }

static bool get_int(const msgpack_object *o, int64_t *v) {
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
    *v = o->via.u64 > INT64_MAX ? INT64_MAX : (int64_t)o->via.u64;
    return true;
  }
  if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
    *v = o->via.i64;
    return true;
  }
  return false;
}

static bool get_hash(const msgpack_object *o, uint64_t *h) {
  switch (o->type) {
  case MSGPACK_OBJECT_POSITIVE_INTEGER: *h = o->via.u64; return true;
  case MSGPACK_OBJECT_NEGATIVE_INTEGER: *h = (uint64_t)o->via.i64; return true;
  case MSGPACK_OBJECT_BIN: *h = kv_hash_bytes(o->via.bin.ptr, o->via.bin.size); return true;
  case MSGPACK_OBJECT_STR: *h = kv_hash_bytes(o->via.str.ptr, o->via.str.size); return true;
  default: return false;
  }
}

static int get_hashes(struct dec *d, const msgpack_object *o, int *n) {
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > KV_EVENT_MAX_HASHES) return -EINVAL;
  for (uint32_t i = 0; i < o->via.array.size; i++)
    if (!get_hash(&o->via.array.ptr[i], &d->hashes[i])) return -EINVAL;
  *n = (int)o->via.array.size;
  return 0;
}

/* The fields of one event, by position, whichever form it came in (NULL = absent). */
enum { F_HASHES, F_PARENT, F_TOKENS, F_BSIZE, F_LORA, F_MEDIUM, NF };

static int parse_event(struct dec *d, const msgpack_object *o, struct kv_event *ev, bool *skip) {
  const msgpack_object *tag = NULL, *f[NF] = {0};
  *skip = false;
  memset(ev, 0, sizeof *ev);
  if (o->type == MSGPACK_OBJECT_ARRAY) {
    if (o->via.array.size < 1) return -EINVAL;
    tag = &o->via.array.ptr[0];
  } else if (o->type == MSGPACK_OBJECT_MAP) {
    for (uint32_t i = 0; i < o->via.map.size; i++)
      if (is_str(&o->via.map.ptr[i].key, "type")) tag = &o->via.map.ptr[i].val;
    if (!tag) return -EINVAL;
  } else {
    return -EINVAL;
  }
  if (tag->type != MSGPACK_OBJECT_STR) return -EINVAL;
  static const char *const stored_keys[NF] = {"block_hashes", "parent_block_hash", "token_ids",
                                              "block_size",   "lora_id",           "medium"};
  static const char *const removed_keys[NF] = {"block_hashes", "medium"};
  const char *const *keys;
  int nkeys;
  if (is_str(tag, "BlockStored")) {
    ev->kind = KV_EV_STORED, keys = stored_keys, nkeys = NF;
  } else if (is_str(tag, "BlockRemoved")) {
    ev->kind = KV_EV_REMOVED, keys = removed_keys, nkeys = 2;
  } else if (is_str(tag, "AllBlocksCleared")) {
    ev->kind = KV_EV_CLEARED;
    return 0;
  } else {
    *skip = true;
    return 0;
  }
  /* Gather fields by position (array form) or by name (map form); REMOVED's medium is its 2nd field. */
  const msgpack_object *got[NF] = {0};
  if (o->type == MSGPACK_OBJECT_ARRAY) {
    for (int k = 0; k < nkeys && (uint32_t)k + 1 < o->via.array.size; k++)
      got[k] = &o->via.array.ptr[k + 1];
  } else {
    for (uint32_t i = 0; i < o->via.map.size; i++)
      for (int k = 0; k < nkeys; k++)
        if (is_str(&o->via.map.ptr[i].key, keys[k])) got[k] = &o->via.map.ptr[i].val;
  }
  f[F_HASHES] = got[0];
  if (ev->kind == KV_EV_STORED) {
    for (int k = 1; k < NF; k++)
      f[k] = got[k];
  } else {
    f[F_MEDIUM] = got[1];
  }
  if (!f[F_HASHES] || get_hashes(d, f[F_HASHES], &ev->nhashes) != 0) return -EINVAL;
  ev->hashes = d->hashes;
  if (f[F_MEDIUM] && !is_nil(f[F_MEDIUM])) {
    if (f[F_MEDIUM]->type != MSGPACK_OBJECT_STR) return -EINVAL;
    if (!is_str(f[F_MEDIUM], "GPU")) *skip = true;
  }
  if (ev->kind != KV_EV_STORED) return 0;
  if (f[F_PARENT] && !is_nil(f[F_PARENT])) {
    if (!get_hash(f[F_PARENT], &ev->parent)) return -EINVAL;
    ev->has_parent = true;
  }
  if (f[F_TOKENS]) {
    if (f[F_TOKENS]->type != MSGPACK_OBJECT_ARRAY) return -EINVAL;
    ev->ntokens = (int)f[F_TOKENS]->via.array.size; /* < len <= KV_EVENTS_PAYLOAD_MAX */
  }
  int64_t v;
  if (f[F_BSIZE]) {
    if (!get_int(f[F_BSIZE], &v) || v < 0 || v > (1 << 20)) return -EINVAL;
    ev->block_size = (int)v;
  }
  if (f[F_LORA] && !is_nil(f[F_LORA]) && !get_int(f[F_LORA], &v)) return -EINVAL;
  return 0;
}

/* walk checks every event (deliver = false) or hands each to cb (deliver = true). */
static int walk(struct dec *d, const msgpack_object *events, bool deliver, struct kv_batch *b, kv_event_cb cb,
                void *arg) {
  for (uint32_t i = 0; i < events->via.array.size; i++) {
    struct kv_event ev;
    bool skip;
    if (parse_event(d, &events->via.array.ptr[i], &ev, &skip) != 0) return -EINVAL;
    if (!deliver) continue;
    if (skip) {
      b->nskipped++;
      continue;
    }
    b->nevents++;
    if (cb) cb(arg, &ev);
  }
  return 0;
}

int kv_events_decode(const void *payload, size_t len, struct kv_batch *out, kv_event_cb cb, void *arg) {
  memset(out, 0, sizeof *out);
  out->dp_rank = -1;
  if (!payload || len == 0 || len > KV_EVENTS_PAYLOAD_MAX || precheck(payload, len) != 0) return -EINVAL;
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  int rc = -EINVAL;
  if (msgpack_unpack_next(&u, payload, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len) goto out;
  const msgpack_object *o = &u.data, *ts = NULL, *events = NULL, *rank = NULL;
  if (o->type == MSGPACK_OBJECT_ARRAY) {
    if (o->via.array.size < 2) goto out;
    ts = &o->via.array.ptr[0];
    events = &o->via.array.ptr[1];
    if (o->via.array.size > 2) rank = &o->via.array.ptr[2];
  } else if (o->type == MSGPACK_OBJECT_MAP) {
    for (uint32_t i = 0; i < o->via.map.size; i++) {
      const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
      if (is_str(k, "ts"))
        ts = v;
      else if (is_str(k, "events"))
        events = v;
      else if (is_str(k, "data_parallel_rank"))
        rank = v;
    }
    if (!ts || !events) goto out;
  } else {
    goto out;
  }
  int64_t iv;
  if (ts->type == MSGPACK_OBJECT_FLOAT32 || ts->type == MSGPACK_OBJECT_FLOAT64)
    out->ts = ts->via.f64;
  else if (get_int(ts, &iv))
    out->ts = (double)iv;
  else
    goto out;
  if (events->type != MSGPACK_OBJECT_ARRAY) goto out;
  if (rank && !is_nil(rank)) {
    if (!get_int(rank, &iv) || iv < 0 || iv > 65535) goto out;
    out->dp_rank = (int)iv;
  }
  struct dec *d = xmalloc(sizeof *d);
  rc = walk(d, events, false, out, cb, arg);
  if (rc == 0) walk(d, events, true, out, cb, arg);
  free(d);
out:
  msgpack_unpacked_destroy(&u);
  if (rc != 0) {
    memset(out, 0, sizeof *out);
    out->dp_rank = -1;
  }
  return rc;
}

/* ---- encoding (the simulated engine's publisher) ---- */

static void pack_str(msgpack_packer *pk, const char *s) {
  size_t n = strlen(s);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

void kv_events_encode(double ts, bool cleared, const uint64_t *removed, int nremoved,
                      const struct kv_stored_block_run *stored, int nstored, char **out, size_t *outlen) {
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_double(&pk, ts);
  msgpack_pack_array(&pk, (size_t)(cleared ? 1 : 0) + (size_t)nstored + (nremoved > 0 ? 1 : 0));
  if (cleared) {
    msgpack_pack_array(&pk, 1);
    pack_str(&pk, "AllBlocksCleared");
  }
  if (nremoved > 0) {
    msgpack_pack_array(&pk, 3);
    pack_str(&pk, "BlockRemoved");
    msgpack_pack_array(&pk, (size_t)nremoved);
    for (int j = 0; j < nremoved; j++)
      msgpack_pack_uint64(&pk, removed[j]);
    pack_str(&pk, "GPU");
  }
  for (int i = 0; i < nstored; i++) {
    const struct kv_stored_block_run *r = &stored[i];
    msgpack_pack_array(&pk, 7);
    pack_str(&pk, "BlockStored");
    msgpack_pack_array(&pk, (size_t)r->nhashes);
    for (int j = 0; j < r->nhashes; j++)
      msgpack_pack_uint64(&pk, r->hashes[j]);
    if (r->has_parent)
      msgpack_pack_uint64(&pk, r->parent);
    else
      msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, 0); /* token_ids: the simulated engine hashes text, it has no token ids */
    msgpack_pack_int(&pk, r->block_size);
    msgpack_pack_nil(&pk); /* lora_id */
    pack_str(&pk, "GPU");
  }
  *out = sb.data ? sb.data : xcalloc(1, 1);
  *outlen = sb.size;
}
