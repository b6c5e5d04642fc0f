# Cython loops of distillation / KL, margin-softmax family, softplus and
# sampling; included into _core.pyx.
#
# All functions take 2-D (rows, n) arrays whose rows are contiguous (any row
# stride) and whose arguments the facade (csoftmax._margin) has validated.
# Row reductions go through the kernel table (_lse_rows + finalize, SIMD);
# per-element work that is not a plain softmax runs here in float64 with
# libm.  Blocks of rows are spread over OpenMP threads with the GIL released;
# every row is computed independently, so results do not depend on the
# number of threads.

from libc.math cimport sqrt as c_sqrt, expm1 as c_expm1, cos as c_cos, sin as c_sin
from libc.stdint cimport uint64_t, int64_t

DEF TINY_SUM = 1e-250   # below this a row sum re-computed without the target
# (FLAT_CHUNK, the chunk of the element-wise loops: _plan.pxi)


cdef inline double _softplus1(double u) noexcept nogil:
    """log(1 + e^u), no overflow, no cancellation."""
    if u > 0:
        return u + c_log1p(c_exp(-u))
    return c_log1p(c_exp(u))


cdef inline double _sigmoid(double u) noexcept nogil:
    cdef double e
    if u >= 0:
        return 1.0 / (1.0 + c_exp(-u))
    e = c_exp(u)
    return e / (1.0 + e)


cdef inline Py_ssize_t _per_block(Py_ssize_t n, Py_ssize_t item) noexcept nogil:
    cdef Py_ssize_t per = BLOCK_BYTES // (max(n, 1) * item)
    return max(1, min(per, ROW_BLOCK))


cdef inline double _log_count_rest(double k, double r) noexcept nogil:
    """log(k + r) for k >= 0 (an exact count) and r >= 0, via log1p."""
    if k > 0:
        return c_log(k) + c_log1p(r / k)
    return c_log(r)


cdef void _state_without(const floating *x, Py_ssize_t n, Py_ssize_t y,
                         double scale, csm_lse_state *st) noexcept nogil:
    """Remove element y from the row's LSE state (in place).  When y was the
    only maximum and the remaining sum is too small to be trusted, the state
    of the row without y is recomputed.

    Too small: below TINY_SUM for float64 rows.  float32 rows: below 2^-20
    of the whole sum -- the SIMD float32 reductions are accurate relative to
    the whole sum (terms under the clamp are replaced by a value that is
    only "invisible next to the max"), so once a dominant target is removed
    what is left can be that junk (arcface m = 3, s = 64: a gradient e^8 too
    large).  The recompute runs the kernel on a copy of the row with the
    target at -inf (libm in float64 if the copy cannot be allocated)."""
    cdef double xy = x[y], m, v, k, rest
    cdef double total = st.count + st.rest
    cdef double tiny = total * 9.5367431640625e-07 if floating is float else TINY_SUM
    cdef Py_ssize_t j
    cdef floating *buf
    if st.max != st.max:
        return
    if xy == st.max:
        st.count -= 1.0
    else:
        st.rest -= c_exp(scale * (xy - st.max))
        if st.rest < 0.0:
            st.rest = 0.0
    if st.count > 0.0 or st.rest >= tiny or n <= 1:
        return
    if floating is float:
        buf = <floating *>malloc(n * sizeof(floating))
        if buf != NULL:
            memcpy(buf, x, n * sizeof(floating))
            buf[y] = -1.0 / 0.0
            _lse_rows(<const floating *>buf, 1, n, n, scale, st)
            free(buf)
            return
    m = -1.0 / 0.0
    for j in range(n):
        if j != y and x[j] > m:
            m = x[j]
    k = 0.0
    rest = 0.0
    if m > -1.0 / 0.0:
        for j in range(n):
            if j == y:
                continue
            v = x[j]
            if v == m:
                k += 1.0
            else:
                rest += c_exp(scale * (v - m))
    st.max = m
    st.count = k
    st.rest = rest


# --------------------------------------------------------------------------
# knowledge distillation and KL divergence

