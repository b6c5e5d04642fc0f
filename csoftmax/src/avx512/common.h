/*
 * avx512/common.h -- what every AVX-512 kernel file includes first.
 *
 * The kernels of csoftmax_kernels.def's avx512 column (Y) live in this
 * folder, one file per family, as in src/avx2/; entries marked A point at
 * the AVX2 kernel.  Each file is compiled with the baseline flags of the
 * extension and switched to AVX-512 F/BW/DQ/VL (+ AVX2, FMA) by the target
 * pragma below (closed by end.h); dispatch.c calls them only after CPUID
 * and XGETBV said the CPU and OS support them.
 *
 * Shared bodies: where the AVX2 and AVX-512 kernels run the same
 * algorithm, it is written once in src/simd/ against the lane abstraction
 * (v_avx2.h / v_avx512.h: V, VLEN, v_load, v_tail, ...) and compiled in
 * both folders (e.g. avx512/rows_f32.c = common.h + simd/rows_f32_body.h).
 * Numerics: those of the AVX2 kernels (src/avx2/common.h, simd/xr_f32.h),
 * lane for lane -- the same exact argument reduction of s*x in float32
 * lanes, float64 sums, elements equal to the max counted apart, the same
 * exp polynomials, the LSE cancellation recompute -- on 16 float32 / 8
 * float64 lanes; tails are masked loads/stores (opmask registers), never
 * scalar or blended.  Results are not bit-identical to AVX2 (the sums are
 * associated differently) but meet the same bounds.
 */
#ifndef CSM_AVX512_COMMON_H
#define CSM_AVX512_COMMON_H
#include "csoftmax.h"
#include "kernels.h"

#ifdef CSM_BUILD_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
#endif

#include "../simd/common.h"
#include "exp.h"
#include "../simd/v_avx512.h"
#include "../simd/exp_f64.h"
#include "../simd/xr_f32.h"

#endif /* CSM_BUILD_AVX512 */
#endif /* CSM_AVX512_COMMON_H */
