/*
 * csoftmax.h -- public C API of csoftmax.
 *
 * Row kernels for the softmax family (LogSumExp, softmax, log-softmax) in
 * float32 and float64.  Every kernel exists once per instruction set
 * (`csm_<op>_<dtype>_<isa>`); `csm_kernels()` returns the table chosen once
 * from CPUID (honouring the environment variable CSOFTMAX_ISA=scalar|avx2|avx512|neon),
 * and callers go through that table.  aarch64 builds always offer NEON
 * (AdvSIMD is part of the aarch64 baseline).
 *
 * Conventions
 *   - counts and strides are in elements, never bytes;
 *   - `const` inputs first, outputs last;
 *   - `scale` is 1/temperature (> 0): the kernels work on scale * x;
 *   - kernels hold no global state and take no locks, so they may be
 *     called concurrently from any number of threads (csoftmax's own Cython
 *     layer calls them inside OpenMP loops).  One allocates: the AVX2
 *     column tiles (softmax_fused_cols_f32, log_softmax_tiled_cols_f32)
 *     malloc a tile buffer per call (and take the untiled loop when
 *     malloc fails).
 *
 * A row reduction is described by a csm_lse_state: the row maximum `max`
 * (of the unscaled inputs), `count`, the number of elements equal to it,
 * and `rest` = sum over the other elements of exp(scale * (x_i - max)).
 * Keeping the exactly-known count apart from the rest keeps log-softmax
 * and LSE accurate when the maximum dominates (LSE([0, -40]) = 4.25e-18,
 * not 0).  States of row segments merge exactly (csm_lse_merge), which is
 * how long rows are split across threads and chunks.
 *
 * Accuracy: float32 results are within a few ULP (tests: <= 4) of the
 * correctly rounded float64 result.  The AVX2 float32 row reduction
 * evaluates each exp(scale * (x - max)) in float32 lanes with an exact
 * argument reduction (each term within ~1 ULP of float32, no rounding of
 * x - max) and sums the terms in float64, so the float64 `rest` of a float32
 * row is good to a relative ~2^-24 (not to float64 precision); the AVX2
 * column kernels, the scalar and the NEON kernels widen to float64 (exp
 * relative error < 2.6e-9).  float64 kernels use a degree-11 polynomial on
 * AVX2, degree 13 elsewhere (relative error < 2^-52), and float64 sums.
 */
#ifndef CSOFTMAX_H
#define CSOFTMAX_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSOFTMAX_C_API_VERSION 1

typedef enum {
    CSM_ISA_SCALAR = 0,
    CSM_ISA_AVX2 = 1,
    CSM_ISA_NEON = 2,  /* aarch64 AdvSIMD */
    CSM_ISA_AVX512 = 3 /* x86-64 AVX-512 F+BW+DQ+VL (+ FMA) */
} csm_isa;

typedef struct {
    double max;   /* max of the inputs (unscaled); NaN if any input is NaN */
    double count; /* number of elements equal to max */
    double rest;  /* sum of exp(scale * (x_i - max)) over x_i < max */
} csm_lse_state;

/* ---- per-dtype kernel signatures --------------------------------------- */

/* LSE state of each of `n_rows` rows of length `n`; row r starts at
 * x + r * row_stride.  Elements within a row are contiguous. */
typedef void csm_lse_rows_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t row_stride, double scale,
                                 csm_lse_state *states);
typedef csm_lse_rows_f32_fn *csm_lse_rows_f32;
typedef void csm_lse_rows_f64_fn(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t row_stride, double scale,
                                 csm_lse_state *states);
typedef csm_lse_rows_f64_fn *csm_lse_rows_f64;

/* LSE state of each of `n_cols` contiguous columns of an (n, n_cols) block
 * whose rows are `row_stride` elements apart: reduces x[i*row_stride + j]
 * over i for every j (the non-last-axis case, vectorised across j). */
typedef csm_lse_rows_f32 csm_lse_cols_f32;
typedef csm_lse_rows_f64 csm_lse_cols_f64;

