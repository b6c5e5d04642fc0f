/* kernels.h -- internal: the prototype of every ISA's kernels, generated
 * from the kernel list (include/csoftmax_kernels.def): csm_<field>_<isa>
 * for each line marked Y in that ISA's column. */
#ifndef CSOFTMAX_KERNELS_H
#define CSOFTMAX_KERNELS_H
#include "csoftmax.h"

/* The kernels need IEEE floating point: NaN and infinity tests, signed
 * zeros (log_softmax stores +0.0, generic.h lsm_zero_f32_), the roundings
 * of the error-free sums.  -ffast-math / -Ofast / -ffinite-math-only (from
 * CFLAGS, say) would remove them without a word: refuse such a build. */
#if defined(__FAST_MATH__) || (defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__)
#error "csoftmax: the kernels need IEEE floating point; build without -ffast-math, -Ofast or -ffinite-math-only"
#endif

#if defined(__x86_64__) || defined(_M_X64)
#define CSM_BUILD_AVX2 1
#if defined(__GNUC__) || defined(__clang__)
#define CSM_BUILD_AVX512 1 /* src/avx512/: target pragmas of GCC / clang */
#endif
#endif
#if defined(__aarch64__)
#define CSM_BUILD_NEON 1 /* AdvSIMD is baseline on aarch64 */
#endif

/* CSM_PROTO_<Y|S|A|N>(field, signature, isa): a prototype only for Y (A
 * borrows the AVX2 kernel, declared by the avx2 column) */
#define CSM_PROTO_Y(field, signature, isa) signature csm_##field##_##isa;
#define CSM_PROTO_S(field, signature, isa)
#define CSM_PROTO_A(field, signature, isa)
#define CSM_PROTO_N(field, signature, isa)

#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) \
    CSM_PROTO_##on_scalar(field, signature, scalar)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL

#ifdef CSM_BUILD_AVX2
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) \
    CSM_PROTO_##on_avx2(field, signature, avx2)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
#endif

#ifdef CSM_BUILD_AVX512
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) \
    CSM_PROTO_##on_avx512(field, signature, avx512)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
#endif

#ifdef CSM_BUILD_NEON
#define CSM_KERNEL(field, signature, on_scalar, on_avx2, on_neon, on_avx512) \
    CSM_PROTO_##on_neon(field, signature, neon)
#include "csoftmax_kernels.def"
#undef CSM_KERNEL
#endif

#endif
