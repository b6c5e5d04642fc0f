/*
 * avx2/rows_f64.c -- float64 rows and columns: the generic kernels, the
 * reduction that fetches the write destination, the fused softmax and the
 * cross-entropy store / rescale
 */
#include "common.h"
#include "generic.h"

#ifdef CSM_BUILD_AVX2

DEFINE_AVX2_KERNELS(double, f64, exp_f64_, , )

void csm_lse_rows_pw_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t row_stride, double scale,
                              csm_lse_state *states, const double *w,
                              ptrdiff_t w_row_stride)
{
    lse_rows_f64_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

/* ---- fused float64 softmax rows (one exp per element) --------------------
 *
 * Max pass, then e_i = exp(scale * (x_i - M)) (exp_f64_: libm for denormal
 * terms) stored into y and summed, S = sum e_i (elements equal to M give
 * exactly 1), then y *= alpha / S in place.  Compared with exp(d - log S)
 * of the write pass, the exp argument has one rounding less; alpha <= 1
 * keeps alpha / S <= 1, so a denormal e_i is never magnified.  Rows with a
 * non-finite max (NaN, +-inf, all -inf) or alpha outside (0, 1] take the
 * reduction + finalize + write path (decided before anything is written). */
/* y[0:n] *= f in place (the rescale pass of the float64 one-exp kernels) */
static inline void scale_row_f64_(double *y, ptrdiff_t n, double f)
{
    const __m256d fv = _mm256_set1_pd(f);
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_pd(y + i, _mm256_mul_pd(_mm256_loadu_pd(y + i), fv));
        _mm256_storeu_pd(y + i + 4, _mm256_mul_pd(_mm256_loadu_pd(y + i + 4), fv));
    }
    for (; i < n; i += 4) {
        __m256i msk = tail_mask64_(n - i);
        _mm256_maskstore_pd(y + i, msk,
                            _mm256_mul_pd(_mm256_maskload_pd(y + i, msk), fv));
    }
}

static void softmax_fused_row_f64_(const double *x, ptrdiff_t n, double scale,
                                   double alpha, double m, double *y,
                                   const double *pf)
{
    const __m256d mv = _mm256_set1_pd(m), sv = _mm256_set1_pd(scale);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
        __m256d a = _mm256_loadu_pd(x + i), b = _mm256_loadu_pd(x + i + 4);
        __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
        __m256d eb = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(b, mv), sv));
        _mm256_storeu_pd(y + i, ea);
        _mm256_storeu_pd(y + i + 4, eb);
        r0 = _mm256_add_pd(r0, ea);
        r1 = _mm256_add_pd(r1, eb);
    }
    for (; i < n; i += 4) {
        __m256i msk = tail_mask64_(n - i);
        __m256d a = _mm256_blendv_pd(_mm256_set1_pd(-INFINITY),
                                     _mm256_maskload_pd(x + i, msk),
                                     _mm256_castsi256_pd(msk));
        __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
        _mm256_maskstore_pd(y + i, msk, ea);
        r0 = _mm256_add_pd(r0, ea);
    }
    scale_row_f64_(y, n, alpha / hsum_pd_(_mm256_add_pd(r0, r1)));
}

/* ---- float64 cross-entropy gradient with one exp per element -------------
 *
 * csm_lse_store_rows_f64: for rows of >= 8 elements with a finite max M,
 * the terms e_i = exp(scale (x_i - M)) (exactly 1 where x_i == M) stored
 * into e, and the states (max, count, rest) of csm_lse_rows_f64 from them;
 * other rows: csm_lse_rows_f64, e untouched.
 * csm_softmax_scale_rows_f64: y = e f with f = alpha exp(-log_sum) for the
 * rows the store kernel took (the same test on max[r]) whose f is in
 * [2^-60, 1] (so a denormal term is never magnified); other rows are
 * written from x.  y may be e, not x. */
void csm_lse_store_rows_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        double *e, ptrdiff_t e_row_stride)
{
    const __m256d sv = _mm256_set1_pd(scale), one = _mm256_set1_pd(1.0);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride;
        double *er = e + r * e_row_stride;
        double m = row_max_f64_(xr, n);
        if (!(m > -INFINITY && m < INFINITY) || n < 8) {
            csm_lse_rows_f64_avx2(xr, 1, n, n, scale, states + r);
            continue;
        }
        const __m256d mv = _mm256_set1_pd(m);
        const double *pf = xr + x_row_stride;
        __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);
            __m256d a = _mm256_loadu_pd(xr + i), b = _mm256_loadu_pd(xr + i + 4);
            __m256d qa = _mm256_cmp_pd(a, mv, _CMP_EQ_OQ);
            __m256d qb = _mm256_cmp_pd(b, mv, _CMP_EQ_OQ);
            __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
            __m256d eb = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(b, mv), sv));
            _mm256_storeu_pd(er + i, ea);
            _mm256_storeu_pd(er + i + 4, eb);
            r0 = _mm256_add_pd(r0, _mm256_andnot_pd(qa, ea));
            r1 = _mm256_add_pd(r1, _mm256_andnot_pd(qb, eb));
            c0 = _mm256_add_pd(c0, _mm256_and_pd(qa, one));
            c1 = _mm256_add_pd(c1, _mm256_and_pd(qb, one));
        }
        for (; i < n; i += 4) {
            __m256i msk = tail_mask64_(n - i);
            __m256d a = _mm256_blendv_pd(_mm256_set1_pd(-INFINITY),
                                         _mm256_maskload_pd(xr + i, msk),
                                         _mm256_castsi256_pd(msk));
            __m256d qa = _mm256_cmp_pd(a, mv, _CMP_EQ_OQ);
            __m256d ea = exp_f64_(_mm256_mul_pd(_mm256_sub_pd(a, mv), sv));
            _mm256_maskstore_pd(er + i, msk, ea);
            r0 = _mm256_add_pd(r0, _mm256_andnot_pd(qa, ea));
            c0 = _mm256_add_pd(c0, _mm256_and_pd(qa, one));
        }
        states[r].max = m;
        states[r].count = hsum_pd_(_mm256_add_pd(c0, c1));
        states[r].rest = hsum_pd_(_mm256_add_pd(r0, r1));
    }
}

void csm_softmax_scale_rows_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        double *yr = y + r * y_row_stride;
        double f = alpha * exp(-log_sum[r]);
        if (!(max[r] > -INFINITY && max[r] < INFINITY) || n < 8 ||
            !(fabs(f) >= 0x1p-60 && fabs(f) <= 1.0)) {
            csm_softmax_rows_f64_avx2(x + r * x_row_stride, 1, n, 0, scale,
                                      max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        scale_row_f64_(yr, n, f);
    }
}

void csm_softmax_fused_rows_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        double *y, ptrdiff_t y_row_stride)
{
    const int ok_a = alpha > 0.0 && alpha <= 1.0;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        double m = ok_a ? row_max_f64_(xr, n) : NAN;
        if (m > -INFINITY && m < INFINITY) {
            softmax_fused_row_f64_(xr, n, scale, alpha, m, yr, xr + x_row_stride);
            continue;
        }
        csm_lse_state st;
        double mx, ls;
        csm_lse_rows_f64_avx2(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        csm_softmax_rows_f64_avx2(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
