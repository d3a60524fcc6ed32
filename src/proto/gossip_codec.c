/* Gossip wire codec: struct gossip_* <-> the protobuf-c types generated from proto/gossip.proto.
 *
 * Encoding builds the protobuf-c structs on the stack, pointing into the caller's C struct (no copy, no
 * malloc), and packs straight into the caller's buffer once get_packed_size says it fits. Decoding unpacks
 * with protobuf-c through a bump allocator over a stack buffer (falling back to malloc for big inputs),
 * checks every field against the C arrays, copies, and frees the unpacked tree with that same allocator. */
#include "proto/gossip_codec.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "gossip.pb-c.h"

/* The C enums are the wire enums, value for value. */
_Static_assert((int)GOSSIP_PING == (int)INFERMESH__GOSSIP__SWIM_TYPE__SWIM_TYPE_PING &&
                   (int)GOSSIP_PING_REQ == (int)INFERMESH__GOSSIP__SWIM_TYPE__SWIM_TYPE_PING_REQ &&
                   (int)GOSSIP_ACK == (int)INFERMESH__GOSSIP__SWIM_TYPE__SWIM_TYPE_ACK &&
                   (int)GOSSIP_NACK == (int)INFERMESH__GOSSIP__SWIM_TYPE__SWIM_TYPE_NACK &&
                   (int)GOSSIP_GOSSIP == (int)INFERMESH__GOSSIP__SWIM_TYPE__SWIM_TYPE_GOSSIP,
               "gossip_type must match SwimType");
_Static_assert((int)GOSSIP_ALIVE == (int)INFERMESH__GOSSIP__MEMBER_STATE__MEMBER_STATE_ALIVE &&
                   (int)GOSSIP_SUSPECT == (int)INFERMESH__GOSSIP__MEMBER_STATE__MEMBER_STATE_SUSPECT &&
                   (int)GOSSIP_DEAD == (int)INFERMESH__GOSSIP__MEMBER_STATE__MEMBER_STATE_DEAD &&
                   (int)GOSSIP_LEFT == (int)INFERMESH__GOSSIP__MEMBER_STATE__MEMBER_STATE_LEFT,
               "gossip_state must match MemberState");
/* GOSSIP_PACKET_FRAMING counts a 1-byte version varint and a 2-byte Swim length: the largest Swim the
 * encoder accepts (every bound at its maximum; 990 = gossip_update_size_bound of a full update) stays below
 * 2^14. The bounds count 1-byte length prefixes for ids, names and addresses (so those arrays stay within
 * 128 bytes) and a 2-byte one for meta. */
_Static_assert(GOSSIP_WIRE_VERSION > 0 && GOSSIP_WIRE_VERSION < 128, "framing counts a 1-byte version");
_Static_assert(GOSSIP_MSG_BASE_BOUND +
                       GOSSIP_MAX_UPDATES * (2 * (GOSSIP_ID_LEN + 2) + (GOSSIP_NAME_MAX - 1) + 2 +
                                             (GOSSIP_ADDR_MAX - 1) + 2 + GOSSIP_META_MAX + 3 + 11 + 2 + 8) <
                   (1 << 14),
               "a full Swim must keep a 2-byte length prefix");
_Static_assert(GOSSIP_ID_LEN < 128 && GOSSIP_NAME_MAX <= 128 && GOSSIP_ADDR_MAX <= 128 &&
                   GOSSIP_META_MAX < (1 << 14),
               "the size bounds assume these length prefixes");

/* --- decode-side allocator: bump allocation in a caller's buffer, malloc beyond it --- */

#define ARENA_ALIGN alignof(max_align_t)
#define PACKET_ARENA 8192 /* measured: SWIM and load datagrams filled to 1400 bytes decode with no malloc */
#define META_ARENA 4096   /* a realistic meta (a few labels and models) fits; odd ones fall back to malloc */

struct arena {
  unsigned char *base;
  size_t cap, used;
};

static void *arena_alloc(void *data, size_t size) {
  struct arena *a = data;
  if (size == 0) size = 1; /* every pointer handed out lies strictly inside the buffer, or came from malloc */
  size_t need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
  if (need >= size && need <= a->cap - a->used) {
    void *p = a->base + a->used;
    a->used += need;
    return p;
  }
  return xmalloc(size);
}

static void arena_free(void *data, void *p) {
  struct arena *a = data;
  uintptr_t u = (uintptr_t)p, b = (uintptr_t)a->base;
  if (a->base && u >= b && u < b + a->cap) return; /* arena memory goes with the buffer */
  free(p);
}

/* --- a one-level walk of protobuf wire format: caps repeated counts before protobuf-c allocates --- */

