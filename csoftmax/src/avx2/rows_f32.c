/*
 * avx2/rows_f32.c -- float32 rows: the reduction (lse_rows, lse_rows_pw)
 * and the softmax / log_softmax write passes, in float32 lanes with the
 * exact argument reduction; the generic float64-lane kernels as their
 * fallback
 */
#include "common.h"
#include "generic.h"

#ifdef CSM_BUILD_AVX2

DEFINE_AVX2_KERNELS(float, f32, exp_f32_, _generic, )

/* pf, pw: the prefetch hints of PF_STEP (pf: where the next block of the
 * input starts, the next chunk or row; pw: this chunk's destination or
 * NULL). */
static void lse_chunk_f32_(const float *x, ptrdiff_t n, double scale,
                           double span_s, csm_lse_state *st, const float *pf,
                           const float *pw)
{
    if (n < 32) {   /* short rows: fixed costs dominate, masks are cheaper */
        lse_chunk_f32_generic_(x, n, scale, st, pf, pw);
        return;
    }
    double m = row_max_f32_(x, n);
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

void csm_lse_rows_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                           ptrdiff_t row_stride, double scale,
                           csm_lse_state *states)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, NULL, 0);
}

void csm_lse_rows_pw_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t row_stride, double scale,
                              csm_lse_state *states, const float *w,
                              ptrdiff_t w_row_stride)
{
    lse_rows_f32_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

/* Softmax write, float32 lanes: y = exp(s x - c), c = s max + log_sum, by
 * the reduction of s x above with c = n_c ln2 + r_c reduced in float64:
 *     y = 2^(n - n_c) p(r) exp(-r_c),
 * exp(-r_c) applied as K_hi + K_lo (p K is rounded once, by an FMA), then
 * 2^(n - n_c + XR_BIAS) by the exponent add and the exact (or, for a
 * denormal y, correctly rounding) product with 2^-XR_BIAS.  A factor
 * alpha > 0 (cross-entropy gradients) is folded into c as - log(alpha), so
 * alpha * exp(d) is rounded once.  Lanes equal to the max get the
 * float64 alpha exp(-log_sum) (a dominant max gives exactly 1).  Error: r
 * (<= 2^-25 abs.) + p (~0.55 ULP) + the final rounding (0.5 ULP). */
static inline __attribute__((always_inline)) void
softmax_row_f32_xr_(const float *x, ptrdiff_t n, double scale, double c,
                    float L, float m, float ym, float *y, const int S1)
{
    const __m256 mf = _mm256_set1_ps(m), ymv = _mm256_set1_ps(ym);
    xr_row_ rc;
    xr_row_init_(&rc, scale, c);
    double k = 0x1p96 * rc.factor;   /* exp(-r_c) */
    const __m256 kh = _mm256_set1_ps((float)k);
    const __m256 kl = _mm256_set1_ps((float)(k - (double)(float)k));
    const __m256 Lv = _mm256_set1_ps(L), down = _mm256_set1_ps(0x1p-96f);
#define XR_SM8(a, out)                                                         \
    do {                                                                       \
        __m256 a_ = (a);                                                       \
        __m256 t_, p_ = xr_poly_(_mm256_max_ps(a_, Lv), &rc, &t_, S1);         \
        p_ = _mm256_fmadd_ps(p_, kh, _mm256_mul_ps(p_, kl));                   \
        out = _mm256_blendv_ps(_mm256_mul_ps(xr_scale_(p_, t_), down), ymv,    \
                               _mm256_cmp_ps(a_, mf, _CMP_EQ_OQ));             \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a, b;
        XR_SM8(_mm256_loadu_ps(x + i), a);
        XR_SM8(_mm256_loadu_ps(x + i + 8), b);
        _mm256_storeu_ps(y + i, a);
        _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i < n; i += 8) {
        __m256 a;
        if (i + 8 <= n) {
            XR_SM8(_mm256_loadu_ps(x + i), a);
            _mm256_storeu_ps(y + i, a);
        } else {
            __m256i msk = tail_mask32_(n - i);
            XR_SM8(_mm256_maskload_ps(x + i, msk), a);
            _mm256_maskstore_ps(y + i, msk, a);
        }
    }
#undef XR_SM8
}

void csm_softmax_rows_f32_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const double span_s = XR_SM_SPAN / scale;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *xr = x + r * x_row_stride; float *yr = y + r * y_row_stride;
        float L;
        /* alpha > 0 joins the exponent: c - log(alpha).  The exponent add
         * needs -221 <= n - n_c + ... <= 127 - 96 - 1: log_sum - log(alpha)
         * <= 32 (clamp e^-120) and log(alpha) <= 18. */
        double la = alpha == 1.0 ? 0.0 : log(alpha);
        if (!(alpha > 0.0 && la <= 18.0 && log_sum[r] - la <= 32.0) ||
            !clamp_bound_(max[r], scale, XR_SM_SPAN, span_s, &L)) {
            csm_softmax_rows_f32_generic_avx2(xr, 1, n, 0, scale, max + r,
                                              log_sum + r, alpha, yr, 0);
            continue;
        }
        double c = scale * max[r] + log_sum[r] - la;
        /* the max itself: alpha exp(-log_sum), rounded once (so a dominant
         * max gives exactly alpha, e.g. 1.0) */
        float m = (float)max[r], ym = (float)(alpha * exp(-log_sum[r]));
        if (scale == 1.0) softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 1);
        else softmax_row_f32_xr_(xr, n, scale, c, L, m, ym, yr, 0);
    }
}

