/* logfmt writer: bounded formatting into a stack buffer, one write(2) per line. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;

/* Per-thread line buffer (only used by threads that asked for it). */
static _Thread_local struct {
  bool on;
  size_t len;
  char buf[16384];
} lb;

static void write_all(const char *p, size_t n) {
  while (n) {
    ssize_t w = write(STDERR_FILENO, p, n);
    if (w <= 0) return; /* nowhere to report a failing stderr */
    p += w, n -= (size_t)w;
  }
}

void log_buffer_lines(bool on) {
  if (!on) log_flush();
  lb.on = on;
}

void log_flush(void) {
  if (lb.len) write_all(lb.buf, lb.len);
  lb.len = 0;
}
static const char *comp_name;

void log_setup(enum log_level min, const char *component) {
  min_level = min;
  comp_name = component;
}

int log_level_parse(const char *s) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (strcmp(s, names[i]) == 0) return i;
  return -1;
}

void log_emit(enum log_level lvl, const char *msg, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warn", "error"};
  char line[2048];
  struct timespec ts;
  struct tm tm;
  if (lvl < min_level) return;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s%s%s msg=\"%s\"",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   ts.tv_nsec / 1000000, names[lvl], comp_name ? " comp=" : "", comp_name ? comp_name : "", msg);
  if (n < 0) return;
  if ((size_t)n < sizeof line - 2 && fmt && fmt[0]) {
    line[n++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m > 0) n += m;
  }
  if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (!lb.on) {
    write_all(line, (size_t)n);
    return;
  }
  if (lb.len + (size_t)n > sizeof lb.buf) log_flush();
  memcpy(lb.buf + lb.len, line, (size_t)n);
  lb.len += (size_t)n;
  if (lvl >= LOG_WARN) log_flush(); /* problems show at once, in order with what came before */
}
