/*
 * avx512/fused_rows_f32.c -- float32 rows with one exp per element on 16
 * lanes: the fused softmax and the cross-entropy store / rescale kernels
 * (the algorithms of src/avx2/fused_rows_f32.c; read its comments)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

/* Pass 2 of a clean row: stores e'_i (sentinel -1 for lanes equal to m)
 * into y; returns the row's count and S' = sum of the other e'_i. */
static inline __attribute__((always_inline)) double
xr_store_row_f32_(const float *x, ptrdiff_t n, double scale, double m,
                  float L, float *y, const float *pf, xr_row_ *rcp,
                  double *count_out, const int S1)
{
    xr_row_ rc;
    xr_row_init_(&rc, scale, scale * m);
    *rcp = rc;
    const __m512 mf = _mm512_set1_ps((float)m), Lv = _mm512_set1_ps(L);
    const __m512 neg1 = _mm512_set1_ps(-1.0f);
    const __m512i one_i = _mm512_set1_epi32(1);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    __m512i cnt = _mm512_setzero_si512();
#define FU_STEP(a, e, out)                                                     \
    do {                                                                       \
        __mmask16 eq_ = _mm512_cmp_ps_mask(a, mf, _CMP_EQ_OQ);                 \
        cnt = _mm512_mask_add_epi32(cnt, eq_, cnt, one_i);                     \
        e = xr_exp_(_mm512_mask_mov_ps(_mm512_max_ps(a, Lv), eq_, Lv), &rc, S1); \
        out = _mm512_mask_mov_ps(e, eq_, neg1);                                \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 e0, e1, e2, e3, o;
        XR_PF(pf, i);
        FU_STEP(_mm512_loadu_ps(x + i), e0, o);
        _mm512_storeu_ps(y + i, o);
        FU_STEP(_mm512_loadu_ps(x + i + 16), e1, o);
        _mm512_storeu_ps(y + i + 16, o);
        FU_STEP(_mm512_loadu_ps(x + i + 32), e2, o);
        _mm512_storeu_ps(y + i + 32, o);
        FU_STEP(_mm512_loadu_ps(x + i + 48), e3, o);
        _mm512_storeu_ps(y + i + 48, o);
        __m512 s = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
        XR_ACC(s);
    }
    for (; i < n; i += 16) {
        __mmask16 k = kmask16_(n - i);
        __m512 a = _mm512_mask_loadu_ps(Lv, k, x + i), e, o;
        FU_STEP(a, e, o);
        _mm512_mask_storeu_ps(y + i, k, o);
        XR_ACC(e);
    }
#undef FU_STEP
    *count_out = (double)_mm512_reduce_add_epi32(cnt);
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

/* Pass 3: y_i = (e'_i f) 2^-XR_BIAS, sentinel (negative) lanes ym. */
static inline __attribute__((always_inline)) void
xr_scale_row_f32_(float *y, ptrdiff_t n, double f, float ym)
{
    float fhf = (float)f;
    const __m512 fh = _mm512_set1_ps(fhf);
    const __m512 fl = _mm512_set1_ps((float)(f - (double)fhf));
    const __m512 ymv = _mm512_set1_ps(ym);
    const __m512 down = _mm512_set1_ps(0x1p-96f);
#define FU_SCALE(e_)                                                           \
    _mm512_mask_mov_ps(                                                        \
        _mm512_mul_ps(_mm512_fmadd_ps(e_, fh, _mm512_mul_ps(e_, fl)), down),   \
        _mm512_movepi32_mask(_mm512_castps_si512(e_)), ymv)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a = _mm512_loadu_ps(y + i), b = _mm512_loadu_ps(y + i + 16);
        _mm512_storeu_ps(y + i, FU_SCALE(a));
        _mm512_storeu_ps(y + i + 16, FU_SCALE(b));
    }
    for (; i < n; i += 16) {
        __mmask16 k = kmask16_(n - i);
        __m512 a = _mm512_maskz_loadu_ps(k, y + i);
        _mm512_mask_storeu_ps(y + i, k, FU_SCALE(a));
    }
#undef FU_SCALE
}

/* the one test of the fused softmax and the store / rescale kernels */
static inline int store_clean_(double m, double scale, double span_s,
                               ptrdiff_t n, float *L)
{
    return n >= 32 && n <= ((ptrdiff_t)1 << 30) &&
           clamp_bound_(m, scale, XR_SPAN, span_s, L);
}

void csm_softmax_fused_rows_f32_avx512(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    const int ok_a = alpha >= FUSED_ALPHA_MIN && alpha <= FUSED_ALPHA_MAX;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        double m = ok_a ? row_max_f32_512_(xr, n) : NAN;
        if (ok_a && store_clean_(m, scale, span_s, n, &L)) {
            const float *pf = xr + x_row_stride;
            xr_row_ rc;
            double count, sum = scale == 1.0
                ? xr_store_row_f32_(xr, n, scale, m, L, yr, pf, &rc, &count, 1)
                : xr_store_row_f32_(xr, n, scale, m, L, yr, pf, &rc, &count, 0);
            double S = count + sum * rc.factor;
            xr_scale_row_f32_(yr, n, alpha * (0x1p96 * rc.factor) / S,
                              (float)(alpha / S));
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_f32_avx512(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_f32_avx512(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}

void csm_lse_store_rows_f32_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        float *e, ptrdiff_t e_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride;
        float L;
        double m = row_max_f32_512_(xr, n);
        if (!store_clean_(m, scale, span_s, n, &L)) {
            csm_lse_rows_f32_avx512(xr, 1, n, n, scale, states + r);
            continue;
        }
        xr_row_ rc;
        double count, sum = scale == 1.0
            ? xr_store_row_f32_(xr, n, scale, m, L, e + r * e_row_stride,
                                xr + x_row_stride, &rc, &count, 1)
            : xr_store_row_f32_(xr, n, scale, m, L, e + r * e_row_stride,
                                xr + x_row_stride, &rc, &count, 0);
        states[r].max = m;
        states[r].count = count;
        states[r].rest = sum * rc.factor;
        if (lse_cancels_(states + r, scale))
            csm_lse_rows_f32_scalar(xr, 1, n, n, scale, states + r);
    }
}

void csm_softmax_scale_rows_f32_avx512(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        float *yr = y + r * y_row_stride;
        float L;
        if (store_clean_(max[r], scale, span_s, n, &L)) {
            xr_row_ rc;
            xr_row_init_(&rc, scale, scale * max[r]);
            double g = alpha * exp(-log_sum[r]);
            double f = g * (0x1p96 * rc.factor);
            if (fabs(f) >= 0x1p-92 && fabs(f) <= 0x1p13) {
                xr_scale_row_f32_(yr, n, f, (float)g);
                continue;
            }
        }
        csm_softmax_rows_f32_avx512(x + r * x_row_stride, 1, n, 0, scale,
                                    max + r, log_sum + r, alpha, yr, 0);
    }
}

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
