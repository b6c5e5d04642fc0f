/*
 * avx2/masked_f32.c -- float32 masked rows (where=): the reduction and the
 * softmax / log_softmax write passes of rows_f32.c with the mask bytes read
 * in the same loop as x.
 *
 * Reduction: the masked row maximum (masked lanes -> -inf before the max
 * and the NaN test), then the all-float32 exact-reduction exp sum of
 * simd/xr_f32.h (lse_chunk_f32_xr_'s loop) with the term and the
 * equal-to-max count of masked lanes cleared (ANDs with the lane mask), so
 * kept lanes compute exactly what the unmasked kernel computes and an
 * all-true mask gives its states bit for bit (rows of >= 32 elements: the
 * unmasked kernel takes its float64-lane loop below 32).  The
 * lse_cancels_ sweep redoes the same rows in float64 lanes with the mask
 * (lse_redo_row_f32_, simd/xr_f32.h).  Write passes: the unmasked lane code, the result cleared (0,
 * softmax) or blended with -inf (log_softmax) where masked.
 * Rows that are not clean (NaN, +-inf or no kept element, no representable
 * clamp) take the scalar masked kernels.
 */
#include "common.h"
#include "masked.h"

#ifdef CSM_BUILD_AVX2

static inline __attribute__((always_inline)) void
lse_chunk_masked_f32_xr_(const float *x, const unsigned char *mk, ptrdiff_t n,
                         double scale, double m, float L, csm_lse_state *st,
                         const float *pf, const unsigned char *pfm,
                         const float *pw, const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    const __m256 mf = _mm256_set1_ps((float)m), Lv = _mm256_set1_ps(L);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    __m256i cnt = _mm256_setzero_si256();
    /* XR_STEP with the mask applied to the compare and the term (two ANDs:
     * cheaper than a blendv of the input); a masked lane's value goes
     * through the lanes' arithmetic but its term and count are cleared */
#define XR_STEPM(a, kp, e)                                                     \
    do {                                                                       \
        __m256 k_ = (kp), a_ = (a);                                            \
        __m256 eq_ = _mm256_and_ps(_mm256_cmp_ps(a_, mf, _CMP_EQ_OQ), k_);     \
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq_));                 \
        e = _mm256_and_ps(xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a_, Lv), Lv,  \
                                                   eq_), &rc, S1), k_);        \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 e0, e1, e2, e3;
        /* the next chunk or row (x and mask): the hardware prefetcher
         * alone leaves the max pass waiting on memory (as lse_rows_f32) */
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + 16), _MM_HINT_T0);
        if ((i & 63) == 0) _mm_prefetch((const char *)(pfm + i), _MM_HINT_T0);
        if (pw) {
            __builtin_prefetch(pw + i, 1, 3);
            __builtin_prefetch(pw + i + 16, 1, 3);
        }
        XR_STEPM(_mm256_loadu_ps(x + i), keep8_(mk + i), e0);
        XR_STEPM(_mm256_loadu_ps(x + i + 8), keep8_(mk + i + 8), e1);
        XR_STEPM(_mm256_loadu_ps(x + i + 16), keep8_(mk + i + 16), e2);
        XR_STEPM(_mm256_loadu_ps(x + i + 24), keep8_(mk + i + 24), e3);
        __m256 s = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    }
    for (; i < n; i += 8) {
        __m256 e;
        if (i + 8 <= n)
            XR_STEPM(_mm256_loadu_ps(x + i), keep8_(mk + i), e);
        else
            XR_STEPM(_mm256_maskload_ps(x + i, tail_mask32_(n - i)),
                     keep8t_(mk + i, n - i), e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
#undef XR_STEPM
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cnt),
                               _mm256_extracti128_si256(cnt, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
    st->max = m;
    st->count = (double)_mm_cvtsi128_si32(c4);
    st->rest = hsum_pd_(_mm256_add_pd(s0, s1)) * rc.factor;
}

static void lse_chunk_masked_f32_(const float *x, const unsigned char *mk,
                                  ptrdiff_t n, double scale, double span_s,
                                  csm_lse_state *st, const float *pf,
                                  const unsigned char *pfm, const float *pw)
{
    double m = row_max_masked_f32_(x, mk, n);
    float L;
    if (!clamp_bound_(m, scale, XR_SPAN, span_s, &L)) {
        /* NaN, +-inf, nothing kept: rare */
        csm_lse_rows_masked_f32_scalar(x, 1, n, n, mk, 0, scale, st, NULL, 0);
        return;
    }
    if (scale == 1.0) lse_chunk_masked_f32_xr_(x, mk, n, scale, m, L, st, pf, pfm, pw, 1);
    else lse_chunk_masked_f32_xr_(x, mk, n, scale, m, L, st, pf, pfm, pw, 0);
}

void csm_lse_rows_masked_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                  ptrdiff_t row_stride, const unsigned char *mask,
                                  ptrdiff_t mask_row_stride, double scale,
                                  csm_lse_state *states, const float *w,
                                  ptrdiff_t w_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        const float *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_masked_f32_(xr, mr, n, scale, span_s, &acc,
                                  xr + row_stride, mr + mask_row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            int more = n - c > CHUNK;
            lse_chunk_masked_f32_(xr + c, mr + c, n - c < CHUNK ? n - c : CHUNK,
                                  scale, span_s, &part,
                                  more ? xr + c + CHUNK : xr + row_stride,
                                  more ? mr + c + CHUNK : mr + mask_row_stride,
                                  wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
    /* rows whose LSE cancels are redone in float64 lanes (as lse_rows_f32) */
    for (ptrdiff_t r = 0; r < n_rows; ++r)
        if (lse_cancels_(states + r, scale))
            lse_redo_row_f32_(x + r * row_stride, mask + r * mask_row_stride,
                              n, scale, states + r);
}

/* softmax_row_f32_xr_ (rows_f32.c) with the result zeroed where masked */
static inline __attribute__((always_inline)) void
softmax_row_masked_f32_xr_(const float *x, const unsigned char *mk, ptrdiff_t n,
                           double scale, double c, float L, float m, float ym,
                           float *y, const int S1)
{
    const __m256 mf = _mm256_set1_ps(m), ymv = _mm256_set1_ps(ym);
    xr_row_ rc;
    xr_row_init_(&rc, scale, c);
    double k = 0x1p96 * rc.factor;   /* exp(-r_c) */
    const __m256 kh = _mm256_set1_ps((float)k);
    const __m256 kl = _mm256_set1_ps((float)(k - (double)(float)k));
    const __m256 Lv = _mm256_set1_ps(L), down = _mm256_set1_ps(0x1p-96f);
#define XR_SM8M(a, kp, out)                                                    \
    do {                                                                       \
        __m256 k_ = (kp), a_ = (a);   /* masked lanes: cleared at the end */  \
        __m256 t_, p_ = xr_poly_(_mm256_max_ps(a_, Lv), &rc, &t_, S1);         \
        p_ = _mm256_fmadd_ps(p_, kh, _mm256_mul_ps(p_, kl));                   \
        out = _mm256_blendv_ps(_mm256_mul_ps(xr_scale_(p_, t_), down), ymv,    \
                               _mm256_cmp_ps(a_, mf, _CMP_EQ_OQ));             \
        out = _mm256_and_ps(out, k_);                                          \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a, b;
        XR_SM8M(_mm256_loadu_ps(x + i), keep8_(mk + i), a);
        XR_SM8M(_mm256_loadu_ps(x + i + 8), keep8_(mk + i + 8), b);
        _mm256_storeu_ps(y + i, a);
        _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i < n; i += 8) {
        __m256 a;
        if (i + 8 <= n) {
            XR_SM8M(_mm256_loadu_ps(x + i), keep8_(mk + i), a);
            _mm256_storeu_ps(y + i, a);
        } else {
            __m256i msk = tail_mask32_(n - i);
            XR_SM8M(_mm256_maskload_ps(x + i, msk), keep8t_(mk + i, n - i), a);
            _mm256_maskstore_ps(y + i, msk, a);
        }
    }
#undef XR_SM8M
}

void csm_softmax_rows_masked_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SM_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        float L;
        double la = alpha == 1.0 ? 0.0 : log(alpha);
        if (!(alpha > 0.0 && la <= 18.0 && log_sum[r] - la <= 32.0) ||
            !clamp_bound_(max[r], scale, XR_SM_SPAN, span_s, &L)) {
            csm_softmax_rows_masked_f32_scalar(xr, 1, n, 0, mr, 0, scale,
                                               max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        double c = scale * max[r] + log_sum[r] - la;
        float m = (float)max[r], ym = (float)(alpha * exp(-log_sum[r]));
        if (scale == 1.0) softmax_row_masked_f32_xr_(xr, mr, n, scale, c, L, m, ym, yr, 1);
        else softmax_row_masked_f32_xr_(xr, mr, n, scale, c, L, m, ym, yr, 0);
    }
}

/* log_softmax: the c3 lanes (scale 1) or float64 lanes, -inf where masked */
static inline __m256 logsm8_f32m_(__m256 a, __m256d sv, __m256d mv, __m256d lv)
{
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv);
    hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv);
    /* + 0.0: zeros are +0.0 (logsm_f32_, simd/rows_f32_body.h) */
    return _mm256_add_ps(_mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo)),
                         _mm256_setzero_ps());
}

