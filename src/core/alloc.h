/* Allocation wrappers: internal allocation failure aborts (DESIGN §13). */
#ifndef IM_CORE_ALLOC_H
#define IM_CORE_ALLOC_H

#include <stddef.h>

/* Each returns memory the caller frees with free(); none returns NULL (they abort instead). */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