static int read_varint(const uint8_t *in, size_t len, size_t *pos, uint64_t *v) {
  uint64_t r = 0;
  for (int i = 0; i < 10 && *pos < len; i++) {
    uint8_t b = in[(*pos)++];
    r |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -EINVAL;
}

/* next_field reads the field at *pos: its number, and for a length-delimited one its payload. */
static int next_field(const uint8_t *in, size_t len, size_t *pos, uint32_t *num, const uint8_t **sub,
                      size_t *sublen) {
  uint64_t key, v;
  if (read_varint(in, len, pos, &key)) return -EINVAL;
  if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff) return -EINVAL;
  *num = (uint32_t)(key >> 3);
  *sub = NULL;
  *sublen = 0;
  switch (key & 7) {
  case 0: return read_varint(in, len, pos, &v);
  case 1:
    if (len - *pos < 8) return -EINVAL;
    *pos += 8;
    return 0;
  case 5:
    if (len - *pos < 4) return -EINVAL;
    *pos += 4;
    return 0;
  case 2:
    if (read_varint(in, len, pos, &v) || v > len - *pos) return -EINVAL;
    *sub = in + *pos;
    *sublen = (size_t)v;
    *pos += (size_t)v;
    return 0;
  default: return -EINVAL; /* groups (3, 4) and undefined types */
  }
}

/* count_field adds the number of length-delimited occurrences of field `want` in one message to *n. */
static int count_field(const uint8_t *in, size_t len, uint32_t want, size_t *n) {
  size_t pos = 0, sublen;
  uint32_t num;
  const uint8_t *sub;
  while (pos < len) {
    if (next_field(in, len, &pos, &num, &sub, &sublen)) return -EINVAL;
    if (num == want && sub) ++*n;
  }
  return 0;
}

/* prescan_packet rejects a Packet holding more updates or targets than the C arrays, before protobuf-c
 * allocates for them. It counts across every occurrence of a body field (a conforming sender writes one; of
 * several, protobuf-c keeps the last), so its count is never below what the unpacked message holds. */
static int prescan_packet(const uint8_t *in, size_t len) {
  size_t pos = 0, sublen, nupdates = 0, ntargets = 0, ntenants = 0, nentries = 0;
  uint32_t num;
  const uint8_t *sub;
  while (pos < len) {
    if (next_field(in, len, &pos, &num, &sub, &sublen)) return -EINVAL;
    if (num == 2 && sub && count_field(sub, sublen, 7, &nupdates)) return -EINVAL;
    if (num == 3 && sub && count_field(sub, sublen, 4, &ntargets)) return -EINVAL;
    if (num == 5 && sub && count_field(sub, sublen, 4, &ntenants)) return -EINVAL;
    if (num == 6 && sub && count_field(sub, sublen, 2, &nentries)) return -EINVAL;
  }
  return nupdates > GOSSIP_MAX_UPDATES || ntargets > GOSSIP_LOAD_TARGETS || ntenants > GOSSIP_SPEND_TENANTS ||
                 nentries > GOSSIP_DIGEST_ENTRIES
             ? -EINVAL
             : 0;
}

/* --- field checks, decode side --- */

static int get_id(const ProtobufCBinaryData *b, uint8_t out[GOSSIP_ID_LEN]) {
  if (b->len != GOSSIP_ID_LEN) return -EINVAL;
  memcpy(out, b->data, GOSSIP_ID_LEN);
  return 0;
}

/* get_text copies text that fits cap with its NUL and holds no NUL of its own. */
static int get_text(const ProtobufCBinaryData *b, char *out, size_t cap) {
  if (b->len >= cap || (b->len && memchr(b->data, 0, b->len))) return -EINVAL;
  if (b->len) memcpy(out, b->data, b->len);
  out[b->len] = '\0';
  return 0;
}

static int get_double(double v, double *out) {
  if (!isfinite(v)) return -EINVAL;
  *out = v;
  return 0;
}

static int update_from_pb(const Infermesh__Gossip__Update *pu, struct gossip_update *u) {
  if (!pu || get_id(&pu->id, u->id) || get_text(&pu->name, u->name, sizeof u->name) ||
      get_text(&pu->addr, u->addr, sizeof u->addr) || get_id(&pu->from, u->from))
    return -EINVAL;
  int st = (int)pu->state;
  if (st < GOSSIP_ALIVE || st > GOSSIP_LEFT) return -EINVAL;
  if (pu->meta.len > GOSSIP_META_MAX) return -EINVAL;
  u->state = (enum gossip_state)st;
  u->incarnation = pu->incarnation;
  u->meta_len = (uint16_t)pu->meta.len;
  if (pu->meta.len) memcpy(u->meta, pu->meta.data, pu->meta.len);
  return 0;
}

