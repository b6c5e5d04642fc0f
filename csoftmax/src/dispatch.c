/*
 * dispatch.c -- CPU detection (once) and the kernel tables.
 *
 * The AVX2 table is offered only when CPUID reports AVX2 and FMA *and* the
 * OS saves YMM state (OSXSAVE + XGETBV), so the scalar path is what runs on
 * older CPUs and on non-x86 builds.  On aarch64 the NEON table is always
 * offered (AdvSIMD is baseline there) and is the default.
 * CSOFTMAX_ISA=scalar|avx2|neon forces a table.
 */
#include <stdlib.h>
#include <string.h>
#include "csoftmax.h"
#include "kernels.h"

#if defined(_MSC_VER)
#include <intrin.h>
#endif

/* the trailing arguments fill the short-row entries (CSM_NO_SMALL: none) */
#define CSM_NO_SMALL NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
#define CSM_SMALL(ISA)                                                         \
      csm_lse_small_f32_##ISA, csm_lse_small_f64_##ISA,                        \
      csm_softmax_small_f32_##ISA, csm_softmax_small_f64_##ISA,                \
      csm_log_softmax_small_f32_##ISA, csm_log_softmax_small_f64_##ISA,        \
      csm_softmax_write_small_f32_##ISA, csm_softmax_write_small_f64_##ISA
#define CSM_TABLE(ISA_ENUM, ISA, NAME, ...)                                   \
    { ISA_ENUM, NAME,                                                          \
      csm_lse_rows_f32_##ISA, csm_lse_rows_f64_##ISA,                          \
      csm_lse_cols_f32_##ISA, csm_lse_cols_f64_##ISA,                          \
      csm_softmax_rows_f32_##ISA, csm_softmax_rows_f64_##ISA,                  \
      csm_log_softmax_rows_f32_##ISA, csm_log_softmax_rows_f64_##ISA,          \
      csm_softmax_cols_f32_##ISA, csm_softmax_cols_f64_##ISA,                  \
      csm_log_softmax_cols_f32_##ISA, csm_log_softmax_cols_f64_##ISA,          \
      csm_finalize_##ISA,                                                      \
      csm_softmax_bwd_rows_f32_##ISA, csm_softmax_bwd_rows_f64_##ISA,          \
      csm_log_softmax_bwd_rows_f32_##ISA, csm_log_softmax_bwd_rows_f64_##ISA,  \
      __VA_ARGS__ }

static const csm_kernel_table table_scalar = CSM_TABLE(CSM_ISA_SCALAR, scalar, "scalar", CSM_NO_SMALL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    csm_ce_soft_rows_f32_scalar, csm_ce_soft_cols_f32_scalar,
    csm_ce_soft_fix_rows_f32_scalar, csm_ce_soft_fix_cols_f32_scalar);
#ifdef CSM_BUILD_AVX2
static const csm_kernel_table table_avx2 = CSM_TABLE(CSM_ISA_AVX2, avx2, "avx2", CSM_SMALL(avx2),
                                                     csm_softmax_fused_rows_f32_avx2,
                                                     csm_softmax_fused_rows_f64_avx2,
                                                     csm_lse_store_rows_f32_avx2,
                                                     csm_softmax_scale_rows_f32_avx2,
                                                     csm_lse_rows_pw_f32_avx2,
                                                     csm_lse_rows_pw_f64_avx2,
                                                     csm_softmax_fused_cols_f32_avx2,
                                                     csm_log_softmax_tiled_cols_f32_avx2,
                                                     csm_copy_rows_nt_f32_avx2,
                                                     csm_lse_store_cols_f32_avx2,
                                                     csm_softmax_scale_cols_f32_avx2,
                                                     csm_lse_store_rows_f64_avx2,
                                                     csm_softmax_scale_rows_f64_avx2,
                                                     csm_ce_small_f32_avx2,
                                                     csm_ce_small_f64_avx2,
                                                     csm_expm1_le0_f64_avx2,
                                                     csm_softmax_bwd_cols_f32_avx2,
                                                     csm_softmax_bwd_cols_f64_avx2,
                                                     csm_log_softmax_bwd_cols_f32_avx2,
                                                     csm_log_softmax_bwd_cols_f64_avx2,
                                                     csm_ce_soft_rows_f32_avx2,
                                                     csm_ce_soft_cols_f32_avx2,
                                                     csm_ce_soft_fix_rows_f32_avx2,
                                                     csm_ce_soft_fix_cols_f32_avx2);
