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
#define gd_log_sum_(cn, rs) log_sum_vd_(cn, rs)

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

/* Rows p[0..7] (n doubles each) -> T[0..n) (lanes are rows); whole 8-column
 * tiles are stored (columns past n hold zeros, never read as data); the
 * last partial tile is read with a masked load.  With want_max, *mx gets
 * the per-lane max (-inf for n = 0) and *bad the NaN lanes. */
static inline __attribute__((always_inline)) void
small_in_f64_(const double *const *p, ptrdiff_t n, __m512d *T, __m512d *mx,
              __mmask8 *bad, const int want_max)
{
    __m512d m = _mm512_set1_pd(-INFINITY);
    __mmask8 b = 0;
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m512d r[8];
        const ptrdiff_t cw = n - j < 8 ? n - j : 8;
        if (cw == 8) {
            for (int k = 0; k < 8; ++k) r[k] = _mm512_loadu_pd(p[k] + j);
        } else {
            const __mmask8 t = kmask8_(cw);
            for (int k = 0; k < 8; ++k) r[k] = _mm512_maskz_loadu_pd(t, p[k] + j);
        }
        tr8x8_pd_(r);
        for (int i = 0; i < 8; ++i) T[j + i] = r[i];
        if (want_max)
            for (ptrdiff_t i = 0; i < cw; ++i) {
                m = _mm512_max_pd(m, r[i]);
                b |= _mm512_cmp_pd_mask(r[i], r[i], _CMP_UNORD_Q);
            }
    }
    if (want_max) { *mx = m; *bad = b; }
}

/* T[0..n) back to rows q[k] for the lanes k set in `store` (other rows are
 * not touched: they may still be the input of an in-place call). */
static inline void small_out_f64_(const __m512d *T, ptrdiff_t n,
                                  double *const *q, int store)
{
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m512d r[8];
        for (int i = 0; i < 8; ++i) r[i] = T[j + i];
        tr8x8_pd_(r);
        const ptrdiff_t cw = n - j < 8 ? n - j : 8;
        const __mmask8 t = kmask8_(cw);
        for (int k = 0; k < 8; ++k)
            if (store >> k & 1) {
                if (cw == 8) _mm512_storeu_pd(q[k] + j, r[k]);
                else _mm512_mask_storeu_pd(q[k] + j, t, r[k]);
            }
    }
}

#endif /* CSM_AVX512_SMALL_H */