static int swim_from_pb(const Infermesh__Gossip__Swim *s, struct gossip_msg *m) {
  if (!s) return -EINVAL;
  int type = (int)s->type;
  if (type < GOSSIP_PING || type > GOSSIP_GOSSIP || s->n_updates > GOSSIP_MAX_UPDATES) return -EINVAL;
  m->type = (enum gossip_type)type;
  m->seq = s->seq;
  if (get_id(&s->from, m->from) || get_text(&s->from_addr, m->from_addr, sizeof m->from_addr) ||
      get_id(&s->target, m->target) || get_text(&s->target_addr, m->target_addr, sizeof m->target_addr))
    return -EINVAL;
  for (size_t i = 0; i < s->n_updates; i++)
    if (update_from_pb(s->updates[i], &m->updates[i])) return -EINVAL;
  m->nupdates = (int)s->n_updates;
  return 0;
}

static int target_from_pb(const Infermesh__Gossip__TargetLoad *pt, struct gossip_target_load *t) {
  if (!pt || pt->n_models > GOSSIP_LOAD_MODELS || get_text(&pt->name, t->name, sizeof t->name) ||
      get_text(&pt->kind, t->kind, sizeof t->kind))
    return -EINVAL;
  for (size_t i = 0; i < pt->n_models; i++)
    if (get_text(&pt->models[i], t->models[i], sizeof t->models[i])) return -EINVAL;
  t->nmodels = (int)pt->n_models;
  t->healthy = pt->healthy != 0;
  t->gpu_degraded = pt->gpu_degraded != 0;
  if (get_double(pt->waiting, &t->waiting) || get_double(pt->running, &t->running) ||
      get_double(pt->kv_usage, &t->kv_usage) || get_double(pt->prefix_hit_rate, &t->prefix_hit_rate) ||
      get_double(pt->prompt_tps, &t->prompt_tps) || get_double(pt->gen_tps, &t->gen_tps) ||
      get_double(pt->ttft_p50_ms, &t->ttft_p50_ms))
    return -EINVAL;
  t->kv_capacity_tokens = pt->kv_capacity_tokens;
  t->inflight = pt->inflight;
  return 0;
}

static int load_from_pb(const Infermesh__Gossip__LoadReport *r, struct gossip_load *l) {
  if (!r || r->n_targets > GOSSIP_LOAD_TARGETS || get_id(&r->from, l->from)) return -EINVAL;
  l->seq = r->seq;
  l->boot = r->boot;
  l->age_ms = r->age_ms;
  for (size_t i = 0; i < r->n_targets; i++)
    if (target_from_pb(r->targets[i], &l->targets[i])) return -EINVAL;
  l->ntargets = (int)r->n_targets;
  return 0;
}

static int spend_from_pb(const Infermesh__Gossip__SpendReport *r, struct gossip_spend *sp) {
  if (!r || r->n_tenants > GOSSIP_SPEND_TENANTS || get_id(&r->from, sp->from)) return -EINVAL;
  sp->boot = r->boot;
  sp->seq = r->seq;
  for (size_t i = 0; i < r->n_tenants; i++) {
    const Infermesh__Gossip__TenantSpend *pt = r->tenants[i];
    struct gossip_tenant_spend *t = &sp->tenants[i];
    if (!pt || get_text(&pt->tenant, t->tenant, sizeof t->tenant) || pt->day_nano < 0 || pt->month_nano < 0 ||
        pt->total_nano < 0)
      return -EINVAL;
    t->day_start = pt->day_start;
    t->day_nano = pt->day_nano;
    t->month_start = pt->month_start;
    t->month_nano = pt->month_nano;
    t->total_nano = pt->total_nano;
  }
  sp->ntenants = (int)r->n_tenants;
  return 0;
}

/* A delta's values: whole targets only (a packed field of at most GOSSIP_LOAD_TARGETS strides; the input cap
 * bounds what protobuf-c allocated for it). */
static int digest_from_pb(const Infermesh__Gossip__LoadDigest *r, struct gossip_load_digest *dg) {
  if (!r || r->n_entries > GOSSIP_DIGEST_ENTRIES) return -EINVAL;
  dg->forward = r->forward != 0;
  for (size_t i = 0; i < r->n_entries; i++) {
    const Infermesh__Gossip__LoadDelta *pe = r->entries[i];
    struct gossip_load_delta *e = &dg->entries[i];
    if (!pe || pe->node.len != GOSSIP_SHORT_ID || pe->n_values % GOSSIP_DELTA_STRIDE != 0 ||
        pe->n_values > (size_t)GOSSIP_LOAD_TARGETS * GOSSIP_DELTA_STRIDE)
      return -EINVAL;
    memcpy(e->node, pe->node.data, GOSSIP_SHORT_ID);
    e->boot = pe->boot;
    e->seq = pe->seq;
    e->age_ms = pe->age_ms;
    e->layout = pe->layout;
    e->ntargets = (int)(pe->n_values / GOSSIP_DELTA_STRIDE);
    if (pe->n_values) memcpy(e->values, pe->values, pe->n_values * sizeof pe->values[0]);
  }
  dg->nentries = (int)r->n_entries;
  return 0;
}

