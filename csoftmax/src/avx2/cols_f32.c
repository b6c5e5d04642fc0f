/*
 * avx2/cols_f32.c -- float32 columns (the non-last-axis case): reduction
 * and softmax write, and the cross-entropy store / rescale
 */
#include "common.h"
#include "cols.h"

#ifdef CSM_BUILD_AVX2

/* 8 * G columns (G = 1 or 2) starting at x: max pass, then (if every lane
 * is in range) the clamped sum pass.  Returns 0 if the generic kernel must
 * redo the group. */
static inline __attribute__((always_inline)) int
lse_cols_group_f32_(const float *x, ptrdiff_t n, ptrdiff_t rs, double scale,
                    double span_s, csm_lse_state *states, float *e,
                    ptrdiff_t es, const int G, const int S1)
{
    const __m256 neg1 = _mm256_set1_ps(-1.0f);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const __m256d sv = _mm256_set1_pd(scale);
    __m256 m0 = ninf, m1 = ninf, bad = _mm256_setzero_ps();
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        COLS_PF(xi + 16 * G);
        __m256 a = _mm256_loadu_ps(xi);
        m0 = _mm256_max_ps(m0, a);
        if (G == 2) {
            __m256 b = _mm256_loadu_ps(xi + 8);
            m1 = _mm256_max_ps(m1, b);
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
        } else {
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        }
    }
    if (_mm256_movemask_ps(bad)) return 0;
    __m256d mx0 = _mm256_cvtps_pd(_mm256_castps256_ps128(m0));
    __m256d mx1 = _mm256_cvtps_pd(_mm256_extractf128_ps(m0, 1));
    __m256d mx2 = mx0, mx3 = mx1;
    __m256 L0, L1 = ninf;
    if (!clamp_bound8_(mx0, mx1, sv, XR_SPAN, span_s, &L0)) return 0;
    if (G == 2) {
        mx2 = _mm256_cvtps_pd(_mm256_castps256_ps128(m1));
        mx3 = _mm256_cvtps_pd(_mm256_extractf128_ps(m1, 1));
        if (!clamp_bound8_(mx2, mx3, sv, XR_SPAN, span_s, &L1)) return 0;
    }
    /* the all-float32 reduction of the rows, with per-lane constants */
    xr_row_ xa, xb = { 0 };
    __m256d f0, f1, f2 = sv, f3 = sv;
    xr_lanes_init_(&xa, scale, mx0, mx1, &f0, &f1);
    if (G == 2) xr_lanes_init_(&xb, scale, mx2, mx3, &f2, &f3);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0, r2 = r0, r3 = r0;
    __m256i cnt = _mm256_setzero_si256(), cnt1 = cnt;
/* e (not NULL): the terms are kept there, as csm_lse_store_rows_f32 does
 * (sentinel -1 where x == max), at row i + k, column offset o */
#define XRC_STEP(a, mf, Lv, c, t, cn, k, o)                                    \
    do {                                                                       \
        __m256 eq_ = _mm256_cmp_ps(a, mf, _CMP_EQ_OQ);                         \
        cn = _mm256_sub_epi32(cn, _mm256_castps_si256(eq_));                   \
        t = xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a, Lv), Lv, eq_), &c, S1);  \
        if (e) _mm256_storeu_ps(e + (i + (k)) * es + (o),                      \
                                _mm256_blendv_ps(t, neg1, eq_));               \
    } while (0)
