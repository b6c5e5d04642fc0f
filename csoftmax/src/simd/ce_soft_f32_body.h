/*
 * simd/ce_soft_f32_body.h -- the float32 cross-entropy gradient of soft
 * targets (label smoothing, probability targets), rows and columns: p W -
 * w q' formed in float64 with the 2^-43 exp (exp_mid_) and rounded once,
 * then the 1/sum fix-up.  Written once against the lane abstraction,
 * compiled per ISA by src/avx2/ce_soft_f32.c and src/avx512/ce_soft_f32.c.
 * (internal; included once, by those files, after common.h)
 */

/* ---- cross-entropy gradient of soft targets (float32) ------------------- */

/* e = exp_mid(s (x - m) - l) and a e - sub in VLEN / 2 lanes: exp to
 * 2^-43 and one rounding to float64 of the difference (fused
 * multiply-subtract), so where the two terms cancel the result keeps
 * ~2^-43 x their magnitude. */
static inline VD ce_soft_vd_(VD x, VD sv, VD m, VD l, VD a, VD sub, VD *acc)
{
    VD e = exp_mid_(vd_fmsub(sv, vd_sub(x, m), l));
    *acc = vd_add(*acc, e);
    return vd_fmsub(a, e, sub);
}

/* w (cq q + c0) of VLEN classes (w, q optional; r < VLEN: the first r) */
static inline void ce_soft_sub_(const float *q, const double *w, ptrdiff_t r,
                                VD cq, VD c0, VD *lo, VD *hi)
{
    VD a = c0, b = c0, u, v;
    if (q) {
        if (r >= VLEN) vload2_f32(q, &u, &v); else vload2m_f32(q, r, 0.0f, &u, &v);
        a = vd_fmadd(cq, u, c0);
        b = vd_fmadd(cq, v, c0);
    }
    if (w) {
        if (r >= VLEN) vload2_f64(w, &u, &v); else vload2m_f64(w, r, 0.0, &u, &v);
        a = vd_mul(a, u);
        b = vd_mul(b, v);
    }
    *lo = a; *hi = b;
}

void SUFFIX(csm_ce_soft_rows_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t x_row_stride, double scale,
                               const double *max, const double *log_sum,
                               const double *a, const float *q,
                               ptrdiff_t q_row_stride, const double *w,
                               double cq, double c0, float *g,
                               ptrdiff_t g_row_stride, double *sum)
{
    const VD sv = vd_set1(scale), cqv = vd_set1(cq);
    const VD c0v = vd_set1(c0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        const float *qr = q ? q + r * q_row_stride : NULL;
        float *gr = g + r * g_row_stride;
        const VD mv = vd_set1(max[r]), lv = vd_set1(log_sum[r]);
        const VD av = vd_set1(a[r]);
        VD x0, x1, s0 = c0v, s1 = c0v, e0 = vd_zero(), e1 = e0;
        ptrdiff_t i = 0;
        for (; i + VLEN <= n; i += VLEN) {
            vload2_f32(xr + i, &x0, &x1);
            if (qr || w)
                ce_soft_sub_(qr ? qr + i : NULL, w ? w + i : NULL, VLEN, cqv, c0v, &s0, &s1);
            vstore2_f32(gr + i, ce_soft_vd_(x0, sv, mv, lv, av, s0, &e0),
                        ce_soft_vd_(x1, sv, mv, lv, av, s1, &e1));
        }
        if (i < n) {
            vload2m_f32(xr + i, n - i, -INFINITY, &x0, &x1);
            if (qr || w)
                ce_soft_sub_(qr ? qr + i : NULL, w ? w + i : NULL, n - i, cqv, c0v, &s0, &s1);
            vstore2m_f32(gr + i, n - i, ce_soft_vd_(x0, sv, mv, lv, av, s0, &e0),
                         ce_soft_vd_(x1, sv, mv, lv, av, s1, &e1));
        }
        if (sum) sum[r] = vd_hsum(vd_add(e0, e1));
    }
}

/* A = sum u, B = sum u (x - max), u = w (cq q + c0), VLEN classes a step
 * in two float64 vectors each; the tail in scalar code, so that a
 * non-finite max meets no padding lanes (see csm_ce_soft_sums_f32) */