/* Write pass.  For every element, with d = scale * (x - max) - log_sum:
 *   softmax:     y = alpha * exp(d)
 *   log_softmax: y = d
 * `max` and `log_sum` are per row (arrays of n_rows) -- see csm_lse_finalize.
 * x and y may be the same memory (in place). */
typedef void csm_write_rows_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale,
                                   const double *max, const double *log_sum,
                                   double alpha, float *y,
                                   ptrdiff_t y_row_stride);
typedef csm_write_rows_f32_fn *csm_write_rows_f32;
typedef void csm_write_rows_f64_fn(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale,
                                   const double *max, const double *log_sum,
                                   double alpha, double *y,
                                   ptrdiff_t y_row_stride);
typedef csm_write_rows_f64_fn *csm_write_rows_f64;

/* Column variant of the write pass: element (i, j) of an (n, n_cols) block,
 * max / log_sum indexed by column j. */
typedef csm_write_rows_f32 csm_write_cols_f32;
typedef csm_write_rows_f64 csm_write_cols_f64;

/* Turns `n` states into per-row max and log_sum = log(count + rest),
 * computed as log(count) + log1p(rest / count) without cancellation.
 * Non-finite rows follow IEEE arithmetic on the formula LSE = scale*max +
 * log_sum: a NaN row gives NaN, a row holding +inf gives +inf (log_sum =
 * log(count of +inf)), an empty or all -inf row gives max = -inf, log_sum = 0. */
typedef void csm_finalize_rows_fn(const csm_lse_state *states, ptrdiff_t n,
                                  double scale, double *max, double *log_sum);
typedef csm_finalize_rows_fn *csm_finalize_fn;

/* Backward (vector-Jacobian product) over `n_rows` contiguous rows of length
 * n (row r starts at r * n), given the forward output y and the upstream
 * gradient dy:
 *   softmax:     o = y * (dy - sum(y * dy))
 *   log_softmax: o = dy - exp(y) * sum(dy)       (y = log-probabilities)
 * Sums are float64.  o may be the same memory as y or dy. */
typedef void csm_bwd_rows_f32_fn(const float *y, const float *dy, float *o,
                                 ptrdiff_t n_rows, ptrdiff_t n);
typedef csm_bwd_rows_f32_fn *csm_bwd_rows_f32;
typedef void csm_bwd_rows_f64_fn(const double *y, const double *dy, double *o,
                                 ptrdiff_t n_rows, ptrdiff_t n);
typedef csm_bwd_rows_f64_fn *csm_bwd_rows_f64;
/* Short rows (n <= CSM_SMALL_MAX), several rows per vector; each row's
 * result depends only on that row.  NULL in tables without them (callers
 * then use the row kernels).
 *   lse_small:     reduction and finalize in one call: max[r] and
 *                  log_sum[r] as csm_finalize_fn gives them.  for_lse != 0
 *                  when the caller uses LSE = scale*max + log_sum itself
 *                  (float32 rows where that sum cancels are then redone
 *                  with the float64-accurate exp, as csm_lse_rows_f32 redoes
 *                  them with libm).
 *   softmax_small, log_softmax_small: the whole operation (reduction and
 *                  write) on each row; x and y may be the same memory.
 *   softmax_write_small: the write pass with a given state and alpha
 *                  (csm_write_rows_* signature). */
#define CSM_SMALL_MAX 64
typedef void csm_lse_small_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                  ptrdiff_t row_stride, double scale,
                                  int for_lse, double *max, double *log_sum);
typedef csm_lse_small_f32_fn *csm_lse_small_f32;
typedef void csm_lse_small_f64_fn(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                  ptrdiff_t row_stride, double scale,
                                  int for_lse, double *max, double *log_sum);
typedef csm_lse_small_f64_fn *csm_lse_small_f64;
typedef void csm_small_rows_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale,
                                   float *y, ptrdiff_t y_row_stride);
typedef csm_small_rows_f32_fn *csm_small_rows_f32;
typedef void csm_small_rows_f64_fn(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                   ptrdiff_t x_row_stride, double scale,
                                   double *y, ptrdiff_t y_row_stride);
