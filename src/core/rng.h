/* A small, fast, seedable PRNG (xorshift64*) so that the simulator and tests are reproducible. */
#ifndef IM_CORE_RNG_H
#define IM_CORE_RNG_H

#include <stdint.h>

struct rng {
  uint64_t s;
};

/* rng_seed sets the state; seed 0 is replaced by a fixed non-zero constant. */
void rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
/* rng_below returns a value uniform in [0, n) (n > 0). */
uint32_t rng_below(struct rng *r, uint32_t n);
/* rng_unit returns a double uniform in [0, 1). */
double rng_unit(struct rng *r);

#endif
