/* CHECK(c) for fuzz targets: a contract a result must obey; when it does not, say which and abort (libFuzzer
 * then keeps the input as a crash reproducer). */
#ifndef IM_FUZZ_CHECK_H
#define IM_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                                             \
  do {                                                                                                       \
    if (!(c)) {                                                                                              \
      fprintf(stderr, "check failed: %s (line %d)\n", #c, __LINE__);                                         \
      abort();                                                                                               \
    }                                                                                                        \
  } while (0)

#endif