void SUFFIX(csm_ce_soft_sums_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                  ptrdiff_t x_row_stride, const double *max,
                                  const float *q, ptrdiff_t q_row_stride,
                                  const double *w, double cq, double c0,
                                  double *A, double *B)
{
    const VD cqv = vd_set1(cq), c0v = vd_set1(c0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        const float *qr = q ? q + r * q_row_stride : NULL;
        const double m = max[r];
        const VD mv = vd_set1(m);
        VD a0 = vd_zero(), a1 = a0, b0 = a0, b1 = a0;
        VD x0, x1, u0 = c0v, u1 = c0v;
        ptrdiff_t i = 0;
        for (; i + VLEN <= n; i += VLEN) {
            vload2_f32(xr + i, &x0, &x1);
            if (qr || w)
                ce_soft_sub_(qr ? qr + i : NULL, w ? w + i : NULL, VLEN, cqv, c0v, &u0, &u1);
            a0 = vd_add(a0, u0);
            a1 = vd_add(a1, u1);
            b0 = vd_fmadd(u0, vd_sub(x0, mv), b0);
            b1 = vd_fmadd(u1, vd_sub(x1, mv), b1);
        }
        double sa = vd_hsum(vd_add(a0, a1));
        double sb = vd_hsum(vd_add(b0, b1));
        for (; i < n; ++i) {
            double u = (qr ? cq * (double)qr[i] + c0 : c0) * (w ? w[i] : 1.0);
            sa += u;
            sb += u * ((double)xr[i] - m);
        }
        A[r] = sa;
        B[r] = sb;
    }
}

void SUFFIX(csm_ce_soft_cols_f32)(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                               ptrdiff_t x_row_stride, double scale,
                               const double *max, const double *log_sum,
                               const double *a, const float *q,
                               ptrdiff_t q_row_stride, const double *w,
                               double cq, double c0, float *g,
                               ptrdiff_t g_row_stride, double *sum)
{
    const VD sv = vd_set1(scale);
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {
        ptrdiff_t r = n_cols - j;
        VD x0, x1, m0, m1, l0, l1, a0, a1, u, v;
        VD e0 = vd_zero(), e1 = e0;
        if (r >= VLEN) {
            vload2_f64(max + j, &m0, &m1); vload2_f64(log_sum + j, &l0, &l1);
            vload2_f64(a + j, &a0, &a1);
        } else {
            vload2m_f64(max + j, r, 0.0, &m0, &m1);
            vload2m_f64(log_sum + j, r, 0.0, &l0, &l1);
            vload2m_f64(a + j, r, 0.0, &a0, &a1);
        }
        for (ptrdiff_t c = 0; c < n; ++c) {
            const double wc = w ? w[c] : 1.0;
            const VD c0v = vd_set1(wc * c0), cw = vd_set1(wc * cq);
            VD s0 = c0v, s1 = c0v;
            const float *xr = x + c * x_row_stride + j;
            const float *qr = q ? q + c * q_row_stride + j : NULL;
            float *gr = g + c * g_row_stride + j;
            if (r >= VLEN) {
                vload2_f32(xr, &x0, &x1);
                if (qr) {
                    vload2_f32(qr, &u, &v);
                    s0 = vd_fmadd(cw, u, c0v); s1 = vd_fmadd(cw, v, c0v);
                }
                vstore2_f32(gr, ce_soft_vd_(x0, sv, m0, l0, a0, s0, &e0),
                            ce_soft_vd_(x1, sv, m1, l1, a1, s1, &e1));
            } else {
                vload2m_f32(xr, r, -INFINITY, &x0, &x1);
                if (qr) {
                    vload2m_f32(qr, r, 0.0f, &u, &v);
                    s0 = vd_fmadd(cw, u, c0v); s1 = vd_fmadd(cw, v, c0v);
                }
                vstore2m_f32(gr, r, ce_soft_vd_(x0, sv, m0, l0, a0, s0, &e0),
                             ce_soft_vd_(x1, sv, m1, l1, a1, s1, &e1));
            }
        }
        if (sum) {
            if (r >= VLEN) vstore2_f64(sum + j, e0, e1);
            else vstore2m_f64(sum + j, r, e0, e1);
        }
    }
}

