/*
 * mutate.h — the standalone (non-libFuzzer) runs of the fuzz harnesses
 * under ctest: one way to damage a seed, shared by bodies_fuzz and
 * records_fuzz. rand() drives it, seeded by the caller, so a run repeats.
 */
#ifndef PARLEY_FUZZ_MUTATE_H
#define PARLEY_FUZZ_MUTATE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Applies `rounds` random edits to buf[1..len) (byte 0 picks the target
 * and stays): a flipped bit, a random byte, a cut, an inserted byte (while
 * under cap). Every tenth iteration `i` then replaces it with random noise
 * of 1 to 300 bytes. Returns the new length. */
static inline size_t
fuzz_mutate(uint8_t *buf, size_t cap, size_t len, int rounds, int i)
{
	for (int r = 0; r < rounds && len > 1; r++) {
		size_t at = 1 + (size_t)rand() % (len - 1);

		switch (rand() % 4) {
		case 0:
			buf[at] ^= (uint8_t)(1u << (rand() % 8));
			break;
		case 1:
			buf[at] = (uint8_t)rand();
			break;
		case 2:
			len = at;
			break;
		default:
			if (len < cap) {
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = (uint8_t)rand();
				len++;
			}
		}
	}
	if (i % 10 == 9) { /* noise */
		len = 1 + (size_t)rand() % 300;
		for (size_t k = 1; k < len; k++)
			buf[k] = (uint8_t)rand();
	}
	return len;
}

#endif