#define XRC_ADD(s, ra, rb)                                                     \
    do {                                                                       \
        ra = _mm256_add_pd(ra, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));    \
        rb = _mm256_add_pd(rb, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));  \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 4 <= n; i += 4) {   /* 4 rows summed in float32, as the rows */
        const float *xi = x + i * rs;
        __m256 e0, e1, e2, e3;
        XRC_STEP(_mm256_loadu_ps(xi), m0, L0, xa, e0, cnt, 0, 0);
        XRC_STEP(_mm256_loadu_ps(xi + rs), m0, L0, xa, e1, cnt, 1, 0);
        XRC_STEP(_mm256_loadu_ps(xi + 2 * rs), m0, L0, xa, e2, cnt, 2, 0);
        XRC_STEP(_mm256_loadu_ps(xi + 3 * rs), m0, L0, xa, e3, cnt, 3, 0);
        __m256 sa = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        XRC_ADD(sa, r0, r1);
        if (G == 2) {
            XRC_STEP(_mm256_loadu_ps(xi + 8), m1, L1, xb, e0, cnt1, 0, 8);
            XRC_STEP(_mm256_loadu_ps(xi + rs + 8), m1, L1, xb, e1, cnt1, 1, 8);
            XRC_STEP(_mm256_loadu_ps(xi + 2 * rs + 8), m1, L1, xb, e2, cnt1, 2, 8);
            XRC_STEP(_mm256_loadu_ps(xi + 3 * rs + 8), m1, L1, xb, e3, cnt1, 3, 8);
            __m256 sb = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
            XRC_ADD(sb, r2, r3);
        }
    }
    for (; i < n; ++i) {
        const float *xi = x + i * rs;
        __m256 t;
        XRC_STEP(_mm256_loadu_ps(xi), m0, L0, xa, t, cnt, 0, 0);
        XRC_ADD(t, r0, r1);
        if (G == 2) {
            XRC_STEP(_mm256_loadu_ps(xi + 8), m1, L1, xb, t, cnt1, 0, 8);
            XRC_ADD(t, r2, r3);
        }
    }
#undef XRC_STEP
#undef XRC_ADD
    r0 = _mm256_mul_pd(r0, f0); r1 = _mm256_mul_pd(r1, f1);
    r2 = _mm256_mul_pd(r2, f2); r3 = _mm256_mul_pd(r3, f3);
    __m256d c0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt));
    __m256d c1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt, 1));
    store_states4_(states, mx0, c0, r0);
    store_states4_(states + 4, mx1, c1, r1);
    int redo = lse_cancels4_(mx0, c0, r0, sv) | (lse_cancels4_(mx1, c1, r1, sv) << 4);
    if (G == 2) {
        __m256d c2 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(cnt1));
        __m256d c3 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(cnt1, 1));
        store_states4_(states + 8, mx2, c2, r2);
        store_states4_(states + 12, mx3, c3, r3);
        redo |= (lse_cancels4_(mx2, c2, r2, sv) << 8) | (lse_cancels4_(mx3, c3, r3, sv) << 12);
    }
    while (redo) {   /* LSE close to 0: redo the lane with libm (rare) */
        int k = __builtin_ctz(redo);
        redo &= redo - 1;
        csm_lse_cols_f32_scalar(x + k, 1, n, rs, scale, states + k);
    }
    return 1;
}

/* e != NULL: keep the terms of every group that takes the fast path in e
 * (groups as below: 16 columns, then 8, the rest generic; a group is fast
 * iff it has no NaN and every lane a representable clamp, which the
 * rescale kernel repeats from the max values alone) */
static void lse_cols_f32_(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, float *e, ptrdiff_t es)
{
    const double span_s = XR_SPAN / scale;
    ptrdiff_t j = 0;
    for (; j + 16 <= n_cols; j += 16) {
        float *ej = e ? e + j : NULL;
        int ok = scale == 1.0
            ? lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 2, 1)
            : lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 2, 0);
        if (!ok)
            csm_lse_cols_f32_generic_avx2(x + j, 16, n, row_stride, scale, states + j);
    }
    for (; j + 8 <= n_cols; j += 8) {
        float *ej = e ? e + j : NULL;
        int ok = scale == 1.0
            ? lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 1, 1)
            : lse_cols_group_f32_(x + j, n, row_stride, scale, span_s, states + j, ej, es, 1, 0);
        if (!ok)
            csm_lse_cols_f32_generic_avx2(x + j, 8, n, row_stride, scale, states + j);
    }
    if (j < n_cols)
        csm_lse_cols_f32_generic_avx2(x + j, n_cols - j, n, row_stride, scale,
                                      states + j);
}

void csm_lse_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
                           ptrdiff_t row_stride, double scale,
                           csm_lse_state *states)
{
    lse_cols_f32_(x, n_cols, n, row_stride, scale, states, NULL, 0);
}

