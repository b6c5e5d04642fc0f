/*
 * simd/rows_f64_body.h -- float64 rows: the generic kernels (simd/
 * generic.h: reduction, softmax / log_softmax write, and their column
 * versions), the reduction that fetches the write destination, and the
 * cross-entropy store / rescale with one exp per element, the fused softmax
 * rows.  Written once against the lane abstraction, compiled per ISA by
 * src/avx2/rows_f64.c and src/avx512/rows_f64.c.
 * (internal; included once, by those files, after common.h)
 */
#include "generic.h"

DEFINE_KERNELS(double, f64, exp_f64_, , )

void SUFFIX(csm_lse_rows_pw_f64)(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t row_stride, double scale,
                                 csm_lse_state *states, const double *w,
                                 ptrdiff_t w_row_stride)
{
    lse_rows_f64_(x, n_rows, n, row_stride, scale, states, w, w_row_stride);
}

/* y[0:n] *= f in place (the rescale pass of the float64 one-exp kernels) */
static inline void scale_row_f64_(double *y, ptrdiff_t n, double f)
{
    const VD fv = vd_set1(f);
    ptrdiff_t i = 0;
    for (; i + 2 * VDLEN <= n; i += 2 * VDLEN) {
        vd_storeu(y + i, vd_mul(vd_loadu(y + i), fv));
        vd_storeu(y + i + VDLEN, vd_mul(vd_loadu(y + i + VDLEN), fv));
    }
    for (; i < n; i += VDLEN)
        vd_store_tail(y + i, n - i, vd_mul(vd_loadz_tail(y + i, n - i), fv));
}

/* e_i = exp(scale (x_i - m)) stored into y (exactly 1 where x_i == m);
 * returns the sum of the other terms, *count the number of such lanes.
 * The steps, halves and accumulators are those of lse_chunk_f64_ (simd/
 * generic.h, SUM_STEP), the masked tail included, so a row of up to CHUNK
 * elements gets the bits of csm_lse_rows_f64: the loss of a cross-entropy
 * is then the same number with its gradient (this kernel) and without.
 * Longer rows are summed CHUNK elements a block, the blocks' sums added in
 * float64, as the reduction does: one pair of accumulators over the whole
 * row grew its rounding with n (a one-hot row of 2^20 doubles: softmax 266
 * ULP on the AVX-512 table, 19,300 on AVX2; 599 ULP at 256000 on AVX2). */
static inline double store_row_f64_(const double *x, ptrdiff_t n, double scale,
                                    double m, double *y, const double *pf,
                                    double *count)
{
    const VD mv = vd_set1(m), sv = vd_set1(scale), one = vd_set1(1.0);
    double rest = 0.0, cnt = 0.0;
#define ST_STEP(a, r_, c_, e_)                                                 \
    do {                                                                       \
        VDM eq_ = vd_cmp(a, mv, _CMP_EQ_OQ);                                   \
        e_ = exp_f64_(vd_mul(vd_sub(a, mv), sv));                              \
        r_ = vd_add(r_, vd_unless(eq_, e_));                                   \
        c_ = vd_add(c_, vd_when(eq_, one));                                    \
    } while (0)
    for (ptrdiff_t b = 0; b < n; b += CHUNK) {
        const ptrdiff_t end = n - b < CHUNK ? n : b + CHUNK;
        VD r0 = vd_zero(), r1 = r0, c0 = r0, c1 = r0;
        VD lo, hi, elo, ehi;
        ptrdiff_t i = b;
        for (; i + VLEN <= end; i += VLEN) {
            for (ptrdiff_t k = 0; k < VLEN; k += 8)
                _mm_prefetch((const char *)(pf + i + k), _MM_HINT_T0);
            vload2_f64(x + i, &lo, &hi);
            ST_STEP(lo, r0, c0, elo);
            ST_STEP(hi, r1, c1, ehi);
            vstore2_f64(y + i, elo, ehi);
        }
        if (i < end) {
            vload2m_f64(x + i, end - i, -INFINITY, &lo, &hi);
            ST_STEP(lo, r0, c0, elo);
            ST_STEP(hi, r1, c1, ehi);
            vstore2m_f64(y + i, end - i, elo, ehi);
        }
        cnt += vd_hsum(vd_add(c0, c1));
        rest += vd_hsum(vd_add(r0, r1));
    }
#undef ST_STEP
    *count = cnt;
    return rest;
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
void SUFFIX(csm_lse_store_rows_f64)(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t x_row_stride, double scale, csm_lse_state *states,
        double *e, ptrdiff_t e_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const double *xr = x + r * x_row_stride;
        double m = row_max_f64_(xr, n);
        if (!(m > -INFINITY && m < INFINITY) || n < 8) {
            SUFFIX(csm_lse_rows_f64)(xr, 1, n, n, scale, states + r);
            continue;
        }
        double count, rest = store_row_f64_(xr, n, scale, m, e + r * e_row_stride,
                                            xr + x_row_stride, &count);
        states[r].max = m;
        states[r].count = count;
        states[r].rest = rest;
    }
}

void SUFFIX(csm_softmax_scale_rows_f64)(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        double *yr = y + r * y_row_stride;
        double f = alpha * exp(-log_sum[r]);
        if (!(max[r] > -INFINITY && max[r] < INFINITY) || n < 8 ||
            !(fabs(f) >= 0x1p-60 && fabs(f) <= 1.0)) {
            SUFFIX(csm_softmax_rows_f64)(x + r * x_row_stride, 1, n, 0, scale,
                                         max + r, log_sum + r, alpha, yr, 0);
            continue;
        }
        scale_row_f64_(yr, n, f);
    }
}

/* ---- fused float64 softmax rows (one exp per element) --------------------
 *
 * Max pass, then e_i = exp(scale * (x_i - M)) (exp_f64_: libm for denormal
 * terms) stored into y, S = count + rest from store_row_f64_ (the elements
 * equal to M counted apart: small terms added onto their 1s would each
 * round it the same way, n u -- measured 514 ULP at n = 4099), then
 * y *= alpha / S in place.  Compared with exp(d - log S) of the write pass,
 * the exp argument has one rounding less; alpha <= 1 keeps alpha / S <= 1,
 * so a denormal e_i is never magnified.  Rows with a non-finite max (NaN,
 * +-inf, all -inf) or alpha outside (0, 1] take the reduction + finalize +
 * write path (decided before anything is written).  (The finalize of the
 * AVX2 table serves both ISAs.) */
void SUFFIX(csm_softmax_fused_rows_f64)(const double *x, ptrdiff_t n_rows,
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
        SUFFIX(csm_lse_rows_f64)(xr, 1, n, n, scale, &st);
        csm_finalize_avx2(&st, 1, scale, &mx, &ls);
        SUFFIX(csm_softmax_rows_f64)(xr, 1, n, n, scale, &mx, &ls, alpha, yr, n);
    }
}
