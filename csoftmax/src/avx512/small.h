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

/* the per-lane tests and the log: simd/exp_f64.h's VD functions */
#define gd_finite_bits_(m)          vd_finite_bits_(m)
#define gd_clamp_bits_(m, sv, span_sv, span, L) vd_clamp_bits_(m, sv, span_sv, span, L)
#define gd_absle_bits_(a, b)        vd_absle_bits_(a, b)
#define gd_log_sum_(cn, rs)         log_sum_vd_(cn, rs)
#define gd_cancels_bits_(m, ls, sv) vd_cancels_bits_(m, ls, sv)

/* the float32 softmax write step (softmax_v_f32_) on the 8 lanes: the
 * upper 8 lanes of the 16-lane step compute on zeros and are dropped */
static inline __m256 gd_softmax_ps_(__m256 a, GD sv, GD cv)
{
    return _mm512_castps512_ps256(
        softmax_v_f32_(_mm512_zextps256_ps512(a), sv, cv, cv));
}

/* ---- float64 groups of 8 rows (simd/small_f64_body.h) ------------------ */

/* 8x8 transpose of float64 rows r[0..7] (in place) */
static inline void tr8x8_pd_(__m512d *r)
{
    __m512d t0 = _mm512_unpacklo_pd(r[0], r[1]), t1 = _mm512_unpackhi_pd(r[0], r[1]);
    __m512d t2 = _mm512_unpacklo_pd(r[2], r[3]), t3 = _mm512_unpackhi_pd(r[2], r[3]);
    __m512d t4 = _mm512_unpacklo_pd(r[4], r[5]), t5 = _mm512_unpackhi_pd(r[4], r[5]);
    __m512d t6 = _mm512_unpacklo_pd(r[6], r[7]), t7 = _mm512_unpackhi_pd(r[6], r[7]);
    __m512d u0 = _mm512_shuffle_f64x2(t0, t2, 0x88), u1 = _mm512_shuffle_f64x2(t0, t2, 0xDD);
    __m512d u2 = _mm512_shuffle_f64x2(t1, t3, 0x88), u3 = _mm512_shuffle_f64x2(t1, t3, 0xDD);
    __m512d u4 = _mm512_shuffle_f64x2(t4, t6, 0x88), u5 = _mm512_shuffle_f64x2(t4, t6, 0xDD);
    __m512d u6 = _mm512_shuffle_f64x2(t5, t7, 0x88), u7 = _mm512_shuffle_f64x2(t5, t7, 0xDD);
    r[0] = _mm512_shuffle_f64x2(u0, u4, 0x88);
    r[4] = _mm512_shuffle_f64x2(u0, u4, 0xDD);
    r[2] = _mm512_shuffle_f64x2(u1, u5, 0x88);
    r[6] = _mm512_shuffle_f64x2(u1, u5, 0xDD);
    r[1] = _mm512_shuffle_f64x2(u2, u6, 0x88);
    r[5] = _mm512_shuffle_f64x2(u2, u6, 0xDD);
    r[3] = _mm512_shuffle_f64x2(u3, u7, 0x88);
    r[7] = _mm512_shuffle_f64x2(u3, u7, 0xDD);
}

/* the float64 short rows' tile (simd/small_f64_body.h): 8x8 transposes,
 * partial tiles by masked loads / stores */
#define small_tr_f64_(r)            tr8x8_pd_(r)
#define small_load_part_f64_(p, cw) _mm512_maskz_loadu_pd(kmask8_(cw), p)
#define small_store_part_f64_(p, v, cw) _mm512_mask_storeu_pd(p, kmask8_(cw), v)

#endif /* CSM_AVX512_SMALL_H */
