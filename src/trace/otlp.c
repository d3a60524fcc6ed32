/* ExportTraceServiceRequest → ResourceSpans → ScopeSpans → Span, with KeyValue/AnyValue and Status. Field
 * numbers are opentelemetry-proto's. */
#include "trace/otlp.h"

#include <string.h>

#include "trace/pb.h"

static void kv_str(struct buf *b, uint32_t field, const char *key, const char *v) {
  size_t kv = pb_begin(b, field);
  pb_bytes(b, 1, key, strlen(key)); /* KeyValue.key */
  size_t av = pb_begin(b, 2);       /* KeyValue.value: AnyValue */
  pb_bytes(b, 1, v, strlen(v));     /* string_value */
  pb_end(b, av);
  pb_end(b, kv);
}

static void kv_attr(struct buf *b, const struct span_attr *a) {
  if (a->type == SPAN_ATTR_STR) {
    kv_str(b, 9, a->key, a->s);
    return;
  }
  size_t kv = pb_begin(b, 9); /* Span.attributes */
  pb_bytes(b, 1, a->key, strlen(a->key));
  size_t av = pb_begin(b, 2);
  switch (a->type) {
  case SPAN_ATTR_BOOL: pb_uint(b, 2, a->v.b); break;          /* bool_value */
  case SPAN_ATTR_INT: pb_uint(b, 3, (uint64_t)a->v.i); break; /* int_value: two's complement */
  case SPAN_ATTR_DOUBLE: pb_double(b, 4, a->v.d); break;      /* double_value */
  case SPAN_ATTR_STR: break;
  }
  pb_end(b, av);
  pb_end(b, kv);
}

static void span_msg(struct buf *b, const struct span *s) {
  size_t m = pb_begin(b, 2); /* ScopeSpans.spans */
  pb_bytes(b, 1, s->trace_id, TRACE_ID_LEN);
  pb_bytes(b, 2, s->span_id, SPAN_ID_LEN);
  if (s->has_parent) pb_bytes(b, 4, s->parent_id, SPAN_ID_LEN);
  pb_bytes(b, 5, s->name, strlen(s->name));
  pb_uint(b, 6, (uint64_t)s->kind);
  pb_fixed64(b, 7, s->start_ns);
  pb_fixed64(b, 8, s->end_ns);
  for (int i = 0; i < s->nattrs; i++)
    kv_attr(b, &s->attrs[i]);
  if (s->dropped_attrs) pb_uint(b, 10, s->dropped_attrs);
  if (s->status != SPAN_STATUS_UNSET) {
    size_t st = pb_begin(b, 15); /* Status */
    if (s->status_msg[0]) pb_bytes(b, 2, s->status_msg, strlen(s->status_msg));
    pb_uint(b, 3, (uint64_t)s->status);
    pb_end(b, st);
  }
  pb_end(b, m);
}

void otlp_encode_traces(struct buf *b, const struct otlp_resource *res, const struct span *ring, size_t cap,
                        size_t first, size_t n) {
  size_t rs = pb_begin(b, 1); /* ExportTraceServiceRequest.resource_spans */
  size_t r = pb_begin(b, 1);  /* ResourceSpans.resource */
  if (res->service_name[0]) kv_str(b, 1, "service.name", res->service_name);
  if (res->instance_id[0]) kv_str(b, 1, "service.instance.id", res->instance_id);
  if (res->version[0]) kv_str(b, 1, "service.version", res->version);
  pb_end(b, r);
  size_t ss = pb_begin(b, 2); /* ResourceSpans.scope_spans */
  size_t sc = pb_begin(b, 1); /* ScopeSpans.scope: InstrumentationScope */
  pb_bytes(b, 1, "infermesh", 9);
  if (res->version[0]) pb_bytes(b, 2, res->version, strlen(res->version));
  pb_end(b, sc);
  for (size_t i = 0; i < n; i++)
    span_msg(b, &ring[(first + i) % cap]);
  pb_end(b, ss);
  pb_end(b, rs);
}
