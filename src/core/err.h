/* Error codes shared by every module: 0 or a negative errno value, as in libuv. */
#ifndef IM_CORE_ERR_H
#define IM_CORE_ERR_H

#include <errno.h>

/* Project-specific codes live below the errno range so they never collide with -errno. */
enum {
  IM_EPARSE = -10001,   /* input is syntactically invalid */
  IM_EDUPKEY = -10002,  /* a JSON object repeats a key that matters */
  IM_ETOOBIG = -10003,  /* input exceeds a configured limit */
  IM_ENOTARGET = -10004 /* no healthy target can serve the request */
};

/* im_strerror returns a static, human-readable string for err (0, -errno or IM_E*). Never NULL. */
const char *im_strerror(int err);

#endif