typedef csm_small_rows_f64_fn *csm_small_rows_f64;

/* Whole softmax of each row (reduction, finalize and write in one call),
 * y = alpha * softmax(scale * x), rows of length n contiguous; x and y may
 * be the same memory.  AVX2 only (NULL in the other tables): one exp per
 * element, the terms are stored in y and rescaled (see avx2/fused_rows_f32.c). */
typedef void csm_softmax_fused_rows_f32_fn(const float *x, ptrdiff_t n_rows,
                                           ptrdiff_t n, ptrdiff_t x_row_stride,
                                           double scale, double alpha, float *y,
                                           ptrdiff_t y_row_stride);
typedef csm_softmax_fused_rows_f32_fn *csm_softmax_fused_rows_f32;
typedef void csm_softmax_fused_rows_f64_fn(const double *x, ptrdiff_t n_rows,
                                           ptrdiff_t n, ptrdiff_t x_row_stride,
                                           double scale, double alpha, double *y,
                                           ptrdiff_t y_row_stride);
typedef csm_softmax_fused_rows_f64_fn *csm_softmax_fused_rows_f64;

/* Cross-entropy gradient with one exp per element (AVX2 only, NULL in the
 * other tables):
 *   lse_store_rows_f32: the states of lse_rows_f32 (to within rounding for
 *       rows longer than 2048) and, for rows of at least 32 elements whose
 *       max is finite, the scaled terms of the sum stored into e (an
 *       internal format; other rows leave e untouched);
 *   softmax_scale_rows_f32: the write pass softmax_rows_f32 (same
 *       arguments, same results to within rounding) for y = e of the store
 *       kernel on the same x, state and scale; x must not overlap e or y. */
typedef void csm_lse_store_rows_f32_fn(const float *x, ptrdiff_t n_rows,
                                       ptrdiff_t n, ptrdiff_t x_row_stride,
                                       double scale, csm_lse_state *states,
                                       float *e, ptrdiff_t e_row_stride);
typedef csm_lse_store_rows_f32_fn *csm_lse_store_rows_f32;

/* lse_rows_* that also fetch the rows w (w_row_stride apart, same length)
 * for writing while the exp pass runs, so that the write pass that follows
 * on the same block finds its destination in cache (AVX2 only, NULL in the
 * other tables).  A hint: w is never read or written, may be any memory
 * (x itself too); the states are those of lse_rows_*. */
typedef void csm_lse_store_rows_f64_fn(const double *x, ptrdiff_t n_rows,
                                       ptrdiff_t n, ptrdiff_t x_row_stride,
                                       double scale, csm_lse_state *states,
                                       double *e, ptrdiff_t e_row_stride);
typedef csm_lse_store_rows_f64_fn *csm_lse_store_rows_f64;
typedef void csm_copy_rows_f32_fn(float *d, ptrdiff_t d_row_stride,
                                  const float *s, ptrdiff_t s_row_stride,
                                  ptrdiff_t n_rows, ptrdiff_t n);
typedef csm_copy_rows_f32_fn *csm_copy_rows_f32;
typedef void csm_lse_rows_pw_f32_fn(const float *x, ptrdiff_t n_rows,
                                    ptrdiff_t n, ptrdiff_t row_stride,
                                    double scale, csm_lse_state *states,
                                    const float *w, ptrdiff_t w_row_stride);
typedef csm_lse_rows_pw_f32_fn *csm_lse_rows_pw_f32;
typedef void csm_lse_rows_pw_f64_fn(const double *x, ptrdiff_t n_rows,
                                    ptrdiff_t n, ptrdiff_t row_stride,
                                    double scale, csm_lse_state *states,
                                    const double *w, ptrdiff_t w_row_stride);
typedef csm_lse_rows_pw_f64_fn *csm_lse_rows_pw_f64;

