/* Exact money: an amount is an int64 count of nano-units (1e-9) of its currency; sums are exact. */
#ifndef IM_CORE_AMOUNT_H
#define IM_CORE_AMOUNT_H

#include <stddef.h>
#include <stdint.h>

#define AMOUNT_NANO 1000000000LL

/* amount_format writes nano as a decimal with up to 9 decimals, trailing zeros cut ("0.0042", "25", "-1.5"),
 * into out (capacity >= 32). The text is also a valid JSON number. */
void amount_format(int64_t nano, char *out, size_t cap);

/* amount_parse reads a non-negative decimal ("25", "0.0042"; at most 9 decimals, at most 9e9) into *nano:
 * 0, or -EINVAL. */
int amount_parse(const char *s, int64_t *nano);

#endif
