/* Model aliases of the whole agent: a name clients use for a model some target serves (config `aliases:`). */
#ifndef IM_ROUTE_ALIAS_H
#define IM_ROUTE_ALIAS_H

#include "core/slice.h"

#define MODEL_ALIASES_MAX 32

struct model_alias {
  char name[128];  /* what clients ask for */
  char model[256]; /* the model (or a runtime's alias) that serves it */
};

/* model_alias_find returns the model that alias name stands for among a[0..n), or NULL. */
const char *model_alias_find(const struct model_alias *a, int n, struct slice name);

#endif