/* Column counterparts of csm_lse_store_rows_f32 / csm_softmax_scale_rows_f32
 * (the cross-entropy gradient along a non-last axis, from its tiles): the
 * store kernel keeps the terms of the fast groups in e; the rescale kernel
 * repeats the per-group decision from the max values (a NaN max fails the
 * clamp test) and writes from x the groups not stored or with a lane whose
 * factor f = alpha exp(-log_sum) 2^96 factor is outside [2^-92, 2^13] or
 * NaN.  y may be e, not x. */
void csm_lse_store_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t row_stride, double scale, csm_lse_state *states, float *e,
        ptrdiff_t e_row_stride)
{
    lse_cols_f32_(x, n_cols, n, row_stride, scale, states, e, e_row_stride);
}

void csm_softmax_scale_cols_f32_avx2(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);
    const __m256d up = _mm256_set1_pd(0x1p96), absmask =
        _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    const __m256d fmin = _mm256_set1_pd(0x1p-92), fmax = _mm256_set1_pd(0x1p13);
    const __m256 down = _mm256_set1_ps(0x1p-96f);
    ptrdiff_t j = 0;
    while (j + 8 <= n_cols) {
        const int G = j + 16 <= n_cols ? 2 : 1;
        __m256 fh[2], fl[2], ym[2];
        int ok = 1;
        for (int g = 0; g < G && ok; ++g) {
            const double *mp = max + j + 8 * g, *lp = log_sum + j + 8 * g;
            __m256d ml = _mm256_loadu_pd(mp), mh = _mm256_loadu_pd(mp + 4);
            __m256 L;
            if (!clamp_bound8_(ml, mh, sv, XR_SPAN, span_s, &L)) { ok = 0; break; }
            xr_row_ xc;
            __m256d fac[2];
            xr_lanes_init_(&xc, scale, ml, mh, &fac[0], &fac[1]);
            __m128 h[2], l[2], m[2];
            for (int k = 0; k < 2; ++k) {
                __m256d ls = _mm256_loadu_pd(lp + 4 * k);
                __m256d gv = _mm256_mul_pd(av, exp_f64_(_mm256_sub_pd(_mm256_setzero_pd(), ls)));
                __m256d f = _mm256_mul_pd(gv, _mm256_mul_pd(up, fac[k]));
                __m256d af = _mm256_and_pd(f, absmask);
                __m256d in = _mm256_and_pd(_mm256_cmp_pd(af, fmin, _CMP_GE_OQ),
                                           _mm256_cmp_pd(af, fmax, _CMP_LE_OQ));
                if (_mm256_movemask_pd(in) != 15) { ok = 0; break; }
                h[k] = _mm256_cvtpd_ps(f);
                l[k] = _mm256_cvtpd_ps(_mm256_sub_pd(f, _mm256_cvtps_pd(h[k])));
                m[k] = _mm256_cvtpd_ps(gv);
            }
            if (!ok) break;
            fh[g] = _mm256_set_m128(h[1], h[0]);
            fl[g] = _mm256_set_m128(l[1], l[0]);
            ym[g] = _mm256_set_m128(m[1], m[0]);
        }
        if (!ok) {
            csm_softmax_cols_f32_avx2(x + j, 8 * G, n, x_row_stride, scale,
                                      max + j, log_sum + j, alpha, y + j,
                                      y_row_stride);
        } else {
            for (ptrdiff_t i = 0; i < n; ++i) {
                float *yi = y + i * y_row_stride + j;
                for (int g = 0; g < G; ++g) {
                    __m256 e = _mm256_loadu_ps(yi + 8 * g);
                    __m256 v = _mm256_fmadd_ps(e, fh[g], _mm256_mul_ps(e, fl[g]));
                    _mm256_storeu_ps(yi + 8 * g,
                                     _mm256_blendv_ps(_mm256_mul_ps(v, down), ym[g], e));
                }
            }
        }
        j += 8 * G;
    }
    if (j < n_cols)
        csm_softmax_cols_f32_avx2(x + j, n_cols - j, n, x_row_stride, scale,
                                  max + j, log_sum + j, alpha, y + j, y_row_stride);
}

/* Softmax write: alpha is folded into the per-column constant,
 * y = exp(scale*x - (scale*max + log_sum - log alpha)) (one rounding), with
 * the sign of a negative alpha applied after; |log alpha| <= 39 (alpha in [2^-56, 2^56]) keeps the
 * results inside the exponent range softmax_v_f32_ handles and the clamped
 * elements invisible. */