static int meta_from_pb(const Infermesh__Gossip__NodeMeta *pm, struct gossip_meta *m) {
  if (pm->n_labels > GOSSIP_META_LABELS || pm->n_models > GOSSIP_META_MODELS ||
      get_text(&pm->zone, m->zone, sizeof m->zone) ||
      get_text(&pm->api_addr, m->api_addr, sizeof m->api_addr) ||
      get_text(&pm->raft_addr, m->raft_addr, sizeof m->raft_addr) ||
      get_text(&pm->provider, m->provider, sizeof m->provider))
    return -EINVAL;
  m->raft_formed = pm->raft_formed != 0;
  m->roles = pm->roles;
  m->draining = pm->draining != 0;
  m->gpus = pm->gpus;
  m->gpus_degraded = pm->gpus_degraded;
  for (size_t i = 0; i < pm->n_labels; i++) {
    const Infermesh__Gossip__Label *l = pm->labels[i];
    if (!l || get_text(&l->key, m->label_key[i], sizeof m->label_key[i]) ||
        get_text(&l->value, m->label_value[i], sizeof m->label_value[i]))
      return -EINVAL;
  }
  m->nlabels = (int)pm->n_labels;
  for (size_t i = 0; i < pm->n_models; i++) {
    const Infermesh__Gossip__Model *md = pm->models[i];
    if (!md || get_text(&md->name, m->models[i].name, sizeof m->models[i].name) ||
        get_text(&md->kind, m->models[i].kind, sizeof m->models[i].kind))
      return -EINVAL;
    m->models[i].capacity_tokens = md->capacity_tokens;
  }
  m->nmodels = (int)pm->n_models;
  return 0;
}

/* --- field checks, encode side: the protobuf-c structs borrow the C struct's arrays --- */

static void put_id(const uint8_t *id, ProtobufCBinaryData *b) {
  b->len = GOSSIP_ID_LEN;
  b->data = (uint8_t *)(uintptr_t)id; /* only read by pack */
}

/* put_text refuses a string that fills its array without a NUL: the decoder would refuse it. */
static int put_text(const char *s, size_t cap, ProtobufCBinaryData *b) {
  size_t n = strnlen(s, cap);
  if (n == cap) return -EINVAL;
  b->len = n;
  b->data = (uint8_t *)(uintptr_t)s;
  return 0;
}

static int update_to_pb(const struct gossip_update *u, Infermesh__Gossip__Update *pu) {
  infermesh__gossip__update__init(pu);
  int st = (int)u->state;
  if (st < GOSSIP_ALIVE || st > GOSSIP_LEFT || u->meta_len > GOSSIP_META_MAX) return -EINVAL;
  put_id(u->id, &pu->id);
  put_id(u->from, &pu->from);
  if (put_text(u->name, sizeof u->name, &pu->name) || put_text(u->addr, sizeof u->addr, &pu->addr))
    return -EINVAL;
  pu->incarnation = u->incarnation;
  pu->state = (Infermesh__Gossip__MemberState)st;
  pu->meta.len = u->meta_len;
  pu->meta.data = (uint8_t *)(uintptr_t)u->meta;
  return 0;
}

struct swim_pb {
  Infermesh__Gossip__Swim s;
  Infermesh__Gossip__Update ups[GOSSIP_MAX_UPDATES];
  Infermesh__Gossip__Update *ptrs[GOSSIP_MAX_UPDATES];
};

static int swim_to_pb(const struct gossip_msg *m, struct swim_pb *o) {
  infermesh__gossip__swim__init(&o->s);
  int type = (int)m->type;
  if (type < GOSSIP_PING || type > GOSSIP_GOSSIP || m->nupdates < 0 || m->nupdates > GOSSIP_MAX_UPDATES)
    return -EINVAL;
  o->s.type = (Infermesh__Gossip__SwimType)type;
  o->s.seq = m->seq;
  put_id(m->from, &o->s.from);
  put_id(m->target, &o->s.target);
  if (put_text(m->from_addr, sizeof m->from_addr, &o->s.from_addr) ||
      put_text(m->target_addr, sizeof m->target_addr, &o->s.target_addr))
    return -EINVAL;
  for (int i = 0; i < m->nupdates; i++) {
    if (update_to_pb(&m->updates[i], &o->ups[i])) return -EINVAL;
    o->ptrs[i] = &o->ups[i];
  }
  o->s.n_updates = (size_t)m->nupdates;
  o->s.updates = o->ptrs;
  return 0;
}

