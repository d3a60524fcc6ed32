/* Model aliases of the whole agent. */
#include "route/alias.h"

#include <stddef.h>

const char *model_alias_find(const struct model_alias *a, int n, struct slice name) {
  for (int i = 0; i < n; i++)
    if (slice_eqz(name, a[i].name)) return a[i].model;
  return NULL;
}
