/*
 * simd/small_lanes_f32_body.h -- float32 short rows (n <= CSM_SMALL_MAX)
 * with VLEN rows in the lanes of V and the float32 exact-reduction exp: the
 * fused softmax / log_softmax and the cross-entropy gradient of the
 * AVX-512 table (16 rows a group, the 16x8 tiles smallv_in_f32_ /
 * smallv_out_f32_ of avx512/small.h).
 *
 * The float32 fast paths of the fused rows (xr_f32.h "fused float32
 * softmax rows", fused_rows_f32_body.h) with per-lane constants, as the
 * column kernels have them (xr_lanes_init_):
 *   terms e'_i = 2^XR_BIAS exp(r_M) exp(s (x_i - M)) in float32 lanes (the
 *   exact reduction of s x; elements equal to the max counted apart and
 *   stored as the sentinel -1, elements below the clamp L = M - XR_SPAN/s
 *   replaced by L), pairs added in float32, then summed in float64;
 *   softmax: y_i = fma(e'_i, f_hi, e'_i f_lo) 2^-XR_BIAS with f = 2^96
 *   factor / S (S = count + rest), the sentinels fl32(1 / S);
 *   log_softmax: log_sum = log(count + rest) per lane, then at scale 1 the
 *   three-part x - (M + log_sum) of logsm_c3_f32_, else the float64-lane
 *   s (x - M) - log_sum;
 *   cross-entropy: the softmax with f and the sentinels times a[r], the
 *   target entry a[r] expm1(lp) from lp in float64.
 * One float32 exp per element on 16 lanes where the float64-lane kernels of
 * simd/small_f32_body.h spend a float64 exp per element on 8: 25-30 % less
 * time at rows of 10 (Sapphire Rapids), at the fused rows' accuracy
 * instead of theirs (measured max 2.0 / 1.9 ULP for softmax / log_softmax
 * against 0.55 / 0.53: the float32 polynomial and reduction of each term).
 * AVX2 keeps those kernels: this body on 8 lanes measured no faster there
 * (the per-group float64 work -- clamp, factors, 1 / S, log -- is twice the
 * share of 8 rows) and they are the more accurate.
 * Every lane's arithmetic is its row's alone.  Lanes with a NaN, a
 * non-finite max or no representable clamp are computed (to no use), not
 * stored, and redone alone by the scalar kernels, so a row's result never
 * depends on the rows around it.
 * (internal; included by avx512/small_f32.c after small_f32_body.h)
 */
#include "cols_f32.h"   /* the per-lane xr constants (xr_lanes_init_), logsmc_f32_ */

/* The per-lane max and clamp of a group just loaded (mf, nanb from the
 * tile): returns the lanes the vector kernels may take.  The others still
 * compute (on whatever their clamp is; no lane reads another), are not
 * stored and are redone by the caller. */
static inline __attribute__((always_inline)) int
smallv_prep_f32_(V mf, int nanb, VD sv, VD span_sv, VD *ml, VD *mh, V *Lv,
                 const int S1)
{
    const int all = (int)((1u << VLEN) - 1);
    VD Ll, Lh;
    *ml = v_lo_pd(mf);
    *mh = v_hi_pd(mf);
    if (S1) {
        /* scale 1: the clamp fl32(m - XR_SPAN) is one float32 subtraction
         * (m - 150 is exact in float64 for |m| <= 2^20, so rounding it once
         * is the float32 difference) and within 2^-4 of m - 150 */
        const int ok = v_absle_bits_(mf, 0x1p20f) & ~nanb & all;
        if (ok == all) {
            *Lv = v_sub(mf, v_set1((float)XR_SPAN));
            return ok;
        }
    }
    const int ok = (vd_clamp_bits_(*ml, sv, span_sv, XR_SPAN, &Ll) |
                    vd_clamp_bits_(*mh, sv, span_sv, XR_SPAN, &Lh) << VDLEN) & ~nanb & all;
    *Lv = v_from_pd(Ll, Lh);
    return ok;
}

