/*
 * avx2/common.h -- what every AVX2 + FMA kernel file includes first.
 *
 * The kernels of csoftmax_kernels.def's avx2 column live in this folder,
 * one file per family; each is compiled with the baseline flags of the
 * extension and switched to AVX2+FMA by the target pragma below (closed by
 * end.h), and dispatch.c calls them only after CPUID said the CPU (and OS)
 * support them.
 *
 * float32 / float64: one body per algorithm.  Where both dtypes run the
 * same algorithm the body is written once and stamped out per dtype
 * (DEFINE_KERNELS in simd/generic.h, DEFINE_BWD / _BWD_COLS in
 * simd/backward_body.h, DEFINE_CE_SMALL_ROW in small.h).  The float32 fast
 * paths are a different algorithm -- float32 lanes with an exact argument
 * reduction (simd/xr_f32.h), 8 rows per vector for short rows -- so
 * rows_f32.c / fused_rows_f32.c / cols*_f32.c / small_f32.c have no
 * float64 twin; their float64 counterparts are the generic float64-lane
 * kernels (rows_f64.c) and small_f64.c (4 rows per vector).
 *
 * Numerics (see csoftmax.h): the generic kernels widen float32 data to
 * float64 lanes, so x - max is exact and the exp argument carries no float32
 * rounding error; exp is evaluated in float64 (magic-bias rounding,
 * Cody-Waite reduction, polynomial), sums accumulate in float64.  The float32
 * row fast paths (below) stay in float32 lanes with an exact reduction of
 * scale * x itself (see "all-float32 reduction").
 *   exp_f32acc_: degree-6 polynomial, max rel. error 2.6e-9 (target: f32)
 *   exp_f64acc_: degree-11 polynomial (fitted), two-constant reduction,
 *                max rel. error of the polynomial 1.8e-17 (target: f64)
 * Both are valid on d in [-708, 0]; lanes below -708 are zeroed by the
 * callers (float32: e^-708 underflows anyway) or recomputed with libm
 * (float64, where the result may be a denormal).
 */
#ifndef CSM_AVX2_COMMON_H
#define CSM_AVX2_COMMON_H
#include "csoftmax.h"
#include "kernels.h"

#ifdef CSM_BUILD_AVX2

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma")
#endif

#include "../simd/common.h"
#include "exp.h"
#include "../simd/v_avx2.h"
#include "../simd/exp_f64.h"
#include "../simd/xr_f32.h"

#endif /* CSM_BUILD_AVX2 */
#endif /* CSM_AVX2_COMMON_H */
