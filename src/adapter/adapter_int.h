/* Helpers shared by the runtime adapter files (not part of the adapter interface). */
#ifndef IM_ADAPTER_ADAPTER_INT_H
#define IM_ADAPTER_ADAPTER_INT_H

#include "adapter/adapter.h"
#include "core/slice.h"

/* Which list of runtime_state a name goes to. */
enum adapter_list { ADAPTER_MODELS, ADAPTER_AVAILABLE, ADAPTER_LORA };

/* adapter_add_name appends name to list l of st unless it is there already; bumps the *_total count for every
 * new name and stores at most RS_MAX_NAMES (truncated to RS_NAME_MAX-1 bytes). Empty names are ignored. */
void adapter_add_name(struct runtime_state *st, enum adapter_list l, struct slice name);

/* adapter_hist_add adds v to the cumulative bucket le of h (creating it in sorted place when there is room;
 * when h is full, a bucket above all kept replaces the highest kept and one between them is dropped: either
 * only coarsens quantiles, and the top bucket's count is never lost). NaN le or v is ignored. */
void adapter_hist_add(struct rs_hist *h, double le, double v);

#endif