struct load_pb {
  Infermesh__Gossip__LoadReport r;
  Infermesh__Gossip__TargetLoad t[GOSSIP_LOAD_TARGETS];
  Infermesh__Gossip__TargetLoad *ptrs[GOSSIP_LOAD_TARGETS];
  ProtobufCBinaryData models[GOSSIP_LOAD_TARGETS][GOSSIP_LOAD_MODELS];
};

static bool all_finite(const struct gossip_target_load *t) {
  return isfinite(t->waiting) && isfinite(t->running) && isfinite(t->kv_usage) &&
         isfinite(t->prefix_hit_rate) && isfinite(t->prompt_tps) && isfinite(t->gen_tps) &&
         isfinite(t->ttft_p50_ms);
}

static int load_to_pb(const struct gossip_load *l, struct load_pb *o) {
  infermesh__gossip__load_report__init(&o->r);
  if (l->ntargets < 0 || l->ntargets > GOSSIP_LOAD_TARGETS) return -EINVAL;
  put_id(l->from, &o->r.from);
  o->r.seq = l->seq;
  o->r.boot = l->boot;
  o->r.age_ms = l->age_ms;
  for (int i = 0; i < l->ntargets; i++) {
    const struct gossip_target_load *t = &l->targets[i];
    Infermesh__Gossip__TargetLoad *pt = &o->t[i];
    infermesh__gossip__target_load__init(pt);
    if (t->nmodels < 0 || t->nmodels > GOSSIP_LOAD_MODELS || !all_finite(t) ||
        put_text(t->name, sizeof t->name, &pt->name) || put_text(t->kind, sizeof t->kind, &pt->kind))
      return -EINVAL;
    for (int j = 0; j < t->nmodels; j++)
      if (put_text(t->models[j], sizeof t->models[j], &o->models[i][j])) return -EINVAL;
    pt->n_models = (size_t)t->nmodels;
    pt->models = o->models[i];
    pt->healthy = t->healthy;
    pt->gpu_degraded = t->gpu_degraded;
    pt->waiting = t->waiting;
    pt->running = t->running;
    pt->kv_usage = t->kv_usage;
    pt->kv_capacity_tokens = t->kv_capacity_tokens;
    pt->prefix_hit_rate = t->prefix_hit_rate;
    pt->prompt_tps = t->prompt_tps;
    pt->gen_tps = t->gen_tps;
    pt->ttft_p50_ms = t->ttft_p50_ms;
    pt->inflight = t->inflight;
    o->ptrs[i] = pt;
  }
  o->r.n_targets = (size_t)l->ntargets;
  o->r.targets = o->ptrs;
  return 0;
}

static int cache_from_pb(const Infermesh__Gossip__CacheReport *r, struct gossip_cache *c) {
  if (!r || get_id(&r->from, c->from) || get_id(&r->target_node, c->target_node) ||
      get_text(&r->target, c->target, sizeof c->target) ||
      (r->source != GOSSIP_CACHE_ENGINE && r->source != GOSSIP_CACHE_ROUTE) ||
      r->n_stored > GOSSIP_CACHE_HASHES || r->n_removed > GOSSIP_CACHE_HASHES - r->n_stored)
    return -EINVAL;
  c->boot = r->boot;
  c->seq = r->seq;
  c->source = (enum gossip_cache_source)r->source;
  c->cleared = r->cleared != 0;
  c->nstored = (int)r->n_stored;
  c->nremoved = (int)r->n_removed;
  if (r->n_stored) memcpy(c->stored, r->stored, r->n_stored * sizeof *c->stored);
  if (r->n_removed) memcpy(c->removed, r->removed, r->n_removed * sizeof *c->removed);
  return 0;
}

static int cache_to_pb(struct gossip_cache *c, Infermesh__Gossip__CacheReport *r) {
  infermesh__gossip__cache_report__init(r);
  if (c->nstored < 0 || c->nremoved < 0 || c->nstored + c->nremoved > GOSSIP_CACHE_HASHES ||
      (c->source != GOSSIP_CACHE_ENGINE && c->source != GOSSIP_CACHE_ROUTE) ||
      put_text(c->target, sizeof c->target, &r->target))
    return -EINVAL;
  put_id(c->from, &r->from);
  put_id(c->target_node, &r->target_node);
  r->boot = c->boot;
  r->seq = c->seq;
  r->source = (uint32_t)c->source;
  r->cleared = c->cleared;
  r->n_stored = (size_t)c->nstored;
  r->stored = c->stored;
  r->n_removed = (size_t)c->nremoved;
  r->removed = c->removed;
  return 0;
}

