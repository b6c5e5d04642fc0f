/* Output cache: a NumPy memory handler (NEP 49) for the large arrays
 * csoftmax allocates as results.
 *
 * Why: a fresh result of tens of MiB comes from mmap, and the OS zeroes every
 * page on first touch -- on the Xeon of BENCHMARKS.md a third of a softmax
 * call (512x32000 float32: 1.34 ns/element fresh, 0.87 into a reused
 * block).  When NumPy frees an array allocated through this handler, its
 * block is kept (up to a byte limit, most recent first) and handed to the
 * next result of about the same size, already mapped.  Blocks are 64-byte
 * aligned (whole cache lines for the 512-bit stores).
 *
 * The handler is installed only around csoftmax's own allocations of results
 * (csoftmax._core.empty); an array keeps a reference to it and frees through
 * it.  Blocks are never shared: a block is in the cache only after NumPy freed
 * the array that owned it.  The limit is csoftmax.set_output_cache(nbytes)
 * (0 frees everything and turns the cache off); CSOFTMAX_OUTPUT_CACHE sets it
 * at import.
 */
#ifndef CSM_OUTCACHE_H
#define CSM_OUTCACHE_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* the PyDataMem_Handler, as an opaque pointer (outcache.c fills it) */
void *csm_outcache_handler(void);
/* limit on the bytes kept; setting it frees blocks beyond it; returns the old */
size_t csm_outcache_set_limit(size_t bytes);
size_t csm_outcache_limit(void);
/* bytes and blocks kept now; blocks handed out from the cache / newly made */
void csm_outcache_stats(size_t *held_bytes, size_t *held_blocks,
                        size_t *hits, size_t *misses);

#ifdef __cplusplus
}
#endif
#endif