/* y = scale * (x - max) - log_sum: x - max is exact in float64, so the
 * element(s) equal to the max give exactly -log_sum. */
static inline __m256 logsm8_f32_(__m256 a, __m256d sv, __m256d mv, __m256d lv)
{
    __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(a));
    __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1));
    lo = _mm256_fmsub_pd(_mm256_sub_pd(lo, mv), sv, lv);
    hi = _mm256_fmsub_pd(_mm256_sub_pd(hi, mv), sv, lv);
    return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

static void log_softmax_row_f32_c3_(const float *xr, ptrdiff_t n, double m,
                                    double ls, float *yr)
{
    /* m + ls in double would lose a log_sum below ulp(m) / 2 (a dominant
     * max, where y = -log_sum): split as c1 + (m - c1 + ls), m - c1 being
     * exact in double for float32 m and c1 unless |m| << ls */
    const float f1 = (float)(m + ls);
    const double r = (m - (double)f1) + ls;
    const float f2 = (float)r, f3 = (float)(r - (double)f2);
    const __m256 c1 = _mm256_set1_ps(f1), c2 = _mm256_set1_ps(f2);
    const __m256 c3 = _mm256_set1_ps(f3);
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a = logsm8_c3_f32_(_mm256_loadu_ps(xr + i), c1, c2, c3);
        __m256 b = logsm8_c3_f32_(_mm256_loadu_ps(xr + i + 8), c1, c2, c3);
        __m256 d = logsm8_c3_f32_(_mm256_loadu_ps(xr + i + 16), c1, c2, c3);
        __m256 e = logsm8_c3_f32_(_mm256_loadu_ps(xr + i + 24), c1, c2, c3);
        _mm256_storeu_ps(yr + i, a);
        _mm256_storeu_ps(yr + i + 8, b);
        _mm256_storeu_ps(yr + i + 16, d);
        _mm256_storeu_ps(yr + i + 24, e);
    }
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(yr + i, logsm8_c3_f32_(_mm256_loadu_ps(xr + i), c1, c2, c3));
    if (i < n) {
        __m256i msk = tail_mask32_(n - i);
        _mm256_maskstore_ps(yr + i, msk,
            logsm8_c3_f32_(_mm256_maskload_ps(xr + i, msk), c1, c2, c3));
    }
}

void csm_log_softmax_rows_f32_avx2(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale);
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
        const __m256d mv = _mm256_set1_pd(max[r]), lv = _mm256_set1_pd(log_sum[r]);
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256 a = logsm8_f32_(_mm256_loadu_ps(xr + i), sv, mv, lv);
            __m256 b = logsm8_f32_(_mm256_loadu_ps(xr + i + 8), sv, mv, lv);
            _mm256_storeu_ps(yr + i, a);
            _mm256_storeu_ps(yr + i + 8, b);
        }
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(yr + i, logsm8_f32_(_mm256_loadu_ps(xr + i), sv, mv, lv));
        if (i < n) {
            __m256i msk = tail_mask32_(n - i);
            _mm256_maskstore_ps(yr + i, msk,
                logsm8_f32_(_mm256_maskload_ps(xr + i, msk), sv, mv, lv));
        }
    }
}

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
