/*
 * avx2/masked_f64.c -- float64 masked rows (where=): the generic float64
 * kernels' arithmetic (generic.h: x - max exact, exp_f64_ with libm for
 * denormal terms, float64 sums, elements equal to the max counted apart)
 * with the mask bytes read in the same loop as x; masked lanes become -inf
 * before the max and the sum (their term is an exact 0) and 0 / -inf in
 * the written result.  Rows with a NaN, +-inf or no kept element take the
 * scalar masked kernels.
 */
#include "common.h"
#include "../simd/generic.h"
#include "masked.h"

#ifdef CSM_BUILD_AVX2

static double row_max_masked_f64_(const double *x, const unsigned char *mk,
                                  ptrdiff_t n)
{
    const __m256d ninf = _mm256_set1_pd(-INFINITY);
    __m256d m0 = ninf, m1 = ninf, bad = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_blendv_pd(ninf, _mm256_loadu_pd(x + i), keep4_(mk + i));
        __m256d b = _mm256_blendv_pd(ninf, _mm256_loadu_pd(x + i + 4), keep4_(mk + i + 4));
        m0 = _mm256_max_pd(m0, a);
        m1 = _mm256_max_pd(m1, b);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(a, b, _CMP_UNORD_Q));
    }
    for (; i < n; i += 4) {
        __m256d a;
        if (i + 4 <= n)
            a = _mm256_blendv_pd(ninf, _mm256_loadu_pd(x + i), keep4_(mk + i));
        else
            a = _mm256_blendv_pd(ninf, _mm256_maskload_pd(x + i, tail_mask64_(n - i)),
                                 keep4t_(mk + i, n - i));
        m0 = _mm256_max_pd(m0, a);
        bad = _mm256_or_pd(bad, _mm256_cmp_pd(a, a, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_pd(bad)) return NAN;
    return hmax_pd_(_mm256_max_pd(m0, m1));
}

/* 4 lanes of x (kept lanes) at offset i of a row; -inf elsewhere */
static inline __m256d load4k_(const double *x, const unsigned char *mk,
                              ptrdiff_t i, ptrdiff_t n)
{
    const __m256d ninf = _mm256_set1_pd(-INFINITY);
    if (i + 4 <= n)
        return _mm256_blendv_pd(ninf, _mm256_loadu_pd(x + i), keep4_(mk + i));
    return _mm256_blendv_pd(ninf, _mm256_maskload_pd(x + i, tail_mask64_(n - i)),
                            keep4t_(mk + i, n - i));
}

static void lse_chunk_masked_f64_(const double *x, const unsigned char *mk,
                                  ptrdiff_t n, double scale, csm_lse_state *st,
                                  const double *pf, const unsigned char *pfm,
                                  const double *pw)
{
    double m = row_max_masked_f64_(x, mk, n);
    if (!(m > -INFINITY && m < INFINITY)) {   /* NaN, +-inf, nothing kept */
        csm_lse_rows_masked_f64_scalar(x, 1, n, n, mk, 0, scale, st, NULL, 0);
        return;
    }
    const __m256d mv = _mm256_set1_pd(m), sv = _mm256_set1_pd(scale);
    const __m256d one = _mm256_set1_pd(1.0);
    __m256d r0 = _mm256_setzero_pd(), r1 = r0, c0 = r0, c1 = r0;
    ptrdiff_t i = 0;
    for (; i < n; i += 8) {
        _mm_prefetch((const char *)(pf + i), _MM_HINT_T0);   /* next chunk / row */
        if ((i & 63) == 0) _mm_prefetch((const char *)(pfm + i), _MM_HINT_T0);
        if (pw) __builtin_prefetch(pw + i, 1, 3);
        __m256d lo = load4k_(x, mk, i, n);
        __m256d hi = i + 4 < n ? load4k_(x, mk, i + 4, n) : _mm256_set1_pd(-INFINITY);
        SUM_STEP(exp_f64_, lo, hi);
    }
    st->max = m;
    st->count = hsum_pd_(_mm256_add_pd(c0, c1));
    st->rest = hsum_pd_(_mm256_add_pd(r0, r1));
}

void csm_lse_rows_masked_f64_avx2(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                  ptrdiff_t row_stride, const unsigned char *mask,
                                  ptrdiff_t mask_row_stride, double scale,
                                  csm_lse_state *states, const double *w,
                                  ptrdiff_t w_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        const double *wr = w ? w + r * w_row_stride : NULL;
        csm_lse_state acc = { -INFINITY, 0.0, 0.0 }, part;
        if (n <= CHUNK) {
            lse_chunk_masked_f64_(xr, mr, n, scale, &acc, xr + row_stride,
                                  mr + mask_row_stride, wr);
        } else for (ptrdiff_t c = 0; c < n; c += CHUNK) {
            int more = n - c > CHUNK;
            lse_chunk_masked_f64_(xr + c, mr + c, n - c < CHUNK ? n - c : CHUNK,
                                  scale, &part,
                                  more ? xr + c + CHUNK : xr + row_stride,
                                  more ? mr + c + CHUNK : mr + mask_row_stride,
                                  wr ? wr + c : NULL);
            csm_lse_merge(&acc, &part, scale);
        }
        states[r] = acc;
    }
}

static void write_masked_f64_(const double *x, const unsigned char *mk, ptrdiff_t n,
                              double scale, double m, double ls, double alpha,
                              double *y, int log)
{
    const __m256d mv = _mm256_set1_pd(m), lv = _mm256_set1_pd(ls);
    const __m256d sv = _mm256_set1_pd(scale), av = _mm256_set1_pd(alpha);
    const __m256d ninf = _mm256_set1_pd(-INFINITY);
    for (ptrdiff_t i = 0; i < n; i += 4) {
        __m256d k, a;
        if (i + 4 <= n) {
            k = keep4_(mk + i);
            a = _mm256_loadu_pd(x + i);
        } else {
            k = keep4t_(mk + i, n - i);
            a = _mm256_maskload_pd(x + i, tail_mask64_(n - i));
        }
        a = _mm256_blendv_pd(mv, a, k);   /* masked lanes: harmless values */
        __m256d d = _mm256_fmsub_pd(_mm256_sub_pd(a, mv), sv, lv);
        __m256d o = log ? _mm256_blendv_pd(ninf, d, k)
                        : _mm256_and_pd(_mm256_mul_pd(exp_f64_(d), av), k);
        if (i + 4 <= n) _mm256_storeu_pd(y + i, o);
        else _mm256_maskstore_pd(y + i, tail_mask64_(n - i), o);
    }
}

void csm_softmax_rows_masked_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY))
            csm_softmax_rows_masked_f64_scalar(xr, 1, n, 0, mr, 0, scale, max + r,
                                               log_sum + r, alpha, yr, 0);
        else
            write_masked_f64_(xr, mr, n, scale, max[r], log_sum[r], alpha, yr, 0);
    }
}

void csm_log_softmax_rows_masked_f64_avx2(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        const unsigned char *mr = mask + r * mask_row_stride;
        if (!(max[r] > -INFINITY && max[r] < INFINITY))
            csm_log_softmax_rows_masked_f64_scalar(xr, 1, n, 0, mr, 0, scale,
                                                   max + r, log_sum + r, alpha, yr, 0);
        else
            write_masked_f64_(xr, mr, n, scale, max[r], log_sum[r], alpha, yr, 1);
    }
}

#include "end.h"
#endif /* CSM_BUILD_AVX2 */
