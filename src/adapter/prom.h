/* Prometheus text exposition format (0.0.4) parser: streaming, zero-copy, over one in-memory buffer. */
#ifndef IM_ADAPTER_PROM_H
#define IM_ADAPTER_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/slice.h"

/* At most this many labels per sample; a sample with more is rejected with IM_ETOOBIG. */
#define PROM_MAX_LABELS 64

/* One label pair. Both slices point into the text given to prom_parse. value is the raw text between the
 * quotes: escapes (\\ \" \n) are NOT decoded; use prom_label_unescape when the exact value matters. */
struct prom_label {
  struct slice name, value;
};

/* One sample line. name and labels point into the text given to prom_parse (name) and into parser-owned
 * storage (the labels array); both are valid only during the callback that receives the sample. */
struct prom_sample {
  struct slice name;
  const struct prom_label *labels;
  int nlabels;
  double value;  /* NaN, +Inf and -Inf are legal values */
  bool has_ts;   /* the optional timestamp was present */
  int64_t ts_ms; /* milliseconds since the epoch, when has_ts */
};

/* Called once per sample, in input order. Return 0 to go on, nonzero to stop (prom_parse returns it). */
typedef int (*prom_sample_cb)(const struct prom_sample *s, void *arg);

/* Where and why parsing failed. line is 1-based; msg is NUL-terminated (it names the column too). */
struct prom_error {
  int line;
  char msg[128];
};

/* prom_parse reads text[0..len) and calls cb(sample, arg) for every sample. text needs no NUL terminator and
 * NUL bytes in it get no special meaning; text must stay valid and unchanged until prom_parse returns.
 * Comments, # HELP and blank lines are skipped; # TYPE lines are checked for a valid metric name and a known
 * type. LF or CRLF line ends; the last line needs no line end. Blanks and tabs may separate any tokens.
 * Returns 0 when all of the input was read, the callback's nonzero value when it stopped early, IM_EPARSE on
 * malformed input, IM_ETOOBIG for a sample with more than PROM_MAX_LABELS labels, -EINVAL for a NULL cb or
 * NULL text with len > 0. err (may be NULL) is cleared first; on IM_EPARSE/IM_ETOOBIG it gets the 1-based
 * line and a message. Samples before the bad line were already delivered. Never allocates; reentrant. */
int prom_parse(const char *text, size_t len, prom_sample_cb cb, void *arg, struct prom_error *err);

/* prom_label_get finds the label called name (NUL-terminated) in s and sets *value to its raw (escaped)
 * value, pointing into the parsed text. Returns false, leaving *value alone, when s has no such label. */
bool prom_label_get(const struct prom_sample *s, const char *name, struct slice *value);

/* prom_label_unescape decodes \\, \" and \n in raw into dst (any other backslash sequence is copied as is).
 * Writes at most cap-1 bytes and a NUL (nothing when cap is 0); returns the number of bytes written before
 * the NUL. A result of cap-1 may mean the value was truncated. */
size_t prom_label_unescape(struct slice raw, char *dst, size_t cap);

#endif
