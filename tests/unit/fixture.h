/* Test helper: load a file from the shared runtime captures (../shared/fixtures/runtime-metrics). */
#ifndef IM_TESTS_FIXTURE_H
#define IM_TESTS_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  FIXTURE_SKIP_SOURCE = 1, /* drop the first "# source:" line (JSON captures need that) */
  FIXTURE_EXACT = 2        /* allocate exactly the file's size, no NUL after it: ASan sees any overread */
};

/* fixture_load returns a heap copy of fixture `file` (caller frees) and its length; NUL-terminated unless
 * FIXTURE_EXACT. The root is $IM_SOURCE_DIR, else the IM_SOURCE_DIR macro the test build defines. Fails the
 * current cmocka test when the file cannot be read. */
static inline char *fixture_load(const char *file, size_t *len, int flags) {
  char path[4096];
  const char *root = getenv("IM_SOURCE_DIR");
#ifdef IM_SOURCE_DIR
  if (!root || !*root) root = IM_SOURCE_DIR;
#endif
  if (!root) fail_msg("IM_SOURCE_DIR is not set");
  snprintf(path, sizeof path, "%s/../shared/fixtures/runtime-metrics/%s", root, file);
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long sz = ftell(f);
  assert_true(sz > 0);
  rewind(f);
  char *b = malloc((size_t)sz + ((flags & FIXTURE_EXACT) ? 0 : 1));
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
  fclose(f);
  *len = (size_t)sz;
  if (!(flags & FIXTURE_EXACT)) b[sz] = '\0';
  if ((flags & FIXTURE_SKIP_SOURCE) && *len > 9 && strncmp(b, "# source:", 9) == 0) {
    char *nl = memchr(b, '\n', *len);
    assert_non_null(nl);
    size_t off = (size_t)(nl + 1 - b);
    memmove(b, b + off, *len - off + ((flags & FIXTURE_EXACT) ? 0 : 1));
    *len -= off;
  }
  return b;
}

#endif
