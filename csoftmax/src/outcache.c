/* Output cache: see outcache.h. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/ndarraytypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#include "outcache.h"

#define ALIGN_ 64                    /* bytes: a cache line, one ZMM store */
#define GRAIN_ ((size_t)1 << 16)     /* capacities rounded up to 64 KiB */
#define SLOTS_ 8                     /* blocks kept at most */

/* in front of every block this handler returns */
typedef struct {
    void *raw;      /* what malloc returned */
    size_t cap;     /* usable bytes from the block's start */
} head_;

typedef struct { char *data; size_t cap; } slot_;

static slot_ slots_[SLOTS_];         /* slots_[0] the most recently freed */
static size_t nslots_ = 0, held_ = 0, limit_ = 0, hits_ = 0, misses_ = 0;

/* NumPy calls its handler with the GIL held; the lock only guards against a
 * caller that does not (it is never contended in practice). */
#if defined(_MSC_VER)
#include <intrin.h>
static volatile long lock_ = 0;
static void lock__(void) { while (_InterlockedExchange(&lock_, 1)) { } }
static void unlock__(void) { _InterlockedExchange(&lock_, 0); }
#else
static int lock_ = 0;
static void lock__(void) { while (__atomic_exchange_n(&lock_, 1, __ATOMIC_ACQUIRE)) { } }
static void unlock__(void) { __atomic_store_n(&lock_, 0, __ATOMIC_RELEASE); }
#endif

static head_ *head_of_(void *p) { return (head_ *)((char *)p - sizeof(head_)); }

static void release_(char *data) { free(head_of_(data)->raw); }

/* with the lock held: takes the least recently freed blocks out until at
 * most max_slots remain and `room` more bytes fit the limit; returns how
 * many it put in evicted[] (to be released after unlocking) */
static size_t evict_locked_(size_t max_slots, size_t room, char **evicted)
{
    size_t ne = 0;
    while (nslots_ > 0 && (nslots_ > max_slots || held_ + room > limit_)) {
        nslots_--;
        held_ -= slots_[nslots_].cap;
        evicted[ne++] = slots_[nslots_].data;
    }
    return ne;
}

static void release_all_(char **evicted, size_t ne)
{
    for (size_t i = 0; i < ne; i++)
        release_(evicted[i]);
}

static void *fresh_(size_t size)
{
    size_t cap = (size + GRAIN_ - 1) / GRAIN_ * GRAIN_;
    if (cap < size || cap > (size_t)-1 - 2 * ALIGN_)
        return NULL;
    char *raw = (char *)malloc(cap + 2 * ALIGN_);
    if (raw == NULL)
        return NULL;
    char *data = (char *)(((uintptr_t)raw + sizeof(head_) + ALIGN_ - 1)
                          & ~(uintptr_t)(ALIGN_ - 1));
    head_ *h = head_of_(data);
    h->raw = raw;
    h->cap = cap;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    /* as NumPy's own allocator: transparent huge pages for large blocks */
    if (cap >= ((size_t)4 << 20)) {
        uintptr_t a = ((uintptr_t)data + 4095) & ~(uintptr_t)4095;
        uintptr_t e = ((uintptr_t)data + cap) & ~(uintptr_t)4095;
        if (e > a)
            madvise((void *)a, e - a, MADV_HUGEPAGE);
    }
#endif
    return data;
}

/* frees every kept block; returns how many */
static size_t drop_all_(void)
{
    char *evicted[SLOTS_];
    lock__();
    size_t ne = evict_locked_(0, 0, evicted);
    unlock__();
    release_all_(evicted, ne);
    return ne;
}

static void *cache_malloc_(void *ctx, size_t size)
{
    (void)ctx;
    if (size == 0)
        size = 1;
    char *got = NULL;
    lock__();
    /* the smallest kept block that holds `size` with at most 1/4 to spare */
    size_t best = SLOTS_;
    for (size_t i = 0; i < nslots_; i++) {
        size_t c = slots_[i].cap;
        if (c >= size && c - size <= c / 4 && (best == SLOTS_ || c < slots_[best].cap))
            best = i;
    }
    if (best != SLOTS_) {
        got = slots_[best].data;
        held_ -= slots_[best].cap;
        memmove(slots_ + best, slots_ + best + 1, (nslots_ - best - 1) * sizeof(slot_));
        nslots_--;
        hits_++;
    } else {
        misses_++;
    }
    unlock__();
    if (got != NULL)
        return got;
    got = (char *)fresh_(size);
    if (got == NULL && drop_all_() > 0)     /* the kept blocks may be what is missing */
        got = (char *)fresh_(size);
    return got;
}

static void cache_free_(void *ctx, void *p, size_t size)
{
    (void)ctx; (void)size;
    if (p == NULL)
        return;
    head_ *h = head_of_(p);
    size_t cap = h->cap;
    char *evicted[SLOTS_ + 1];
    size_t ne = 0;
    lock__();
    if (cap <= limit_) {
        ne = evict_locked_(SLOTS_ - 1, cap, evicted);     /* make room */
        memmove(slots_ + 1, slots_, nslots_ * sizeof(slot_));
        slots_[0].data = (char *)p;
        slots_[0].cap = cap;
        nslots_++;
        held_ += cap;
    } else {
        evicted[ne++] = (char *)p;
    }
    unlock__();
    release_all_(evicted, ne);
}

static void *cache_calloc_(void *ctx, size_t nelem, size_t elsize)
{
    if (elsize != 0 && nelem > (size_t)-1 / elsize)
        return NULL;
    void *p = cache_malloc_(ctx, nelem * elsize);
    if (p != NULL)
        memset(p, 0, nelem * elsize);
    return p;
}

static void *cache_realloc_(void *ctx, void *p, size_t new_size)
{
    if (p == NULL)
        return cache_malloc_(ctx, new_size);
    size_t cap = head_of_(p)->cap;
    if (new_size <= cap && new_size >= cap / 2)
        return p;
    /* growing, or shrinking to under half: a block of the new size (a
     * shrunk array gives its memory back, as with realloc) */
    void *q = cache_malloc_(ctx, new_size);
    if (q == NULL)
        return new_size <= cap ? p : NULL;
    memcpy(q, p, new_size < cap ? new_size : cap);
    cache_free_(ctx, p, cap);
    return q;
}

static PyDataMem_Handler handler_ = {
    "csoftmax_output_cache",
    1,
    {
        NULL,
        cache_malloc_,
        cache_calloc_,
        cache_realloc_,
        cache_free_,
    }
};

void *csm_outcache_handler(void) { return &handler_; }

size_t csm_outcache_set_limit(size_t bytes)
{
    char *evicted[SLOTS_];
    lock__();
    size_t old = limit_;
    limit_ = bytes;
    size_t ne = evict_locked_(SLOTS_, 0, evicted);
    unlock__();
    release_all_(evicted, ne);
    return old;
}

size_t csm_outcache_limit(void) { return limit_; }

void csm_outcache_stats(size_t *held_bytes, size_t *held_blocks, size_t *hits, size_t *misses)
{
    lock__();
    *held_bytes = held_;
    *held_blocks = nslots_;
    *hits = hits_;
    *misses = misses_;
    unlock__();
}
