/* kernels.h -- internal: prototypes of every ISA's kernels, for dispatch.c.
 * Names: csm_<op>_<layout>_<dtype>_<isa>. */
#ifndef CSOFTMAX_KERNELS_H
#define CSOFTMAX_KERNELS_H
#include "csoftmax.h"

#define CSM_DECLARE_ISA(ISA)                                                   \
void csm_lse_rows_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,    \
                            double, csm_lse_state *);                          \
void csm_lse_rows_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t,   \
                            double, csm_lse_state *);                          \
void csm_lse_cols_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,    \
                            double, csm_lse_state *);                          \
void csm_lse_cols_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t,   \
                            double, csm_lse_state *);                          \
void csm_softmax_rows_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,           \
        ptrdiff_t, double, const double *, const double *, double, float *,    \
        ptrdiff_t);                                                            \
void csm_softmax_rows_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,          \
        ptrdiff_t, double, const double *, const double *, double, double *,   \
        ptrdiff_t);                                                            \
void csm_log_softmax_rows_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,       \
        ptrdiff_t, double, const double *, const double *, double, float *,    \
        ptrdiff_t);                                                            \
void csm_log_softmax_rows_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,      \
        ptrdiff_t, double, const double *, const double *, double, double *,   \
        ptrdiff_t);                                                            \
void csm_softmax_cols_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,           \
        ptrdiff_t, double, const double *, const double *, double, float *,    \
        ptrdiff_t);                                                            \
void csm_softmax_cols_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,          \
        ptrdiff_t, double, const double *, const double *, double, double *,   \
        ptrdiff_t);                                                            \
void csm_log_softmax_cols_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,       \
        ptrdiff_t, double, const double *, const double *, double, float *,    \
        ptrdiff_t);                                                            \
void csm_log_softmax_cols_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,      \
        ptrdiff_t, double, const double *, const double *, double, double *,   \
        ptrdiff_t);                                                            \
void csm_finalize_##ISA(const csm_lse_state *, ptrdiff_t, double, double *,    \
                        double *);                                             \
void csm_softmax_bwd_rows_f32_##ISA(const float *, const float *, float *,     \
                                    ptrdiff_t, ptrdiff_t);                     \
void csm_softmax_bwd_rows_f64_##ISA(const double *, const double *, double *,  \
                                    ptrdiff_t, ptrdiff_t);                     \
void csm_log_softmax_bwd_rows_f32_##ISA(const float *, const float *, float *, \
                                        ptrdiff_t, ptrdiff_t);                 \
void csm_log_softmax_bwd_rows_f64_##ISA(const double *, const double *,        \
                                        double *, ptrdiff_t, ptrdiff_t);

CSM_DECLARE_ISA(scalar)
void csm_ce_soft_rows_f32_scalar(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, const double *, const double *, const double *, const float *,
        ptrdiff_t, const double *, double, double, float *, ptrdiff_t, double *);
void csm_ce_soft_cols_f32_scalar(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, const double *, const double *, const double *, const float *,
        ptrdiff_t, const double *, double, double, float *, ptrdiff_t, double *);
void csm_ce_soft_fix_rows_f32_scalar(float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        const float *, ptrdiff_t, const double *, double, double, const double *);
void csm_ce_soft_fix_cols_f32_scalar(float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        const float *, ptrdiff_t, const double *, double, double, const double *);
#if defined(__x86_64__) || defined(_M_X64)
#define CSM_BUILD_AVX2 1
CSM_DECLARE_ISA(avx2)
#define CSM_DECLARE_SMALL(ISA)                                                 \
void csm_lse_small_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,   \
                             double, int, double *, double *);                 \
void csm_lse_small_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t,  \
                             double, int, double *, double *);                 \
void csm_softmax_small_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,          \
                                 ptrdiff_t, double, float *, ptrdiff_t);       \
void csm_softmax_small_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,         \
                                 ptrdiff_t, double, double *, ptrdiff_t);      \
