/* Filler words for generated text. */
#include "sim/sim_text.h"

static const char words[][5] = {"the ", "big ", "red ", "fox ", "ran ", "far ", "and ", "saw ",
                                "new ", "sky ", "mesh", " of ", "gpu ", "kv, ", "one ", "day."};

struct slice sim_text_token(int i) {
  const char *w = words[(unsigned)i % (sizeof words / sizeof words[0])];
  return slice_make(w, 4);
}
