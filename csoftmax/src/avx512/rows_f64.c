/*
 * avx512/rows_f64.c -- float64 rows on 8 lanes: the reduction (lse_rows,
 * lse_rows_pw), the softmax / log_softmax write passes, the fused softmax
 * and the cross-entropy store / rescale (the algorithms of the AVX2
 * kernels, src/avx2/generic.h and rows_f64.c)
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

/* exp-sum of one chunk: elements equal to the max counted apart */
static void lse_chunk_f64_(const double *x, ptrdiff_t n, double scale,
                           csm_lse_state *st, const double *pf, const double *pw)
{
    double m = row_max_f64_512_(x, n);
    if (!(m > -INFINITY && m < INFINITY)) { /* NaN, +-inf, empty: rare */
        csm_lse_rows_f64_scalar(x, 1, n, n, scale, st);
        return;
    }
    const __m512d mv = _mm512_set1_pd(m), sv = _mm512_set1_pd(scale);
    const __m512d one = _mm512_set1_pd(1.0);
    __m512d r0 = _mm512_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;
#define SUM_STEP(a, r_, c_)                                                    \
    do {                                                                       \
        __mmask8 eq_ = _mm512_cmp_pd_mask(a, mv, _CMP_EQ_OQ);                  \
        __m512d t_ = exp_f64_512_(_mm512_mul_pd(_mm512_sub_pd(a, mv), sv));    \
        r_ = _mm512_mask_add_pd(r_, (__mmask8)~eq_, r_, t_);                   \
        c_ = _mm512_mask_add_pd(c_, eq_, c_, one);                             \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + 8), _MM_HINT_T0);
        if (pw) {
            __builtin_prefetch(pw + i, 1, 3);
            __builtin_prefetch(pw + i + 8, 1, 3);
        }
        __m512d a = _mm512_loadu_pd(x + i), b = _mm512_loadu_pd(x + i + 8);
        SUM_STEP(a, r0, c0);
        SUM_STEP(b, r1, c1);
    }
    for (; i < n; i += 8) {
        __m512d a = _mm512_mask_loadu_pd(_mm512_set1_pd(-INFINITY),
                                         kmask8_(n - i), x + i);
        SUM_STEP(a, r0, c0);
    }
#undef SUM_STEP
    st->max = m;
    st->count = _mm512_reduce_add_pd(_mm512_add_pd(c0, c1));
    st->rest = _mm512_reduce_add_pd(_mm512_add_pd(r0, r1));
}

static void lse_rows_f64_(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                          ptrdiff_t row_stride, double scale,
                          csm_lse_state *states, const double *w,
                          ptrdiff_t w_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * row_stride;
        const double *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_f64_(xr, n, scale, &acc, xr + row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            lse_chunk_f64_(xr + c, n - c < CHUNK ? n - c : CHUNK, scale, &part,
                           n - c > CHUNK ? xr + c + CHUNK : xr + row_stride,
                           wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
}

void csm_lse_rows_f64_avx512(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                             ptrdiff_t row_stride, double scale,
                             csm_lse_state *states)
{
    lse_rows_f64_(x, n_rows, n, row_stride, scale, states, NULL, 0);
}

void csm_lse_rows_pw_f64_avx512(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t row_stride, double scale,
                                csm_lse_state *states, const double *w,
                                ptrdiff_t w_row_stride)
{
    lse_rows_f64_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

void csm_softmax_rows_f64_avx512(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    const __m512d sv = _mm512_set1_pd(scale), av = _mm512_set1_pd(alpha);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {
            csm_softmax_rows_f64_scalar(xr, 1, n, 0, scale, max + r,
                                        log_sum + r, alpha, yr, 0);
            continue;
        }
        const __m512d mv = _mm512_set1_pd(max[r]), lv = _mm512_set1_pd(log_sum[r]);
#define SM8(a) _mm512_mul_pd(exp_f64_512_(_mm512_fmsub_pd(_mm512_sub_pd(a, mv), sv, lv)), av)
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m512d a = _mm512_loadu_pd(xr + i), b = _mm512_loadu_pd(xr + i + 8);
            _mm512_storeu_pd(yr + i, SM8(a));
            _mm512_storeu_pd(yr + i + 8, SM8(b));
        }
        for (; i < n; i += 8) {
            __mmask8 k = kmask8_(n - i);
            __m512d a = _mm512_mask_loadu_pd(_mm512_set1_pd(-INFINITY), k, xr + i);
            _mm512_mask_storeu_pd(yr + i, k, SM8(a));
        }
#undef SM8
    }
}

void csm_log_softmax_rows_f64_avx512(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    const __m512d sv = _mm512_set1_pd(scale);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY)) {
            csm_log_softmax_rows_f64_scalar(xr, 1, n, 0, scale, max + r,
                                            log_sum + r, alpha, yr, 0);
            continue;
        }
        const __m512d mv = _mm512_set1_pd(max[r]), lv = _mm512_set1_pd(log_sum[r]);
