/* A finished span, as the exporter queues it: fixed size, no pointers but static strings, so a ring of them
 * holds every span without an allocation per span. */
#ifndef IM_TRACE_SPAN_H
#define IM_TRACE_SPAN_H

#include <stdbool.h>
#include <stdint.h>

#include "trace/trace_context.h"

/* OTLP's SpanKind and Status.StatusCode values. */
enum span_kind { SPAN_KIND_INTERNAL = 1, SPAN_KIND_SERVER = 2, SPAN_KIND_CLIENT = 3 };
enum span_status { SPAN_STATUS_UNSET = 0, SPAN_STATUS_OK = 1, SPAN_STATUS_ERROR = 2 };

#define SPAN_MAX_ATTRS 14
#define SPAN_STR_MAX 96 /* a string attribute's bytes, NUL included; longer values are cut */

enum span_attr_type { SPAN_ATTR_STR, SPAN_ATTR_INT, SPAN_ATTR_DOUBLE, SPAN_ATTR_BOOL };

struct span_attr {
  const char *key; /* static */
  enum span_attr_type type;
  union {
    int64_t i;
    double d;
    bool b;
  } v;
  char s[SPAN_STR_MAX];
};

struct span {
  const char *name; /* static */
  uint8_t trace_id[TRACE_ID_LEN], span_id[SPAN_ID_LEN], parent_id[SPAN_ID_LEN];
  bool has_parent;
  enum span_kind kind;
  uint64_t start_ns, end_ns; /* Unix time */
  enum span_status status;
  char status_msg[SPAN_STR_MAX]; /* "" = none */
  int nattrs;
  uint32_t dropped_attrs; /* attributes that did not fit in attrs */
  struct span_attr attrs[SPAN_MAX_ATTRS];
};

/* span_init starts s: name (static), kind, ids copied from the arguments (parent NULL: a root span). */
void span_init(struct span *s, const char *name, enum span_kind kind, const uint8_t trace_id[TRACE_ID_LEN],
               const uint8_t span_id[SPAN_ID_LEN], const uint8_t *parent_id, uint64_t start_ns);

/* span_str / span_int / span_double / span_bool add an attribute (key static; a string value is copied as
 * printable ASCII, other bytes as '?', cut to SPAN_STR_MAX - 1 bytes). Past SPAN_MAX_ATTRS it is counted in
 * dropped_attrs instead. */
void span_str(struct span *s, const char *key, const char *v);
void span_int(struct span *s, const char *key, int64_t v);
void span_double(struct span *s, const char *key, double v);
void span_bool(struct span *s, const char *key, bool v);

/* span_error sets s's status to ERROR with msg (copied like a string attribute; NULL: no message). */
void span_error(struct span *s, const char *msg);

#endif
