/* Building spans: ids, times, bounded attributes. */
#include "trace/span.h"

#include <string.h>

void span_init(struct span *s, const char *name, enum span_kind kind, const uint8_t trace_id[TRACE_ID_LEN],
               const uint8_t span_id[SPAN_ID_LEN], const uint8_t *parent_id, uint64_t start_ns) {
  s->name = name;
  s->kind = kind;
  memcpy(s->trace_id, trace_id, TRACE_ID_LEN);
  memcpy(s->span_id, span_id, SPAN_ID_LEN);
  s->has_parent = parent_id != NULL;
  if (parent_id)
    memcpy(s->parent_id, parent_id, SPAN_ID_LEN);
  else
    memset(s->parent_id, 0, SPAN_ID_LEN);
  s->start_ns = s->end_ns = start_ns;
  s->status = SPAN_STATUS_UNSET;
  s->status_msg[0] = '\0';
  s->nattrs = 0;
  s->dropped_attrs = 0;
}

static struct span_attr *add(struct span *s, const char *key, enum span_attr_type t) {
  if (s->nattrs >= SPAN_MAX_ATTRS) {
    s->dropped_attrs++;
    return NULL;
  }
  struct span_attr *a = &s->attrs[s->nattrs++];
  a->key = key;
  a->type = t;
  return a;
}

/* OTLP strings must be UTF-8: anything but printable ASCII becomes '?', so a cut never splits a character. */
static void copy_ascii(char *dst, size_t cap, const char *src) {
  size_t i = 0;
  for (; src[i] && i + 1 < cap; i++)
    dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
  dst[i] = '\0';
}

void span_str(struct span *s, const char *key, const char *v) {
  struct span_attr *a = add(s, key, SPAN_ATTR_STR);
  if (a) copy_ascii(a->s, sizeof a->s, v);
}

void span_int(struct span *s, const char *key, int64_t v) {
  struct span_attr *a = add(s, key, SPAN_ATTR_INT);
  if (a) a->v.i = v;
}

void span_double(struct span *s, const char *key, double v) {
  struct span_attr *a = add(s, key, SPAN_ATTR_DOUBLE);
  if (a) a->v.d = v;
}

void span_bool(struct span *s, const char *key, bool v) {
  struct span_attr *a = add(s, key, SPAN_ATTR_BOOL);
  if (a) a->v.b = v;
}

void span_error(struct span *s, const char *msg) {
  s->status = SPAN_STATUS_ERROR;
  copy_ascii(s->status_msg, sizeof s->status_msg, msg ? msg : "");
}