/* Cross-entropy gradient of short rows (n <= CSM_SMALL_MAX) in one call
 * (AVX2 only, NULL in the other tables): for each row r,
 *   y[r, :] = a[r] * softmax(scale * x[r, :]),
 * and where t != NULL and t[r] >= 0 (a class index < n), the target entry
 *   y[r, t[r]] = a[r] * expm1(lp[r]),  lp[r] = log softmax(scale * x[r, :])[t[r]]
 * (computed in float64 from the max and log_sum, so p_t - 1 keeps its
 * accuracy near p_t = 1), with lp[r] stored.  Rows with a[r] == 0 are zeros
 * before the target entry (even rows holding NaN).  a[r] must be finite.
 * x and y may be the same memory.  ce_small_f64 likewise (may be NULL). */
typedef void csm_ce_small_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t x_row_stride, double scale,
                                 const double *a, const int *t, double *lp,
                                 float *y, ptrdiff_t y_row_stride);
typedef csm_ce_small_f32_fn *csm_ce_small_f32;
typedef void csm_ce_small_f64_fn(const double *x, ptrdiff_t n_rows, ptrdiff_t n,
                                 ptrdiff_t x_row_stride, double scale,
                                 const double *a, const int *t, double *lp,
                                 double *y, ptrdiff_t y_row_stride);
typedef csm_ce_small_f64_fn *csm_ce_small_f64;

/* out[i] = expm1(t[i]) for t[i] <= 0 or NaN (relative error < 1e-15; the
 * cross-entropy target entries; may be NULL) */
typedef void csm_expm1_le0_f64_fn(const double *t, double *out, ptrdiff_t n);
typedef csm_expm1_le0_f64_fn *csm_expm1_le0_f64;

/* The sums behind the loss of soft targets, float32 rows (classes
 * contiguous), in float64: for row k with u_c = w[c] (cq q[k, c] + c0),
 *   A[k] = sum_c u_c,   B[k] = sum_c u_c (x[k, c] - max[k])
 * (w NULL: 1; q NULL: u_c = w[c] c0).  Label smoothing takes cq = 0,
 * c0 = 1 (B = sum_c w_c (x_c - max)); probability targets cq = 1 - eps,
 * c0 = eps / n.  Partial sums in any order: float64-accurate, not
 * bit-fixed across ISAs. */
typedef void csm_ce_soft_sums_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                     ptrdiff_t x_row_stride, const double *max,
                                     const float *q, ptrdiff_t q_row_stride,
                                     const double *w, double cq, double c0,
                                     double *A, double *B);
typedef csm_ce_soft_sums_f32_fn *csm_ce_soft_sums_f32;

/* Cross-entropy gradient of soft targets (label smoothing, probability
 * targets), float32 data, in two passes.  ce_soft: for row k, class c,
 *   g[k, c] = a[k] e[k, c] - w[c] (cq q[k, c] + c0),
 *   e[k, c] = exp(scale (x[k, c] - max[k]) - log_sum[k])
 * formed in float64 with a 2^-43-accurate exp and rounded once (the two
 * terms cancel where p_c W ~ w_c q'_c; a float32-rounded p left up to 2^-23
 * x the terms there); sum[k] = sum_c e[k, c].  ce_soft_fix: the float32
 * reductions' log_sum is only float32-accurate, so p = e / sum; it makes
 * g = g - (g + w (cq q + c0)) (1 - 1 / sum) in float64 (g + w(..) recovers
 * a e to ~2^-24 of it, times 1 - 1/sum ~ 2^-24: exact enough), one more
 * rounding of a value within 2^-24 of the result.  w NULL: 1; q NULL: no cq
 * term.  The rows variants have classes contiguous (row strides for x, q,
 * g); the columns variants take n_cols contiguous samples, classes a row
 * stride apart, max / log_sum / a / sum indexed by column. */
typedef void csm_ce_soft_f32_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t x_row_stride, double scale,
                                const double *max, const double *log_sum,
                                const double *a, const float *q,
                                ptrdiff_t q_row_stride, const double *w,
                                double cq, double c0, float *g,
                                ptrdiff_t g_row_stride, double *sum);