struct spend_pb {
  Infermesh__Gossip__SpendReport r;
  Infermesh__Gossip__TenantSpend t[GOSSIP_SPEND_TENANTS];
  Infermesh__Gossip__TenantSpend *ptrs[GOSSIP_SPEND_TENANTS];
};

static int spend_to_pb(const struct gossip_spend *sp, struct spend_pb *o) {
  infermesh__gossip__spend_report__init(&o->r);
  if (sp->ntenants < 0 || sp->ntenants > GOSSIP_SPEND_TENANTS) return -EINVAL;
  put_id(sp->from, &o->r.from);
  o->r.boot = sp->boot;
  o->r.seq = sp->seq;
  for (int i = 0; i < sp->ntenants; i++) {
    const struct gossip_tenant_spend *t = &sp->tenants[i];
    Infermesh__Gossip__TenantSpend *pt = &o->t[i];
    infermesh__gossip__tenant_spend__init(pt);
    if (put_text(t->tenant, sizeof t->tenant, &pt->tenant) || t->day_nano < 0 || t->month_nano < 0 ||
        t->total_nano < 0)
      return -EINVAL;
    pt->day_start = t->day_start;
    pt->day_nano = t->day_nano;
    pt->month_start = t->month_start;
    pt->month_nano = t->month_nano;
    pt->total_nano = t->total_nano;
    o->ptrs[i] = pt;
  }
  o->r.n_tenants = (size_t)sp->ntenants;
  o->r.tenants = o->ptrs;
  return 0;
}

struct digest_pb {
  Infermesh__Gossip__LoadDigest r;
  Infermesh__Gossip__LoadDelta e[GOSSIP_DIGEST_ENTRIES];
  Infermesh__Gossip__LoadDelta *ptrs[GOSSIP_DIGEST_ENTRIES];
};

static int digest_to_pb(struct gossip_load_digest *dg, struct digest_pb *o) {
  infermesh__gossip__load_digest__init(&o->r);
  if (dg->nentries < 0 || dg->nentries > GOSSIP_DIGEST_ENTRIES) return -EINVAL;
  o->r.forward = dg->forward;
  for (int i = 0; i < dg->nentries; i++) {
    struct gossip_load_delta *e = &dg->entries[i];
    Infermesh__Gossip__LoadDelta *pe = &o->e[i];
    infermesh__gossip__load_delta__init(pe);
    if (e->ntargets < 0 || e->ntargets > GOSSIP_LOAD_TARGETS) return -EINVAL;
    pe->node.len = GOSSIP_SHORT_ID;
    pe->node.data = e->node;
    pe->boot = e->boot;
    pe->seq = e->seq;
    pe->age_ms = e->age_ms;
    pe->layout = e->layout;
    pe->n_values = (size_t)e->ntargets * GOSSIP_DELTA_STRIDE;
    pe->values = &e->values[0][0];
    o->ptrs[i] = pe;
  }
  o->r.n_entries = (size_t)dg->nentries;
  o->r.entries = o->ptrs;
  return 0;
}

/* pack_into packs msg into out when it fits cap. */
static int pack_into(const ProtobufCMessage *msg, uint8_t *out, size_t cap) {
  size_t need = protobuf_c_message_get_packed_size(msg);
  if (need > cap || need > INT_MAX) return -ENOSPC;
  return (int)protobuf_c_message_pack(msg, out);
}

/* --- packets --- */

