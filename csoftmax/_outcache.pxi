# Output cache (src/outcache.h): large results are allocated through a NumPy
# memory handler that keeps freed blocks for the next result of about the
# same size, so repeated calls do not pay the OS's page zeroing.

from cpython.object cimport PyObject
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_New

cdef extern from "outcache.h":
    void *csm_outcache_handler()
    size_t csm_outcache_set_limit(size_t bytes)
    size_t csm_outcache_limit()
    void csm_outcache_stats(size_t *held_bytes, size_t *held_blocks,
                            size_t *hits, size_t *misses)

cdef extern from "numpy/arrayobject.h":
    object PyDataMem_SetHandler(object handler)
    object PyDataMem_GetHandler()
    PyObject *PyDataMem_DefaultHandler

cdef object _cache_handler = PyCapsule_New(csm_outcache_handler(), "mem_handler", NULL)

# results smaller than this come from NumPy's own allocator (the C heap
# reuses them without new pages anyway)
OUTPUT_CACHE_MIN_BYTES = 1 << 20


def empty(shape, dtype):
    """``np.empty(shape, dtype)`` for a result csoftmax returns: from the
    output cache when it is on and the array has at least
    OUTPUT_CACHE_MIN_BYTES."""
    dt = np.dtype(dtype)
    cdef object nbytes = dt.itemsize
    if not isinstance(shape, tuple):                # (the callers pass tuples)
        try:
            shape = (operator.index(shape),)
        except TypeError:
            shape = tuple(shape)
    for s in shape:
        nbytes = nbytes * operator.index(s)
    if csm_outcache_limit() == 0 or nbytes < OUTPUT_CACHE_MIN_BYTES:
        return np.empty(shape, dt)
    # a memory handler the caller installed (tracking, NUMA, ...) is theirs
    if PyDataMem_GetHandler() is not <object>PyDataMem_DefaultHandler:
        return np.empty(shape, dt)
    old = PyDataMem_SetHandler(_cache_handler)
    try:
        return np.empty(shape, dt)
    finally:
        PyDataMem_SetHandler(old)


def set_output_cache(nbytes):
    """Set the output cache's limit in bytes (0: off, its blocks freed);
    returns the previous limit."""
    if not isinstance(nbytes, bool):
        try:
            nbytes = operator.index(nbytes)
        except TypeError:
            pass
    if isinstance(nbytes, bool) or not isinstance(nbytes, int):
        raise TypeError(f"nbytes must be an integer, not {type(nbytes).__name__}")
    if nbytes < 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes}")
    cdef size_t n = <size_t>min(nbytes, <object>(<size_t>-1))
    return int(csm_outcache_set_limit(n))


def output_cache_stats():
    """(limit, held_bytes, held_blocks, hits, misses) of the output cache."""
    cdef size_t hb, nb, h, m
    csm_outcache_stats(&hb, &nb, &h, &m)
    return {"limit": int(csm_outcache_limit()), "held_bytes": int(hb),
            "held_blocks": int(nb), "hits": int(h), "misses": int(m)}


# (tests: the handler machinery from Python)
def _other_default_handler():
    """A new capsule of NumPy's default handler: to NumPy the same
    allocator, to csoftmax a handler the caller installed."""
    return PyCapsule_New(PyCapsule_GetPointer(<object>PyDataMem_DefaultHandler, "mem_handler"),
                         "mem_handler", NULL)


def _set_handler(h):
    return PyDataMem_SetHandler(h)


def _get_handler():
    return PyDataMem_GetHandler()
