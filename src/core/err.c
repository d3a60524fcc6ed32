/* Human-readable names for the shared error codes. */
#include "core/err.h"

#include <string.h>

const char *im_strerror(int err) {
  switch (err) {
  case 0: return "ok";
  case IM_EPARSE: return "parse error";
  case IM_EDUPKEY: return "duplicate key";
  case IM_ETOOBIG: return "input too large";
  case IM_ENOTARGET: return "no healthy target";
  default: break;
  }
  if (err < 0 && err > -4096) return strerror(-err);
  return "unknown error";
}