int gossip_encode_packet(const struct gossip_packet *p, uint8_t *out, size_t cap) {
  Infermesh__Gossip__Packet pk;
  infermesh__gossip__packet__init(&pk);
  pk.version = GOSSIP_WIRE_VERSION;
  if (p->kind == GOSSIP_PKT_SWIM) {
    struct swim_pb o;
    if (swim_to_pb(&p->u.swim, &o)) return -EINVAL;
    pk.body_case = INFERMESH__GOSSIP__PACKET__BODY_SWIM;
    pk.swim = &o.s;
    return pack_into(&pk.base, out, cap);
  }
  if (p->kind == GOSSIP_PKT_LOAD) {
    struct load_pb o;
    if (load_to_pb(&p->u.load, &o)) return -EINVAL;
    pk.body_case = INFERMESH__GOSSIP__PACKET__BODY_LOAD;
    pk.load = &o.r;
    return pack_into(&pk.base, out, cap);
  }
  if (p->kind == GOSSIP_PKT_CACHE) {
    Infermesh__Gossip__CacheReport r;
    /* protobuf-c's message structs take non-const arrays; packing only reads them */
    if (cache_to_pb((struct gossip_cache *)&p->u.cache, &r)) return -EINVAL;
    pk.body_case = INFERMESH__GOSSIP__PACKET__BODY_CACHE;
    pk.cache = &r;
    return pack_into(&pk.base, out, cap);
  }
  if (p->kind == GOSSIP_PKT_SPEND) {
    struct spend_pb o;
    if (spend_to_pb(&p->u.spend, &o)) return -EINVAL;
    pk.body_case = INFERMESH__GOSSIP__PACKET__BODY_SPEND;
    pk.spend = &o.r;
    return pack_into(&pk.base, out, cap);
  }
  if (p->kind == GOSSIP_PKT_DIGEST) {
    struct digest_pb o;
    /* as for the cache report: packing only reads the arrays */
    if (digest_to_pb((struct gossip_load_digest *)&p->u.digest, &o)) return -EINVAL;
    pk.body_case = INFERMESH__GOSSIP__PACKET__BODY_DIGEST;
    pk.digest = &o.r;
    return pack_into(&pk.base, out, cap);
  }
  return -EINVAL;
}

int gossip_decode_packet(const uint8_t *in, size_t len, struct gossip_packet *p) {
  memset(p, 0, sizeof *p);
  if ((!in && len) || len > GOSSIP_PACKET_INPUT_MAX || prescan_packet(in, len)) return -EINVAL;
  alignas(max_align_t) unsigned char buf[PACKET_ARENA];
  struct arena a = {buf, sizeof buf, 0};
  ProtobufCAllocator al = {arena_alloc, arena_free, &a};
  Infermesh__Gossip__Packet *pk = infermesh__gossip__packet__unpack(&al, len, in);
  if (!pk) return -EINVAL;
  int rc = -EINVAL;
  if (pk->version == GOSSIP_WIRE_VERSION) {
    if (pk->body_case == INFERMESH__GOSSIP__PACKET__BODY_SWIM) {
      p->kind = GOSSIP_PKT_SWIM;
      rc = swim_from_pb(pk->swim, &p->u.swim);
    } else if (pk->body_case == INFERMESH__GOSSIP__PACKET__BODY_LOAD) {
      p->kind = GOSSIP_PKT_LOAD;
      rc = load_from_pb(pk->load, &p->u.load);
    } else if (pk->body_case == INFERMESH__GOSSIP__PACKET__BODY_CACHE) {
      p->kind = GOSSIP_PKT_CACHE;
      rc = cache_from_pb(pk->cache, &p->u.cache);
    } else if (pk->body_case == INFERMESH__GOSSIP__PACKET__BODY_SPEND) {
      p->kind = GOSSIP_PKT_SPEND;
      rc = spend_from_pb(pk->spend, &p->u.spend);
    } else if (pk->body_case == INFERMESH__GOSSIP__PACKET__BODY_DIGEST) {
      p->kind = GOSSIP_PKT_DIGEST;
      rc = digest_from_pb(pk->digest, &p->u.digest);
    }
  }
  infermesh__gossip__packet__free_unpacked(pk, &al);
  if (rc) memset(p, 0, sizeof *p);
  return rc;
}

/* --- node metadata --- */

int gossip_encode_meta(const struct gossip_meta *m, uint8_t *out, size_t cap) {
  Infermesh__Gossip__NodeMeta pm;
  Infermesh__Gossip__Label labels[GOSSIP_META_LABELS], *lp[GOSSIP_META_LABELS];
  Infermesh__Gossip__Model models[GOSSIP_META_MODELS], *mp[GOSSIP_META_MODELS];
  infermesh__gossip__node_meta__init(&pm);
  if (m->nlabels < 0 || m->nlabels > GOSSIP_META_LABELS || m->nmodels < 0 ||
      m->nmodels > GOSSIP_META_MODELS || put_text(m->zone, sizeof m->zone, &pm.zone) ||
      put_text(m->api_addr, sizeof m->api_addr, &pm.api_addr) ||
      put_text(m->raft_addr, sizeof m->raft_addr, &pm.raft_addr) ||
      put_text(m->provider, sizeof m->provider, &pm.provider))
    return -EINVAL;
  pm.raft_formed = m->raft_formed;
  pm.roles = m->roles;
  pm.draining = m->draining;
  pm.gpus = m->gpus;
  pm.gpus_degraded = m->gpus_degraded;
  for (int i = 0; i < m->nlabels; i++) {
    infermesh__gossip__label__init(&labels[i]);
    if (put_text(m->label_key[i], sizeof m->label_key[i], &labels[i].key) ||
        put_text(m->label_value[i], sizeof m->label_value[i], &labels[i].value))
      return -EINVAL;
    lp[i] = &labels[i];
  }
  for (int i = 0; i < m->nmodels; i++) {
    infermesh__gossip__model__init(&models[i]);
    if (put_text(m->models[i].name, sizeof m->models[i].name, &models[i].name) ||
        put_text(m->models[i].kind, sizeof m->models[i].kind, &models[i].kind))
      return -EINVAL;
    models[i].capacity_tokens = m->models[i].capacity_tokens;
    mp[i] = &models[i];
  }
  pm.n_labels = (size_t)m->nlabels;
  pm.labels = lp;
  pm.n_models = (size_t)m->nmodels;
  pm.models = mp;
  return pack_into(&pm.base, out, cap);
}

