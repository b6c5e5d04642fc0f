# Cython loops of the loss functions; included into _core.pyx so they share
# its kernel table, thread settings and block helpers.
#
# Fused cross-entropy (and logsumexp_backward, which is the same machinery
# with a per-sample scale instead of a loss):
#
#   1. reduction pass: the kernel table's lse_rows / lse_cols on a block of
#      samples (rows: <= 32 KiB of input; columns: 64 at a time), finalize
#      -> per-sample max and log_sum;
#   2. per-sample loss from the still-cached block (target element, or the
#      weighted sums needed by label smoothing / probability targets), and
#      the gradient coefficients a_s (of p), b_s (of the one-hot) -- all
#      before anything is written, so grad=logits works in place;
#   3. write pass: the softmax write kernel with the block's alpha; samples
#      whose a_s differs get log_sum shifted by log(a_s / alpha), so one
#      kernel call serves the whole block (float64: only by the log of the
#      ratio's mantissa, in [log 1/2, 0]; its power of two is applied
#      exactly in the fix-ups -- a shift by log(ratio) itself would cost
#      |log ratio| ulps of the exp argument, 1e-13 relative for a ratio of
#      1e-300);
#   4. fix-ups on the cached gradient block: sign and power-of-two scale
#      of the samples whose a_s differs; the target entry recomputed in
#      float64 from the saved log p_y (b*expm1(lp) + (a-b)*exp(lp): no
#      cancellation near p_y = 1), and for label smoothing / probability
#      targets a subtraction over the row.
#
# Short rows (C <= 32) with class targets and no label smoothing, and the
# scale-only mode, skip steps 1-4: the coefficients a_s come first (they do
# not depend on the row), and one ce_small kernel call per block writes
# a_s * softmax, the target entries a_s * expm1(log p_y) and log p_y, from
# which the loss follows (_ce_small_block).

from libc.math cimport expm1 as c_expm1, frexp as c_frexp, ldexp as c_ldexp

cdef struct _ce_par:
    Py_ssize_t C
    int mode              # CE_CLASS: class targets, CE_PROB: probability targets,
                          # CE_SCALE: scale only (logsumexp_backward)
    const long long *y    # CE_CLASS: class index per sample
    const double *w       # class weights (length C) or NULL
    double W              # sum of the weights (C without weights)
    double scale          # 1 / temperature
    double eps            # label smoothing
    double coef           # gradient factor: (1 / denominator) / temperature
    long long ignore      # ignore_index
    const double *dy      # CE_SCALE: per-sample upstream gradient
    double *loss          # per-sample loss (modes 0, 1)


cdef inline void _add_c(double *s, double *e, double x) noexcept nogil:
    """s + x by TwoSum: the sum in s, its rounding error added to e."""
    cdef double t = s[0] + x
    cdef double bp = t - s[0]
    e[0] = e[0] + ((s[0] - (t - bp)) + (x - bp))
    s[0] = t


cdef inline double _done_c(double s, double e) noexcept nogil:
    """A compensated sum's value: s + e, or s itself once it is not finite
    (an infinite term makes TwoSum's error inf - inf = NaN; -inf logits
    with label smoothing gave a NaN loss for +inf)."""
    return s + e if (s - s) == 0.0 else s


cdef inline double _total_c(double s0, double e0, double s1, double e1) noexcept nogil:
    cdef double e = e0 + e1
    _add_c(&s0, &e, s1)
    return _done_c(s0, e)


