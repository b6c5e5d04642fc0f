# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython layer of csoftmax: loops over rows / column blocks, threads, GIL.

The only place with threads.  The Python facade (``csoftmax._api``) has
already validated arguments, chosen the compute dtype and arranged the data
as either

* rows:    a 2-D array (n_rows, n) whose rows are contiguous (any row stride),
           reduced along axis 1;
* columns: a 3-D array (outer, n, inner) whose last axis is contiguous,
           reduced along axis 1 (the non-last-axis case, vectorised across
           the contiguous inner dimension, no transposed copy).

Work is cut into blocks small enough to stay in L1/L2 between the reduction
pass and the write pass (rows: <= 32 KiB of input per block; columns: 64
columns at a time), and blocks are spread over OpenMP threads with the GIL
released.  A few very long rows are split into per-thread segments whose
partial (max, count, rest) states are merged exactly.

Which of these paths a call takes (and which kernels, threads, block size)
is decided once per call by the planner, _plan.pxi, from its one table of
thresholds; _core.plan(op, shape, dtype, axis) shows the decision and
_core.forced(op, path) overrides it (tests, A/B timings).
"""
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset, strcmp
from libc.math cimport expm1 as c_expm1_
from libc.math cimport INFINITY, log as c_log_m, fabs as c_fabs_m

# (the declarations of csoftmax.h come from _core.pxd, which Cython reads
# automatically for this module)

cdef extern from "omp_compat.h" nogil:
    int CSM_HAVE_OPENMP
    int omp_get_max_threads()
    int omp_get_num_procs()
    int omp_get_thread_limit()

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int csm_team_size(void) { return omp_get_num_threads(); }
    #else
    static int csm_team_size(void) { return 1; }
    #endif
    #if defined(_OPENMP) && (defined(__linux__) || defined(__APPLE__))
    #ifndef _GNU_SOURCE
    #define _GNU_SOURCE
    #endif
    #include <dlfcn.h>
    /* path of the shared library providing the OpenMP runtime, or NULL */
    static const char *csm_openmp_library(void) {
        Dl_info info;
        if (dladdr((void *)&omp_get_max_threads, &info) && info.dli_fname)
            return info.dli_fname;
        return NULL;
    }
    #else
    static const char *csm_openmp_library(void) { return NULL; }
    #endif
    /* how this extension was compiled (golden digests depend on it) */
    #if defined(__VERSION__)
    static const char *csm_cc_version = __VERSION__;
    #else
    static const char *csm_cc_version = "unknown";
    #endif
    #if defined(__SANITIZE_ADDRESS__)
    static const int csm_cc_sanitized = 1;
    #elif defined(__has_feature)
    #if __has_feature(address_sanitizer)
    static const int csm_cc_sanitized = 1;
    #else
    static const int csm_cc_sanitized = 0;
    #endif
    #else
    static const int csm_cc_sanitized = 0;
    #endif
    """
    int csm_team_size() nogil
    const char *csm_cc_version
    int csm_cc_sanitized
    const char *csm_openmp_library()

import operator

import numpy as np

cnp.import_array()

# (the thresholds -- block sizes, when to thread, split, take the short-row
# or fused kernels -- are in _plan.pxi, with the planner)

cdef const csm_kernel_table *_tab = csm_kernels()
# Threads: 0 = follow the OpenMP runtime, read at every call (so
# OMP_NUM_THREADS, omp_set_num_threads and threadpoolctl.threadpool_limits
# apply); > 0 = fixed by set_num_threads(n).
cdef int _nthreads_user = 0
# team size of the last parallel row / column loop (1 if it ran serial)
cdef int _last_team = 1

# --------------------------------------------------------------------------
# configuration

def isa():
    """Name of the kernel table in use ('avx512', 'avx2', 'neon' or 'scalar')."""
    return _tab.name.decode()


def available_isas():
    """Names of the kernel tables this CPU can run, best last."""
    names = ["scalar"]
    if csm_kernels_for(CSM_ISA_AVX2) != NULL:
        names.append("avx2")
    if csm_kernels_for(CSM_ISA_AVX512) != NULL:
        names.append("avx512")
    if csm_kernels_for(CSM_ISA_NEON) != NULL:
        names.append("neon")
    return names


def build_info():
    """{"compiler": the C compiler's version string, "sanitized": built
    with AddressSanitizer} -- floating-point results can depend on both
    (contraction into FMA, inlining), so tools/golden.py records them."""
    return {"compiler": csm_cc_version.decode(), "sanitized": bool(csm_cc_sanitized)}


def kernel_list():
    """The kernel list (include/csoftmax_kernels.def) and which tables have
    each kernel: [(name, {isa: bool})] for the ISAs this CPU offers, in
    list (= table) order.  Tests and benchmarks walk it."""
    cdef int i, k, n = csm_kernel_count()
    cdef const csm_kernel_table *t
    cdef csm_isa codes[4]
    codes[0], codes[1], codes[2], codes[3] = (CSM_ISA_SCALAR, CSM_ISA_AVX2,
                                              CSM_ISA_NEON, CSM_ISA_AVX512)
    names = ("scalar", "avx2", "neon", "avx512")
    out = [(csm_kernel_name(i).decode(), {}) for i in range(n)]
    for k in range(4):
        t = csm_kernels_for(codes[k])
        if t == NULL:
            continue
        for i in range(n):
            out[i][1][names[k]] = bool(csm_kernel_present(t, i))
    return out