static inline int softmax_cols_prep8_(const double *max, const double *log_sum,
                                      __m256d sv, double la, double span_s,
                                      __m256d *cvl, __m256d *cvh, __m256 *L)
{
    __m256d ml = _mm256_loadu_pd(max), mh = _mm256_loadu_pd(max + 4);
    if (!clamp_bound8_(ml, mh, sv, F32_SM_SPAN, span_s, L)) return 0;
    const __m256d lav = _mm256_set1_pd(la);
    *cvl = _mm256_sub_pd(_mm256_fmadd_pd(sv, ml, _mm256_loadu_pd(log_sum)), lav);
    *cvh = _mm256_sub_pd(_mm256_fmadd_pd(sv, mh, _mm256_loadu_pd(log_sum + 4)), lav);
    /* log_sum must be finite and >= 0 (it is log(count + rest) >= 0) */
    __m256d okl = _mm256_cmp_pd(_mm256_loadu_pd(log_sum), _mm256_set1_pd(INFINITY), _CMP_LT_OQ);
    __m256d okh = _mm256_cmp_pd(_mm256_loadu_pd(log_sum + 4), _mm256_set1_pd(INFINITY), _CMP_LT_OQ);
    okl = _mm256_and_pd(okl, _mm256_cmp_pd(_mm256_loadu_pd(log_sum), _mm256_set1_pd(-INFINITY), _CMP_GT_OQ));
    okh = _mm256_and_pd(okh, _mm256_cmp_pd(_mm256_loadu_pd(log_sum + 4), _mm256_set1_pd(-INFINITY), _CMP_GT_OQ));
    return _mm256_movemask_pd(_mm256_and_pd(okl, okh)) == 15;
}

void csm_softmax_cols_f32_avx2(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = F32_SM_SPAN / scale;
    const __m256d sv = _mm256_set1_pd(scale);
    const double aa = fabs(alpha);
    const int fast_alpha = aa >= 0x1p-56 && aa <= 0x1p56;
    const double la = alpha == 1.0 ? 0.0 : (fast_alpha ? log(aa) : 0.0);
    const __m256 sgn = _mm256_set1_ps(alpha < 0 ? -0.0f : 0.0f);
    ptrdiff_t j = 0;
    for (; j + 8 <= n_cols; ) {
        __m256d cv0, cv1, cv2, cv3;
        __m256 L0, L1;
        int two = j + 16 <= n_cols;
        if (!fast_alpha ||
            !softmax_cols_prep8_(max + j, log_sum + j, sv, la, span_s, &cv0, &cv1, &L0)) {
            csm_softmax_cols_f32_generic_avx2(x + j, 8, n, x_row_stride, scale,
                max + j, log_sum + j, alpha, y + j, y_row_stride);
            j += 8;
            continue;
        }
        if (two && softmax_cols_prep8_(max + j + 8, log_sum + j + 8, sv, la,
                                       span_s, &cv2, &cv3, &L1)) {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                float *yi = y + i * y_row_stride + j;
                COLS_PF(xi + 16);
                __m256 a = _mm256_max_ps(_mm256_loadu_ps(xi), L0);
                __m256 b = _mm256_max_ps(_mm256_loadu_ps(xi + 8), L1);
                a = _mm256_xor_ps(softmax_v_f32_(a, sv, cv0, cv1), sgn);
                b = _mm256_xor_ps(softmax_v_f32_(b, sv, cv2, cv3), sgn);
                _mm256_storeu_ps(yi, a);
                _mm256_storeu_ps(yi + 8, b);
            }
            j += 16;
        } else {
            for (ptrdiff_t i = 0; i < n; ++i) {
                const float *xi = x + i * x_row_stride + j;
                __m256 a = _mm256_max_ps(_mm256_loadu_ps(xi), L0);
                _mm256_storeu_ps(y + i * y_row_stride + j,
                                 _mm256_xor_ps(softmax_v_f32_(a, sv, cv0, cv1), sgn));
            }
            j += 8;
        }
    }
    if (j < n_cols)
        csm_softmax_cols_f32_generic_avx2(x + j, n_cols - j, n, x_row_stride,
            scale, max + j, log_sum + j, alpha, y + j, y_row_stride);
}

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
