/*
 * avx512/rows_f32.c -- float32 rows on 16 lanes: the reduction (lse_rows,
 * lse_rows_pw) and the softmax / log_softmax write passes, the algorithms
 * of src/avx2/rows_f32.c; rows those fast paths do not take go to the AVX2
 * generic (float64-lane) kernels, as on AVX2
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

static void lse_chunk_f32_(const float *x, ptrdiff_t n, double scale,
                           double span_s, csm_lse_state *st, const float *pf,
                           const float *pw)
{
    if (n < 32) {   /* short rows: the AVX2 generic kernel (float64 lanes) */
        csm_lse_rows_f32_generic_avx2(x, 1, n, n, scale, st);
        return;
    }
    double m = row_max_f32_512_(x, n);
    float L;
    if (!clamp_bound_(m, scale, XR_SPAN, span_s, &L)) {
        csm_lse_rows_f32_generic_avx2(x, 1, n, n, scale, st);
        return;
    }
    if (scale == 1.0) lse_chunk_f32_xr_(x, n, scale, m, L, st, pf, pw, 1);
    else lse_chunk_f32_xr_(x, n, scale, m, L, st, pf, pw, 0);
}

static void lse_rows_f32_(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, const float *w,
                          ptrdiff_t w_row_stride)
{
    const double span_s = XR_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * row_stride;
        const float *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_f32_(xr, n, scale, span_s, &acc, xr + row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            lse_chunk_f32_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale,
                           span_s, &part,
                           n - c > CHUNK ? xr + c + CHUNK : xr + row_stride,
                           wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
    /* second sweep: rows whose LSE cancels are redone with libm */
    for (ptrdiff_t r = 0; r < n_rows; ++r)
        if (lse_cancels_(states + r, scale))
            csm_lse_rows_f32_scalar(x + r * row_stride, 1, n, n, scale,
                                    states + r);
}

void csm_lse_rows_f32_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                             ptrdiff_t row_stride, double scale,
                             csm_lse_state *states)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, NULL, 0);
}

void csm_lse_rows_pw_f32_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t row_stride, double scale,
                                csm_lse_state *states, const float *w,
                                ptrdiff_t w_row_stride)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

/* Softmax write (src/avx2/rows_f32.c): y = 2^(n - n_c) p(r) exp(-r_c),
 * exp(-r_c) as K_hi + K_lo, lanes equal to the max get ym. */
static inline __attribute__((always_inline)) void
softmax_row_f32_xr_(const float *x, ptrdiff_t n, double scale, double c,
                    float L, float m, float ym, float *y, const int S1)
{
    const __m512 mf = _mm512_set1_ps(m), ymv = _mm512_set1_ps(ym);
    xr_row_ rc;
    xr_row_init_(&rc, scale, c);
    double k = 0x1p96 * rc.factor;   /* exp(-r_c) */
    const __m512 kh = _mm512_set1_ps((float)k);
    const __m512 kl = _mm512_set1_ps((float)(k - (double)(float)k));
    const __m512 Lv = _mm512_set1_ps(L), down = _mm512_set1_ps(0x1p-96f);
#define XR_SM16(a, out)                                                        \
    do {                                                                       \
        __m512 a_ = (a);                                                       \
        __m512 t_, p_ = xr_poly_(_mm512_max_ps(a_, Lv), &rc, &t_, S1);         \
        p_ = _mm512_fmadd_ps(p_, kh, _mm512_mul_ps(p_, kl));                   \
        out = _mm512_mask_mov_ps(_mm512_mul_ps(xr_scale_(p_, t_), down),       \
                                 _mm512_cmp_ps_mask(a_, mf, _CMP_EQ_OQ), ymv); \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 a, b;
        XR_SM16(_mm512_loadu_ps(x + i), a);
        XR_SM16(_mm512_loadu_ps(x + i + 16), b);
        _mm512_storeu_ps(y + i, a);
        _mm512_storeu_ps(y + i + 16, b);
    }
    for (; i < n; i += 16) {
        __mmask16 k16 = kmask16_(n - i);
        __m512 a;
        XR_SM16(_mm512_maskz_loadu_ps(k16, x + i), a);
        _mm512_mask_storeu_ps(y + i, k16, a);
    }
#undef XR_SM16
}