typedef csm_ce_soft_f32_fn *csm_ce_soft_f32;
typedef void csm_ce_soft_fix_f32_fn(float *g, ptrdiff_t n_rows, ptrdiff_t n,
                                    ptrdiff_t g_row_stride, const float *q,
                                    ptrdiff_t q_row_stride, const double *w,
                                    double cq, double c0, const double *sum);
typedef csm_ce_soft_fix_f32_fn *csm_ce_soft_fix_f32;

/* The backward kernels over n_cols columns of n rows, row_stride elements
 * apart (the same stride for y, dy and o; o may be dy).  AVX2 only (NULL in
 * the other tables). */
typedef void csm_bwd_cols_f32_fn(const float *y, const float *dy, float *o,
                                 ptrdiff_t n_cols, ptrdiff_t n,
                                 ptrdiff_t row_stride);
typedef csm_bwd_cols_f32_fn *csm_bwd_cols_f32;
typedef void csm_bwd_cols_f64_fn(const double *y, const double *dy, double *o,
                                 ptrdiff_t n_cols, ptrdiff_t n,
                                 ptrdiff_t row_stride);
typedef csm_bwd_cols_f64_fn *csm_bwd_cols_f64;

/* Half precision (float16 = IEEE binary16, bfloat16 = the top half of a
 * float32) <-> float32, on n_rows rows of n contiguous elements, rows
 * x_row_stride / y_row_stride elements apart; 16-bit data are passed as
 * their bit patterns (uint16_t).  To float32: exact (NaN stays NaN, its
 * payload kept).  From float32: rounded to nearest, ties to even, with
 * overflow to +-inf, subnormal results rounded the same way (float16) and
 * NaN kept a quiet NaN of the same sign (its top payload bits kept).
 * Every ISA gives the same bits.  x and y must not overlap. */
typedef void csm_cvt_h2f_fn(const uint16_t *x, ptrdiff_t n_rows, ptrdiff_t n,
                            ptrdiff_t x_row_stride, float *y,
                            ptrdiff_t y_row_stride);
typedef csm_cvt_h2f_fn *csm_cvt_h2f;
typedef void csm_cvt_f2h_fn(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                            ptrdiff_t x_row_stride, uint16_t *y,
                            ptrdiff_t y_row_stride);
typedef csm_cvt_f2h_fn *csm_cvt_f2h;

/* The scalar conversions of one element (the reference every ISA matches;
 * portable C, no floating-point environment dependence). */
static inline float csm_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    union { uint32_t u; float f; } v;
    if (e == 0x1fu) v.u = s | 0x7f800000u | (m << 13);          /* inf, NaN */
    else if (e != 0) v.u = s | ((e + 112u) << 23) | (m << 13);   /* normal */
    else {                                                       /* 0, subnormal */
        v.f = (float)m * 5.9604644775390625e-08f;                /* m * 2^-24: exact */
        v.u |= s;
    }
    return v.f;
}