/* The terms of a prepared group: count (float64 halves *c0, *c1) and rest
 * = factor * sum of the other terms (*r0, *r1); STORE: T[i] <- e'_i, the
 * sentinel -1 where x == max (else T keeps x). */
static inline __attribute__((always_inline)) void
smallv_terms_f32_(V *T, ptrdiff_t n, V mf, V Lv, const xr_row_ *xc, VD fl,
                  VD fh, VD *c0, VD *c1, VD *r0, VD *r1, const int STORE,
                  const int S1)
{
    const V neg1 = v_set1(-1.0f);
    VD s0 = vd_zero(), s1 = s0;
    VI cnt = vi_zero();
#define SV_STEP(i, e)                                                          \
    do {                                                                       \
        const V a_ = T[i];                                                     \
        const VM eq_ = v_cmpeq(a_, mf);                                        \
        cnt = vi_count(cnt, eq_);                                              \
        e = xr_exp_(v_select(eq_, v_max(a_, Lv), Lv), xc, S1);                 \
        if (STORE) T[i] = v_select(eq_, e, neg1);                              \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 2 <= n; i += 2) {    /* pairs of terms added in float32 */
        V e0, e1;
        SV_STEP(i, e0);
        SV_STEP(i + 1, e1);
        const V e = v_add(e0, e1);
        s0 = vd_add(s0, v_lo_pd(e));
        s1 = vd_add(s1, v_hi_pd(e));
    }
    if (i < n) {
        V e;
        SV_STEP(i, e);
        s0 = vd_add(s0, v_lo_pd(e));
        s1 = vd_add(s1, v_hi_pd(e));
    }
#undef SV_STEP
    *c0 = vi_lo_pd(cnt);
    *c1 = vi_hi_pd(cnt);
    *r0 = vd_mul(s0, fl);
    *r1 = vd_mul(s1, fh);
}

/* y_i = (e'_i f) 2^-XR_BIAS, sentinel lanes ym (f, ym per lane, f_lo a
 * normal float or 0) */
static inline __attribute__((always_inline)) void
smallv_scale_f32_(V *T, ptrdiff_t n, VD f0, VD f1, V ym)
{
    const V fh = v_from_pd(f0, f1);
    const V fl = v_from_pd(vd_sub(f0, v_lo_pd(fh)), vd_sub(f1, v_hi_pd(fh)));
    const V down = v_set1(0x1p-96f);
    for (ptrdiff_t i = 0; i < n; ++i) {
        const V e = T[i];
        T[i] = v_select(v_signmask(e), v_mul(v_fmadd(e, fh, v_mul(e, fl)), down), ym);
    }
}

/* x - (max + log_sum) as three float32 parts per lane (log_softmax_row_f32_c3_) */
static inline void smallv_c3_(VD ml, VD mh, VD l0, VD l1, V *c1, V *c2, V *c3)
{
    const VD u0 = vd_round_f32(vd_add(ml, l0)), u1 = vd_round_f32(vd_add(mh, l1));
    const VD r0 = vd_add(vd_sub(ml, u0), l0), r1 = vd_add(vd_sub(mh, u1), l1);
    const VD v0 = vd_round_f32(r0), v1 = vd_round_f32(r1);
    *c1 = v_from_pd(u0, u1);
    *c2 = v_from_pd(v0, v1);
    *c3 = v_from_pd(vd_sub(r0, v0), vd_sub(r1, v1));
}

/* A group: rows p[0..VLEN) into T, prepared, and for the lanes the
 * vector kernels may take (returned) their terms summed (STORE: kept in
 * T); *ml, *mh the per-lane max, *fl, *fh the factors, c / r the count and
 * rest.  tv (or NULL): each lane's target column, whose x goes to *xt
 * (0 where there is none) before the terms replace x. */