int gossip_decode_meta(const uint8_t *in, size_t len, struct gossip_meta *m) {
  memset(m, 0, sizeof *m);
  if ((!in && len) || len > GOSSIP_META_MAX) return -EINVAL;
  alignas(max_align_t) unsigned char buf[META_ARENA];
  struct arena a = {buf, sizeof buf, 0};
  ProtobufCAllocator al = {arena_alloc, arena_free, &a};
  Infermesh__Gossip__NodeMeta *pm = infermesh__gossip__node_meta__unpack(&al, len, in);
  if (!pm) return -EINVAL;
  int rc = meta_from_pb(pm, m);
  infermesh__gossip__node_meta__free_unpacked(pm, &al);
  if (rc) memset(m, 0, sizeof *m);
  return rc;
}

/* --- push-pull --- */

int gossip_encode_pushpull(const struct gossip_pushpull *pp, uint8_t **out, size_t *outlen) {
  *out = NULL;
  *outlen = 0;
  if (pp->nmembers < 0 || pp->nmembers > GOSSIP_PUSHPULL_MAX || (pp->nmembers && !pp->members))
    return -EINVAL;
  size_t n = (size_t)pp->nmembers;
  Infermesh__Gossip__Update *ups = n ? xcalloc(n, sizeof *ups) : NULL;
  Infermesh__Gossip__Update **ptrs = n ? xcalloc(n, sizeof *ptrs) : NULL;
  Infermesh__Gossip__PushPull msg;
  infermesh__gossip__push_pull__init(&msg);
  msg.version = GOSSIP_WIRE_VERSION;
  msg.join = pp->join;
  put_id(pp->from, &msg.from);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    rc = update_to_pb(&pp->members[i], &ups[i]);
    ptrs[i] = &ups[i];
  }
  if (rc == 0) {
    msg.n_members = n;
    msg.members = ptrs;
    size_t need = infermesh__gossip__push_pull__get_packed_size(&msg);
    *out = xmalloc(need);
    *outlen = infermesh__gossip__push_pull__pack(&msg, *out);
  }
  free(ups);
  free(ptrs);
  return rc ? -EINVAL : 0;
}

int gossip_decode_pushpull(const uint8_t *in, size_t len, struct gossip_pushpull *pp) {
  memset(pp, 0, sizeof *pp);
  size_t nmembers = 0;
  if ((!in && len) || len > GOSSIP_PUSHPULL_INPUT_MAX || count_field(in, len, 4, &nmembers) ||
      nmembers > GOSSIP_PUSHPULL_MAX)
    return -EINVAL;
  struct arena a = {NULL, 0, 0}; /* rare and large: plain malloc */
  ProtobufCAllocator al = {arena_alloc, arena_free, &a};
  Infermesh__Gossip__PushPull *msg = infermesh__gossip__push_pull__unpack(&al, len, in);
  if (!msg) return -EINVAL;
  int rc = -EINVAL;
  if (msg->version == GOSSIP_WIRE_VERSION && msg->n_members <= GOSSIP_PUSHPULL_MAX &&
      get_id(&msg->from, pp->from) == 0) {
    pp->join = msg->join != 0;
    pp->members = msg->n_members ? xcalloc(msg->n_members, sizeof *pp->members) : NULL;
    rc = 0;
    for (size_t i = 0; i < msg->n_members && rc == 0; i++)
      rc = update_from_pb(msg->members[i], &pp->members[i]);
    if (rc == 0) pp->nmembers = (int)msg->n_members;
  }
  infermesh__gossip__push_pull__free_unpacked(msg, &al);
  if (rc) {
    free(pp->members);
    memset(pp, 0, sizeof *pp);
  }
  return rc;
}

void gossip_pushpull_free(struct gossip_pushpull *pp) {
  free(pp->members);
  pp->members = NULL;
  pp->nmembers = 0;
}