void csm_log_softmax_small_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,      \
                                     ptrdiff_t, double, float *, ptrdiff_t);   \
void csm_log_softmax_small_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,     \
                                     ptrdiff_t, double, double *, ptrdiff_t);  \
void csm_softmax_write_small_f32_##ISA(const float *, ptrdiff_t, ptrdiff_t,    \
        ptrdiff_t, double, const double *, const double *, double, float *,    \
        ptrdiff_t);                                                            \
void csm_softmax_write_small_f64_##ISA(const double *, ptrdiff_t, ptrdiff_t,   \
        ptrdiff_t, double, const double *, const double *, double, double *,   \
        ptrdiff_t);
CSM_DECLARE_SMALL(avx2)
void csm_softmax_fused_rows_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, double, float *, ptrdiff_t);
void csm_softmax_fused_rows_f64_avx2(const double *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, double, double *, ptrdiff_t);
void csm_lse_store_rows_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, csm_lse_state *, float *, ptrdiff_t);
void csm_softmax_scale_rows_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, const double *, const double *, double, float *,
        ptrdiff_t);
void csm_lse_rows_pw_f32_avx2(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, csm_lse_state *, const float *, ptrdiff_t);
void csm_lse_rows_pw_f64_avx2(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, csm_lse_state *, const double *, ptrdiff_t);
void csm_softmax_fused_cols_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, double, float *, ptrdiff_t);
void csm_log_softmax_tiled_cols_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, double, float *, ptrdiff_t);
void csm_copy_rows_nt_f32_avx2(float *, ptrdiff_t, const float *, ptrdiff_t,
        ptrdiff_t, ptrdiff_t);
void csm_lse_store_rows_f64_avx2(const double *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, csm_lse_state *, double *, ptrdiff_t);
void csm_softmax_scale_rows_f64_avx2(const double *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, const double *, const double *, double, double *,
        ptrdiff_t);
void csm_lse_store_cols_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, csm_lse_state *, float *, ptrdiff_t);
void csm_softmax_scale_cols_f32_avx2(const float *, ptrdiff_t, ptrdiff_t,
        ptrdiff_t, double, const double *, const double *, double, float *,
        ptrdiff_t);
void csm_ce_small_f32_avx2(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, const double *, const int *, double *, float *, ptrdiff_t);
void csm_ce_small_f64_avx2(const double *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, const double *, const int *, double *, double *, ptrdiff_t);
void csm_expm1_le0_f64_avx2(const double *, double *, ptrdiff_t);
void csm_ce_soft_rows_f32_avx2(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, const double *, const double *, const double *, const float *,
        ptrdiff_t, const double *, double, double, float *, ptrdiff_t, double *);
void csm_ce_soft_cols_f32_avx2(const float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        double, const double *, const double *, const double *, const float *,
        ptrdiff_t, const double *, double, double, float *, ptrdiff_t, double *);
void csm_ce_soft_fix_rows_f32_avx2(float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        const float *, ptrdiff_t, const double *, double, double, const double *);
void csm_ce_soft_fix_cols_f32_avx2(float *, ptrdiff_t, ptrdiff_t, ptrdiff_t,
        const float *, ptrdiff_t, const double *, double, double, const double *);

void csm_softmax_bwd_cols_f32_avx2(const float *, const float *, float *,
        ptrdiff_t, ptrdiff_t, ptrdiff_t);
void csm_softmax_bwd_cols_f64_avx2(const double *, const double *, double *,
        ptrdiff_t, ptrdiff_t, ptrdiff_t);
void csm_log_softmax_bwd_cols_f32_avx2(const float *, const float *, float *,
        ptrdiff_t, ptrdiff_t, ptrdiff_t);
void csm_log_softmax_bwd_cols_f64_avx2(const double *, const double *, double *,
        ptrdiff_t, ptrdiff_t, ptrdiff_t);
#endif
#if defined(__aarch64__)
#define CSM_BUILD_NEON 1 /* AdvSIMD is baseline on aarch64 */
CSM_DECLARE_ISA(neon)
#endif

#endif