void csm_softmax_rows_f32_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SM_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        double la = alpha == 1.0 ? 0.0 : log(alpha);
        if (!(alpha > 0.0 && la <= 18.0 && log_sum[r] - la <= 32.0) ||
            !clamp_bound_(max[r], scale, XR_SM_SPAN, span_s, &L)) {
            csm_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                              log_sum + r, alpha, yr, 0);
            continue;
        }
        double c = scale * max[r] + log_sum[r] - la;
        float m = (float)max[r], ym = (float)(alpha * exp(-log_sum[r]));
        if (scale == 1.0) softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 1);
        else softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 0);
    }
}

/* y = scale * (x - max) - log_sum in float64 lanes (x - max exact) */
static inline __m512 logsm16_f32_(__m512 a, __m512d sv, __m512d mv, __m512d lv)
{
    __m512d lo, hi;
    widen16_(a, &lo, &hi);
    lo = _mm512_fmsub_pd(_mm512_sub_pd(lo, mv), sv, lv);
    hi = _mm512_fmsub_pd(_mm512_sub_pd(hi, mv), sv, lv);
    return narrow16_(lo, hi);
}

static void log_softmax_row_f32_c3_(const float *xr, ptrdiff_t n, double m,
                                    double ls, float *yr)
{
    const float f1 = (float)(m + ls);
    const double r = (m - (double)f1) + ls;
    const float f2 = (float)r, f3 = (float)(r - (double)f2);
    const __m512 c1 = _mm512_set1_ps(f1), c2 = _mm512_set1_ps(f2);
    const __m512 c3 = _mm512_set1_ps(f3);
    ptrdiff_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 a = logsm16_c3_f32_(_mm512_loadu_ps(xr + i), c1, c2, c3);
        __m512 b = logsm16_c3_f32_(_mm512_loadu_ps(xr + i + 16), c1, c2, c3);
        __m512 d = logsm16_c3_f32_(_mm512_loadu_ps(xr + i + 32), c1, c2, c3);
        __m512 e = logsm16_c3_f32_(_mm512_loadu_ps(xr + i + 48), c1, c2, c3);
        _mm512_storeu_ps(yr + i, a);
        _mm512_storeu_ps(yr + i + 16, b);
        _mm512_storeu_ps(yr + i + 32, d);
        _mm512_storeu_ps(yr + i + 48, e);
    }
    for (; i < n; i += 16) {
        __mmask16 k = kmask16_(n - i);
        _mm512_mask_storeu_ps(yr + i, k,
            logsm16_c3_f32_(_mm512_maskz_loadu_ps(k, xr + i), c1, c2, c3));
    }
}

void csm_log_softmax_rows_f32_avx512(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m512d sv = _mm512_set1_pd(scale);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {
            csm_log_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                                  log_sum + r, alpha, yr, 0);
            continue;
        }
        if (scale == 1.0 && log_sum[r] < INFINITY) {
            log_softmax_row_f32_c3_(xr, n, max[r], log_sum[r], yr);
            continue;
        }
        const __m512d mv = _mm512_set1_pd(max[r]), lv = _mm512_set1_pd(log_sum[r]);
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m512 a = logsm16_f32_(_mm512_loadu_ps(xr + i), sv, mv, lv);
            __m512 b = logsm16_f32_(_mm512_loadu_ps(xr + i + 16), sv, mv, lv);
            _mm512_storeu_ps(yr + i, a);
            _mm512_storeu_ps(yr + i + 16, b);
        }
        for (; i < n; i += 16) {
            __mmask16 k = kmask16_(n - i);
            _mm512_mask_storeu_ps(yr + i, k,
                logsm16_f32_(_mm512_maskz_loadu_ps(k, xr + i), sv, mv, lv));
        }
    }
}

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
