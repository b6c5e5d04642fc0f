/*
 * avx512/small.h -- the 8-float64-lane group (GD) of the float32 short-row
 * body (simd/small_f32_body.h) on AVX-512: one __m512d where AVX2 has two
 * __m256d halves (avx2/small.h).  A group is still 8 rows (the __m256
 * tile of simd/small_tile_f32.h); what AVX-512 brings is the float64 work
 * -- the exp of every element, the sums, the clamp and log -- in one
 * instruction per group instead of two.  Each operation is, lane for lane,
 * the AVX2 one, so the kernels give the AVX2 kernels' bits.
 * (internal; included by avx512/small_f32.c after common.h)
 */
#ifndef CSM_AVX512_SMALL_H
#define CSM_AVX512_SMALL_H

#include "../simd/small_tile_f32.h"

typedef __m512d GD;
typedef __mmask8 GM;

#define gd_add_(a, b)      _mm512_add_pd(a, b)
#define gd_sub_(a, b)      _mm512_sub_pd(a, b)
#define gd_mul_(a, b)      _mm512_mul_pd(a, b)
#define gd_div_(a, b)      _mm512_div_pd(a, b)
#define gd_fmsub_(a, b, c) _mm512_fmsub_pd(a, b, c)
#define gd_fmadd_(a, b, c) _mm512_fmadd_pd(a, b, c)
#define gd_set1_(d)        _mm512_set1_pd(d)
#define gd_exp_f32acc_(a)  exp_f32acc_(a)
#define gd_exp_f32_(a)     exp_f32_(a)
#define gd_exp_f64_(a)     exp_f64_(a)
#define gd_expm1_le0_(a)   expm1_le0_(a)
#define gd_of_ps_(a)       _mm512_cvtps_pd(a)
#define gd_to_ps_(a)       _mm512_cvtpd_ps(a)
#define gd_loadu_(p)       _mm512_loadu_pd(p)
#define gd_storeu_(p, a)   _mm512_storeu_pd(p, a)
#define gd_of_cnt_(c)      _mm512_cvtepi32_pd(c)
#define gd_pick_(a, b, bits) _mm512_mask_mov_pd(a, (__mmask8)(bits), b)
#define gm_eq_(a, b)       _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ)
#define gm_of_ps_(m)       ((__mmask8)_mm256_movemask_ps(m))
#define gd_unless_(m, a)   _mm512_maskz_mov_pd((__mmask8)~(m), a)
#define gd_when_(m, a)     _mm512_maskz_mov_pd(m, a)

static inline int gd_finite_bits_(GD m)
{
    return _mm512_cmp_pd_mask(m, _mm512_set1_pd(-INFINITY), _CMP_GT_OQ)
           & _mm512_cmp_pd_mask(m, _mm512_set1_pd(INFINITY), _CMP_LT_OQ);
}

/* clamp_bound_ on 8 lanes: the lanes that pass, and L (float-rounded) */
static inline int gd_clamp_bits_(GD m, GD sv, GD span_sv, double span, GD *L)
{
    __m512d sm = _mm512_abs_pd(_mm512_mul_pd(sv, m));
    __mmask8 ok = _mm512_cmp_pd_mask(sm, _mm512_set1_pd(0x1p20), _CMP_LE_OQ);
    __m512d Ld = _mm512_sub_pd(m, span_sv);
    ok &= _mm512_cmp_pd_mask(Ld, _mm512_set1_pd(-3.0e38), _CMP_GT_OQ);
    __m512d Lf = _mm512_cvtps_pd(_mm512_cvtpd_ps(Ld));
    __m512d dd = _mm512_mul_pd(sv, _mm512_sub_pd(Lf, m));
    ok &= _mm512_cmp_pd_mask(dd, _mm512_set1_pd(-1.25 * span), _CMP_GE_OQ);
    ok &= _mm512_cmp_pd_mask(dd, _mm512_set1_pd(-0.75 * span), _CMP_LE_OQ);
    *L = Lf;
    return ok;
}

static inline int gd_absle_bits_(GD a, double b)     /* |a| <= b */
{
    return _mm512_cmp_pd_mask(_mm512_abs_pd(a), _mm512_set1_pd(b), _CMP_LE_OQ);
}

/* log(count + rest) for count >= 1 (csm_finalize_avx2's formula) */
static inline GD gd_log_sum_(GD cn, GD rs)
{
    __m512d u = _mm512_add_pd(cn, rs);
    __m512d bb = _mm512_sub_pd(u, cn);
    __m512d c = _mm512_add_pd(_mm512_sub_pd(cn, _mm512_sub_pd(u, bb)),
                              _mm512_sub_pd(rs, bb));
    return _mm512_add_pd(log_ge1_(u), _mm512_div_pd(c, u));
}

/* LSE = scale*max + log_sum close to 0: lanes to redo exactly */
static inline int gd_cancels_bits_(GD m, GD ls, GD sv)
{
    __m512d sm = _mm512_mul_pd(sv, m);
    __m512d lse = _mm512_abs_pd(_mm512_add_pd(sm, ls));
    return _mm512_cmp_pd_mask(lse, _mm512_set1_pd(1.3), _CMP_LT_OQ)
           & _mm512_cmp_pd_mask(sm, _mm512_setzero_pd(), _CMP_NEQ_OQ);
}

/* the float32 softmax write step (softmax_v_f32_) on the 8 lanes: the
 * upper 8 lanes of the 16-lane step compute on zeros and are dropped */
static inline __m256 gd_softmax_ps_(__m256 a, GD sv, GD cv)
{
    return _mm512_castps512_ps256(
        softmax_v_f32_(_mm512_zextps256_ps512(a), sv, cv, cv));
}

#endif /* CSM_AVX512_SMALL_H */
