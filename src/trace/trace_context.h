/* W3C Trace Context (https://www.w3.org/TR/trace-context/): the traceparent and tracestate headers, parsed
 * and written. Pure functions on borrowed bytes: no allocation, no I/O. */
#ifndef IM_TRACE_TRACE_CONTEXT_H
#define IM_TRACE_TRACE_CONTEXT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/slice.h"

#define TRACE_ID_LEN 16
#define SPAN_ID_LEN 8
#define TRACEPARENT_LEN 55 /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define TRACESTATE_MAX                                                                                       \
  512 /* what the spec asks every vendor to propagate; beyond it entries may be dropped */
#define TRACE_FLAG_SAMPLED 0x01

/* A position in a trace: the trace and the span that is the parent of what comes next. */
struct trace_ctx {
  uint8_t trace_id[TRACE_ID_LEN];
  uint8_t span_id[SPAN_ID_LEN];
  uint8_t flags; /* TRACE_FLAG_SAMPLED */
};

/* traceparent_parse reads a traceparent header value into out. Version 00 must be exactly 55 characters;
 * a later version (01..fe) is read by its first 55 characters when a '-' or nothing follows them, as the
 * spec asks; version ff, uppercase or other non-hex digits, wrong dashes, an all-zero trace id or span id
 * are invalid. Returns 0, or -EINVAL (out is then unspecified): the caller starts a new trace. */
int traceparent_parse(struct slice v, struct trace_ctx *out);

/* traceparent_format writes c as a version-00 traceparent (lowercase hex, flags keeping only the sampled
 * bit) into out: TRACEPARENT_LEN characters and a NUL. */
void traceparent_format(const struct trace_ctx *c, char out[TRACEPARENT_LEN + 1]);

/* tracestate_check validates a tracestate header value: comma-separated list members key=value (keys and
 * values as the spec's grammar says, optional spaces and tabs around members, empty members allowed), at most
 * 32 members. Returns the prefix to propagate: v unchanged when it is at most TRACESTATE_MAX bytes, else its
 * longest prefix of whole members that fits (the spec lets a vendor drop entries from the end); an empty
 * slice when v is invalid (then it is not propagated). The result borrows v. */
struct slice tracestate_check(struct slice v);

/* trace_hex writes n bytes of id as 2n lowercase hex digits and a NUL into out (2n + 1 bytes). */
void trace_hex(const uint8_t *id, size_t n, char *out);

#endif