void csm_log_softmax_rows_masked_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY) || !(log_sum[r] < INFINITY)) {
            csm_log_softmax_rows_masked_f32_scalar(xr, 1, n, 0, mr, 0, scale,
                                                   max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        const double m = max[r], ls = log_sum[r];
        /* as log_softmax_row_f32_c3_ (rows_f32.c) */
        const float f1 = (float)(m + ls);
        const double rr = (m - (double)f1) + ls;
        const float f2 = (float)rr, f3 = (float)(rr - (double)f2);
        const __m256 c1 = _mm256_set1_ps(f1), c2 = _mm256_set1_ps(f2);
        const __m256 c3 = _mm256_set1_ps(f3);
        const __m256d mv = _mm256_set1_pd(m), lv = _mm256_set1_pd(ls);
        const int s1 = scale == 1.0;
#define LSM8M(a, kp) _mm256_blendv_ps(ninf, s1 ? logsm_c3_f32_((a), c1, c2, c3) \
                                            : logsm8_f32m_((a), sv, mv, lv), (kp))
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256 a = LSM8M(_mm256_loadu_ps(xr + i), keep8_(mr + i));
            __m256 b = LSM8M(_mm256_loadu_ps(xr + i + 8), keep8_(mr + i + 8));
            _mm256_storeu_ps(yr + i, a);
            _mm256_storeu_ps(yr + i + 8, b);
        }
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(yr + i, LSM8M(_mm256_loadu_ps(xr + i), keep8_(mr + i)));
        if (i < n) {
            __m256i msk = tail_mask32_(n - i);
            _mm256_maskstore_ps(yr + i, msk,
                LSM8M(_mm256_maskload_ps(xr + i, msk), keep8t_(mr + i, n - i)));
        }
#undef LSM8M
    }
}

/* masked columns: tiles through the unmasked column kernels */
#include "../simd/masked_cols_f32_body.h"
/* masked backward rows: copies through the unmasked backward kernels */
#include "../simd/masked_bwd_f32_body.h"

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