cdef inline double _sum_dev(const floating *xs, Py_ssize_t C, Py_ssize_t cs,
                            double m_, const double *w) noexcept nogil:
    """sum_c w_c (x_c - m) (w NULL: 1) in float64: four partial sums, so the
    additions pipeline instead of waiting on each other (a single running sum
    is bound by the add latency, ~1 ns per class).  float64 data: two
    compensated (TwoSum) partial sums instead, whose error does not grow
    with C -- plain sums broke float64's kappa = 2^-44 from about 2^11
    classes on (label smoothing, C = 19 084: 24 ULP beyond the bound)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    cdef Py_ssize_t c = 0
    if floating is double:
        while c + 2 <= C:
            _add_c(&s0, &s2, (w[c] if w != NULL else 1.0) * (xs[c * cs] - m_))
            _add_c(&s1, &s3, (w[c + 1] if w != NULL else 1.0) * (xs[(c + 1) * cs] - m_))
            c += 2
        if c < C:
            _add_c(&s0, &s2, (w[c] if w != NULL else 1.0) * (xs[c * cs] - m_))
        return _total_c(s0, s2, s1, s3)
    if w != NULL:
        while c + 4 <= C:
            s0 = s0 + w[c] * (<double>xs[c * cs] - m_)
            s1 = s1 + w[c + 1] * (<double>xs[(c + 1) * cs] - m_)
            s2 = s2 + w[c + 2] * (<double>xs[(c + 2) * cs] - m_)
            s3 = s3 + w[c + 3] * (<double>xs[(c + 3) * cs] - m_)
            c += 4
        while c < C:
            s0 = s0 + w[c] * (<double>xs[c * cs] - m_)
            c += 1
    else:
        while c + 4 <= C:
            s0 = s0 + (<double>xs[c * cs] - m_)
            s1 = s1 + (<double>xs[(c + 1) * cs] - m_)
            s2 = s2 + (<double>xs[(c + 2) * cs] - m_)
            s3 = s3 + (<double>xs[(c + 3) * cs] - m_)
            c += 4
        while c < C:
            s0 = s0 + (<double>xs[c * cs] - m_)
            c += 1
    return (s0 + s1) + (s2 + s3)


cdef inline double _sum_wq(const floating *xs, const floating *qs, Py_ssize_t C,
                           Py_ssize_t cs, Py_ssize_t qcs, double m_,
                           const double *w, double c1, double c0,
                           double *B) noexcept nogil:
    """A = sum_c w_c q'_c and B = sum_c w_c q'_c (x_c - m), q' = c1 q + c0
    (w NULL: 1), in float64 with four partial sums each (see _sum_dev;
    float64 data: compensated sums, probability targets at C = 200 000
    were 12x beyond kappa = 2^-44 with plain ones)."""
    cdef double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0
    cdef double b0 = 0.0, b1 = 0.0, b2 = 0.0, b3 = 0.0
    cdef double u0, u1, u2, u3
    cdef Py_ssize_t c = 0
    if floating is double:
        while c < C:
            u0 = c1 * qs[c * qcs] + c0
            if w != NULL:
                u0 = w[c] * u0
            _add_c(&a0, &a1, u0)
            _add_c(&b0, &b1, u0 * (xs[c * cs] - m_))
            c += 1
        B[0] = _done_c(b0, b1)
        return _done_c(a0, a1)
    if w != NULL:
        while c + 4 <= C:
            u0 = w[c] * (c1 * <double>qs[(c) * qcs] + c0)
            u1 = w[c + 1] * (c1 * <double>qs[(c + 1) * qcs] + c0)
            u2 = w[c + 2] * (c1 * <double>qs[(c + 2) * qcs] + c0)
            u3 = w[c + 3] * (c1 * <double>qs[(c + 3) * qcs] + c0)
            a0 = a0 + u0
            b0 = b0 + u0 * (<double>xs[(c) * cs] - m_)
            a1 = a1 + u1
            b1 = b1 + u1 * (<double>xs[(c + 1) * cs] - m_)
            a2 = a2 + u2
            b2 = b2 + u2 * (<double>xs[(c + 2) * cs] - m_)
            a3 = a3 + u3
            b3 = b3 + u3 * (<double>xs[(c + 3) * cs] - m_)
            c += 4
    else:
        while c + 4 <= C:
            u0 = (c1 * <double>qs[(c) * qcs] + c0)
            u1 = (c1 * <double>qs[(c + 1) * qcs] + c0)
            u2 = (c1 * <double>qs[(c + 2) * qcs] + c0)
            u3 = (c1 * <double>qs[(c + 3) * qcs] + c0)
            a0 = a0 + u0
            b0 = b0 + u0 * (<double>xs[(c) * cs] - m_)
            a1 = a1 + u1
            b1 = b1 + u1 * (<double>xs[(c + 1) * cs] - m_)
            a2 = a2 + u2
            b2 = b2 + u2 * (<double>xs[(c + 2) * cs] - m_)
            a3 = a3 + u3
            b3 = b3 + u3 * (<double>xs[(c + 3) * cs] - m_)
            c += 4
    while c < C:
        u0 = c1 * <double>qs[c * qcs] + c0
        if w != NULL:
            u0 = w[c] * u0
        a0 = a0 + u0
        b0 = b0 + u0 * (<double>xs[c * cs] - m_)
        c += 1
    B[0] = (b0 + b1) + (b2 + b3)
    return (a0 + a1) + (a2 + a3)


cdef void _ce_sums_cols(const floating *x, Py_ssize_t m, Py_ssize_t xrs,
                        const floating *q, Py_ssize_t qrs, const double *mx,
                        const _ce_par *p, double *sA, double *sB) noexcept nogil:
    """The per-sample sums of _ce_samples for m <= 64 samples that are
    columns (class c of sample k at x[c * xrs + k]): probability targets
    _sum_wq (sA, sB), label smoothing _sum_dev (sB).  One pass along each
    class row over the samples, which the compiler vectorises, instead of
    a strided walk down each column; per sample the same partial sums
    (class c into partial c % 4 below the last multiple of 4, the rest into
    partial 0) and the same operations, so the same bits."""
    cdef double pa[4][64]
    cdef double pb[4][64]
    cdef Py_ssize_t C = p.C, C4 = C - C % 4, c, k, j
    cdef bint prob = p.mode == CE_PROB
    cdef double c1 = 1.0 - p.eps, c0 = p.eps / C, wc, u
    cdef const floating *xr
    cdef const floating *qr
    for j in range(4):
        for k in range(m):
            pa[j][k] = 0.0
            pb[j][k] = 0.0
    if floating is double:
        # the compensated sums of _sum_wq / _sum_dev for float64 data, in
        # their order: probabilities one (sum, error) pair each, smoothing
        # even / odd classes in two pairs
        for c in range(C):
            xr = x + c * xrs
            wc = p.w[c] if p.w != NULL else 1.0
            if prob:
                qr = q + c * qrs
                for k in range(m):
                    u = wc * (c1 * qr[k] + c0)
                    _add_c(&pa[0][k], &pa[1][k], u)
                    _add_c(&pb[0][k], &pb[1][k], u * (xr[k] - mx[k]))
            else:
                j = c & 1
                for k in range(m):
                    _add_c(&pb[j][k], &pb[j + 2][k], wc * (xr[k] - mx[k]))
        for k in range(m):
            if prob:
                sA[k] = _done_c(pa[0][k], pa[1][k])
                sB[k] = _done_c(pb[0][k], pb[1][k])
            else:
                sB[k] = _total_c(pb[0][k], pb[2][k], pb[1][k], pb[3][k])
        return
    for c in range(C):
        j = (c & 3) if c < C4 else 0
        xr = x + c * xrs
        wc = p.w[c] if p.w != NULL else 1.0
        if prob:
            qr = q + c * qrs
            for k in range(m):
                u = wc * (c1 * <double>qr[k] + c0)
                pa[j][k] = pa[j][k] + u
                pb[j][k] = pb[j][k] + u * (<double>xr[k] - mx[k])
        else:
            for k in range(m):
                pb[j][k] = pb[j][k] + wc * (<double>xr[k] - mx[k])
    for k in range(m):
        sB[k] = (pb[0][k] + pb[1][k]) + (pb[2][k] + pb[3][k])
        if prob:
            sA[k] = (pa[0][k] + pa[1][k]) + (pa[2][k] + pa[3][k])


cdef void _ce_samples(const floating *xb, Py_ssize_t m, Py_ssize_t ks,
                      Py_ssize_t cs, const floating *qb, Py_ssize_t qks,
                      Py_ssize_t qcs, Py_ssize_t s0, const double *mx,
                      const double *ls, const _ce_par *p, double *a,
                      double *lpy, char *flag, const double *sA,
                      const double *sB) noexcept nogil:
    """Loss and gradient coefficient a_s of samples s0..s0+m-1.  Sample k
    has class c at xb[k*ks + c*cs] (q likewise).  flag: 0 normal, 3 ignored.
    sA, sB: the soft targets' sums of sample k (_ce_soft_sums), or NULL to
    form them here."""
    cdef Py_ssize_t k, c, C = p.C
    cdef const floating *xs
    cdef const floating *qs
    cdef long long yi
    cdef double wy, lp, L, S, A, B, m_, eps = p.eps
    # class targets without smoothing (the common case): the parameters in
    # locals (the loss stores through a double * could alias *p, so the
    # general loop reloads them per sample); the same formulas
    cdef const long long *ys
    cdef const double *ws
    cdef double *loss
    cdef double sc, coef, aw
    cdef long long ign
    if p.mode == CE_CLASS and eps == 0.0:
        ys = p.y + s0
        ws = p.w
        loss = p.loss + s0
        sc = p.scale
        coef = p.coef
        aw = eps * p.W / C
        ign = p.ignore
        for k in range(m):
            yi = ys[k]
            if yi == ign:
                loss[k] = 0.0
                a[k] = 0.0
                lpy[k] = 0.0
                flag[k] = 3
                continue
            wy = ws[yi] if ws != NULL else 1.0
            lp = sc * (<double>xb[k * ks + yi * cs] - mx[k]) - ls[k]
            lpy[k] = lp
            flag[k] = 0
            loss[k] = -(1.0 - eps) * wy * lp
            a[k] = coef * ((1.0 - eps) * wy + aw)
        return
    for k in range(m):
        xs = xb + k * ks
        m_ = mx[k]
        flag[k] = 0
        lpy[k] = 0.0
        if p.mode == CE_SCALE:
            a[k] = p.dy[s0 + k]
            continue
        if p.mode == CE_CLASS:
            yi = p.y[s0 + k]
            if yi == p.ignore:
                p.loss[s0 + k] = 0.0
                a[k] = 0.0
                flag[k] = 3
                continue
            wy = p.w[yi] if p.w != NULL else 1.0
            lp = p.scale * (<double>xs[yi * cs] - m_) - ls[k]
            lpy[k] = lp
            L = -(1.0 - eps) * wy * lp
            if eps != 0.0:
                S = sB[k] if sB != NULL else _sum_dev(xs, C, cs, m_, p.w)
                L = L + eps / C * (p.W * ls[k] - p.scale * S)
            p.loss[s0 + k] = L
            a[k] = p.coef * ((1.0 - eps) * wy + eps * p.W / C)
        else:
            qs = qb + k * qks
            if sA != NULL:
                A = sA[k]
                B = sB[k]
            else:
                A = _sum_wq(xs, qs, C, cs, qcs, m_, p.w, 1.0 - eps, eps / C, &B)
            p.loss[s0 + k] = A * ls[k] - p.scale * B
            a[k] = p.coef * A


cdef double _ce_prepare(Py_ssize_t m, const double *a, double *ls,
                        char *flag, int *ex, bint split,
                        bint cols=False) noexcept nogil:
    """Block alpha for the write kernel; shifts log_sum of the samples whose
    coefficient differs.  flag: 1 = write zeros, 2 = negate after write,
    4 / 5 = a non-finite coefficient (the kernel writes +p / -p, the fix-up
    multiplies by it).
    The fix-up zeroes the samples of flag 1 and 3 (ignored); rows also get
    log_sum = inf, columns keep theirs (a column kernel writes a group of
    lanes with an infinite log_sum by its general code).
    split (float64 output): the ratio a_k / alpha = f * 2^ex[k] with f in
    (1/2, 1]; log_sum is shifted by log f only and the fix-up multiplies by
    2^ex[k] (exact), so the exp argument keeps its accuracy however far
    apart the coefficients are.  ex[k] = 0 otherwise (float32 blocks whose
    coefficients are too far apart for one alpha are written a sample at a
    time, _ce_far).  Returns alpha."""
    cdef double aref = 0.0, r, fref = 0.0
    cdef Py_ssize_t k
    cdef int eref = 0, e
    # every sample the same finite nonzero coefficient (class targets without
    # weights): alpha is that coefficient, nothing shifts (as below)
    aref = a[0] if m > 0 else 0.0
    if aref != 0.0 and isfinite(aref):
        k = 0
        while k < m and a[k] == aref and flag[k] == 0:
            k += 1
        if k == m:
            memset(ex, 0, m * sizeof(int))
            return aref
    aref = 0.0
    # the largest finite coefficient: every ratio is then <= 1 in magnitude, so
    # a subnormal coefficient cannot make another row's ratio overflow
    for k in range(m):
        if flag[k] != 3 and a[k] != 0.0 and isfinite(a[k]) and fabs(a[k]) > fabs(aref):
            aref = a[k]
    if aref == 0.0:
        aref = 1.0
    if split:
        fref = c_frexp(aref, &eref)
    for k in range(m):
        ex[k] = 0
        if flag[k] == 3:
            if not cols:
                ls[k] = 1.0 / 0.0
            continue
        if not isfinite(a[k]):
            # NaN or +-inf (an upstream gradient, a weight): the kernel
            # writes sign(aref) p (log_sum shifted by log |aref|; for a
            # subnormal-scale aref by -700 only, so the exp cannot overflow:
            # p e^700 |aref| is then > 0 where p > 0), the fix-up multiplies
            # by a[k] -- NaN stays NaN, inf * p is +-inf where p > 0 and NaN
            # where p == 0, as a[k] * softmax would give
            ls[k] = ls[k] + max(c_log(fabs(aref)), -700.0)
            flag[k] = <char>(4 + (aref < 0.0))
            continue
        if split and a[k] != 0.0 and a[k] != aref:
            # mantissas divided: no underflow even for a subnormal a[k]
            r = c_frexp(a[k], &e) / fref
            e = e - eref
            if fabs(r) > 1.0:            # then e < 0 (|a[k]| <= |aref|)
                r = r * 0.5
                e = e + 1
            ex[k] = e
        else:
            r = a[k] / aref
        if r == 1.0:
            pass
        elif r != 0.0 and r == r:
            # the sign without a branch (random signs: logsumexp_backward)
            ls[k] = ls[k] - c_log(fabs(r))
            flag[k] = <char>(2 * (r < 0.0))
        else:                   # r == 0.0
            if not cols:
                ls[k] = 1.0 / 0.0
            flag[k] = 1
    return aref


cdef bint _ce_far(Py_ssize_t m, const double *a, const char *flag) noexcept nogil:
    """float32 output: whether the finite nonzero coefficients of the block
    are more than 2^60 apart.  The float32 kernels write alpha * p with the
    ratio a_k / alpha folded into their exp, whose float32 terms underflow
    for a ratio much below 2^-60 (one dy of 1e308 would zero the other
    samples); such a block is written a sample at a time (alpha = a_k)."""
    cdef Py_ssize_t k
    cdef long long e, lo = 0x7FF, hi = 0
    cdef const unsigned long long *bits = <const unsigned long long *>a
    for k in range(m):
        # the biased exponent field (0 for zeros and subnormals, 0x7FF for
        # NaN / inf: left out)
        e = <long long>((bits[k] >> 52) & 0x7FF)
        if flag[k] != 3 and e != 0x7FF and a[k] != 0.0:
            lo = min(lo, e)
            hi = max(hi, e)
    return hi - lo > 60


cdef inline double _expm1_le0(double t) noexcept nogil:
    """expm1(t) for the log-probabilities t <= 0 of the fix-up: exp(t) - 1
    below -0.3 (no cancellation: |result| > 0.25), else the Taylor series
    to t^13/13! (truncation < 2.6e-16 relative), ~2x cheaper than libm's
    expm1 in the per-sample loop.  NaN -> NaN, -inf -> -1."""
    cdef double q
    if t < -0.3:
        return c_exp(t) - 1.0
    q = 1.0 + t * (1.0 / 13.0)
    q = 1.0 + t * (1.0 / 12.0) * q
    q = 1.0 + t * (1.0 / 11.0) * q
    q = 1.0 + t * (1.0 / 10.0) * q
    q = 1.0 + t * (1.0 / 9.0) * q
    q = 1.0 + t * (1.0 / 8.0) * q
    q = 1.0 + t * (1.0 / 7.0) * q
    q = 1.0 + t * (1.0 / 6.0) * q
    q = 1.0 + t * (1.0 / 5.0) * q
    q = 1.0 + t * (1.0 / 4.0) * q
    q = 1.0 + t * (1.0 / 3.0) * q
    q = 1.0 + t * 0.5 * q
    return t * q


cdef void _ce_fixup(floating *gb, Py_ssize_t m, Py_ssize_t ks, Py_ssize_t cs,
                    const floating *qb, Py_ssize_t qks, Py_ssize_t qcs,
                    Py_ssize_t s0, const double *a, const double *lpy,
                    const char *flag, const int *ex, const _ce_par *p) noexcept nogil:
    cdef Py_ssize_t k, c, C = p.C
    cdef floating *g
    cdef const floating *qs
    cdef long long yi
    cdef double eps = p.eps, gamma = p.coef * p.eps / C, wy, b, qc, wc, f, em1
    cdef double em[64]
    # the target entries' expm1, a block at a time in vector lanes
    cdef bint batch = p.mode == CE_CLASS and m <= 64 and _tab.expm1_le0_f64 != NULL
    cdef const long long *ys
    cdef const double *ws
    cdef double coef
    if batch:
        _tab.expm1_le0_f64(lpy, em, m)
    cdef unsigned int sb[64]
    cdef unsigned long long db[64]
    cdef Py_ssize_t nneg = 0, nother = 0
    cdef unsigned int t
    k = 0
    if batch and gamma == 0.0:
        while k < m and (flag[k] == 0 or flag[k] == 3) and ex[k] == 0:
            k += 1
    if k == m:
        # class targets without smoothing, no sample with a zero or negative
        # coefficient: the ignored samples' zeros and the target entries,
        # the parameters in locals (the general loop reloads them per sample)
        ys = p.y + s0
        ws = p.w
        coef = p.coef
        for k in range(m):
            if flag[k] == 3:
                g = gb + k * ks
                for c in range(C):
                    g[c * cs] = 0
                continue
            yi = ys[k]
            wy = ws[yi] if ws != NULL else 1.0
            b = coef * (1.0 - eps) * wy
            if a[k] == b:
                gb[k * ks + yi * cs] = <floating>(b * em[k] - gamma * wy)
            else:
                gb[k * ks + yi * cs] = <floating>(b * em[k] + (a[k] - b) *
                                                  c_exp(lpy[k]) - gamma * wy)
        return
    if ks == 1 and cs != 1 and m <= 64:
        # columns: many negated samples (logsumexp_backward's signs) in one
        # pass along the rows of the block, not one strided pass each
        for k in range(m):
            t = (flag[k] == 2) & (ex[k] == 0)      # (no branch: random signs)
            sb[k] = t << 31
            db[k] = (<unsigned long long>t) << 63
            nneg += t
            nother += (flag[k] == 1) | (flag[k] >= 3) | (ex[k] != 0)
        if nneg >= 8:
            for c in range(C):
                g = gb + c * cs
                # the sign bit flipped (as -g), without a branch per element
                if floating is float:
                    for k in range(m):
                        (<unsigned int *>g)[k] ^= sb[k]
                else:
                    for k in range(m):
                        (<unsigned long long *>g)[k] ^= db[k]
            if p.mode == CE_SCALE and nother == 0:
                return          # (no target entries, nothing else flagged)
        else:
            nneg = 0
    for k in range(m):
        g = gb + k * ks
        if flag[k] == 1 or flag[k] == 3:
            for c in range(C):
                g[c * cs] = 0
            if flag[k] == 3:
                continue
        elif ex[k] != 0:
            # sign and 2^ex[k] of the coefficient ratio (see _ce_prepare):
            # a power-of-two factor is exact; below 2^-1022 ldexp rounds once
            f = -1.0 if flag[k] == 2 else 1.0
            if ex[k] >= -1022:
                f = c_ldexp(f, ex[k])
                for c in range(C):
                    g[c * cs] = <floating>(f * <double>g[c * cs])
            else:
                for c in range(C):
                    g[c * cs] = <floating>c_ldexp(f * <double>g[c * cs], ex[k])
        elif nneg == 0 and flag[k] == 2:
            for c in range(C):
                g[c * cs] = -g[c * cs]
        elif flag[k] >= 4:
            f = a[k] if flag[k] == 4 else -a[k]
            for c in range(C):
                g[c * cs] = <floating>(f * <double>g[c * cs])
        if p.mode == CE_CLASS:
            yi = p.y[s0 + k]
            if gamma != 0.0:
                if p.w != NULL:
                    for c in range(C):
                        g[c * cs] = <floating>(<double>g[c * cs] - gamma * p.w[c])
                else:
                    for c in range(C):
                        g[c * cs] = <floating>(<double>g[c * cs] - gamma)
            wy = p.w[yi] if p.w != NULL else 1.0
            b = p.coef * (1.0 - eps) * wy
            em1 = em[k] if batch else _expm1_le0(lpy[k])
            if a[k] == b:       # no smoothing / probability mass
                g[yi * cs] = <floating>(b * em1 - gamma * wy)
            else:
                g[yi * cs] = <floating>(b * em1 + (a[k] - b) * c_exp(lpy[k])
                                        - gamma * wy)
        elif p.mode == CE_PROB:
            qs = qb + k * qks
            for c in range(C):
                qc = (1.0 - eps) * <double>qs[c * qcs] + eps / C
                wc = p.w[c] if p.w != NULL else 1.0
                g[c * cs] = <floating>(<double>g[c * cs] - p.coef * wc * qc)


cdef inline bint _ce_soft_good(Py_ssize_t k, const double *mx, const double *ls,
                               const double *a, const char *flag) noexcept nogil:
    """Sample k can go through the ce_soft kernels: ignored, or a finite max,
    log_sum and coefficient (the others are the general path's business)."""
    return flag[k] == 3 or (flag[k] == 0 and isfinite(mx[k]) and isfinite(ls[k])
                            and fabs(a[k]) < 1e30)


cdef inline bint _ce_soft_ok(Py_ssize_t m, const double *mx, const double *ls,
                             const double *a, const char *flag,
                             const _ce_par *p) noexcept nogil:
    """Whether all samples k < m go through the ce_soft kernels (label
    smoothing or probability targets, _ce_soft_good)."""
    cdef Py_ssize_t k
    if not (p.mode == 1 or (p.mode == 0 and p.eps != 0.0)):
        return False
    for k in range(m):
        if not _ce_soft_good(k, mx, ls, a, flag):
            return False
    return True


cdef inline void _ce_soft_call(bint rows, const float *xb, Py_ssize_t m,
                               Py_ssize_t n, Py_ssize_t xrs, const float *qb,
                               Py_ssize_t qrs, const double *w, float *gb,
                               Py_ssize_t grs, const double *mx,
                               const double *ls, const double *a, double *sm,
                               const _ce_par *p) noexcept nogil:
    """The ce_soft kernel (rows: m samples of n classes; columns: m samples,
    classes xrs apart) with the subtrahend of p's mode; sm: the sums of e."""
    cdef csm_ce_soft_f32 kern = _tab.ce_soft_rows_f32 if rows else _tab.ce_soft_cols_f32
    if p.mode == 0:
        kern(xb, m, n, xrs, p.scale, mx, ls, a, NULL, 0, w, 0.0,
             p.coef * p.eps / p.C, gb, grs, sm)
    else:
        kern(xb, m, n, xrs, p.scale, mx, ls, a, qb, qrs, w,
             p.coef * (1.0 - p.eps), p.coef * p.eps / p.C, gb, grs, sm)


cdef inline void _ce_soft_fix(bint rows, float *gb, Py_ssize_t m, Py_ssize_t n,
                              Py_ssize_t grs, const float *qb, Py_ssize_t qrs,
                              const double *w, const double *sm,
                              const _ce_par *p) noexcept nogil:
    """The ce_soft_fix kernel: p = e / sum (log_sum's float32 accuracy)."""
    cdef csm_ce_soft_fix_f32 kern = (_tab.ce_soft_fix_rows_f32 if rows
                                     else _tab.ce_soft_fix_cols_f32)
    if p.mode == 0:
        kern(gb, m, n, grs, NULL, 0, w, 0.0, p.coef * p.eps / p.C, sm)
    else:
        kern(gb, m, n, grs, qb, qrs, w, p.coef * (1.0 - p.eps),
             p.coef * p.eps / p.C, sm)

cdef void _ce_soft_targets(floating *gb, Py_ssize_t m, Py_ssize_t gks,
                           Py_ssize_t gcs, Py_ssize_t s0, const double *a,
                           const double *lpy, const char *flag,
                           const _ce_par *p) noexcept nogil:
    """After a ce_soft kernel, class targets: zeros for the ignored samples,
    the target entries recomputed in float64 from log p_y (as _ce_fixup)."""
    cdef Py_ssize_t k, c, C = p.C
    cdef long long yi
    cdef double eps = p.eps, gamma = p.coef * p.eps / C, wy, b, em1
    cdef double em[64]
    cdef bint batch = m <= 64 and _tab.expm1_le0_f64 != NULL
    if p.mode != 0:
        return
    if batch:
        _tab.expm1_le0_f64(lpy, em, m)
    for k in range(m):
        if flag[k] == 3:
            for c in range(C):
                gb[k * gks + c * gcs] = 0
            continue
        yi = p.y[s0 + k]
        wy = p.w[yi] if p.w != NULL else 1.0
        b = p.coef * (1.0 - eps) * wy
        em1 = em[k] if batch else _expm1_le0(lpy[k])
        gb[k * gks + yi * gcs] = <floating>(b * em1 + (a[k] - b) * c_exp(lpy[k])
                                            - gamma * wy)


cdef void _ce_soft_run(const float *xb, Py_ssize_t m, Py_ssize_t ks,
                       Py_ssize_t cs, const float *qb, Py_ssize_t qks,
                       Py_ssize_t qcs, float *gb, Py_ssize_t gks, Py_ssize_t gcs,
                       Py_ssize_t s0, const double *mx, const double *ls,
                       const double *a, const double *lpy, const char *flag,
                       const _ce_par *p) noexcept nogil:
    """_ce_soft on m <= 64 samples that are all _ce_soft_good."""
    cdef bint rows = cs == 1
    cdef double sm[64]
    cdef double lp2[64]
    cdef Py_ssize_t k
    cdef double lc
    if rows:
        _ce_soft_call(True, xb, m, p.C, ks, qb, qks, p.w, gb, gks, mx, ls,
                      a, sm, p)
        _ce_soft_fix(True, gb, m, p.C, gks, qb, qks, p.w, sm, p)
    else:
        _ce_soft_call(False, xb, m, p.C, cs, qb, qcs, p.w, gb, gcs, mx, ls,
                      a, sm, p)
        _ce_soft_fix(False, gb, m, p.C, gcs, qb, qcs, p.w, sm, p)
    for k in range(m):
        lc = c_log(sm[k])
        lp2[k] = lpy[k] - lc if isfinite(lc) else lpy[k]
    _ce_soft_targets(gb, m, gks, gcs, s0, a, lp2, flag, p)


cdef int _ce_soft(const floating *xb, Py_ssize_t m, Py_ssize_t ks,
                  Py_ssize_t cs, const floating *qb, Py_ssize_t qks,
                  Py_ssize_t qcs, floating *gb, Py_ssize_t gks, Py_ssize_t gcs,
                  Py_ssize_t s0, const double *mx, const double *ls,
                  const double *a, const double *lpy, const char *flag,
                  char *bad, const _ce_par *p) noexcept nogil:
    """float32 gradient of label smoothing / probability targets:
    a_s p_c - w_c q'_c formed in float64 (ce_soft kernels: exp to 2^-43, one
    rounding; then p = e / sum, ce_soft_fix) instead of the write pass of
    a_s p rounded to float32 and a subtraction in the fix-up (where the two
    cancel that left up to 2^-23 x the terms).  Classes contiguous
    (cs == qcs == gcs == 1) or samples contiguous (ks == qks == gks == 1).
    Returns -1 (nothing written) when not applicable (mode, dtype, no
    kernel), else the number of samples left to the general path (bad[k]
    set: a non-finite max / log_sum / coefficient)."""
    cdef Py_ssize_t k, k0, nbad = 0
    if floating is double:
        return -1
    else:
        if (_tab.ce_soft_rows_f32 if cs == 1 else _tab.ce_soft_cols_f32) == NULL:
            return -1
        if m > 64 or not (p.mode == 1 or (p.mode == 0 and p.eps != 0.0)):
            return -1
        k = 0
        while k < m:
            bad[k] = not _ce_soft_good(k, mx, ls, a, flag)
            if bad[k]:
                nbad += 1
                k += 1
                continue
            k0 = k
            while k < m and _ce_soft_good(k, mx, ls, a, flag):
                bad[k] = 0
                k += 1
            _ce_soft_run(xb + k0 * ks, k - k0, ks, cs,
                         (qb + k0 * qks) if qb != NULL else NULL, qks, qcs,
                         gb + k0 * gks, gks, gcs, s0 + k0, mx + k0, ls + k0,
                         a + k0, lpy + k0, flag + k0, p)
        return <int>nbad

cdef inline bint _overlaps(const char *x, Py_ssize_t rows, Py_ssize_t xrs,
                           Py_ssize_t C, const char *g, Py_ssize_t grs,
                           Py_ssize_t item) noexcept nogil:
    """Whether the byte ranges of the rows of x and g (rows >= 1, positive
    or negative row strides) intersect."""
    cdef const char *xa = x
    cdef const char *xb = x + (rows - 1) * xrs * item
    cdef const char *ga = g
    cdef const char *gb = g + (rows - 1) * grs * item
    if xb < xa:
        xa, xb = xb, xa
    if gb < ga:
        ga, gb = gb, ga
    xb = xb + C * item
    gb = gb + C * item
    return xa < gb and ga < xb


cdef bint _ce_small_block(const floating *x, Py_ssize_t m, Py_ssize_t xrs,
                          floating *g, Py_ssize_t grs, Py_ssize_t s0,
                          const _ce_par *p) noexcept nogil:
    """Short rows, class targets without label smoothing or the
    scale-only mode: the whole gradient and the target log-probabilities in
    one kernel call (one exp per element, the target entry's expm1 in
    vector lanes), then the loss.  The coefficients are those of
    _ce_samples; False (nothing done) when one is not finite, for the
    general path's handling of those."""
    cdef double a[ROW_BLOCK]
    cdef double lp[ROW_BLOCK]
    cdef int t[ROW_BLOCK]
    cdef Py_ssize_t k, C = p.C
    cdef long long yi
    cdef double wy, eps = p.eps
    cdef double c1 = 1.0 - eps, c2 = eps * p.W / C     # as in _ce_samples
    cdef bint fin = True
    # the parameters in locals (stores through double * could alias *p)
    cdef const long long *ys = p.y + s0
    cdef const double *ws = p.w
    cdef double coef = p.coef
    cdef double a1 = coef * (c1 + c2)                  # wy = 1: the same bits
    cdef double nc1 = -(1.0 - eps)
    cdef long long ign = p.ignore
    cdef double *loss
    if p.mode == CE_SCALE:
        for k in range(m):
            a[k] = p.dy[s0 + k]
            fin = fin & isfinite(a[k])
    elif ws == NULL:
        if not isfinite(a1):
            return False
        for k in range(m):
            yi = ys[k]
            a[k] = 0.0 if yi == ign else a1
            t[k] = -1 if yi == ign else <int>yi
    else:
        for k in range(m):
            yi = ys[k]
            if yi == ign:
                a[k] = 0.0
                t[k] = -1
            else:
                wy = ws[yi]
                a[k] = coef * (c1 * wy + c2)
                t[k] = <int>yi
                fin = fin & isfinite(a[k])
    if not fin:
        return False
    if floating is float:
        _tab.ce_small_f32(x, m, C, xrs, p.scale, a, t if p.mode == CE_CLASS else NULL,
                          lp, g, grs)
    else:
        _tab.ce_small_f64(x, m, C, xrs, p.scale, a, t if p.mode == CE_CLASS else NULL,
                          lp, g, grs)
    if p.mode == CE_CLASS:
        loss = p.loss + s0
        if ws == NULL:
            for k in range(m):
                loss[k] = 0.0 if t[k] < 0 else nc1 * lp[k]
        else:
            for k in range(m):
                loss[k] = 0.0 if t[k] < 0 else nc1 * ws[t[k]] * lp[k]
    return True


cdef void _ce_rows(const floating *x, Py_ssize_t rows, Py_ssize_t xrs,
                   const floating *q, Py_ssize_t qrs, floating *g,
                   Py_ssize_t grs, Py_ssize_t s0, const _ce_par *p,
                   int path) noexcept nogil:
    """A block of samples by path SMALL (ce_small; a block with a
    non-finite coefficient takes the SMALL_TWO_PASS code), SMALL_TWO_PASS,
    FUSED (terms stored in g, rescaled), TWO_PASS_PREFETCH or TWO_PASS."""
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef double a[ROW_BLOCK]
    cdef double lpy[ROW_BLOCK]
    cdef char flag[ROW_BLOCK]
    cdef int ex[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, m, C = p.C, k
    cdef double aref
    cdef char bad[ROW_BLOCK]
    cdef int nbad
    cdef bint small = path == PATH_SMALL or path == PATH_SMALL_TWO_PASS
    cdef bint keep = path == PATH_FUSED
    cdef bint one_call = path == PATH_SMALL
    # float32 soft targets: the gradient formed in float64 (ce_soft kernels;
    # the planner then never picks the stored-terms path FUSED)
    cdef double sA[ROW_BLOCK]
    cdef double sB[ROW_BLOCK]
    cdef bint sums = (floating is float and _tab.ce_soft_sums_f32 != NULL and
                      (p.mode == CE_PROB or (p.mode == CE_CLASS and p.eps != 0.0)))
    cdef bint soft = (floating is float and g != NULL and
                      _tab.ce_soft_rows_f32 != NULL and
                      (p.mode == 1 or (p.mode == 0 and p.eps != 0.0)))
    while r0 < rows:
        m = min(ROW_BLOCK, rows - r0)
        if one_call and _ce_small_block(x + r0 * xrs, m, xrs, g + r0 * grs,
                                        grs, s0 + r0, p):
            r0 += m
            continue
        if small:
            _lse_small(x + r0 * xrs, m, C, xrs, p.scale, False, mx, ls)
        elif keep:
            if floating is float:
                _tab.lse_store_rows_f32(x + r0 * xrs, m, C, xrs, p.scale, st,
                                        g + r0 * grs, grs)
            else:
                _tab.lse_store_rows_f64(x + r0 * xrs, m, C, xrs, p.scale, st,
                                        g + r0 * grs, grs)
            _tab.finalize(st, m, p.scale, mx, ls)
        elif path == PATH_TWO_PASS_PREFETCH:
            _lse_rows_pw(x + r0 * xrs, m, C, xrs, p.scale, st, g + r0 * grs, grs)
            _tab.finalize(st, m, p.scale, mx, ls)
        else:
            _lse_rows(x + r0 * xrs, m, C, xrs, p.scale, st)
            _tab.finalize(st, m, p.scale, mx, ls)
        if sums:
            # the soft targets' loss sums in one vectorised pass (u = w q')
            if p.mode == CE_PROB:
                _tab.ce_soft_sums_f32(<const float *>(x + r0 * xrs), m, C, xrs, mx,
                                      <const float *>(q + r0 * qrs), qrs, p.w,
                                      1.0 - p.eps, p.eps / C, sA, sB)
            else:
                _tab.ce_soft_sums_f32(<const float *>(x + r0 * xrs), m, C, xrs, mx,
                                      NULL, 0, p.w, 0.0, 1.0, sA, sB)
            _ce_samples(x + r0 * xrs, m, xrs, 1, q + r0 * qrs, qrs, 1, s0 + r0,
                        mx, ls, p, a, lpy, flag, sA, sB)
        else:
            _ce_samples(x + r0 * xrs, m, xrs, 1, q + r0 * qrs, qrs, 1, s0 + r0,
                        mx, ls, p, a, lpy, flag, NULL, NULL)
        nbad = -1
        if soft:
            nbad = _ce_soft(x + r0 * xrs, m, xrs, 1,
                            (q + r0 * qrs) if q != NULL else NULL, qrs, 1,
                            g + r0 * grs, grs, 1, s0 + r0, mx, ls, a, lpy, flag,
                            bad, p)
        if nbad > 0:
            # the samples the soft kernels left: the general path one by one
            for k in range(m):
                if bad[k]:
                    _ce_rows_write(x + (r0 + k) * xrs, 1, xrs,
                                   (q + (r0 + k) * qrs) if q != NULL else NULL, qrs,
                                   g + (r0 + k) * grs, grs, s0 + r0 + k, p, small,
                                   False, mx + k, ls + k, a + k, lpy + k, flag + k,
                                   ex + k)
        elif nbad < 0 and g != NULL and floating is float and m > 1 and _ce_far(m, a, flag):
            for k in range(m):
                _ce_rows_write(x + (r0 + k) * xrs, 1, xrs,
                               (q + (r0 + k) * qrs) if q != NULL else NULL, qrs,
                               g + (r0 + k) * grs, grs, s0 + r0 + k, p, small, keep,
                               mx + k, ls + k, a + k, lpy + k, flag + k, ex + k)
        elif nbad < 0 and g != NULL:
            _ce_rows_write(x + r0 * xrs, m, xrs, q + r0 * qrs, qrs, g + r0 * grs, grs,
                           s0 + r0, p, small, keep, mx, ls, a, lpy, flag, ex)
        r0 += m


cdef inline void _ce_rows_write(const floating *x, Py_ssize_t m, Py_ssize_t xrs,
                                const floating *q, Py_ssize_t qrs, floating *g,
                                Py_ssize_t grs, Py_ssize_t s0, const _ce_par *p,
                                bint small, bint keep, double *mx, double *ls,
                                double *a, double *lpy, char *flag,
                                int *ex) noexcept nogil:
    """The gradient of m rows of _ce_rows from their reduction: alpha, the
    write kernel of the path (short rows, stored terms rescaled, or from x),
    the fix-up."""
    cdef Py_ssize_t C = p.C
    cdef double aref = _ce_prepare(m, a, ls, flag, ex, floating is double)
    if small:
        _softmax_write_small(x, m, C, xrs, p.scale, mx, ls, aref, g, grs)
    elif keep:
        if floating is float:
            _tab.softmax_scale_rows_f32(x, m, C, xrs, p.scale, mx, ls, aref, g, grs)
        else:
            _tab.softmax_scale_rows_f64(x, m, C, xrs, p.scale, mx, ls, aref, g, grs)
    else:
        _write_rows(x, m, C, xrs, p.scale, mx, ls, aref, g, grs, False)
    _ce_fixup(g, m, grs, 1, q, qrs, 1, s0, a, lpy, flag, ex, p)


cdef void _ce_long_row(const floating *x, const floating *q, floating *g,
                       Py_ssize_t s0, const _ce_par *p, int nth,
                       bint keep) noexcept nogil:
    """Sample s0, one long row, split into nth segments: the reduction and
    the gradient write run in parallel, the per-sample loss and fix-ups
    (O(1) for class targets without smoothing, else a pass over the row)
    once in between and after.  float32 gradients into separate memory keep
    each segment's terms (relative to the segment's own max) and rescale
    them by exp(-log_sum - scale (max - segment max)): one exp per element,
    as in _ce_rows (keep: LONG_ROW_STORE, else LONG_ROW_SPLIT)."""
    cdef Py_ssize_t C = p.C
    cdef Py_ssize_t seg = (C + nth - 1) // nth
    cdef Py_ssize_t s, start, length
    cdef csm_lse_state *st = <csm_lse_state *>malloc(nth * sizeof(csm_lse_state))
    cdef csm_lse_state acc
    cdef double mx, ls, a, lpy, aref, sm, sl
    cdef char flag
    cdef int ex
    if floating is double:
        keep = False            # (the planner never asks: float32 only)
    if st == NULL:
        _ce_rows(x, 1, C, q, C, g, C, s0, p, PATH_TWO_PASS)
        return
    for s in prange(nth, num_threads=nth, schedule='static'):
        start = s * seg
        length = min(seg, C - start)
        if length <= 0:
            st[s].max = -1.0 / 0.0
            st[s].count = 0.0
            st[s].rest = 0.0
        elif keep:
            if floating is float:
                _tab.lse_store_rows_f32(x + start, 1, length, length, p.scale,
                                        &st[s], g + start, length)
        else:
            _lse_rows(x + start, 1, length, length, p.scale, &st[s])
    acc = st[0]
    for s in range(1, nth):
        csm_lse_merge(&acc, &st[s], p.scale)
    _tab.finalize(&acc, 1, p.scale, &mx, &ls)
    _ce_samples(x, 1, C, 1, q, C, 1, s0, &mx, &ls, p, &a, &lpy, &flag, NULL, NULL)
    if g == NULL:
        free(st)
        return
    if floating is float:
        if (_tab.ce_soft_rows_f32 != NULL and flag == 0 and
                _ce_soft_ok(1, &mx, &ls, &a, &flag, p)):
            for s in prange(nth, num_threads=nth, schedule='static'):
                start = s * seg
                length = min(seg, C - start)
                st[s].rest = 0.0
                if length > 0:
                    _ce_soft_call(True, x + start, 1, length, C,
                                  (q + start) if q != NULL else NULL, C,
                                  (p.w + start) if p.w != NULL else NULL,
                                  g + start, C, &mx, &ls, &a, &st[s].rest, p)
            sm = 0.0
            for s in range(nth):
                sm = sm + st[s].rest
            for s in prange(nth, num_threads=nth, schedule='static'):
                start = s * seg
                length = min(seg, C - start)
                if length > 0:
                    _ce_soft_fix(True, g + start, 1, length, C,
                                 (q + start) if q != NULL else NULL, C,
                                 (p.w + start) if p.w != NULL else NULL, &sm, p)
            sl = c_log(sm)
            if isfinite(sl):
                lpy = lpy - sl
            free(st)
            _ce_soft_targets(g, 1, C, 1, s0, &a, &lpy, &flag, p)
            return
    aref = _ce_prepare(1, &a, &ls, &flag, &ex, floating is double)
    # stored terms are usable only for a finite row (no NaN / inf anywhere,
    # so each segment's max is the row max of its stored pass or -inf)
    keep = keep and flag == 0 and isfinite(mx) and isfinite(ls)
    for s in prange(nth, num_threads=nth, schedule='static'):
        start = s * seg
        length = min(seg, C - start)
        if length > 0:
            sm = st[s].max
            if keep and isfinite(sm):
                # the kernel repeats the store kernel's per-row decision from
                # sm, and writes from x when the terms were not stored
                sl = ls + p.scale * (mx - sm)
                if floating is float:
                    _tab.softmax_scale_rows_f32(x + start, 1, length, length,
                                                p.scale, &sm, &sl, aref,
                                                g + start, length)
            else:
                _write_rows(x + start, 1, length, length, p.scale, &mx, &ls,
                            aref, g + start, length, False)
    free(st)
    _ce_fixup(g, 1, C, 1, q, C, 1, s0, &a, &lpy, &flag, &ex, p)


cdef void _ce_cols(const floating *x, Py_ssize_t cols, Py_ssize_t xrs,
                   const floating *q, Py_ssize_t qrs, floating *g,
                   Py_ssize_t grs, Py_ssize_t s0, const _ce_par *p,
                   bint tile) noexcept nogil:
    """tile: x and g are the (separate) tiles of _ce_cols_tiled; a float32
    gradient then keeps the reduction's terms and rescales them (one exp per
    element; measured slower on the strided arrays themselves, whose rows
    share cache sets)."""
    cdef csm_lse_state st[COL_BLOCK]
    cdef double mx[COL_BLOCK]
    cdef double ls[COL_BLOCK]
    cdef double a[COL_BLOCK]
    cdef double lpy[COL_BLOCK]
    cdef char flag[COL_BLOCK]
    cdef int ex[COL_BLOCK]
    cdef char bad[COL_BLOCK]
    cdef int nbad
    cdef Py_ssize_t k
    cdef double aref
    cdef double sA[ROW_BLOCK]
    cdef double sB[ROW_BLOCK]
    cdef bint sums = (floating is float and _tab.ce_soft_sums_f32 != NULL and
                      (p.mode == CE_PROB or (p.mode == CE_CLASS and p.eps != 0.0)))
    cdef bint soft = (floating is float and g != NULL and
                      _tab.ce_soft_cols_f32 != NULL and
                      (p.mode == 1 or (p.mode == 0 and p.eps != 0.0)))
    cdef bint keep = (floating is float and tile and g != NULL and not soft and
                      _tab.lse_store_cols_f32 != NULL)
    if keep:
        if floating is float:
            _tab.lse_store_cols_f32(x, cols, p.C, xrs, p.scale, st, g, grs)
    else:
        _lse_cols(x, cols, p.C, xrs, p.scale, st)
    _tab.finalize(st, cols, p.scale, mx, ls)
    if p.mode == CE_PROB or (p.mode == CE_CLASS and p.eps != 0.0):
        _ce_sums_cols(x, cols, xrs, q, qrs, mx, p, sA, sB)
        _ce_samples(x, cols, 1, xrs, q, 1, qrs, s0, mx, ls, p, a, lpy, flag, sA, sB)
    else:
        _ce_samples(x, cols, 1, xrs, q, 1, qrs, s0, mx, ls, p, a, lpy, flag, NULL, NULL)
    nbad = -1
    if soft:
        nbad = _ce_soft(x, cols, 1, xrs, q, 1, qrs, g, 1, grs, s0, mx, ls, a,
                        lpy, flag, bad, p)
    if nbad > 0:
        for k in range(cols):
            if bad[k]:
                aref = _ce_prepare(1, a + k, ls + k, flag + k, ex + k,
                                   floating is double)
                _write_cols(x + k, 1, p.C, xrs, p.scale, mx + k, ls + k, aref,
                            g + k, grs, False)
                _ce_fixup(g + k, 1, 1, grs, (q + k) if q != NULL else NULL, 1,
                          qrs, s0 + k, a + k, lpy + k, flag + k, ex + k, p)
    elif nbad < 0 and g != NULL and floating is float and cols > 1 and _ce_far(cols, a, flag):
        # coefficients too far apart for one float32 alpha: a column at a time
        for k in range(cols):
            _ce_cols_write(x + k, 1, xrs, (q + k) if q != NULL else NULL, qrs, g + k,
                           grs, s0 + k, p, keep, mx + k, ls + k, a + k, lpy + k,
                           flag + k, ex + k)
    elif nbad < 0 and g != NULL:
        _ce_cols_write(x, cols, xrs, q, qrs, g, grs, s0, p, keep, mx, ls, a, lpy,
                       flag, ex)


cdef inline void _ce_cols_write(const floating *x, Py_ssize_t cols, Py_ssize_t xrs,
                                const floating *q, Py_ssize_t qrs, floating *g,
                                Py_ssize_t grs, Py_ssize_t s0, const _ce_par *p,
                                bint keep, double *mx, double *ls, double *a,
                                double *lpy, char *flag, int *ex) noexcept nogil:
    """The gradient of the columns of _ce_cols from their reduction: alpha,
    the write kernel (stored terms rescaled, or from x), the fix-up."""
    cdef double aref = _ce_prepare(cols, a, ls, flag, ex, floating is double, True)
    if keep:
        if floating is float:
            _tab.softmax_scale_cols_f32(x, cols, p.C, xrs, p.scale, mx, ls, aref, g, grs)
    else:
        _write_cols(x, cols, p.C, xrs, p.scale, mx, ls, aref, g, grs, False)
    _ce_fixup(g, cols, 1, grs, q, 1, qrs, s0, a, lpy, flag, ex, p)


cdef inline void _ce_cols_unit(const floating *x, Py_ssize_t cols,
                               Py_ssize_t xrs, const floating *q,
                               Py_ssize_t qrs, floating *g, Py_ssize_t grs,
                               Py_ssize_t s0, const _ce_par *p,
                               bint tiled) noexcept nogil:
    if floating is float:
        if tiled:
            _ce_cols_tiled(x, cols, xrs, q, qrs, g, grs, s0, p)
            return
    _ce_cols_blocks(x, cols, xrs, q, qrs, g, grs, s0, p, False)


cdef void _ce_cols_tiled(const float *x, Py_ssize_t cols, Py_ssize_t xrs,
                         const float *q, Py_ssize_t qrs, float *g,
                         Py_ssize_t grs, Py_ssize_t s0,
                         const _ce_par *p) noexcept nogil:
    """_ce_cols on up to FUSED_COL_BLOCK columns, copied a tile at a time
    into contiguous rows of a padded pitch (the class rows of x are usually
    a multiple of 4 KiB apart and share cache sets: see the column tiles in
    src/avx2/cols_f32.c); the gradient tile is streamed out.  g may be x."""
    cdef Py_ssize_t C = p.C, tw = _ce_tile_width(C), P, j, j2, w, i
    cdef float *buf
    cdef float *tg
    if tw == 0 or cols < TILE_MIN_COLS:
        _ce_cols_blocks(x, cols, xrs, q, qrs, g, grs, s0, p, False)
        return
    P = tw + 16
    buf = <float *>malloc(2 * C * P * sizeof(float))
    if buf == NULL:
        _ce_cols_blocks(x, cols, xrs, q, qrs, g, grs, s0, p, False)
        return
    tg = buf + C * P
    j = 0
    while j < cols:
        w = min(tw, cols - j)
        for i in range(C):
            memcpy(buf + i * P, x + i * xrs + j, w * sizeof(float))
        _ce_cols_blocks(buf, w, P, (q + j) if q != NULL else NULL, qrs,
                        tg if g != NULL else NULL, P, s0 + j, p, True)
        if g != NULL:
            if _tab.copy_rows_nt_f32 != NULL:
                _tab.copy_rows_nt_f32(g + j, grs, tg, P, C, w)
            else:
                for i in range(C):
                    memcpy(g + i * grs + j, tg + i * P, w * sizeof(float))
        j += w
    free(buf)


cdef inline void _ce_cols_blocks(const floating *x, Py_ssize_t cols,
                                 Py_ssize_t xrs, const floating *q,
                                 Py_ssize_t qrs, floating *g, Py_ssize_t grs,
                                 Py_ssize_t s0, const _ce_par *p,
                                 bint tile) noexcept nogil:
    """_ce_cols on any number of columns, COL_BLOCK at a time."""
    cdef Py_ssize_t j0 = 0
    while j0 < cols:
        _ce_cols(x + j0, min(COL_BLOCK, cols - j0), xrs,
                 (q + j0) if q != NULL else NULL, qrs,
                 (g + j0) if g != NULL else NULL, grs, s0 + j0, p, tile)
        j0 += COL_BLOCK


cdef void _ce_run(const floating *x, const floating *q, floating *g,
                  Py_ssize_t outer, Py_ssize_t inner, Py_ssize_t xos,
                  Py_ssize_t xrs, Py_ssize_t qos, Py_ssize_t qrs,
                  Py_ssize_t gos, Py_ssize_t grs, const _ce_par *p,
                  const csm_plan *pl) noexcept nogil:
    """pl.layout LAYOUT_ROWS: outer rows of C, row strides xos/qos/gos;
    LAYOUT_COLS: (outer, C, inner)."""
    cdef Py_ssize_t C = p.C, per = pl.block, nblocks, b, r0, nb, units, u, o, j0
    cdef Py_ssize_t cb = pl.block
    cdef int path = pl.path, nth = pl.threads
    cdef bint tiled
    if pl.layout == LAYOUT_ROWS:
        if path == PATH_LONG_ROW_SPLIT or path == PATH_LONG_ROW_STORE:
            for r0 in range(outer):
                _ce_long_row(x + r0 * xos, (q + r0 * qos) if q != NULL else NULL,
                             (g + r0 * gos) if g != NULL else NULL, r0, p, nth,
                             path == PATH_LONG_ROW_STORE)
            return
        nblocks = (outer + per - 1) // per
        if nth <= 1:
            for b in range(nblocks):
                r0 = b * per
                _ce_rows(x + r0 * xos, min(per, outer - r0), xos,
                         (q + r0 * qos) if q != NULL else NULL, qos,
                         (g + r0 * gos) if g != NULL else NULL, gos, r0, p, path)
            return
        for b in prange(nblocks, num_threads=nth, schedule='static'):
            r0 = b * per
            _ce_rows(x + r0 * xos, min(per, outer - r0), xos, q + r0 * qos, qos,
                     (g + r0 * gos) if g != NULL else NULL, gos, r0, p, path)
        return
    # columns: units of pl.block columns (COLS_TILED: wide units, copied
    # through tiles)
    tiled = path == PATH_COLS_TILED
    nb = (inner + cb - 1) // cb
    units = outer * nb
    if nth <= 1:
        csm_set_stream_stores(pl.stream)
        for u in range(units):
            o = u // nb
            j0 = (u % nb) * cb
            _ce_cols_unit(x + o * xos + j0, min(cb, inner - j0), xrs,
                          (q + o * qos + j0) if q != NULL else NULL, qrs,
                          (g + o * gos + j0) if g != NULL else NULL, grs,
                          o * inner + j0, p, tiled)
        return
    for u in prange(units, num_threads=nth, schedule='static'):
        o = u // nb
        j0 = (u % nb) * cb
        csm_set_stream_stores(pl.stream)
        _ce_cols_unit(x + o * xos + j0, min(cb, inner - j0), xrs,
                      (q + o * qos + j0) if q != NULL else NULL, qrs,
                      (g + o * gos + j0) if g != NULL else NULL, grs,
                      o * inner + j0, p, tiled)


cdef inline Py_ssize_t _es(cnp.ndarray a, int axis):
    return a.strides[axis] // a.itemsize


def ce_pass(cnp.ndarray x, q, g, y, w, double W, double scale, double eps,
            double coef, long long ignore, int mode, dy, loss):
    """Fused cross-entropy pass (arguments validated by csoftmax._losses).
    mode: CE_CLASS (0, class targets: op cross_entropy), CE_PROB (1,
    probability targets: cross_entropy_soft) or CE_SCALE (2, per-sample
    scale only: logsumexp_backward).

    x: 2-D (samples, C) with contiguous rows, or 3-D (outer, C, inner) with
    a contiguous last axis.  q (probability targets) and g (gradient, may be
    x itself) have x's shape and a contiguous last axis; y: int64 class
    indices, w: float64 weights, dy: float64 per-sample scale (mode 2),
    loss: float64 per-sample output -- all C-contiguous, in sample order.
    """
    cdef _ce_par p
    cdef bint cols = x.ndim == 3
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t inner = x.shape[2] if cols else 0
    cdef Py_ssize_t xos = _es(x, 0), xrs = _es(x, 1) if cols else 1
    cdef Py_ssize_t qos = 0, qrs = 0, gos = 0, grs = 0
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *pq = NULL
    cdef void *pg = NULL
    cdef cnp.ndarray qa, ga
    cdef csm_plan pl
    cdef int flags = 0
    p.C = C
    p.mode = mode
    p.y = <const long long *>cnp.PyArray_DATA(y) if y is not None else NULL
    p.w = <const double *>cnp.PyArray_DATA(w) if w is not None else NULL
    # W enters only as eps * W: without smoothing an infinite (or NaN) sum
    # of the weights must not make the coefficients NaN
    p.W = W if eps != 0.0 else 0.0
    p.scale = scale
    p.eps = eps
    p.coef = coef
    p.ignore = ignore
    p.dy = <const double *>cnp.PyArray_DATA(dy) if dy is not None else NULL
    p.loss = <double *>cnp.PyArray_DATA(loss) if loss is not None else NULL
    if q is not None:
        qa = q
        pq = cnp.PyArray_DATA(qa)
        qos = _es(qa, 0)
        qrs = _es(qa, 1) if cols else 1
    if g is not None:
        ga = g
        pg = cnp.PyArray_DATA(ga)
        gos = _es(ga, 0)
        grs = _es(ga, 1) if cols else 1
    if outer == 0 or (cols and inner == 0):
        return
    if pg != NULL:
        flags |= PF_GRAD
        # rows whose gradient overlaps the logits (grad=logits) cannot keep
        # their terms in it (FUSED, LONG_ROW_STORE): the byte ranges of all
        # rows of x and g (columns copy through tiles: no test needed)
        if not cols and _overlaps(<const char *>px, outer, xos, C,
                                  <const char *>pg, gos, x.itemsize):
            flags |= PF_INPLACE
    if eps != 0.0:
        flags |= PF_SMOOTH
    pl = _plan_entry(OP_CE + mode, x.dtype.num != cnp.NPY_FLOAT,
                     LAYOUT_COLS if cols else LAYOUT_ROWS, outer, C,
                     inner if cols else 1, flags)
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if pl.path == PATH_COLS_TILED and pg != NULL:
        pl.stream = _stream_hint(ga)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _ce_run(<const float *>px, <const float *>pq, <float *>pg, outer,
                    inner, xos, xrs, qos, qrs, gos, grs, &p, &pl)
    else:
        with nogil:
            _ce_run(<const double *>px, <const double *>pq, <double *>pg, outer,
                    inner, xos, xrs, qos, qrs, gos, grs, &p, &pl)


def check_labels(cnp.ndarray y, Py_ssize_t C, long long ignore, w):
    """(first bad flat index or -1, sum of weights of kept targets, count of
    kept targets) for a C-contiguous int64 array of class indices."""
    cdef const long long *py = <const long long *>cnp.PyArray_DATA(y)
    cdef const double *pw = <const double *>cnp.PyArray_DATA(w) if w is not None else NULL
    cdef Py_ssize_t n = y.size, i, bad = -1, cnt = 0
    cdef double tot = 0.0, err = 0.0
    cdef long long v
    cdef int keep, anybad = 0
    if pw == NULL:
        # without weights the total is the count: no dependent float adds
        # (this pass was 4 % of a cross-entropy along a non-last axis)
        with nogil:
            for i in range(n):
                v = py[i]
                keep = v != ignore
                cnt += keep
                anybad |= keep & (<unsigned long long>v >= <unsigned long long>C)
        if not anybad:
            return -1, <double>cnt, cnt
        cnt = 0
    with nogil:
        # compensated: the 'mean' divisor of N weights summed plainly was
        # 6e4 ULP off at N = 10^6 (weights 1 and 0.1)
        for i in range(n):
            v = py[i]
            if v == ignore:
                continue
            if v < 0 or v >= C:
                bad = i
                break
            cnt += 1
            _add_c(&tot, &err, pw[v] if pw != NULL else 1.0)
    return bad, _done_c(tot, err), cnt


# --------------------------------------------------------------------------
# nll_loss: gather -w[y] * lp[y]

cdef void _nll_run(const floating *x, Py_ssize_t outer, Py_ssize_t inner,
                   Py_ssize_t xos, Py_ssize_t xrs, const long long *y,
                   const double *w, long long ignore, double *loss) noexcept nogil:
    cdef Py_ssize_t o, j, s
    cdef long long yi
    for o in range(outer):
        for j in range(inner):
            s = o * inner + j
            yi = y[s]
            if yi == ignore:
                loss[s] = 0.0
            else:
                loss[s] = -(w[yi] if w != NULL else 1.0) * <double>x[o * xos + yi * xrs + j]


def nll_pass(cnp.ndarray x, cnp.ndarray y, w, long long ignore, cnp.ndarray loss):
    """Per-sample -w[y] * x[y] (0 for ignored) for x 2-D (rows) or 3-D (cols)."""
    cdef bint cols = x.ndim == 3
    cdef Py_ssize_t outer = x.shape[0]
    cdef Py_ssize_t inner = x.shape[2] if cols else 1
    cdef Py_ssize_t xos = _es(x, 0), xrs = _es(x, 1) if cols else 1
    cdef void *px = cnp.PyArray_DATA(x)
    cdef const long long *py = <const long long *>cnp.PyArray_DATA(y)
    cdef const double *pw = <const double *>cnp.PyArray_DATA(w) if w is not None else NULL
    cdef double *pl = <double *>cnp.PyArray_DATA(loss)
    if x.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _nll_run(<const float *>px, outer, inner, xos, xrs, py, pw, ignore, pl)
    else:
        with nogil:
            _nll_run(<const double *>px, outer, inner, xos, xrs, py, pw, ignore, pl)


# --------------------------------------------------------------------------
# softmax_backward / log_softmax_backward on C-contiguous (outer, n, inner)
#   softmax:     dx = y * (dy - sum(y * dy))
#   log_softmax: dx = dy - exp(y) * sum(dy)

cdef inline void _bwd_rows(const floating *y, const floating *dy, floating *o,
                           Py_ssize_t rows, Py_ssize_t n, bint log,
                           bint pf) noexcept nogil:
    # the dispatched kernels (csm_*_bwd_rows_*, pf: csm_*_bwd_rows_pf_*,
    # fetching the next row): float64 sums, SIMD exp
    if floating is float:
        if log:
            (_tab.log_softmax_bwd_rows_pf_f32 if pf else
             _tab.log_softmax_bwd_rows_f32)(y, dy, o, rows, n)
        else:
            (_tab.softmax_bwd_rows_pf_f32 if pf else
             _tab.softmax_bwd_rows_f32)(y, dy, o, rows, n)
    else:
        if log:
            (_tab.log_softmax_bwd_rows_pf_f64 if pf else
             _tab.log_softmax_bwd_rows_f64)(y, dy, o, rows, n)
        else:
            (_tab.softmax_bwd_rows_pf_f64 if pf else
             _tab.softmax_bwd_rows_f64)(y, dy, o, rows, n)


cdef inline void _bwd_cols_call(const floating *y, const floating *dy,
                                floating *o, Py_ssize_t cols, Py_ssize_t n,
                                Py_ssize_t rs, bint log) noexcept nogil:
    if floating is float:
        if log:
            _tab.log_softmax_bwd_cols_f32(y, dy, o, cols, n, rs)
        else:
            _tab.softmax_bwd_cols_f32(y, dy, o, cols, n, rs)
    else:
        if log:
            _tab.log_softmax_bwd_cols_f64(y, dy, o, cols, n, rs)
        else:
            _tab.softmax_bwd_cols_f64(y, dy, o, cols, n, rs)


cdef extern from *:
    void __builtin_prefetch(const void *p) nogil   # gcc / clang


cdef void _bwd_cols(const floating *y, const floating *dy, floating *o,
                    Py_ssize_t cols, Py_ssize_t n, Py_ssize_t inner,
                    bint log, int path) noexcept nogil:
    """cols (<= the unit width of _bwd_run) columns of n rows, inner apart.
    COLS_TILED: the column kernel through tiles of a padded pitch when the
    columns fill one (the rows of y and dy are usually a multiple of 4 KiB
    apart and share cache sets, as in the forward column tiles), the
    result streamed out; o may be y or dy (the tiles are read first).
    COLS_BLOCKS: the column kernel on the array; COLS_LOOP: the loop here."""
    cdef double s[COL_BLOCK]
    cdef Py_ssize_t i, j, r, P, tw
    cdef floating *buf
    if path != PATH_COLS_LOOP:
        tw = _bwd_tile_width(n)
        if path == PATH_COLS_TILED and tw != 0 and cols >= TILE_MIN_COLS:
            P = tw + 16
            buf = <floating *>malloc(2 * n * P * sizeof(floating))
            if buf != NULL:
                for i in range(n):
                    memcpy(buf + i * P, y + i * inner, cols * sizeof(floating))
                    memcpy(buf + (n + i) * P, dy + i * inner, cols * sizeof(floating))
                    # the next tile's row while this one is copied, as the
                    # forward tiles do (past the array's end: a prefetch
                    # does not fault)
                    j = 0
                    while j < cols:
                        __builtin_prefetch(y + i * inner + cols + j)
                        __builtin_prefetch(dy + i * inner + cols + j)
                        j += <Py_ssize_t>(64 // sizeof(floating))
                _bwd_cols_call(buf, buf + n * P, buf + n * P, cols, n, P, log)
                if floating is float:
                    if _tab.copy_rows_nt_f32 != NULL:
                        _tab.copy_rows_nt_f32(o, inner, buf + n * P, P, n, cols)
                        free(buf)
                        return
                for i in range(n):
                    memcpy(o + i * inner, buf + (n + i) * P, cols * sizeof(floating))
                free(buf)
                return
        _bwd_cols_call(y, dy, o, cols, n, inner, log)
        return
    for j in range(cols):
        s[j] = 0.0
    for i in range(n):
        r = i * inner
        if log:
            for j in range(cols):
                s[j] = s[j] + <double>dy[r + j]
        else:
            for j in range(cols):
                s[j] = s[j] + <double>y[r + j] * <double>dy[r + j]
    for i in range(n):
        r = i * inner
        if log:
            for j in range(cols):
                o[r + j] = <floating>(<double>dy[r + j] - c_exp(<double>y[r + j]) * s[j])
        else:
            for j in range(cols):
                o[r + j] = <floating>(<double>y[r + j] * (<double>dy[r + j] - s[j]))


cdef inline void _bwd_small(const floating *y, const floating *dy, floating *o,
                            Py_ssize_t rows, Py_ssize_t n, bint log) noexcept nogil:
    # short rows, several a group in the lanes (csm_*_bwd_small_*)
    if floating is float:
        if log:
            _tab.log_softmax_bwd_small_f32(y, dy, o, rows, n)
        else:
            _tab.softmax_bwd_small_f32(y, dy, o, rows, n)
    else:
        if log:
            _tab.log_softmax_bwd_small_f64(y, dy, o, rows, n)
        else:
            _tab.softmax_bwd_small_f64(y, dy, o, rows, n)


cdef void _bwd_run(const floating *y, const floating *dy, floating *o,
                   Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                   bint log, const csm_plan *pl) noexcept nogil:
    cdef int nth = pl.threads, path = pl.path, t
    cdef Py_ssize_t r0, r1, nb, units, u, b, j0, W
    cdef bint pf = path == PATH_ROWS_PREFETCH
    if path == PATH_ROWS or pf or path == PATH_SMALL:
        # one kernel call per thread: its contiguous share of the rows
        # (SMALL: in whole groups of 16 but the last)
        if nth <= 1:
            if path == PATH_SMALL:
                _bwd_small(y, dy, o, outer, n, log)
            else:
                _bwd_rows(y, dy, o, outer, n, log, pf)
        else:
            for t in prange(nth, num_threads=nth, schedule='static'):
                r0 = outer * t // nth
                r1 = outer * (t + 1) // nth
                if path == PATH_SMALL:
                    r0 = r0 // 16 * 16 if t > 0 else 0
                    r1 = r1 // 16 * 16 if t + 1 < nth else outer
                    _bwd_small(y + r0 * n, dy + r0 * n, o + r0 * n, r1 - r0, n, log)
                else:
                    _bwd_rows(y + r0 * n, dy + r0 * n, o + r0 * n, r1 - r0, n, log, pf)
        return
    # units of W columns: a tile's width (COLS_TILED), else COL_BLOCK
    W = pl.block
    nb = (inner + W - 1) // W
    units = outer * nb
    if nth <= 1:
        csm_set_stream_stores(pl.stream)
        for u in range(units):
            b = (u // nb) * n * inner + (u % nb) * W
            _bwd_cols(y + b, dy + b, o + b, min(W, inner - (u % nb) * W), n,
                      inner, log, path)
    else:
        for u in prange(units, num_threads=nth, schedule='static'):
            j0 = (u % nb) * W
            b = (u // nb) * n * inner + j0
            csm_set_stream_stores(pl.stream)
            _bwd_cols(y + b, dy + b, o + b, min(W, inner - j0), n, inner, log, path)


def softmax_bwd(cnp.ndarray y, cnp.ndarray dy, cnp.ndarray out, bint log):
    """Backward of softmax / log_softmax along axis 1 of C-contiguous 3-D
    arrays (outer, n, inner) of one float dtype; out may alias y or dy."""
    cdef Py_ssize_t outer = y.shape[0], n = y.shape[1], inner = y.shape[2]
    cdef void *py = cnp.PyArray_DATA(y)
    cdef void *pd = cnp.PyArray_DATA(dy)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef csm_plan pl
    if y.size == 0:
        return
    pl = _plan_entry(OP_LOG_SOFTMAX_BWD if log else OP_SOFTMAX_BWD,
                     y.dtype.num != cnp.NPY_FLOAT,
                     LAYOUT_ROWS if inner == 1 else LAYOUT_COLS, outer, n, inner,
                     PF_GRAD)
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if pl.path == PATH_COLS_TILED:
        pl.stream = _stream_hint(out)
    if y.dtype.num == cnp.NPY_FLOAT:
        with nogil:
            _bwd_run(<const float *>py, <const float *>pd, <float *>po, outer,
                     n, inner, log, &pl)
    else:
        with nogil:
            _bwd_run(<const double *>py, <const double *>pd, <double *>po,
                     outer, n, inner, log, &pl)