static inline uint16_t csm_f32_to_f16(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    uint32_t s = (v.u >> 16) & 0x8000u, a = v.u & 0x7fffffffu;
    if (a >= 0x7f800000u)                                 /* inf; NaN quiet */
        return (uint16_t)(a == 0x7f800000u ? s | 0x7c00u
                                           : s | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (uint16_t)(s | 0x7c00u); /* >= 65520: inf */
    if (a >= 0x38800000u) {                               /* normal result */
        uint32_t r = a - (112u << 23);
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(s | (r >> 13));
    }
    if (a <= 0x33000000u) return (uint16_t)s;             /* <= 2^-25: 0 */
    {                                                     /* subnormal result */
        uint32_t e = a >> 23, mant = (a & 0x7fffffu) | 0x800000u;
        uint32_t sh = 126u - e;                           /* 14 .. 24 */
        uint32_t q = mant >> sh, rem = mant & ((1u << sh) - 1u), half = 1u << (sh - 1u);
        if (rem > half || (rem == half && (q & 1u))) ++q;
        return (uint16_t)(s | q);
    }
}

static inline float csm_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

static inline uint16_t csm_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u)                /* NaN: quiet */
        return (uint16_t)((v.u >> 16) | 0x40u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
/* Masked row kernels (where=): as lse_rows / softmax_rows / log_softmax_rows,
 * with a byte mask read in the same pass as x: element i of row r takes
 * part iff mask[r * mask_row_stride + i] != 0 (mask elements contiguous
 * within a row; mask_row_stride 0: one mask for every row, e.g. a padded
 * vocabulary).  Masked elements are never used as numbers (a NaN or inf
 * there does not reach the result): they are left out of the max and the
 * sum, the write passes give 0 (softmax) / -inf (log_softmax) there.  A
 * row with no element kept has count 0 (finalize: max -inf, log_sum 0), so
 * LSE -inf, softmax 0, log_softmax -inf -- jax.nn's where= semantics.
 * lse_rows_masked: w (may be NULL) as in lse_rows_pw, the destination of
 * the write pass that follows, fetched for writing (a hint).
 * softmax_fused_rows_masked_f32: the whole masked softmax of each row with
 * one exp per element, as softmax_fused_rows_f32 (AVX2 / AVX-512, NULL in
 * the other tables); x and y may be the same memory.  states (NULL: not
 * wanted) receives each row's reduction state, that of lse_rows_masked to
 * within rounding (the cross-entropy loss of where=). */
typedef void csm_lse_rows_masked_f32_fn(const float *x, ptrdiff_t n_rows,
                                        ptrdiff_t n, ptrdiff_t row_stride,
                                        const unsigned char *mask,
                                        ptrdiff_t mask_row_stride, double scale,
                                        csm_lse_state *states, const float *w,
                                        ptrdiff_t w_row_stride);
typedef csm_lse_rows_masked_f32_fn *csm_lse_rows_masked_f32;
typedef void csm_lse_rows_masked_f64_fn(const double *x, ptrdiff_t n_rows,
                                        ptrdiff_t n, ptrdiff_t row_stride,
                                        const unsigned char *mask,
                                        ptrdiff_t mask_row_stride, double scale,
                                        csm_lse_state *states, const double *w,
                                        ptrdiff_t w_row_stride);
typedef csm_lse_rows_masked_f64_fn *csm_lse_rows_masked_f64;
typedef void csm_write_rows_masked_f32_fn(const float *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, float *y, ptrdiff_t y_row_stride);
typedef csm_write_rows_masked_f32_fn *csm_write_rows_masked_f32;
typedef void csm_softmax_fused_rows_masked_f32_fn(const float *x,
        ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t x_row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride, double scale,
        double alpha, float *y, ptrdiff_t y_row_stride, csm_lse_state *states);
typedef csm_softmax_fused_rows_masked_f32_fn *csm_softmax_fused_rows_masked_f32;
typedef void csm_write_rows_masked_f64_fn(const double *x, ptrdiff_t n_rows,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, double scale, const double *max,
        const double *log_sum, double alpha, double *y, ptrdiff_t y_row_stride);
typedef csm_write_rows_masked_f64_fn *csm_write_rows_masked_f64;
/* Masked column variants (non-last axis): element (i, j) of an (n, n_cols)
 * block, x[i * row_stride + j], mask[i * mask_row_stride + j * mask_col_stride]
 * (either stride may be 0: a broadcast mask); states / max / log_sum
 * indexed by column j. */
typedef void csm_lse_cols_masked_f32_fn(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        csm_lse_state *states);
typedef csm_lse_cols_masked_f32_fn *csm_lse_cols_masked_f32;
typedef void csm_lse_cols_masked_f64_fn(const double *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        csm_lse_state *states);
typedef csm_lse_cols_masked_f64_fn *csm_lse_cols_masked_f64;
typedef void csm_write_cols_masked_f32_fn(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        const double *max, const double *log_sum, double alpha, float *y,
        ptrdiff_t y_row_stride);
typedef csm_write_cols_masked_f32_fn *csm_write_cols_masked_f32;
typedef void csm_write_cols_masked_f64_fn(const double *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        const double *max, const double *log_sum, double alpha, double *y,
        ptrdiff_t y_row_stride);
typedef csm_write_cols_masked_f64_fn *csm_write_cols_masked_f64;
/* Masked backward over n_rows rows of length n (y, dy, o rows y_row_stride
 * apart, contiguous within a row; the mask as for the masked row kernels):
 * the sums run over kept elements only and o = 0 at masked ones (whatever
 * y and dy hold there).  o may be the same memory as y or dy. */
typedef void csm_bwd_rows_masked_f32_fn(const float *y, const float *dy, float *o,
        ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride);
typedef csm_bwd_rows_masked_f32_fn *csm_bwd_rows_masked_f32;
typedef void csm_bwd_rows_masked_f64_fn(const double *y, const double *dy, double *o,
        ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride);
typedef csm_bwd_rows_masked_f64_fn *csm_bwd_rows_masked_f64;
/* masked backward along a non-last axis, float32: n_cols columns of n
 * rows (y, dy and o share row_stride); mask element (i, j) at
 * mask[i * mask_row_stride + j * mask_col_stride] */
typedef void csm_bwd_cols_masked_f32_fn(const float *y, const float *dy, float *o,
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride,
        ptrdiff_t mask_col_stride);
typedef csm_bwd_cols_masked_f32_fn *csm_bwd_cols_masked_f32;

/* The kernel table: one function pointer per line of csoftmax_kernels.def,
 * in that order (NULL where an ISA has no such kernel). */
typedef struct {
    csm_isa isa;
    const char *name;
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) signature *field;
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
} csm_kernel_table;