def isa_request_error():
    return bool(csm_isa_request_error())


def _use_isa(name):
    """Switch the kernel table (for tests); returns the previous name."""
    global _tab
    cdef const csm_kernel_table *t = NULL
    if name == "scalar":
        t = csm_kernels_for(CSM_ISA_SCALAR)
    elif name == "avx2":
        t = csm_kernels_for(CSM_ISA_AVX2)
    elif name == "avx512":
        t = csm_kernels_for(CSM_ISA_AVX512)
    elif name == "neon":
        t = csm_kernels_for(CSM_ISA_NEON)
    if t == NULL:
        raise ValueError(f"ISA {name!r} is not available on this CPU/build")
    prev = isa()
    _tab = t
    return prev


def have_openmp():
    return bool(CSM_HAVE_OPENMP)


# The most threads csoftmax starts: 4 per processor (at least 64), and no
# more than the OpenMP runtime's thread-limit-var.  Larger teams only
# oversubscribe the cores, and libgomp aborts or crashes the process when it
# cannot create the threads (2**24 or 2**31 - 1 of them), so set_num_threads
# refuses counts above it and an OMP_NUM_THREADS above it is clamped.
cdef int _thread_cap = 1


cdef int _compute_thread_cap() noexcept nogil:
    cdef int procs = omp_get_num_procs()
    cdef int limit = omp_get_thread_limit()
    cdef int cap = 4 * procs if procs < (1 << 20) else (1 << 22)
    if cap < 64:
        cap = 64
    if limit > 0 and limit < cap:
        cap = limit
    return cap if CSM_HAVE_OPENMP else 1


_thread_cap = _compute_thread_cap()


def max_num_threads():
    """The largest thread count csoftmax will use (see set_num_threads)."""
    return _thread_cap


cdef inline int _max_threads() noexcept nogil:
    """Threads for a large input: the set_num_threads value, else the OpenMP
    runtime's current nthreads-var of the calling thread (cheap to read),
    clamped to _thread_cap."""
    cdef int n
    if _nthreads_user > 0:
        return _nthreads_user
    n = omp_get_max_threads()
    if n > _thread_cap:
        return _thread_cap
    return n if n > 0 else 1


def get_num_threads():
    return _max_threads()


def set_num_threads(n):
    """Fix the thread count (1 <= n <= max_num_threads()), or follow OpenMP
    again (n = None).  Returns the previous setting (None when it followed
    OpenMP)."""
    global _nthreads_user
    cdef int k = 0
    if n is not None:
        if isinstance(n, (bool, np.bool_)):
            raise TypeError(f"number of threads must be an integer or None, got {n!r}")
        try:
            v = operator.index(n)
        except TypeError:
            raise TypeError(f"number of threads must be an integer or None, "
                            f"got {n!r}") from None
        if v < 1:
            raise ValueError(f"number of threads must be >= 1, got {n}")
        if v > _thread_cap and CSM_HAVE_OPENMP:
            raise ValueError(f"number of threads must be <= {_thread_cap} (4 per "
                             f"processor, at least 64, within OMP_THREAD_LIMIT), "
                             f"got {n}")
        k = v if CSM_HAVE_OPENMP else 1
    prev = _nthreads_user if _nthreads_user > 0 else None
    _nthreads_user = k
    return prev


def _thread_setting():
    """The set_num_threads value, or None when following OpenMP."""
    return _nthreads_user if _nthreads_user > 0 else None


def _last_num_threads():
    """Team size used by the last row/column/long-row loop (1 if serial)."""
    return _last_team


def _openmp_library():
    """Path of the OpenMP runtime library csoftmax calls, or None."""
    cdef const char *p = csm_openmp_library()
    return None if p == NULL else p.decode()


cdef inline void _note_team() noexcept nogil:
    global _last_team
    _last_team = csm_team_size()


cdef inline void _note_serial() noexcept nogil:
    global _last_team
    _last_team = 1


# --------------------------------------------------------------------------
# the planner and its thresholds

include "_plan.pxi"

# --------------------------------------------------------------------------
# typed dispatch onto the kernel table

cdef inline void _lse_rows(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                           Py_ssize_t rs, double scale,
                           csm_lse_state *st) noexcept nogil:
    if floating is float:
        _tab.lse_rows_f32(x, rows, n, rs, scale, st)
    else:
        _tab.lse_rows_f64(x, rows, n, rs, scale, st)

cdef inline void _lse_rows_pw(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                              Py_ssize_t rs, double scale, csm_lse_state *st,
                              const floating *w, Py_ssize_t wrs) noexcept nogil:
    """_lse_rows, fetching the destination rows w for writing meanwhile (so
    the write pass that follows finds them in cache): TWO_PASS_PREFETCH."""
    if floating is float:
        _tab.lse_rows_pw_f32(x, rows, n, rs, scale, st, w, wrs)
    else:
        _tab.lse_rows_pw_f64(x, rows, n, rs, scale, st, w, wrs)

cdef inline void _lse_cols(const floating *x, Py_ssize_t cols, Py_ssize_t n,
                           Py_ssize_t rs, double scale,
                           csm_lse_state *st) noexcept nogil:
    if floating is float:
        _tab.lse_cols_f32(x, cols, n, rs, scale, st)
    else:
        _tab.lse_cols_f64(x, cols, n, rs, scale, st)

