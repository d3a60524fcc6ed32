/* OTLP/protobuf encoding of spans: the ExportTraceServiceRequest that POST /v1/traces carries
 * (opentelemetry-proto: collector/trace/v1, trace/v1, common/v1, resource/v1), written with trace/pb.h. */
#ifndef IM_TRACE_OTLP_H
#define IM_TRACE_OTLP_H

#include <stddef.h>

#include "core/buf.h"
#include "trace/span.h"

/* Who emits the spans: the Resource's attributes (service.name, service.instance.id, service.version). All
 * borrowed for the call; an empty string leaves its attribute out. */
struct otlp_resource {
  const char *service_name, *instance_id, *version;
};

/* otlp_encode_traces appends to b one ExportTraceServiceRequest: one ResourceSpans for res, one ScopeSpans
 * (scope "infermesh") holding the n spans ring[(first + i) % cap], i < n, in that order. */
void otlp_encode_traces(struct buf *b, const struct otlp_resource *res, const struct span *ring, size_t cap,
                        size_t first, size_t n);

#endif