/* The table chosen at first call: the best ISA the CPU and OS support, or
 * the one named by CSOFTMAX_ISA ("scalar", "avx2", "avx512" or "neon"; an unavailable or
 * unknown name falls back to the best available and is reported by
 * csm_isa_request_error()).  Thread-safe after the first call. */
const csm_kernel_table *csm_kernels(void);

/* Table for one ISA, or NULL if this CPU/build cannot run it. */
const csm_kernel_table *csm_kernels_for(csm_isa isa);

/* Nonzero when CSOFTMAX_ISA named an ISA that could not be honoured. */
int csm_isa_request_error(void);

/* Streaming stores of the column tile kernels (non-last axis: the tiled
 * softmax / log_softmax and csm_copy_rows_nt_f32), a per-thread hint the
 * callers set before a call (default on).  Streaming stores skip the
 * read-for-ownership of an output that is already mapped; into a fresh
 * one (a large allocation: every page is zeroed by the kernel on its first
 * write and sits dirty in the cache) plain stores are faster.
 * csm_page_resident(p): nonzero if the page holding p has been written
 * (Linux mincore; elsewhere, or on failure, 1). */
void csm_set_stream_stores(int on);
int csm_stream_stores(void);
int csm_page_resident(const void *p);

/* The kernel list (csoftmax_kernels.def) at run time: its length, the
 * name (table member) of entry i, and whether table t has entry i. */
int csm_kernel_count(void);
const char *csm_kernel_name(int i);
int csm_kernel_present(const csm_kernel_table *t, int i);

/* Merge the state of segment `b` into `a` (one exp per merge; order-free). */
static inline void csm_lse_merge(csm_lse_state *a, const csm_lse_state *b,
                                 double scale)
{
    if (b->max != b->max || a->max != a->max) {   /* NaN wins */
        if (b->max != b->max) *a = *b;
        return;
    }
    if (b->count == 0.0) return;                  /* empty segment */
    if (a->count == 0.0 || b->max > a->max) {
        csm_lse_state t = *b;
        if (a->count != 0.0)
            t.rest += (a->count + a->rest) * exp(scale * (a->max - b->max));
        *a = t;
    } else if (b->max == a->max) {
        a->count += b->count;
        a->rest += b->rest;
    } else {
        a->rest += (b->count + b->rest) * exp(scale * (b->max - a->max));
    }
}

#ifdef __cplusplus
}
#endif
#endif /* CSOFTMAX_H */
