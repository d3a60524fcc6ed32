/* Filler text of the simulated engine: token i is a 4-byte word, so text length follows the token count. */
#ifndef IM_SIM_SIM_TEXT_H
#define IM_SIM_SIM_TEXT_H

#include "core/slice.h"

/* sim_text_token returns output token number i (static storage, 4 bytes). */
struct slice sim_text_token(int i);

#endif