#define LSM8(a) _mm512_fmsub_pd(_mm512_sub_pd(a, mv), sv, lv)
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m512d a = _mm512_loadu_pd(xr + i), b = _mm512_loadu_pd(xr + i + 8);
            __m512d c = _mm512_loadu_pd(xr + i + 16), d = _mm512_loadu_pd(xr + i + 24);
            _mm512_storeu_pd(yr + i, LSM8(a));
            _mm512_storeu_pd(yr + i + 8, LSM8(b));
            _mm512_storeu_pd(yr + i + 16, LSM8(c));
            _mm512_storeu_pd(yr + i + 24, LSM8(d));
        }
        for (; i < n; i += 8) {
            __mmask8 k = kmask8_(n - i);
            _mm512_mask_storeu_pd(yr + i, k, LSM8(_mm512_maskz_loadu_pd(k, xr + i)));
        }
#undef LSM8
    }
}

/* ---- one exp per element (src/avx2/rows_f64.c) -------------------------- */

/* y[0:n] *= f in place */
static inline void scale_row_f64_(double *y, ptrdiff_t n, double f)
{
    const __m512d fv = _mm512_set1_pd(f);
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm512_storeu_pd(y + i, _mm512_mul_pd(_mm512_loadu_pd(y + i), fv));
        _mm512_storeu_pd(y + i + 8, _mm512_mul_pd(_mm512_loadu_pd(y + i + 8), fv));
    }
    for (; i < n; i += 8) {
        __mmask8 k = kmask8_(n - i);
        _mm512_mask_storeu_pd(y + i, k, _mm512_mul_pd(_mm512_maskz_loadu_pd(k, y + i), fv));
    }
}

/* e_i = exp(scale (x_i - m)) stored into y (exactly 1 where x_i == m);
 * returns the sum of the other terms, *count the number of such lanes */
static inline double store_row_f64_(const double *x, ptrdiff_t n, double scale,
                                    double m, double *y, const double *pf,
                                    double *count)
{
    const __m512d mv = _mm512_set1_pd(m), sv = _mm512_set1_pd(scale);
    const __m512d one = _mm512_set1_pd(1.0);
    __m512d r0 = _mm512_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;
#define ST_STEP(a, r_, c_, p)                                                  \
    do {                                                                       \
        __mmask8 eq_ = _mm512_cmp_pd_mask(a, mv, _CMP_EQ_OQ);                  \
        __m512d t_ = exp_f64_512_(_mm512_mul_pd(_mm512_sub_pd(a, mv), sv));    \
        _mm512_storeu_pd(p, t_);                                               \
        r_ = _mm512_mask_add_pd(r_, (__mmask8)~eq_, r_, t_);                   \
        c_ = _mm512_mask_add_pd(c_, eq_, c_, one);                             \
    } while (0)
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        _mm_prefetch((const char *)(pf + i + 8), _MM_HINT_T0);
        __m512d a = _mm512_loadu_pd(x + i), b = _mm512_loadu_pd(x + i + 8);
        ST_STEP(a, r0, c0, y + i);
        ST_STEP(b, r1, c1, y + i + 8);
    }
#undef ST_STEP
    for (; i < n; i += 8) {
        __mmask8 k = kmask8_(n - i);
        __m512d a = _mm512_mask_loadu_pd(_mm512_set1_pd(-INFINITY), k, x + i);
        __mmask8 eq_ = _mm512_cmp_pd_mask(a, mv, _CMP_EQ_OQ);
        __m512d t_ = exp_f64_512_(_mm512_mul_pd(_mm512_sub_pd(a, mv), sv));
        _mm512_mask_storeu_pd(y + i, k, t_);
        r0 = _mm512_mask_add_pd(r0, (__mmask8)~eq_, r0, t_);
        c0 = _mm512_mask_add_pd(c0, eq_, c0, one);
    }
    *count = _mm512_reduce_add_pd(_mm512_add_pd(c0, c1));
    return _mm512_reduce_add_pd(_mm512_add_pd(r0, r1));
}

void csm_lse_store_rows_f64_avx512(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        double *e, ptrdiff_t e_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride;
        double m = row_max_f64_512_(xr, n);
        if (!(m > -INFINITY && m < INFINITY) || n < 8) {
            csm_lse_rows_f64_avx512(xr, 1, n, n, scale, states + r);
            continue;
        }
        double count, rest = store_row_f64_(xr, n, scale, m, e + r * e_row_stride,
                                            xr + x_row_stride, &count);
        states[r].max = m;
        states[r].count = count;
        states[r].rest = rest;
    }
}

void csm_softmax_scale_rows_f64_avx512(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        double *yr = y + r * y_row_stride;
        double f = alpha * exp(-log_sum[r]);
        if (!(max[r] > -INFINITY && max[r] < INFINITY) || n < 8 ||
            !(fabs(f) >= 0x1p-60 && fabs(f) <= 1.0)) {
            csm_softmax_rows_f64_avx512(x + r * x_row_stride, 1, n, 0, scale,
                                        max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        scale_row_f64_(yr, n, f);
    }
}

void csm_softmax_fused_rows_f64_avx512(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        double *y, ptrdiff_t y_row_stride)
{
    const int ok_a = alpha > 0.0 && alpha <= 1.0;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        double m = ok_a ? row_max_f64_512_(xr, n) : NAN;
        if (m > -INFINITY && m < INFINITY) {
            double count, rest = store_row_f64_(xr, n, scale, m, yr,
                                                xr + x_row_stride, &count);
            scale_row_f64_(yr, n, alpha / (count + rest));
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_f64_avx512(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_f64_avx512(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}

#include "end.h"
#endif /* CSM_BUILD_AVX512 */