static inline __attribute__((always_inline)) int
smallv_reduce_f32_(const float *const *p, ptrdiff_t n, V *T, double scale,
                   VD sv, VD span_sv, VD *ml, VD *mh, VD *fl, VD *fh,
                   VD *c0, VD *c1, VD *r0, VD *r1, const VI *tv, V *xt,
                   const int STORE)
{
    V mf, Lv;
    int nanb;
    smallv_in_f32_(p, n, T, &mf, &nanb);
    const int s1 = scale == 1.0;
    const int ok = s1 ? smallv_prep_f32_(mf, nanb, sv, span_sv, ml, mh, &Lv, 1)
                      : smallv_prep_f32_(mf, nanb, sv, span_sv, ml, mh, &Lv, 0);
    if (!ok) return 0;
    if (tv) {
        V v = v_zero();
        for (ptrdiff_t i = 0; i < n; ++i) v = v_select(vi_eqk_(*tv, (int)i), v, T[i]);
        *xt = v;
    }
    xr_row_ xc;
    xr_lanes_init_(&xc, scale, *ml, *mh, fl, fh, 1);
    if (s1) smallv_terms_f32_(T, n, mf, Lv, &xc, *fl, *fh, c0, c1, r0, r1, STORE, 1);
    else smallv_terms_f32_(T, n, mf, Lv, &xc, *fl, *fh, c0, c1, r0, r1, STORE, 0);
    return ok;
}

static inline __attribute__((always_inline)) void
smallv_fused_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                  ptrdiff_t x_row_stride, double scale, float *y,
                  ptrdiff_t y_row_stride, const int LOG)
{
    V T[SMALL_COLS];
    const VD sv = vd_set1(scale), span_sv = vd_set1(XR_SPAN / scale);
    const VD one = vd_set1(1.0), up = vd_set1(0x1p96);
    const int s1 = scale == 1.0;
    for (ptrdiff_t g = 0; g < n_rows; g += VLEN) {
        const ptrdiff_t w = n_rows - g < VLEN ? n_rows - g : VLEN;
        const float *p[VLEN];
        float *q[VLEN];
        for (int k = 0; k < VLEN; ++k) {
            ptrdiff_t r = g + (k < w ? k : 0);
            p[k] = x + r * x_row_stride;
            q[k] = y + r * y_row_stride;
        }
        VD ml, mh, fl, fh, c0, c1, r0, r1;
        const int ok = smallv_reduce_f32_(p, n, T, scale, sv, span_sv, &ml, &mh, &fl,
                                          &fh, &c0, &c1, &r0, &r1, NULL, NULL, !LOG);
        if (ok) {
            if (LOG) {
                const VD l0 = log_sum_vd_(c0, r0), l1 = log_sum_vd_(c1, r1);
                if (s1) {
                    V k1, k2, k3;
                    smallv_c3_(ml, mh, l0, l1, &k1, &k2, &k3);
                    for (ptrdiff_t i = 0; i < n; ++i) T[i] = logsm_c3_f32_(T[i], k1, k2, k3);
                } else {
                    for (ptrdiff_t i = 0; i < n; ++i) T[i] = logsmc_f32_(T[i], sv, ml, mh, l0, l1);
                }
            } else {
                const VD i0 = vd_div(one, vd_add(c0, r0)), i1 = vd_div(one, vd_add(c1, r1));
                smallv_scale_f32_(T, n, vd_mul(vd_mul(up, fl), i0),
                                  vd_mul(vd_mul(up, fh), i1), v_from_pd(i0, i1));
            }
            const int store = ok & (int)((1u << w) - 1);
            if (store) smallv_out_f32_(T, n, q, store);
        }
        for (unsigned redo = ~(unsigned)ok & ((1u << w) - 1); redo; redo &= redo - 1) {
            const int k = __builtin_ctz(redo);
            fused_small_row_f32_(p[k], q[k], n, scale, LOG);
        }
    }
}

/* The short-row reduction: logsumexp's (for_lse: the LSE itself, redone
 * in float64 where it cancels) keeps the 8-row float64-lane kernel and its
 * 0.5 ULP; the other uses (the cross-entropy's loss without gradient, the
 * two-pass softmax with a factor, label smoothing) take the float32-lane
 * sums of the fused kernels above, so a loss is the same number with and
 * without its gradient. */
