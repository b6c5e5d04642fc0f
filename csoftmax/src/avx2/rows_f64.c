/*
 * avx2/rows_f64.c -- float64 rows and columns on 4 lanes: the shared
 * kernels of simd/rows_f64_body.h (generic reduction / write passes, rows
 * and columns, the CE store / rescale) and the fused softmax rows
 */
#include "common.h"

#ifdef CSM_BUILD_AVX2

#include "../simd/rows_f64_body.h"

/* ---- fused float64 softmax rows (one exp per element) --------------------
 *
 * Max pass, then e_i = exp(scale * (x_i - M)) (exp_f64_: libm for denormal
 * terms) stored into y and summed, S = sum e_i (elements equal to M give
 * exactly 1), then y *= alpha / S in place.  Compared with exp(d - log S)
 * of the write pass, the exp argument has one rounding less; alpha <= 1
 * keeps alpha / S <= 1, so a denormal e_i is never magnified.  Rows with a
 * non-finite max (NaN, +-inf, all -inf) or alpha outside (0, 1] take the
 * reduction + finalize + write path (decided before anything is written).
 * AVX-512 (src/avx512/rows_f64.c) counts the elements equal to M apart
 * instead, as the CE store kernel does: the two ISAs' sums are associated
 * differently and each keeps the one it was recorded with (golden digests),
 * so this kernel is not shared. */
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