#endif
#ifdef CSM_BUILD_NEON
/* finalize stays scalar (log1p per row; not a hot spot), and so do the
 * backward kernels (no NEON versions yet) */
static const csm_kernel_table table_neon = {
    CSM_ISA_NEON, "neon",
    csm_lse_rows_f32_neon, csm_lse_rows_f64_neon,
    csm_lse_cols_f32_neon, csm_lse_cols_f64_neon,
    csm_softmax_rows_f32_neon, csm_softmax_rows_f64_neon,
    csm_log_softmax_rows_f32_neon, csm_log_softmax_rows_f64_neon,
    csm_softmax_cols_f32_neon, csm_softmax_cols_f64_neon,
    csm_log_softmax_cols_f32_neon, csm_log_softmax_cols_f64_neon,
    csm_finalize_scalar,
    csm_softmax_bwd_rows_f32_scalar, csm_softmax_bwd_rows_f64_scalar,
    csm_log_softmax_bwd_rows_f32_scalar, csm_log_softmax_bwd_rows_f64_scalar,
    CSM_NO_SMALL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    csm_ce_soft_rows_f32_scalar, csm_ce_soft_cols_f32_scalar,
    csm_ce_soft_fix_rows_f32_scalar, csm_ce_soft_fix_cols_f32_scalar };
#endif

#ifdef CSM_BUILD_AVX2
static int cpu_has_avx2_fma(void)
{
#if defined(CSM_BUILD_AVX2) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    /* libgcc/compiler-rt only report AVX2 when the OS enables YMM state. */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(CSM_BUILD_AVX2) && defined(_MSC_VER)
    int r[4];
    __cpuid(r, 1);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    if ((_xgetbv(0) & 6) != 6) return 0;
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;
#else
    return 0;
#endif
}
#endif /* CSM_BUILD_AVX2 */

const csm_kernel_table *csm_kernels_for(csm_isa isa)
{
    switch (isa) {
    case CSM_ISA_SCALAR: return &table_scalar;
#ifdef CSM_BUILD_AVX2
    case CSM_ISA_AVX2: return cpu_has_avx2_fma() ? &table_avx2 : NULL;
#endif
#ifdef CSM_BUILD_NEON
    case CSM_ISA_NEON: return &table_neon;
#endif
    default: return NULL;
    }
}

static const csm_kernel_table *chosen = NULL;
static int request_error = 0;

const csm_kernel_table *csm_kernels(void)
{
    /* Idempotent: a race between two first callers stores the same pointer. */
    if (chosen) return chosen;
    const csm_kernel_table *best = csm_kernels_for(CSM_ISA_AVX2);
    if (!best) best = csm_kernels_for(CSM_ISA_NEON);
    if (!best) best = &table_scalar;
    const char *req = getenv("CSOFTMAX_ISA");
    if (req && *req) {
        const csm_kernel_table *t = NULL;
        if (strcmp(req, "scalar") == 0) t = csm_kernels_for(CSM_ISA_SCALAR);
        else if (strcmp(req, "avx2") == 0) t = csm_kernels_for(CSM_ISA_AVX2);
        else if (strcmp(req, "neon") == 0) t = csm_kernels_for(CSM_ISA_NEON);
        if (t) best = t; else request_error = 1;
    }
    chosen = best;
    return chosen;
}

int csm_isa_request_error(void)
{
    csm_kernels();
    return request_error;
}
