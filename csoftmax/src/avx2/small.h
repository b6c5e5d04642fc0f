/*
 * avx2/small.h -- short rows (n <= CSM_SMALL_MAX): transposes, partial
 * tiles and lane helpers shared by small_f32.c and small_f64.c
 * (internal; included by the kernel files of this folder after common.h)
 */
#ifndef CSM_AVX2_SMALL_H
#define CSM_AVX2_SMALL_H

#include "../simd/small_tile_f32.h"

/* the float32 backward short rows' tiles (simd/small_bwd_f32_body.h),
 * named as avx512/small.h names its 16-row ones */
static inline __attribute__((always_inline)) void
smallv_load_f32_(const float *const *p, ptrdiff_t n, __m256 *T)
{
    __m256 m, b;
    small_in_f32_(p, n, T, &m, &b, 0);
}
#define smallv_out_f32_(T, n, q, store) small_out_f32_(T, n, q, store)

static inline void tr4x4_pd_(__m256d *r)
{
    __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

static inline __m256d small_load_part_pd_(const double *p, ptrdiff_t cw)
{
    if (cw == 1) return _mm256_set_m128d(_mm_setzero_pd(), _mm_load_sd(p));
    if (cw == 2) return _mm256_set_m128d(_mm_setzero_pd(), _mm_loadu_pd(p));
    return _mm256_set_m128d(_mm_load_sd(p + 2), _mm_loadu_pd(p));
}
static inline void small_store_part_pd_(double *p, __m256d v, ptrdiff_t cw)
{
    __m128d h = _mm256_castpd256_pd128(v);
    if (cw >= 2) { _mm_storeu_pd(p, h); p += 2; cw -= 2; h = _mm256_extractf128_pd(v, 1); }
    if (cw) _mm_store_sd(p, h);
}


/* the float64 short rows' tile (simd/small_f64_body.h): 4x4 transposes,
 * partial tiles by pieces */
#define small_tr_f64_(r)            tr4x4_pd_(r)
#define small_load_part_f64_(p, cw) small_load_part_pd_(p, cw)
#define small_store_part_f64_(p, v, cw) small_store_part_pd_(p, v, cw)

/* ---- 8 float64 lanes (GD) for the float32 short-row body ----------------
 * simd/small_f32_body.h works on groups of 8 rows: their float32 data in a
 * __m256 (one row a lane), their float64 work in a GD -- here two __m256d
 * halves (rows 0-3, rows 4-7), on AVX-512 one __m512d (avx512/small.h).
 * Each operation is the one the hand-written AVX2 kernel applied to each
 * half, so the results are its results, bit for bit.  Lane sets returned
 * to the body are int bit masks (bit k: row k of the group); GM is a
 * compare mask. */
typedef struct { __m256d lo, hi; } GD;
typedef struct { __m256d lo, hi; } GM;

#define GD_OP2_(name, op) \
    static inline GD name(GD a, GD b) { GD r = {op(a.lo, b.lo), op(a.hi, b.hi)}; return r; }
GD_OP2_(gd_add_, _mm256_add_pd)
GD_OP2_(gd_sub_, _mm256_sub_pd)
GD_OP2_(gd_mul_, _mm256_mul_pd)
GD_OP2_(gd_div_, _mm256_div_pd)
#undef GD_OP2_
#define GD_FN1_(name, fn) \
    static inline GD name(GD a) { GD r = {fn(a.lo), fn(a.hi)}; return r; }
GD_FN1_(gd_exp_f32acc_, exp_f32acc_)
GD_FN1_(gd_exp_f32_, exp_f32_)
GD_FN1_(gd_exp_f64_, exp_f64_)
GD_FN1_(gd_expm1_le0_, expm1_le0_)
#undef GD_FN1_
static inline GD gd_set1_(double d) { GD r = {_mm256_set1_pd(d), _mm256_set1_pd(d)}; return r; }
static inline GD gd_fmsub_(GD a, GD b, GD c)  /* a * b - c */
{
    GD r = {_mm256_fmsub_pd(a.lo, b.lo, c.lo), _mm256_fmsub_pd(a.hi, b.hi, c.hi)};
    return r;
}
static inline GD gd_fmadd_(GD a, GD b, GD c)  /* a * b + c */
{
    GD r = {_mm256_fmadd_pd(a.lo, b.lo, c.lo), _mm256_fmadd_pd(a.hi, b.hi, c.hi)};
    return r;
}
static inline GD gd_ce_lp_(GD xt, GD m, GD sv, GD l)   /* ce_lp_vd_ */
{
    GD r = {ce_lp_vd_(xt.lo, m.lo, sv.lo, l.lo), ce_lp_vd_(xt.hi, m.hi, sv.hi, l.hi)};
    return r;
}
static inline GD gd_of_ps_(__m256 a)
{
    GD r = {_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
            _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))};
    return r;
}
static inline __m256 gd_to_ps_(GD a)
{
    return _mm256_set_m128(_mm256_cvtpd_ps(a.hi), _mm256_cvtpd_ps(a.lo));
}
static inline GD gd_loadu_(const double *p)
{
    GD r = {_mm256_loadu_pd(p), _mm256_loadu_pd(p + 4)};
    return r;
}
static inline void gd_storeu_(double *p, GD a)
{
    _mm256_storeu_pd(p, a.lo); _mm256_storeu_pd(p + 4, a.hi);
}
static inline GD gd_of_cnt_(__m256i c)   /* int32 counts -> float64 */
{
    GD r = {_mm256_cvtepi32_pd(_mm256_castsi256_si128(c)),
            _mm256_cvtepi32_pd(_mm256_extracti128_si256(c, 1))};
    return r;
}
/* lanes with bit k of `bits` from b, the others from a */
static inline GD gd_pick_(GD a, GD b, int bits)
{
    GD r = {_mm256_blendv_pd(a.lo, b.lo, vdm_from_bits(bits)),
            _mm256_blendv_pd(a.hi, b.hi, vdm_from_bits(bits >> 4))};
    return r;
}
static inline GM gm_eq_(GD a, GD b)
{
    GM r = {_mm256_cmp_pd(a.lo, b.lo, _CMP_EQ_OQ), _mm256_cmp_pd(a.hi, b.hi, _CMP_EQ_OQ)};
    return r;
}
static inline GM gm_of_ps_(__m256 m)     /* a float32 lane mask, widened */
{
    GM r = {_mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(_mm256_castps256_ps128(m)))),
            _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(_mm256_extractf128_ps(m, 1))))};
    return r;
}
static inline GD gd_unless_(GM m, GD a)  /* m ? 0 : a */
{
    GD r = {_mm256_andnot_pd(m.lo, a.lo), _mm256_andnot_pd(m.hi, a.hi)};
    return r;
}
static inline GD gd_when_(GM m, GD a)    /* m ? a : 0 */
{
    GD r = {_mm256_and_pd(m.lo, a.lo), _mm256_and_pd(m.hi, a.hi)};
    return r;
}
static inline int gd_finite_bits_(GD m)
{
    return vd_finite_bits_(m.lo) | vd_finite_bits_(m.hi) << 4;
}
static inline int gd_clamp_bits_(GD m, GD sv, GD span_sv, double span, GD *L)
{
    return vd_clamp_bits_(m.lo, sv.lo, span_sv.lo, span, &L->lo)
           | vd_clamp_bits_(m.hi, sv.hi, span_sv.hi, span, &L->hi) << 4;
}
static inline int gd_absle_bits_(GD a, double b)     /* |a| <= b */
{
    return vd_absle_bits_(a.lo, b) | vd_absle_bits_(a.hi, b) << 4;
}
static inline GD gd_log_sum_(GD c, GD r)
{
    GD o = {log_sum_vd_(c.lo, r.lo), log_sum_vd_(c.hi, r.hi)};
    return o;
}
static inline int gd_cancels_bits_(GD m, GD ls, GD sv)
{
    return vd_cancels_bits_(m.lo, ls.lo, sv.lo) | vd_cancels_bits_(m.hi, ls.hi, sv.hi) << 4;
}
/* the float32 softmax write step (softmax_v_f32_) on the 8 lanes */
static inline __m256 gd_softmax_ps_(__m256 a, GD sv, GD cv)
{
    return softmax_v_f32_(a, sv.lo, cv.lo, cv.hi);
}

#endif /* CSM_AVX2_SMALL_H */
