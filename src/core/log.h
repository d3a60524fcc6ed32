/* Structured logs: one logfmt line per event on stderr (ts, level, msg, then key=value pairs). */
#ifndef IM_CORE_LOG_H
#define IM_CORE_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* log_setup sets the minimum level and a component name written as comp=NAME (NULL: none).
 * Call once at start; the string must outlive all logging. */
void log_setup(enum log_level min, const char *component);
/* log_level_parse maps "debug|info|warn|error" to a level; -1 if unknown. */
int log_level_parse(const char *s);
/* log_emit writes: ts=... level=... comp=... msg="MSG" then the formatted key=value pairs in FMT
 * (the caller quotes values that may contain spaces). Thread-safe: one write(2) per line. */
void log_emit(enum log_level lvl, const char *msg, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* log_buffer_lines turns buffering on or off for the calling thread: lines below LOG_WARN are kept (up to
 * 16 KiB) until log_flush or a warning/error. For an event-loop thread that flushes once per loop turn, so a
 * busy server makes one write(2) per turn instead of one per request. Lines still buffered when the process
 * dies abruptly are lost; call log_flush before exiting. */
void log_buffer_lines(bool on);
/* log_flush writes the calling thread's buffered lines (a no-op when none). */
void log_flush(void);

#define log_debug(msg, ...) log_emit(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_emit(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_emit(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_emit(LOG_ERROR, msg, __VA_ARGS__)

#endif