cdef inline void _write_rows(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                             Py_ssize_t xrs, double scale, const double *mx,
                             const double *ls, double alpha, floating *y,
                             Py_ssize_t yrs, bint log) noexcept nogil:
    if floating is float:
        if log:
            _tab.log_softmax_rows_f32(x, rows, n, xrs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_rows_f32(x, rows, n, xrs, scale, mx, ls, alpha, y, yrs)
    else:
        if log:
            _tab.log_softmax_rows_f64(x, rows, n, xrs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_rows_f64(x, rows, n, xrs, scale, mx, ls, alpha, y, yrs)

cdef inline void _write_cols(const floating *x, Py_ssize_t cols, Py_ssize_t n,
                             Py_ssize_t xrs, double scale, const double *mx,
                             const double *ls, double alpha, floating *y,
                             Py_ssize_t yrs, bint log) noexcept nogil:
    if floating is float:
        if log:
            _tab.log_softmax_cols_f32(x, cols, n, xrs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_cols_f32(x, cols, n, xrs, scale, mx, ls, alpha, y, yrs)
    else:
        if log:
            _tab.log_softmax_cols_f64(x, cols, n, xrs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_cols_f64(x, cols, n, xrs, scale, mx, ls, alpha, y, yrs)

# short rows (n <= CSM_SMALL_MAX): kernels with several rows per vector

cdef inline bint _small_natural(Py_ssize_t n) noexcept nogil:
    """Whether the C-level API's reductions take the short-row kernels (the
    planner's natural choice for logsumexp, without overrides)."""
    return n <= _small_log_max(False) and _tab.lse_small_f32 != NULL

cdef inline void _lse_small(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                            Py_ssize_t rs, double scale, bint for_lse,
                            double *mx, double *ls) noexcept nogil:
    if floating is float:
        _tab.lse_small_f32(x, rows, n, rs, scale, for_lse, mx, ls)
    else:
        _tab.lse_small_f64(x, rows, n, rs, scale, for_lse, mx, ls)

cdef inline void _fused_small(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                              Py_ssize_t xrs, double scale, floating *y,
                              Py_ssize_t yrs, bint log) noexcept nogil:
    if floating is float:
        if log:
            _tab.log_softmax_small_f32(x, rows, n, xrs, scale, y, yrs)
        else:
            _tab.softmax_small_f32(x, rows, n, xrs, scale, y, yrs)
    else:
        if log:
            _tab.log_softmax_small_f64(x, rows, n, xrs, scale, y, yrs)
        else:
            _tab.softmax_small_f64(x, rows, n, xrs, scale, y, yrs)

cdef inline void _softmax_write_small(const floating *x, Py_ssize_t rows,
                                      Py_ssize_t n, Py_ssize_t xrs, double scale,
                                      const double *mx, const double *ls,
                                      double alpha, floating *y,
                                      Py_ssize_t yrs) noexcept nogil:
    if floating is float:
        _tab.softmax_write_small_f32(x, rows, n, xrs, scale, mx, ls, alpha, y, yrs)
    else:
        _tab.softmax_write_small_f64(x, rows, n, xrs, scale, mx, ls, alpha, y, yrs)

# --------------------------------------------------------------------------
# blocks: reduction + finalize (+ write) on data that is still in cache.
# The drivers below follow a plan (_plan_call): they take no decision of
# their own beyond the per-unit fall-backs listed in _plan.pxi.

cdef inline void _lse_final(const double *mx, const double *ls, Py_ssize_t m,
                             double scale, floating *y,
                             Py_ssize_t ys) noexcept nogil:
    """y[i * ys] = mx[i] + ls[i] / scale in the result's dtype: the last step
    of logsumexp / smooth_max (the float64 sum rounded once, as the facade's
    np.add then astype did), written per block from the block's own mx / ls
    -- no float64 arrays of the outputs' size (12 bytes an output that a
    non-last-axis reduction of 21 rows paid as 23 % of its time)."""
    cdef Py_ssize_t i
    if scale == 1.0:
        for i in range(m):
            y[i * ys] = <floating>(mx[i] + ls[i])
    else:
        for i in range(m):
            y[i * ys] = <floating>(mx[i] + ls[i] / scale)


cdef void _rows_block_small(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                            Py_ssize_t xrs, double scale, double alpha,
                            floating *y, Py_ssize_t yrs, int op, int path,
                            double *mx_out, double *ls_out) noexcept nogil:
    """_rows_block on the short-row kernels: SMALL (one fused call; alpha
    is 1) or SMALL_TWO_PASS (lse_small, then the write pass with alpha)."""
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m
    if op == OP_LSE:
        _lse_small(x, rows, n, xrs, scale, True, mx_out, ls_out)
    elif path == PATH_SMALL:
        _fused_small(x, rows, n, xrs, scale, y, yrs, op == OP_LOG_SOFTMAX)
    else:
        while r0 < rows:
            m = min(ROW_BLOCK, rows - r0)
            _lse_small(x + r0 * xrs, m, n, xrs, scale, False, mx, ls)
            if op == OP_LOG_SOFTMAX:
                _write_rows(x + r0 * xrs, m, n, xrs, scale, mx, ls, alpha,
                            y + r0 * yrs, yrs, True)
            else:
                _softmax_write_small(x + r0 * xrs, m, n, xrs, scale, mx, ls,
                                     alpha, y + r0 * yrs, yrs)
            r0 += m


cdef void _rows_block(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                      Py_ssize_t xrs, double scale, double alpha,
                      floating *y, Py_ssize_t yrs, int op, int path,
                      double *mx_out, double *ls_out) noexcept nogil:
    """op OP_SOFTMAX / OP_LOG_SOFTMAX (into y), OP_LSE (reduction only, into
    mx_out, ls_out) of a block of rows by path SMALL, SMALL_TWO_PASS, FUSED,
    TWO_PASS or TWO_PASS_PREFETCH."""
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m
    if op == OP_LSE and y != NULL:
        # the reduction's result itself into y (rows_lse): the block's
        # mx / ls here, ROW_BLOCK rows at a time
        while r0 < rows:
            m = min(ROW_BLOCK, rows - r0)
            _rows_block(x + r0 * xrs, m, n, xrs, scale, alpha, <floating *>NULL,
                        0, op, path, mx, ls)
            _lse_final(mx, ls, m, scale, y + r0 * yrs, yrs)
            r0 += m
        return
    if path == PATH_SMALL or path == PATH_SMALL_TWO_PASS:
        _rows_block_small(x, rows, n, xrs, scale, alpha, y, yrs, op, path,
                          mx_out, ls_out)
        return
    if path == PATH_FUSED:
        # softmax: one fused call per block (one exp per element; see src/avx2/fused_rows_f32.c)
        if floating is float:
            _tab.softmax_fused_rows_f32(x, rows, n, xrs, scale, alpha, y, yrs)
        else:
            _tab.softmax_fused_rows_f64(x, rows, n, xrs, scale, alpha, y, yrs)
        return
    while r0 < rows:
        m = min(ROW_BLOCK, rows - r0)
        if op == OP_LSE:
            _lse_rows(x + r0 * xrs, m, n, xrs, scale, st)
            _tab.finalize(st, m, scale, mx_out + r0, ls_out + r0)
        else:
            if path == PATH_TWO_PASS_PREFETCH:
                _lse_rows_pw(x + r0 * xrs, m, n, xrs, scale, st, y + r0 * yrs, yrs)
            else:
                _lse_rows(x + r0 * xrs, m, n, xrs, scale, st)
            _tab.finalize(st, m, scale, mx, ls)
            _write_rows(x + r0 * xrs, m, n, xrs, scale, mx, ls, alpha,
                        y + r0 * yrs, yrs, op == OP_LOG_SOFTMAX)
        r0 += m


cdef inline bint _merged_cancels(const csm_lse_state *st, double scale) noexcept nogil:
    """LSE = scale max + log(count + rest) within 1.4 of 0 (the kernels'
    lse_cancels_ test, with an exact log and a wider margin)."""
    cdef double sm = scale * st.max
    if sm == 0.0 or not (c_fabs_m(st.max) < INFINITY):
        return False
    return c_fabs_m(sm + c_log_m(st.count + st.rest)) < 1.4


cdef void _long_row(const floating *x, Py_ssize_t n, double scale,
                    double alpha, floating *y, int op, double *mx_out,
                    double *ls_out, int nth) noexcept nogil:
    """LONG_ROW_SPLIT: one long row split into nth segments reduced (and
    written) in parallel."""
    cdef Py_ssize_t seg = (n + nth - 1) // nth
    cdef Py_ssize_t s, start, length
    cdef csm_lse_state *st = <csm_lse_state *>malloc(nth * sizeof(csm_lse_state))
    cdef csm_lse_state acc
    cdef double mx, ls
    if st == NULL:
        _note_serial()
        _rows_block(x, 1, n, n, scale, alpha, y, n, op, PATH_TWO_PASS, mx_out, ls_out)
        return
    for s in prange(nth, num_threads=nth, schedule='static'):
        if s == 0:
            _note_team()
        start = s * seg
        length = min(seg, n - start)
        if length > 0:
            _lse_rows(x + start, 1, length, length, scale, &st[s])
        else:
            st[s].max = -1.0 / 0.0
            st[s].count = 0.0
            st[s].rest = 0.0
    acc = st[0]
    for s in range(1, nth):
        csm_lse_merge(&acc, &st[s], scale)
    free(st)
    if floating is float:
        if op == OP_LSE and _merged_cancels(&acc, scale):
            # a float32 segment's rest is accurate to 2^-28.5 unless its own
            # LSE cancelled; the merged one may cancel where no segment's did
            # (log-probabilities: log 0.9 in one, log 0.1 spread over the
            # other -- 3e6 ULP): the row again on one thread, whose
            # reduction redoes a cancelling LSE in float64 (bits of 1 thread)
            _lse_rows(x, 1, n, n, scale, &acc)
    _tab.finalize(&acc, 1, scale, &mx, &ls)
    if op == OP_LSE:
        if y != NULL:
            _lse_final(&mx, &ls, 1, scale, y, 1)
        else:
            mx_out[0] = mx
            ls_out[0] = ls
        return
    for s in prange(nth, num_threads=nth, schedule='static'):
        start = s * seg
        length = min(seg, n - start)
        if length > 0:
            _write_rows(x + start, 1, length, length, scale, &mx, &ls, alpha,
                        y + start, length, op == OP_LOG_SOFTMAX)


cdef void _rows_run(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                    Py_ssize_t xrs, double scale, double alpha, floating *y,
                    Py_ssize_t yrs, const csm_plan *pl, double *mx_out,
                    double *ls_out) noexcept nogil:
    cdef int op = pl.op, path = pl.path, nth = pl.threads
    cdef Py_ssize_t per = pl.block, nblocks, b, r0, r
    if path == PATH_LONG_ROW_SPLIT:
        for r in range(rows):
            _long_row(x + r * xrs, n, scale, alpha,
                      (y + r * yrs) if y != NULL else y, op,
                      (mx_out + r) if mx_out != NULL else mx_out,
                      (ls_out + r) if ls_out != NULL else ls_out, nth)
        return
    nblocks = (rows + per - 1) // per
    if nth <= 1:
        # block by block here too: a block (<= BLOCK_BYTES of input) is
        # still in L1/L2 for its write pass, 64 rows of 32000 would not be
        _note_serial()
        for b in range(nblocks):
            r0 = b * per
            if op == OP_LSE and y == NULL:
                _rows_block(x + r0 * xrs, min(per, rows - r0), n, xrs, scale,
                            alpha, y, yrs, op, path, mx_out + r0, ls_out + r0)
            else:
                _rows_block(x + r0 * xrs, min(per, rows - r0), n, xrs, scale,
                            alpha, y + r0 * yrs, yrs, op, path, mx_out, ls_out)
        return
    for b in prange(nblocks, num_threads=nth, schedule='static'):
        if b == 0:
            _note_team()
        r0 = b * per
        if y == NULL:       # OP_LSE into mx_out / ls_out
            _rows_block(x + r0 * xrs, min(per, rows - r0), n, xrs, scale, alpha,
                        y, yrs, op, path, mx_out + r0, ls_out + r0)
        else:
            _rows_block(x + r0 * xrs, min(per, rows - r0), n, xrs, scale, alpha,
                        y + r0 * yrs, yrs, op, path, mx_out, ls_out)


cdef void _cols_block(const floating *x, Py_ssize_t cols, Py_ssize_t n,
                      Py_ssize_t xrs, double scale, double alpha, floating *y,
                      Py_ssize_t yrs, int op, int path, double *mx_out,
                      double *ls_out) noexcept nogil:
    """COLS_TILED (float32 softmax / log_softmax: the tiled kernels) or
    COLS_BLOCKS (lse_cols + finalize + write) on up to COL_BLOCK columns
    (FUSED_COL_BLOCK tiled)."""
    cdef csm_lse_state st[COL_BLOCK]
    cdef double mx[COL_BLOCK]
    cdef double ls[COL_BLOCK]
    if floating is float:
        if path == PATH_COLS_TILED:
            if op == OP_SOFTMAX:
                _tab.softmax_fused_cols_f32(x, cols, n, xrs, scale, alpha, y, yrs)
            else:
                _tab.log_softmax_tiled_cols_f32(x, cols, n, xrs, scale, alpha, y, yrs)
            return
    _lse_cols(x, cols, n, xrs, scale, st)
    if op == OP_LSE and y != NULL:      # cols_lse: the result itself
        _tab.finalize(st, cols, scale, mx, ls)
        _lse_final(mx, ls, cols, scale, y, 1)
    elif op == OP_LSE:
        _tab.finalize(st, cols, scale, mx_out, ls_out)
    else:
        _tab.finalize(st, cols, scale, mx, ls)
        _write_cols(x, cols, n, xrs, scale, mx, ls, alpha, y, yrs, op == OP_LOG_SOFTMAX)


cdef inline floating *_at(floating *p, Py_ssize_t k) noexcept nogil:
    """p + k, NULL for NULL (an absent output stays absent: OP_LSE tells its
    two outputs apart by y == NULL)."""
    return p + k if p != NULL else p


cdef inline double *_atd(double *p, Py_ssize_t k) noexcept nogil:
    return p + k if p != NULL else p


cdef void _cols_run(const floating *x, Py_ssize_t outer, Py_ssize_t n,
                    Py_ssize_t inner, Py_ssize_t xos, Py_ssize_t xrs,
                    double scale, double alpha, floating *y, Py_ssize_t yos,
                    Py_ssize_t yrs, const csm_plan *pl, double *mx_out,
                    double *ls_out) noexcept nogil:
    # units of pl.block columns (wide for the tiled float32 kernels: they
    # copy them through a tile themselves)
    cdef int op = pl.op, path = pl.path, nth = pl.threads
    cdef Py_ssize_t cb = pl.block
    cdef Py_ssize_t nb = (inner + cb - 1) // cb
    cdef Py_ssize_t units = outer * nb, u, o, j0
    if nth <= 1:
        _note_serial()
        csm_set_stream_stores(pl.stream)
        for u in range(units):
            o = u // nb
            j0 = (u % nb) * cb
            _cols_block(x + o * xos + j0, min(cb, inner - j0), n, xrs,
                        scale, alpha, _at(y, o * yos + j0), yrs, op, path,
                        _atd(mx_out, o * inner + j0), _atd(ls_out, o * inner + j0))
        return
    for u in prange(units, num_threads=nth, schedule='static'):
        if u == 0:
            _note_team()
        o = u // nb
        j0 = (u % nb) * cb
        csm_set_stream_stores(pl.stream)
        _cols_block(x + o * xos + j0, min(cb, inner - j0), n, xrs,
                    scale, alpha, _at(y, o * yos + j0), yrs, op, path,
                    _atd(mx_out, o * inner + j0), _atd(ls_out, o * inner + j0))

# --------------------------------------------------------------------------
# Python entry points (arguments already validated by the facade); each
# plans once, then runs the driver without the GIL

cdef inline Py_ssize_t _estride(cnp.ndarray a, int axis):
    return a.strides[axis] // a.itemsize


def _stream_hint_of(cnp.ndarray y):
    """_stream_hint for tests: 1 (streaming stores) unless y is fresh."""
    return _stream_hint(y)


cdef inline int _stream_hint(cnp.ndarray y) noexcept:
    """0 when the 3-D output y of a column path is fresh memory -- its middle
    page never written (a large new allocation) -- so that the column tile
    kernels write it with plain stores (see csm_set_stream_stores), else 1.
    One mincore call (Linux) per call."""
    cdef char *p = <char *>cnp.PyArray_DATA(y)
    if y.size == 0:
        return 1
    return csm_page_resident(p + (y.shape[0] // 2) * y.strides[0]
                             + (y.shape[1] // 2) * y.strides[1])


cdef inline csm_plan _plan_entry(int op, bint f64, int layout,
                                 Py_ssize_t rows, Py_ssize_t n,
                                 Py_ssize_t inner, int flags) noexcept:
    """The plan of an entry point's call (the caller raises on PATH_INVALID
    through _raise_plan); threads are those of _max_threads()."""
    global _last_op, _last_path
    cdef csm_plan p = _plan_call(op, f64, layout, rows, n, inner, flags, 0)
    _last_op = op
    _last_path = p.path
    return p


def rows_softmax(cnp.ndarray x, cnp.ndarray y, double scale, double alpha, bint log):
    """y[r, :] = softmax / log_softmax of x[r, :] (2-D, contiguous rows)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), yrs = _estride(y, 0)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef csm_plan pl
    if rows == 0 or n == 0:
        return
    pl = _plan_entry(OP_LOG_SOFTMAX if log else OP_SOFTMAX,
                     x.dtype.num != cnp.NPY_FLOAT, LAYOUT_ROWS, rows, n, 1,
                     PF_ALPHA1 if alpha == 1.0 else 0)
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _rows_run(<const float *>px, rows, n, xrs, scale, alpha,
                      <float *>py, yrs, &pl, NULL, NULL)
    else:
        with nogil:
            _rows_run(<const double *>px, rows, n, xrs, scale, alpha,
                      <double *>py, yrs, &pl, NULL, NULL)


def rows_reduce(cnp.ndarray x, double scale, cnp.ndarray out=None):
    """(max, log_sum) float64 arrays of length n_rows for a 2-D x; with
    `out` (contiguous, n_rows long, x's dtype) the result max + log_sum /
    scale written there instead (returns out)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0)
    cdef cnp.ndarray mx, ls
    cdef double *pm = NULL
    cdef double *pl = NULL
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *po = NULL
    cdef csm_plan p
    if out is None:
        mx = np.empty(rows, dtype=np.float64)
        ls = np.empty(rows, dtype=np.float64)
        pm = <double *>cnp.PyArray_DATA(mx)
        pl = <double *>cnp.PyArray_DATA(ls)
    else:
        _check_lse_out(x, out, rows)
        po = cnp.PyArray_DATA(out)
    if rows == 0:
        return (mx, ls) if out is None else out
    p = _plan_entry(OP_LSE, x.dtype.num != cnp.NPY_FLOAT, LAYOUT_ROWS, rows, n, 1,
                    PF_ALPHA1)
    if p.path == PATH_INVALID:
        _raise_plan(p)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _rows_run(<const float *>px, rows, n, xrs, scale, 1.0,
                      <float *>po, 1, &p, pm, pl)
    else:
        with nogil:
            _rows_run(<const double *>px, rows, n, xrs, scale, 1.0,
                      <double *>po, 1, &p, pm, pl)
    return (mx, ls) if out is None else out


cdef _check_lse_out(cnp.ndarray x, cnp.ndarray out, Py_ssize_t size):
    if (out.dtype != x.dtype or out.size != size
            or not (cnp.PyArray_FLAGS(out) & cnp.NPY_ARRAY_C_CONTIGUOUS)
            or not (cnp.PyArray_FLAGS(out) & cnp.NPY_ARRAY_WRITEABLE)):
        raise ValueError("the reduction's output must be a writeable contiguous "
                         f"array of {size} elements of dtype {x.dtype}")


def cols_softmax(cnp.ndarray x, cnp.ndarray y, double scale, double alpha, bint log):
    """Softmax along axis 1 of a 3-D x (outer, n, inner), inner contiguous."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t xos = _estride(x, 0), xrs = _estride(x, 1)
    cdef Py_ssize_t yos = _estride(y, 0), yrs = _estride(y, 1)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef csm_plan pl
    if outer == 0 or n == 0 or inner == 0:
        return
    pl = _plan_entry(OP_LOG_SOFTMAX if log else OP_SOFTMAX,
                     x.dtype.num != cnp.NPY_FLOAT, LAYOUT_COLS, outer, n, inner,
                     PF_ALPHA1 if alpha == 1.0 else 0)
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if pl.path == PATH_COLS_TILED:
        pl.stream = _stream_hint(y)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _cols_run(<const float *>px, outer, n, inner, xos, xrs, scale,
                      alpha, <float *>py, yos, yrs, &pl, NULL, NULL)
    else:
        with nogil:
            _cols_run(<const double *>px, outer, n, inner, xos, xrs, scale,
                      alpha, <double *>py, yos, yrs, &pl, NULL, NULL)


def cols_reduce(cnp.ndarray x, double scale, cnp.ndarray out=None):
    """(max, log_sum) float64 arrays of shape (outer, inner) for a 3-D x;
    with `out` (contiguous, outer x inner elements, x's dtype) the result
    max + log_sum / scale written there instead (returns out)."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t xos = _estride(x, 0), xrs = _estride(x, 1)
    cdef cnp.ndarray mx, ls
    cdef double *pm = NULL
    cdef double *pl = NULL
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *po = NULL
    cdef csm_plan p
    if out is None:
        mx = np.empty((outer, inner), dtype=np.float64)
        ls = np.empty((outer, inner), dtype=np.float64)
        pm = <double *>cnp.PyArray_DATA(mx)
        pl = <double *>cnp.PyArray_DATA(ls)
    else:
        _check_lse_out(x, out, outer * inner)
        po = cnp.PyArray_DATA(out)
    if outer == 0 or inner == 0:
        return (mx, ls) if out is None else out
    p = _plan_entry(OP_LSE, x.dtype.num != cnp.NPY_FLOAT, LAYOUT_COLS, outer, n, inner,
                    PF_ALPHA1)
    if p.path == PATH_INVALID:
        _raise_plan(p)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _cols_run(<const float *>px, outer, n, inner, xos, xrs, scale,
                      1.0, <float *>po, inner, 0, &p, pm, pl)
    else:
        with nogil:
            _cols_run(<const double *>px, outer, n, inner, xos, xrs, scale,
                      1.0, <double *>po, inner, 0, &p, pm, pl)
    return (mx, ls) if out is None else out


# --------------------------------------------------------------------------
# C-level API for other Cython extensions (declared in _core.pxd, exported
# through __pyx_capi__).  Serial on the calling thread, nogil, no allocation:
# callers put them inside their own prange loops.

cdef const csm_kernel_table *kernel_table() noexcept nogil:
    return _tab


cdef inline int _c_api_path(int op, bint f64, Py_ssize_t rows,
                            Py_ssize_t n) noexcept nogil:
    """The path of a C-level API call: the planner's, one thread (so never
    a long-row split), paths avoided by forced(...) skipped, forced paths
    not applied (no GIL to raise with)."""
    return _plan_natural(op, f64, LAYOUT_ROWS, rows, n, 1, PF_ALPHA1, 1)


cdef inline void _lse_out(const floating *x, Py_ssize_t n_rows, Py_ssize_t n,
                          Py_ssize_t rs, double scale, double *out) noexcept nogil:
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m, i
    cdef int path
    if n <= 0:
        for i in range(n_rows):
            out[i] = -1.0 / 0.0
        return
    path = _c_api_path(OP_LSE, floating is double, n_rows, n)
    while r0 < n_rows:
        m = min(ROW_BLOCK, n_rows - r0)
        if path == PATH_SMALL:
            _lse_small(x + r0 * rs, m, n, rs, scale, True, mx, ls)
        else:
            _lse_rows(x + r0 * rs, m, n, rs, scale, st)
            _tab.finalize(st, m, scale, mx, ls)
        for i in range(m):
            out[r0 + i] = scale * mx[i] + ls[i]
        r0 += m


cdef void lse_rows_f32(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                       Py_ssize_t row_stride, double scale,
                       double *out) noexcept nogil:
    _lse_out(x, n_rows, n, row_stride, scale, out)

cdef void lse_rows_f64(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                       Py_ssize_t row_stride, double scale,
                       double *out) noexcept nogil:
    _lse_out(x, n_rows, n, row_stride, scale, out)

cdef void softmax_rows_f32(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                           Py_ssize_t x_row_stride, double scale, float *y,
                           Py_ssize_t y_row_stride) noexcept nogil:
    if n_rows > 0 and n > 0:
        _rows_block(x, n_rows, n, x_row_stride, scale, 1.0, y, y_row_stride,
                    OP_SOFTMAX, _c_api_path(OP_SOFTMAX, False, n_rows, n),
                    NULL, NULL)

cdef void softmax_rows_f64(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                           Py_ssize_t x_row_stride, double scale, double *y,
                           Py_ssize_t y_row_stride) noexcept nogil:
    if n_rows > 0 and n > 0:
        _rows_block(x, n_rows, n, x_row_stride, scale, 1.0, y, y_row_stride,
                    OP_SOFTMAX, _c_api_path(OP_SOFTMAX, True, n_rows, n),
                    NULL, NULL)

cdef void log_softmax_rows_f32(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                               Py_ssize_t x_row_stride, double scale, float *y,
                               Py_ssize_t y_row_stride) noexcept nogil:
    if n_rows > 0 and n > 0:
        _rows_block(x, n_rows, n, x_row_stride, scale, 1.0, y, y_row_stride,
                    OP_LOG_SOFTMAX, _c_api_path(OP_LOG_SOFTMAX, False, n_rows, n),
                    NULL, NULL)

cdef void log_softmax_rows_f64(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                               Py_ssize_t x_row_stride, double scale, double *y,
                               Py_ssize_t y_row_stride) noexcept nogil:
    if n_rows > 0 and n > 0:
        _rows_block(x, n_rows, n, x_row_stride, scale, 1.0, y, y_row_stride,
                    OP_LOG_SOFTMAX, _c_api_path(OP_LOG_SOFTMAX, True, n_rows, n),
                    NULL, NULL)


cdef inline double _ce_row(const floating *x, Py_ssize_t n, Py_ssize_t target,
                           double scale, floating *grad,
                           double grad_scale) noexcept nogil:
    cdef csm_lse_state st
    cdef double mx, ls, dt
    if target < 0 or target >= n:
        return 0.0 / 0.0
    _lse_rows(x, 1, n, n, scale, &st)
    _tab.finalize(&st, 1, scale, &mx, &ls)
    dt = scale * (<double>x[target] - mx)       # read before grad may overwrite x
    if grad != NULL:
        _write_rows(x, 1, n, n, scale, &mx, &ls, grad_scale * scale, grad, n, False)
        grad[target] = <floating>(grad_scale * scale * c_expm1_(dt - ls))
    return ls - dt


cdef double cross_entropy_row_f32(const float *x, Py_ssize_t n, Py_ssize_t target,
                                  double scale, float *grad,
                                  double grad_scale) noexcept nogil:
    return _ce_row(x, n, target, scale, grad, grad_scale)

cdef double cross_entropy_row_f64(const double *x, Py_ssize_t n, Py_ssize_t target,
                                  double scale, double *grad,
                                  double grad_scale) noexcept nogil:
    return _ce_row(x, n, target, scale, grad, grad_scale)


# --------------------------------------------------------------------------
# weighted LogSumExp (scipy's `b=`): rare, so a plain float64 loop with libm

from libc.math cimport exp as c_exp, log as c_log, log1p as c_log1p, fabs, isfinite, isnan

def rows_weighted_lse(cnp.ndarray x, cnp.ndarray b):
    """log|sum_j b_ij exp(x_ij)| and its sign per row of C-contiguous float64
    (rows, n) arrays.  Entries with b == 0 are ignored.  The elements equal
    to the row max are summed apart (their b's, exactly) and combined with
    log1p, as in the unweighted kernels."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r, i
    cdef cnp.ndarray lse = np.empty(rows, dtype=np.float64)
    cdef cnp.ndarray sgn = np.empty(rows, dtype=np.float64)
    cdef const double *px = <const double *>cnp.PyArray_DATA(x)
    cdef const double *pb = <const double *>cnp.PyArray_DATA(b)
    cdef double *pl = <double *>cnp.PyArray_DATA(lse)
    cdef double *ps = <double *>cnp.PyArray_DATA(sgn)
    cdef double m, shift, smax, srest, s, v, w, res
    cdef bint bad
    with nogil:
        for r in range(rows):
            m = -1.0 / 0.0
            bad = False
            for i in range(n):
                w = pb[r * n + i]
                v = px[r * n + i]
                if isnan(w) or (w != 0 and isnan(v)):
                    bad = True
                elif w != 0 and v > m:
                    m = v
            if bad:
                pl[r] = 0.0 / 0.0
                ps[r] = 0.0 / 0.0
                continue
            shift = m if isfinite(m) else 0.0
            smax = 0.0
            srest = 0.0
            for i in range(n):
                w = pb[r * n + i]
                if w == 0:
                    continue
                v = px[r * n + i]
                if v == m and isfinite(m):
                    smax = smax + w
                else:
                    srest = srest + w * c_exp(v - shift)
            s = smax + srest
            if isnan(s):
                pl[r] = s
                ps[r] = s
                continue
            if smax != 0 and fabs(srest) <= fabs(smax) and srest / smax > -0.5:
                res = c_log(fabs(smax)) + c_log1p(srest / smax)
            else:
                res = c_log(fabs(s))
            pl[r] = res + shift
            ps[r] = 1.0 if s > 0 else (-1.0 if s < 0 else 0.0)
    return lse, sgn


# --------------------------------------------------------------------------
# losses (cross-entropy, backward ops, distillation, margins, sampling)

include "_losses.pxi"
include "_margin.pxi"
include "_half.pxi"
include "_masked.pxi"
include "_outcache.pxi"


# --------------------------------------------------------------------------
# write pass with an externally merged state (used by csoftmax.dask, whose
# (max, log_sum) come from a tree reduction over chunks of the class axis)

def rows_write(cnp.ndarray x, cnp.ndarray y, cnp.ndarray mx, cnp.ndarray ls,
               double scale, double alpha, bint log):
    """y[r, :] = alpha * softmax (or log_softmax) of scale * x[r, :] given the
    row's finalized state: LSE(scale * x[r]) = scale * mx[r] + ls[r].
    x, y: 2-D with contiguous rows, same dtype; mx, ls: contiguous float64.
    One thread (the caller parallelises across chunks)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), yrs = _estride(y, 0)
    cdef const double *pm = <const double *>cnp.PyArray_DATA(mx)
    cdef const double *pl = <const double *>cnp.PyArray_DATA(ls)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    if rows == 0 or n == 0:
        return
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _write_rows(<const float *>px, rows, n, xrs, scale, pm, pl, alpha,
                        <float *>py, yrs, log)
    else:
        with nogil:
            _write_rows(<const double *>px, rows, n, xrs, scale, pm, pl, alpha,
                        <double *>py, yrs, log)