/* g - (g + sub) (1 - 1/sum) in VLEN / 2 lanes (see csm_ce_soft_fix_f32) */
static inline VD ce_fix_vd_(VD g, VD sub, VD f)
{
    return vd_fnmadd(vd_add(g, sub), f, g);
}

void SUFFIX(csm_ce_soft_fix_rows_f32)(float *g, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t g_row_stride, const float *q,
                                   ptrdiff_t q_row_stride, const double *w,
                                   double cq, double c0, const double *sum)
{
    const VD cqv = vd_set1(cq), c0v = vd_set1(c0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double f = 1.0 - 1.0 / sum[r];
        if (fabs(f) < 0x1p-45) continue;   /* log_sum already accurate */ 
        const VD fv = vd_set1(f);
        const float *qr = q ? q + r * q_row_stride : NULL;
        float *gr = g + r * g_row_stride;
        VD g0, g1, s0 = c0v, s1 = c0v;
        ptrdiff_t i = 0;
        for (; i + VLEN <= n; i += VLEN) {
            vload2_f32(gr + i, &g0, &g1);
            if (qr || w)
                ce_soft_sub_(qr ? qr + i : NULL, w ? w + i : NULL, VLEN, cqv, c0v, &s0, &s1);
            vstore2_f32(gr + i, ce_fix_vd_(g0, s0, fv), ce_fix_vd_(g1, s1, fv));
        }
        if (i < n) {
            vload2m_f32(gr + i, n - i, 0.0f, &g0, &g1);
            if (qr || w)
                ce_soft_sub_(qr ? qr + i : NULL, w ? w + i : NULL, n - i, cqv, c0v, &s0, &s1);
            vstore2m_f32(gr + i, n - i, ce_fix_vd_(g0, s0, fv), ce_fix_vd_(g1, s1, fv));
        }
    }
}

void SUFFIX(csm_ce_soft_fix_cols_f32)(float *g, ptrdiff_t n_cols, ptrdiff_t n,
                                   ptrdiff_t g_row_stride, const float *q,
                                   ptrdiff_t q_row_stride, const double *w,
                                   double cq, double c0, const double *sum)
{
    const VD one = vd_set1(1.0);
    for (ptrdiff_t j = 0; j < n_cols; j += VLEN) {
        ptrdiff_t r = n_cols - j;
        VD f0, f1, g0, g1, u, v;
        if (r >= VLEN) vload2_f64(sum + j, &f0, &f1);
        else vload2m_f64(sum + j, r, 1.0, &f0, &f1);
        f0 = vd_sub(one, vd_div(one, f0));
        f1 = vd_sub(one, vd_div(one, f1));
        for (ptrdiff_t c = 0; c < n; ++c) {
            const double wc = w ? w[c] : 1.0;
            const VD c0v = vd_set1(wc * c0), cw = vd_set1(wc * cq);
            VD s0 = c0v, s1 = c0v;
            const float *qr = q ? q + c * q_row_stride + j : NULL;
            float *gr = g + c * g_row_stride + j;
            if (r >= VLEN) {
                vload2_f32(gr, &g0, &g1);
                if (qr) {
                    vload2_f32(qr, &u, &v);
                    s0 = vd_fmadd(cw, u, c0v); s1 = vd_fmadd(cw, v, c0v);
                }
                vstore2_f32(gr, ce_fix_vd_(g0, s0, f0), ce_fix_vd_(g1, s1, f1));
            } else {
                vload2m_f32(gr, r, 0.0f, &g0, &g1);
                if (qr) {
                    vload2m_f32(qr, r, 0.0f, &u, &v);
                    s0 = vd_fmadd(cw, u, c0v); s1 = vd_fmadd(cw, v, c0v);
                }
                vstore2m_f32(gr, r, ce_fix_vd_(g0, s0, f0), ce_fix_vd_(g1, s1, f1));
            }
        }
    }
}

