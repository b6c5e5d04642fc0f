/*
 * avx512/rows_f64.c -- float64 rows and columns on 8 lanes: the shared
 * kernels of simd/rows_f64_body.h (generic reduction / write passes, rows
 * and columns, the CE store / rescale) and the fused softmax rows
 */
#include "common.h"

#ifdef CSM_BUILD_AVX512

#include "../simd/rows_f64_body.h"

/* Fused softmax rows: src/avx2/rows_f64.c's scheme (terms stored, then
 * scaled by alpha / S), with S = count + rest from store_row_f64_ (the
 * elements equal to the max counted apart, as the CE store kernel does)
 * where AVX2 sums every term; not shared for that reason (each ISA keeps
 * the association its golden digests were recorded with). */
void csm_softmax_fused_rows_f64_avx512(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, double alpha,
        double *y, ptrdiff_t y_row_stride)
{
    const int ok_a = alpha > 0.0 && alpha <= 1.0;
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride; double *yr = y + r * y_row_stride;
        double m = ok_a ? row_max_f64_(xr, n) : NAN;
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