void SUFFIX(csm_lse_small_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t row_stride, double scale, int for_lse,
                               double *max, double *log_sum)
{
    if (for_lse) {
        lse_small_g8_f32_(x, n_rows, n, row_stride, scale, 1, max, log_sum);
        return;
    }
    V T[SMALL_COLS];
    const VD sv = vd_set1(scale), span_sv = vd_set1(XR_SPAN / scale);
    for (ptrdiff_t g = 0; g < n_rows; g += VLEN) {
        const ptrdiff_t w = n_rows - g < VLEN ? n_rows - g : VLEN;
        const float *p[VLEN];
        for (int k = 0; k < VLEN; ++k)
            p[k] = x + (g + (k < w ? k : 0)) * row_stride;
        VD ml, mh, fl, fh, c0, c1, r0, r1;
        const int ok = smallv_reduce_f32_(p, n, T, scale, sv, span_sv, &ml, &mh, &fl,
                                          &fh, &c0, &c1, &r0, &r1, NULL, NULL, 0);
        if (ok) {
            double mx[VLEN], ls[VLEN];
            vd_storeu(mx, ml);
            vd_storeu(mx + VDLEN, mh);
            vd_storeu(ls, log_sum_vd_(c0, r0));
            vd_storeu(ls + VDLEN, log_sum_vd_(c1, r1));
            for (unsigned b = (unsigned)ok & ((1u << w) - 1); b; b &= b - 1) {
                const int k = __builtin_ctz(b);
                max[g + k] = mx[k];
                log_sum[g + k] = ls[k];
            }
        }
        for (unsigned redo = ~(unsigned)ok & ((1u << w) - 1); redo; redo &= redo - 1) {
            const int k = __builtin_ctz(redo);
            small_lse_row_f32_(p[k], n, scale, max + g + k, log_sum + g + k);
        }
    }
}

void SUFFIX(csm_softmax_small_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale, float *y,
                                   ptrdiff_t y_row_stride)
{
    smallv_fused_f32_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 0);
}

void SUFFIX(csm_log_softmax_small_f32)(const float *x, ptrdiff_t n_rows,
                                       ptrdiff_t n, ptrdiff_t x_row_stride,
                                       double scale, float *y,
                                       ptrdiff_t y_row_stride)
{
    smallv_fused_f32_(x, n_rows, n, x_row_stride, scale, y, y_row_stride, 1);
}

/* Cross-entropy gradient of float32 short rows in one call (see
 * csoftmax.h), VLEN rows a group as the fused softmax above: the terms
 * e'_i stored in the tile, y = a[r] * softmax by the rescale with f = a 2^96
 * factor / S (sentinels fl32(a / S)), and the target entry recomputed as
 * a[r] * expm1(lp) from lp = scale * (x_t - max) - log_sum in float64 (no
 * cancellation near p_t = 1).  Lanes with a NaN, a non-finite max or no
 * representable clamp go through the scalar kernels; lanes whose |f| is
 * outside [2^-92, 2^13] (a = 0 is taken: f = 0 gives the zeros) take their
 * gradient from the scalar kernels but keep lp from this reduction -- the
 * one of csm_lse_small_f32 without for_lse, so the loss does not depend on
 * whether the gradient is asked for. */
