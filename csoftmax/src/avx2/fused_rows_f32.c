/*
 * avx2/fused_rows_f32.c -- float32 rows with one exp per element (the
 * fused softmax and the cross-entropy store / rescale kernels) on 8 lanes:
 * simd/fused_rows_f32_body.h; and the masked fused softmax (where=), AVX2 only
 */
#include "common.h"
#include "masked.h"

#ifdef CSM_BUILD_AVX2

#include "../simd/fused_rows_f32_body.h"

/* ---- masked fused softmax (where=) ---------------------------------------
 *
 * csm_softmax_fused_rows_f32_avx2 on the kept elements: the masked row max
 * (masked.h), then pass 2 with the compare and the term of masked lanes
 * cleared (they store e' = +0, never the sentinel), then the unchanged
 * pass 3 (xr_scale_row_f32_), which maps a stored +0 to +0.  Kept lanes
 * compute what the unmasked kernel computes.  Rows that are not clean (no
 * kept element, NaN, +-inf, short, extreme alpha) take the masked
 * reduction + finalize + write kernels. */
static inline __attribute__((always_inline)) double
xr_store_row_masked_f32_(const float *x, const unsigned char *mk, ptrdiff_t n,
                         double scale, double m, float L, float *y,
                         const float *pf, const unsigned char *pfm,
                         xr_row_ *rcp, double *count_out, const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    *rcp = rc;
    const __m256 mf = _mm256_set1_ps((float)m), Lv = _mm256_set1_ps(L);
    const __m256 neg1 = _mm256_set1_ps(-1.0f);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    __m256i cnt = _mm256_setzero_si256();
#define FUM_STEP(a, kp, e)                                                     \
    do {                                                                       \
        __m256 k_ = (kp), a_ = (a);                                            \
        __m256 eq_ = _mm256_and_ps(_mm256_cmp_ps(a_, mf, _CMP_EQ_OQ), k_);     \
        cnt = _mm256_sub_epi32(cnt, _mm256_castps_si256(eq_));                 \
        e = _mm256_and_ps(xr_exp_(_mm256_blendv_ps(_mm256_max_ps(a_, Lv), Lv,  \
                                                   eq_), &rc, S1), k_);        \
        st_ = _mm256_blendv_ps(e, neg1, eq_);                                  \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 e0, e1, e2, e3, st_;
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + 16), _MM_HINT_T0);
        if ((i & 63) == 0) _mm_prefetch((const char *)(pfm + i), _MM_HINT_T0);
        FUM_STEP(_mm256_loadu_ps(x + i), keep8_(mk + i), e0);
        _mm256_storeu_ps(y + i, st_);
        FUM_STEP(_mm256_loadu_ps(x + i + 8), keep8_(mk + i + 8), e1);
        _mm256_storeu_ps(y + i + 8, st_);
        FUM_STEP(_mm256_loadu_ps(x + i + 16), keep8_(mk + i + 16), e2);
        _mm256_storeu_ps(y + i + 16, st_);
        FUM_STEP(_mm256_loadu_ps(x + i + 24), keep8_(mk + i + 24), e3);
        _mm256_storeu_ps(y + i + 24, st_);
        __m256 s = _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3));
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(s)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(s, 1)));
    }
    for (; i < n; i += 8) {
        __m256 e, st_;
        if (i + 8 <= n) {
            FUM_STEP(_mm256_loadu_ps(x + i), keep8_(mk + i), e);
            _mm256_storeu_ps(y + i, st_);
        } else {
            __m256i msk = tail_mask32_(n - i);
            FUM_STEP(_mm256_maskload_ps(x + i, msk), keep8t_(mk + i, n - i), e);
            _mm256_maskstore_ps(y + i, msk, st_);
        }
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
#undef FUM_STEP
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(cnt),
                               _mm256_extracti128_si256(cnt, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
    *count_out = (double)_mm_cvtsi128_si32(c4);
    return hsum_pd_(_mm256_add_pd(s0, s1));
}

void csm_softmax_fused_rows_masked_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, double alpha, float *y,
        ptrdiff_t y_row_stride, csm_lse_state *states)
{
    const double span_s = XR_SPAN / scale;
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        float L;
        double m = ok_a ? row_max_masked_f32_(xr, mr, n) : NAN;
        if (ok_a && store_clean_(m, scale, span_s, n, &L)) {
            xr_row_ rc;
            double count, sum = scale == 1.0
                ? xr_store_row_masked_f32_(xr, mr, n, scale, m, L, yr, xr + x_row_stride,
                                           mr + mask_row_stride, &rc, &count, 1)
                : xr_store_row_masked_f32_(xr, mr, n, scale, m, L, yr, xr + x_row_stride,
                                           mr + mask_row_stride, &rc, &count, 0);
            double S = count + sum * rc.factor;
            if (states) {
                states[r].max = m;
                states[r].count = count;
                states[r].rest = sum * rc.factor;
            }
            xr_scale_row_f32_(yr, n, alpha * (0x1p96 * rc.factor) / S,
                              (float)(alpha / S), 0);
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_masked_f32_avx2(xr, 1, n, n, mr, 0, scale, &st, NULL, 0);
        if (states) states[r] = st;
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_masked_f32_avx2(xr, 1, n, n, mr, 0, scale, &mx, &ls,
                                         alpha, yr, n);
    }
}


#include "end.h"
#endif /* CSM_BUILD_AVX2 */