cdef void _distill_block(const floating *s, const floating *t, Py_ssize_t rows,
                         Py_ssize_t n, Py_ssize_t srs, Py_ssize_t trs,
                         double scale, double t2, double gscale, floating *g,
                         Py_ssize_t grs, double *loss) noexcept nogil:
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double ms[ROW_BLOCK]
    cdef double lss[ROW_BLOCK]
    cdef double mt[ROW_BLOCK]
    cdef double lst[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m, r, j
    cdef const floating *sr
    cdef const floating *tr
    cdef floating *gr
    cdef double acc, lpt, lps, pt
    while r0 < rows:
        m = min(ROW_BLOCK, rows - r0)
        _lse_rows(s + r0 * srs, m, n, srs, scale, st)
        _tab.finalize(st, m, scale, ms, lss)
        _lse_rows(t + r0 * trs, m, n, trs, scale, st)
        _tab.finalize(st, m, scale, mt, lst)
        for r in range(m):
            sr = s + (r0 + r) * srs
            tr = t + (r0 + r) * trs
            acc = 0.0
            if g != NULL:
                gr = g + (r0 + r) * grs
                for j in range(n):
                    lpt = scale * (tr[j] - mt[r]) - lst[r]
                    lps = scale * (sr[j] - ms[r]) - lss[r]
                    pt = c_exp(lpt)
                    if pt != 0.0:
                        acc = acc + pt * (lpt - lps)
                    gr[j] = <floating>(gscale * (c_exp(lps) - pt))
            else:
                for j in range(n):
                    lpt = scale * (tr[j] - mt[r]) - lst[r]
                    pt = c_exp(lpt)
                    if pt != 0.0:
                        acc = acc + pt * (lpt - (scale * (sr[j] - ms[r]) - lss[r]))
            loss[r0 + r] = t2 * acc
        r0 += m


def distill_rows(cnp.ndarray s, cnp.ndarray t, cnp.ndarray loss, object grad,
                 double temperature, double gscale):
    """Per-row T^2 KL(softmax(t/T) || softmax(s/T)) into loss (float64, rows);
    grad (same dtype as s, or None) = gscale * (p_s - p_t)."""
    cdef Py_ssize_t rows = s.shape[0], n = s.shape[1]
    cdef Py_ssize_t srs = _estride(s, 0), trs = _estride(t, 0), grs = 0
    cdef double scale = 1.0 / temperature, t2 = temperature * temperature
    cdef void *ps = cnp.PyArray_DATA(s)
    cdef void *pt = cnp.PyArray_DATA(t)
    cdef void *pg = NULL
    cdef double *pl = <double *>cnp.PyArray_DATA(loss)
    cdef Py_ssize_t per, nb, b, r0
    cdef int nth = _threads_for(rows * n)
    if grad is not None:
        pg = cnp.PyArray_DATA(<cnp.ndarray>grad)
        grs = _estride(<cnp.ndarray>grad, 0)
    if rows == 0:
        return
    per = _per_block(n, s.itemsize)
    nb = (rows + per - 1) // per
    if s.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _distill_block(<const float *>ps + r0 * srs, <const float *>pt + r0 * trs,
                               min(per, rows - r0), n, srs, trs, scale, t2, gscale,
                               <float *>pg + r0 * grs if pg != NULL else <float *>NULL,
                               grs, pl + r0)
    else:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _distill_block(<const double *>ps + r0 * srs, <const double *>pt + r0 * trs,
                               min(per, rows - r0), n, srs, trs, scale, t2, gscale,
                               <double *>pg + r0 * grs if pg != NULL else <double *>NULL,
                               grs, pl + r0)


cdef double _kl_chunk(const floating *a, const floating *b, Py_ssize_t n,
                      bint logt, floating *out) noexcept nogil:
    cdef double acc = 0.0, x, y, v
    cdef Py_ssize_t i
    for i in range(n):
        x = a[i]
        y = b[i]
        if logt:
            v = c_exp(y) * (y - x)
        elif y == 0.0:
            v = -(y * x)            # xlogy(0, 0) = 0; 0 * inf stays NaN
        else:
            v = y * c_log(y) - y * x
        if out != NULL:
            out[i] = <floating>v
        acc = acc + v
    return acc


def kl_flat(cnp.ndarray a, cnp.ndarray b, object out, bint log_target):
    """Element-wise KL terms of C-contiguous 1-D a (= log q), b (target) into
    out (or None); returns the float64 sum (fixed chunking: deterministic)."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t nch = (n + FLAT_CHUNK - 1) // FLAT_CHUNK, c, i0
    cdef cnp.ndarray part = np.zeros(max(nch, 1), dtype=np.float64)
    cdef double *pp = <double *>cnp.PyArray_DATA(part)
    cdef void *pa = cnp.PyArray_DATA(a)
    cdef void *pb = cnp.PyArray_DATA(b)
    cdef void *po = NULL
    cdef int nth = _threads_for(n)
    cdef double total = 0.0
    if out is not None:
        po = cnp.PyArray_DATA(<cnp.ndarray>out)
    if n == 0:
        return 0.0
    if a.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for c in prange(nch, num_threads=nth, schedule='static'):
                i0 = c * FLAT_CHUNK
                pp[c] = _kl_chunk(<const float *>pa + i0, <const float *>pb + i0,
                                  min(FLAT_CHUNK, n - i0), log_target,
                                  <float *>po + i0 if po != NULL else <float *>NULL)
    else:
        with nogil:
            for c in prange(nch, num_threads=nth, schedule='static'):
                i0 = c * FLAT_CHUNK
                pp[c] = _kl_chunk(<const double *>pa + i0, <const double *>pb + i0,
                                  min(FLAT_CHUNK, n - i0), log_target,
                                  <double *>po + i0 if po != NULL else <double *>NULL)
    for c in range(nch):
        total += pp[c]
    return total


# --------------------------------------------------------------------------
# softplus (element-wise)

cdef void _softplus_chunk(const floating *x, Py_ssize_t n, double beta,
                          double threshold, floating *y) noexcept nogil:
    cdef Py_ssize_t i
    cdef double v, bv
    for i in range(n):
        v = x[i]
        bv = beta * v
        if bv > threshold:
            y[i] = <floating>v
        else:
            y[i] = <floating>(_softplus1(bv) / beta)


def softplus_flat(cnp.ndarray x, cnp.ndarray y, double beta, double threshold):
    """y = softplus(x) for C-contiguous 1-D x, y of the same dtype."""
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t nch = (n + FLAT_CHUNK - 1) // FLAT_CHUNK, c, i0
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef int nth = _threads_for(n)
    if n == 0:
        return
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for c in prange(nch, num_threads=nth, schedule='static'):
                i0 = c * FLAT_CHUNK
                _softplus_chunk(<const float *>px + i0, min(FLAT_CHUNK, n - i0),
                                beta, threshold, <float *>py + i0)
    else:
        with nogil:
            for c in prange(nch, num_threads=nth, schedule='static'):
                i0 = c * FLAT_CHUNK
                _softplus_chunk(<const double *>px + i0, min(FLAT_CHUNK, n - i0),
                                beta, threshold, <double *>py + i0)


# --------------------------------------------------------------------------
# margin-softmax family (NormFace / CosFace / ArcFace)

cdef struct _mparams:
    int kind          # 0 normface, 1 cosface, 2 arcface
    int easy          # margin only where cos > 0
    double s          # scale
    double m          # margin
    double cm         # cos m
    double sm         # sin m
    double th         # cos(pi - m) = -cos m
    double mm         # m * sin m


cdef inline double _mfun(double c, const _mparams *p, double *df) noexcept nogil:
    """Target logit / scale as a function of the target cosine, and its
    derivative d f / d c."""
    cdef double st
    df[0] = 1.0
    if p.kind == 0:
        return c
    if p.easy and not (c > 0.0):
        return c
    if p.kind == 1:
        return c - p.m
    if p.easy or c >= p.th:
        st = c_sqrt(max(0.0, 1.0 - c * c))
        if p.sm != 0.0:
            df[0] = p.cm + p.sm * c / st     # +inf at c = 1 (theta = 0)
        else:
            df[0] = p.cm
        return c * p.cm - st * p.sm
    return c - p.mm


cdef void _mlogits_block(const floating *c, const int64_t *tgt, Py_ssize_t rows,
                         Py_ssize_t n, Py_ssize_t crs, _mparams p, floating *z,
                         Py_ssize_t zrs) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef double df
    cdef const floating *cr
    cdef floating *zr
    for r in range(rows):
        cr = c + r * crs
        zr = z + r * zrs
        for j in range(n):
            zr[j] = <floating>(p.s * cr[j])
        zr[tgt[r]] = <floating>(p.s * _mfun(cr[tgt[r]], &p, &df))


cdef _mparams _make_mparams(int kind, double scale, double margin, bint easy):
    cdef _mparams p
    p.kind = kind
    p.easy = easy
    p.s = scale
    p.m = margin
    p.cm = c_cos(margin)
    p.sm = c_sin(margin)
    # cos(pi - m) = -cos m: cos of the rounded pi - m would move the
    # threshold by up to ~1e-16 (c = cos(pi - 0.5) took the fallback, and
    # for m = pi / 2 every |c| < 6e-17, c = 0 included)
    p.th = -p.cm
    p.mm = margin * p.sm
    return p


def margin_logits_rows(cnp.ndarray c, cnp.ndarray tgt, cnp.ndarray z, int kind,
                       double scale, double margin, bint easy):
    cdef Py_ssize_t rows = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t crs = _estride(c, 0), zrs = _estride(z, 0)
    cdef _mparams p = _make_mparams(kind, scale, margin, easy)
    cdef void *pc = cnp.PyArray_DATA(c)
    cdef void *pz = cnp.PyArray_DATA(z)
    cdef const int64_t *pt = <const int64_t *>cnp.PyArray_DATA(tgt)
    cdef Py_ssize_t per = _per_block(n, c.itemsize), nb, b, r0
    cdef int nth = _threads_for(rows * n)
    if rows == 0 or n == 0:
        return
    nb = (rows + per - 1) // per
    if c.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _mlogits_block(<const float *>pc + r0 * crs, pt + r0, min(per, rows - r0),
                               n, crs, p, <float *>pz + r0 * zrs, zrs)
    else:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _mlogits_block(<const double *>pc + r0 * crs, pt + r0, min(per, rows - r0),
                               n, crs, p, <double *>pz + r0 * zrs, zrs)


cdef void _mce_block(const floating *c, const int64_t *tgt, Py_ssize_t rows,
                     Py_ssize_t n, Py_ssize_t crs, _mparams p, double gscale,
                     floating *g, Py_ssize_t grs, double *loss) noexcept nogil:
    """Loss  = log(1 + Q),  Q = sum_{j != y} exp(s c_j - s f(c_y)),
    computed as softplus(log Q) with log Q = log(count + rest) + s (M - f)
    from the kernel's LSE state of s*c with the target removed.
    Gradient: s p_j (j != y), s (p_y - 1) f'(c_y) = s expm1(-loss) f'(c_y)."""
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef double dfs[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m, r, y
    cdef double f, df, lq, l, s = p.s
    cdef const floating *cr
    while r0 < rows:
        m = min(ROW_BLOCK, rows - r0)
        _lse_rows(c + r0 * crs, m, n, crs, s, st)
        for r in range(m):
            cr = c + (r0 + r) * crs
            y = tgt[r0 + r]
            f = _mfun(cr[y], &p, &df)
            _state_without(cr, n, y, s, &st[r])
            lq = _log_count_rest(st[r].count, st[r].rest) + s * (st[r].max - f)
            l = _softplus1(lq)
            loss[r0 + r] = l
            # LSE(z) = s f + l = s max + ls
            mx[r] = st[r].max
            ls[r] = l - s * (st[r].max - f)
            if mx[r] == -1.0 / 0.0:      # single class: nothing but the target
                mx[r] = cr[y]
                ls[r] = l - s * (cr[y] - f)
            dfs[r] = df
        if g != NULL:
            _write_rows(c + r0 * crs, m, n, crs, s, mx, ls, gscale * s,
                        g + r0 * grs, grs, False)
            for r in range(m):
                y = tgt[r0 + r]
                g[(r0 + r) * grs + y] = <floating>(
                    gscale * s * c_expm1(-loss[r0 + r]) * dfs[r])
        r0 += m


def margin_ce_rows(cnp.ndarray c, cnp.ndarray tgt, cnp.ndarray loss, object grad,
                   int kind, double scale, double margin, bint easy, double gscale):
    cdef Py_ssize_t rows = c.shape[0], n = c.shape[1]
    cdef Py_ssize_t crs = _estride(c, 0), grs = 0
    cdef _mparams p = _make_mparams(kind, scale, margin, easy)
    cdef void *pc = cnp.PyArray_DATA(c)
    cdef void *pg = NULL
    cdef const int64_t *pt = <const int64_t *>cnp.PyArray_DATA(tgt)
    cdef double *pl = <double *>cnp.PyArray_DATA(loss)
    cdef Py_ssize_t per = _per_block(n, c.itemsize), nb, b, r0
    cdef int nth = _threads_for(rows * n)
    if grad is not None:
        pg = cnp.PyArray_DATA(<cnp.ndarray>grad)
        grs = _estride(<cnp.ndarray>grad, 0)
    if rows == 0 or n == 0:
        return
    nb = (rows + per - 1) // per
    if c.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _mce_block(<const float *>pc + r0 * crs, pt + r0, min(per, rows - r0),
                           n, crs, p, gscale,
                           <float *>pg + r0 * grs if pg != NULL else <float *>NULL,
                           grs, pl + r0)
    else:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _mce_block(<const double *>pc + r0 * crs, pt + r0, min(per, rows - r0),
                           n, crs, p, gscale,
                           <double *>pg + r0 * grs if pg != NULL else <double *>NULL,
                           grs, pl + r0)


# --------------------------------------------------------------------------
# smooth multi-class hinge: softplus(LSE_{j != y} x_j - x_y + margin)

cdef void _hinge_block(const floating *x, const int64_t *tgt, Py_ssize_t rows,
                       Py_ssize_t n, Py_ssize_t xrs, double margin, double gscale,
                       floating *g, Py_ssize_t grs, double *loss) noexcept nogil:
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef double sg[ROW_BLOCK]
    cdef double al[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m, r, y, j
    cdef double lo, u, em, E
    cdef const floating *xr
    cdef floating *gr
    while r0 < rows:
        m = min(ROW_BLOCK, rows - r0)
        _lse_rows(x + r0 * xrs, m, n, xrs, 1.0, st)
        for r in range(m):
            xr = x + (r0 + r) * xrs
            y = tgt[r0 + r]
            _state_without(xr, n, y, 1.0, &st[r])
            if st[r].count == 0.0 and st[r].max == <double>xr[y]:
                # the target was the only maximum: the state of the others is
                # R = sum_{j != y} exp(x_j - x_y), so e^u = R e^m exactly --
                # no round trip through log R (|log R| ulps of u: 1e-14
                # relative in loss and sigma for x_y 68 above the rest)
                em = c_exp(margin)
                E = st[r].rest * em
                if isfinite(E):
                    mx[r] = st[r].max
                    loss[r0 + r] = c_log1p(E)
                    sg[r] = E / (1.0 + E)
                    # sigma(u) q_j = exp(x_j - x_y) e^m / (1 + E)
                    ls[r] = 0.0
                    al[r] = em / (1.0 + E)
                    continue
            lo = _log_count_rest(st[r].count, st[r].rest)
            if st[r].max == -1.0 / 0.0:
                lo = -1.0 / 0.0          # no other class with nonzero weight
                mx[r] = 0.0
            else:
                mx[r] = st[r].max
            u = mx[r] + lo - xr[y] + margin
            loss[r0 + r] = _softplus1(u)
            ls[r] = lo
            sg[r] = _sigmoid(u)
            al[r] = sg[r]
        if g != NULL:
            for r in range(m):
                gr = g + (r0 + r) * grs
                if ls[r] == -1.0 / 0.0:
                    for j in range(n):
                        gr[j] = 0
                else:
                    _write_rows(x + (r0 + r) * xrs, 1, n, xrs, 1.0, &mx[r], &ls[r],
                                gscale * al[r], gr, grs, False)
                y = tgt[r0 + r]
                gr[y] = <floating>(-gscale * sg[r])
        r0 += m


def soft_hinge_rows(cnp.ndarray x, cnp.ndarray tgt, cnp.ndarray loss, object grad,
                    double margin, double gscale):
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), grs = 0
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *pg = NULL
    cdef const int64_t *pt = <const int64_t *>cnp.PyArray_DATA(tgt)
    cdef double *pl = <double *>cnp.PyArray_DATA(loss)
    cdef Py_ssize_t per = _per_block(n, x.itemsize), nb, b, r0
    cdef int nth = _threads_for(rows * n)
    if grad is not None:
        pg = cnp.PyArray_DATA(<cnp.ndarray>grad)
        grs = _estride(<cnp.ndarray>grad, 0)
    if rows == 0 or n == 0:
        return
    nb = (rows + per - 1) // per
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _hinge_block(<const float *>px + r0 * xrs, pt + r0, min(per, rows - r0),
                             n, xrs, margin, gscale,
                             <float *>pg + r0 * grs if pg != NULL else <float *>NULL,
                             grs, pl + r0)
    else:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _hinge_block(<const double *>px + r0 * xrs, pt + r0, min(per, rows - r0),
                             n, xrs, margin, gscale,
                             <double *>pg + r0 * grs if pg != NULL else <double *>NULL,
                             grs, pl + r0)


# --------------------------------------------------------------------------
# sampling: one class per row from softmax(x / T) restricted to the top k

cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    # splitmix64 finaliser (Steele, Lea & Flood 2014)
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline double _row_uniform(uint64_t key, uint64_t row) noexcept nogil:
    """Counter-based uniform in [0, 1) for (key, row): two splitmix64 rounds
    of the Weyl sequence, 53 random bits.  Depends only on (key, row)."""
    cdef uint64_t z = _mix64(key + (row + 1) * <uint64_t>0x9E3779B97F4A7C15ULL)
    z = _mix64(z ^ key)
    return <double>(z >> 11) * (1.0 / 9007199254740992.0)


cdef double _kth_largest(double *a, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """k-th largest (k >= 1) of a[0:n] by quickselect (reorders a)."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, mid, want = k - 1
    cdef double piv, t
    while lo < hi:
        mid = lo + (hi - lo) // 2
        # median of three, descending order
        if a[mid] > a[lo]:
            t = a[mid]; a[mid] = a[lo]; a[lo] = t
        if a[hi] > a[lo]:
            t = a[hi]; a[hi] = a[lo]; a[lo] = t
        if a[hi] > a[mid]:
            t = a[hi]; a[hi] = a[mid]; a[mid] = t
        piv = a[mid]
        i = lo
        j = hi
        while i <= j:
            while a[i] > piv:
                i += 1
            while a[j] < piv:
                j -= 1
            if i <= j:
                t = a[i]; a[i] = a[j]; a[j] = t
                i += 1
                j -= 1
        if want <= j:
            hi = j
        elif want >= i:
            lo = i
        else:
            return a[want]
    return a[want]


cdef void _sample_block(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                        Py_ssize_t xrs, Py_ssize_t row0, double scale,
                        Py_ssize_t top_k, uint64_t key, int64_t *out,
                        signed char *err) noexcept nogil:
    """err codes: 0 ok, 1 NaN in row, 2 +inf in row (T > 0), 3 all -inf,
    4 out of memory."""
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef floating *p = NULL
    cdef double *sel = NULL
    cdef Py_ssize_t r0 = 0, m, r, j, best, last, neq
    cdef double v, kth, total, acc, target, bv
    cdef const floating *xr
    cdef bint argmax = scale == 0.0
    if not argmax:
        p = <floating *>malloc(n * sizeof(floating))
        if top_k > 0:
            sel = <double *>malloc(n * sizeof(double))
        if p == NULL or (top_k > 0 and sel == NULL):
            for r in range(rows):
                err[r] = 4
            free(p)
            free(sel)
            return
    while r0 < rows:
        m = min(ROW_BLOCK, rows - r0)
        if argmax:
            for r in range(m):
                xr = x + (r0 + r) * xrs
                best = 0
                bv = xr[0]
                err[r0 + r] = 1 if bv != bv else 0
                for j in range(1, n):
                    v = xr[j]
                    if v != v:
                        err[r0 + r] = 1
                    elif v > bv or bv != bv:
                        bv = v
                        best = j
                if err[r0 + r] == 0 and bv == -1.0 / 0.0:
                    err[r0 + r] = 3
                out[r0 + r] = best
            r0 += m
            continue
        _lse_rows(x + r0 * xrs, m, n, xrs, scale, st)
        _tab.finalize(st, m, scale, mx, ls)
        for r in range(m):
            out[r0 + r] = 0
            if mx[r] != mx[r]:
                err[r0 + r] = 1
                continue
            if mx[r] == 1.0 / 0.0:
                err[r0 + r] = 2
                continue
            if mx[r] == -1.0 / 0.0:
                err[r0 + r] = 3
                continue
            err[r0 + r] = 0
            xr = x + (r0 + r) * xrs
            _write_rows(xr, 1, n, n, scale, &mx[r], &ls[r], 1.0, p, n, False)
            if top_k > 0 and top_k < n:
                for j in range(n):
                    sel[j] = xr[j]
                kth = _kth_largest(sel, n, top_k)
                neq = top_k
                for j in range(n):
                    if xr[j] > kth:
                        neq -= 1
                # keep the entries > kth and the first `neq` entries == kth
                for j in range(n):
                    v = xr[j]
                    if v < kth:
                        p[j] = 0
                    elif v == kth:
                        if neq > 0:
                            neq -= 1
                        else:
                            p[j] = 0
            total = 0.0
            last = 0
            for j in range(n):
                total = total + p[j]
                if p[j] > 0:
                    last = j
            target = _row_uniform(key, <uint64_t>(row0 + r0 + r)) * total
            acc = 0.0
            best = last
            for j in range(n):
                acc = acc + p[j]
                if acc > target:
                    best = j
                    break
            out[r0 + r] = best
        r0 += m
    free(p)
    free(sel)


def sample_rows(cnp.ndarray x, cnp.ndarray out, cnp.ndarray err, double scale,
                Py_ssize_t top_k, uint64_t key):
    """out[r] = class drawn for row r of 2-D x (scale = 1/T, 0 = argmax;
    top_k = 0 for all classes); err[r] = error code (see _sample_block)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef int64_t *po = <int64_t *>cnp.PyArray_DATA(out)
    cdef signed char *pe = <signed char *>cnp.PyArray_DATA(err)
    cdef Py_ssize_t per = _per_block(n, x.itemsize), nb, b, r0
    cdef int nth = _threads_for(rows * n)
    if rows == 0 or n == 0:
        return
    nb = (rows + per - 1) // per
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _sample_block(<const float *>px + r0 * xrs, min(per, rows - r0), n,
                              xrs, r0, scale, top_k, key, po + r0, pe + r0)
    else:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _sample_block(<const double *>px + r0 * xrs, min(per, rows - r0), n,
                              xrs, r0, scale, top_k, key, po + r0, pe + r0)


# --------------------------------------------------------------------------
# validation helper

cdef Py_ssize_t _first_abs_gt1(const floating *c, Py_ssize_t rows, Py_ssize_t n,
                               Py_ssize_t crs) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef bint bad
    cdef const floating *cr
    for r in range(rows):
        cr = c + r * crs
        bad = False
        for j in range(n):          # branch-free scan, vectorisable
            bad = bad | (cr[j] > 1) | (cr[j] < -1)
        if bad:
            for j in range(n):
                if cr[j] > 1 or cr[j] < -1:
                    return r * n + j
    return -1


def first_abs_gt1(cnp.ndarray c):
    """Flat index (row * n + j) of the first entry of 2-D c with |c| > 1
    (NaN passes), or -1."""
    cdef Py_ssize_t rows = c.shape[0], n = c.shape[1], res
    cdef Py_ssize_t crs = _estride(c, 0)
    cdef void *pc = cnp.PyArray_DATA(c)
    if rows == 0 or n == 0:
        return -1
    if c.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            res = _first_abs_gt1(<const float *>pc, rows, n, crs)
    else:
        with nogil:
            res = _first_abs_gt1(<const double *>pc, rows, n, crs)
    return res