void SUFFIX(csm_ce_small_f32)(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t x_row_stride, double scale,
                              const double *a, const int *t, double *lp,
                              float *y, ptrdiff_t y_row_stride)
{
    V T[SMALL_COLS];
    const VD sv = vd_set1(scale), span_sv = vd_set1(XR_SPAN / scale);
    const VD up = vd_set1(0x1p96), fmin = vd_set1(0x1p-92), fmax = vd_set1(0x1p13);
    for (ptrdiff_t g = 0; g < n_rows; g += VLEN) {
        const ptrdiff_t w = n_rows - g < VLEN ? n_rows - g : VLEN;
        const float *p[VLEN];
        float *q[VLEN];
        double av[VLEN];
        int tk[VLEN];
        if (w == VLEN) {   /* a full group: coefficients and targets as vectors */
            for (int k = 0; k < VLEN; ++k) {
                p[k] = x + (g + k) * x_row_stride;
                q[k] = y + (g + k) * y_row_stride;
            }
            vd_storeu(av, vd_loadu(a + g));
            vd_storeu(av + VDLEN, vd_loadu(a + g + VDLEN));
            vi_storeu_(tk, t != NULL ? vi_loadu_(t + g) : vi_set1(-1));
        } else {
            for (int k = 0; k < VLEN; ++k) {
                ptrdiff_t r = g + (k < w ? k : 0);
                p[k] = x + r * x_row_stride;
                q[k] = y + r * y_row_stride;
                av[k] = a[r];
                tk[k] = t != NULL ? t[r] : -1;
            }
        }
        VD ml, mh, fl, fh, c0, c1, r0, r1;
        const VI tv = vi_loadu_(tk);
        V xt;
        const int ok = smallv_reduce_f32_(p, n, T, scale, sv, span_sv, &ml, &mh, &fl,
                                          &fh, &c0, &c1, &r0, &r1, &tv, &xt, 1);
        if (ok) {
            const VD one = vd_set1(1.0);
            const VD i0 = vd_div(one, vd_add(c0, r0)), i1 = vd_div(one, vd_add(c1, r1));
            const VD a0 = vd_loadu(av), a1 = vd_loadu(av + VDLEN);
            const VD f0 = vd_mul(vd_mul(up, fl), vd_mul(a0, i0));
            const VD f1 = vd_mul(vd_mul(up, fh), vd_mul(a1, i1));
            const VD z = vd_zero();
            const VD af0 = vd_abs(f0), af1 = vd_abs(f1);
            /* the lanes whose gradient the float32 rescale may write */
            const int fast = ok & (vdm_bits(vdm_or(vd_cmp(f0, z, _CMP_EQ_OQ),
                                   vdm_and(vd_cmp(af0, fmin, _CMP_GE_OQ),
                                           vd_cmp(af0, fmax, _CMP_LE_OQ)))) |
                   vdm_bits(vdm_or(vd_cmp(f1, z, _CMP_EQ_OQ),
                                   vdm_and(vd_cmp(af1, fmin, _CMP_GE_OQ),
                                           vd_cmp(af1, fmax, _CMP_LE_OQ)))) << VDLEN);
            smallv_scale_f32_(T, n, f0, f1, v_from_pd(vd_mul(a0, i0), vd_mul(a1, i1)));
            const VD l0 = log_sum_vd_(c0, r0), l1 = log_sum_vd_(c1, r1);
            const int wm = (int)((1u << w) - 1);
            const int tmask = ok & wm & ~vi_negbits_(tv);
            if (tmask) {
                /* lp (as the loss-only path forms it) and the target
                 * entries a * expm1(lp) in float64 */
                const VD t0 = ce_lp_vd_(v_lo_pd(xt), ml, sv, l0);
                const VD t1 = ce_lp_vd_(v_hi_pd(xt), mh, sv, l1);
                const V gt = v_from_pd(vd_mul(a0, expm1_le0_(t0)), vd_mul(a1, expm1_le0_(t1)));
                for (ptrdiff_t i = 0; i < n; ++i)
                    T[i] = v_select(vi_eqk_(tv, (int)i), T[i], gt);
                vd_store_bits_(lp + g, tmask & ((1 << VDLEN) - 1), t0);
                vd_store_bits_(lp + g + VDLEN, tmask >> VDLEN, t1);
            }
            if (fast & wm) smallv_out_f32_(T, n, q, fast & wm);
            /* reduced, but a factor out of range: the gradient from the
             * scalar kernels (a clamped element's a p may not round to 0
             * any more), lp -- the loss -- from the reduction above */
            for (unsigned b = (unsigned)(ok & ~fast & wm); b; b &= b - 1) {
                const int k = __builtin_ctz(b);
                double lk;
                ce_small_row_f32_(p[k], q[k], n, scale, av[k], tk[k], &lk);
            }
        }
        for (unsigned redo = ~(unsigned)ok & ((1u << w) - 1); redo; redo &= redo - 1) {
            const int k = __builtin_ctz(redo);
            ce_small_row_f32_(p[k], q[k], n, scale, av[k], tk[k], lp + g + k);
        }
    }
}
