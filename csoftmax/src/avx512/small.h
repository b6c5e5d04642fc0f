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
#define gd_ce_lp_(xt, m, sv, l) ce_lp_vd_(xt, m, sv, l)
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

/* ---- float32 groups of 16 rows (the VLEN-row kernels of
 * simd/small_f32_body.h: softmax, log_softmax, cross-entropy) ---------- */

/* 8 zmm of two 8-float row pieces each, r[k] = [row A_k | row B_k], ->
 * r[i] = element i of the 16 rows: the 8x8 transpose's unpack and shuffle
 * stages run in both 256-bit halves at once, then a 128-bit lane shuffle
 * puts rows A_0..3, B_0..3, A_4..7, B_4..7 into the lanes, so loading
 * A_k = row k + (k & 4), B_k = A_k + 4 gives lanes = rows 0..15.  OUT (the
 * store side, 8 element vectors of lanes = rows 0..15 in): the last stage
 * is a two-source permute instead, giving r[k] = [row k | row k + 8]. */
static inline __attribute__((always_inline)) void tr16x8_ps_(__m512 *r, const int OUT)
{
    __m512 t0 = _mm512_unpacklo_ps(r[0], r[1]), t1 = _mm512_unpackhi_ps(r[0], r[1]);
    __m512 t2 = _mm512_unpacklo_ps(r[2], r[3]), t3 = _mm512_unpackhi_ps(r[2], r[3]);
    __m512 t4 = _mm512_unpacklo_ps(r[4], r[5]), t5 = _mm512_unpackhi_ps(r[4], r[5]);
    __m512 t6 = _mm512_unpacklo_ps(r[6], r[7]), t7 = _mm512_unpackhi_ps(r[6], r[7]);
    __m512 s[8];
    s[0] = _mm512_shuffle_ps(t0, t2, 0x44); s[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
    s[2] = _mm512_shuffle_ps(t1, t3, 0x44); s[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
    s[4] = _mm512_shuffle_ps(t4, t6, 0x44); s[5] = _mm512_shuffle_ps(t4, t6, 0xEE);
    s[6] = _mm512_shuffle_ps(t5, t7, 0x44); s[7] = _mm512_shuffle_ps(t5, t7, 0xEE);
    if (OUT) {
        const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19,
                                             8, 9, 10, 11, 24, 25, 26, 27);
        const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23,
                                             12, 13, 14, 15, 28, 29, 30, 31);
        for (int k = 0; k < 4; ++k) {
            r[k] = _mm512_permutex2var_ps(s[k], lo, s[k + 4]);
            r[k + 4] = _mm512_permutex2var_ps(s[k], hi, s[k + 4]);
        }
    } else {
        for (int k = 0; k < 4; ++k) {
            r[k] = _mm512_shuffle_f32x4(s[k], s[k + 4], 0x88);
            r[k + 4] = _mm512_shuffle_f32x4(s[k], s[k + 4], 0xDD);
        }
    }
}

/* The transposing loads below take 8 floats of each of the 16 rows in
 * turn.  From memory beyond the caches that order is slow (AMD Zen4, one
 * core, 4M-element float32 arrays, softmax, ns/element: rows of 48 / 64
 * 1.40 / 1.32 against 0.66 / 0.64 from L3, where the row kernels take 1.03
 * / 0.81).  A full group of back-to-back rows is therefore first copied,
 * in address order, to the scratch S, and the loads read the copy: 0.82 /
 * 0.82 (rows of 32-64: 0.82-1.06 over four runs); prefetching the next
 * group in that order instead did not help (1.29 / 1.37), nor did staging
 * the output.  Rows shorter than SMALL_STAGE_MIN keep the direct loads:
 * rows of 10 lost time to the copy (0.98 -> 1.16 from L3) and are
 * compute-bound from memory too.  The 8-row tiles (AVX2's short rows,
 * logsumexp's, float64) measured no gain from the same copy -- AVX2 float32
 * rows of 32-64 from memory went from 1.06-1.21 to 1.31-1.84, float64 on
 * this table 2.2-2.5 to 2.1-2.4 -- and read their rows directly.
 * Returns the rows to read: ps (into S) or p (rows with another stride,
 * partial groups, whose missing rows repeat the first, short rows). */
#define SMALL_STAGE_MIN 32
static inline const float *const *
smallv_stage_f32_(const float *const *p, ptrdiff_t n, float *S, const float **ps)
{
    if (n < SMALL_STAGE_MIN) return p;
    for (int k = 1; k < 16; ++k)
        if (p[k] != p[0] + k * n) return p;
    memcpy(S, p[0], (size_t)16 * (size_t)n * sizeof(float));
    for (int k = 0; k < 16; ++k) ps[k] = S + k * n;
    return ps;
}

/* Columns j..j+cw of rows p[0..15] (cw <= 8) -> r[0..8) (16 lanes = rows;
 * a partial tile by masked loads: its other columns are 0 and never read
 * as data) */
static inline __attribute__((always_inline)) void
smallv_tile_in_f32_(const float *const *p, ptrdiff_t j, ptrdiff_t cw, __m512 *r)
{
    const __mmask8 km = kmask8_(cw);
    for (int k = 0; k < 8; ++k) {
        const int a = k + (k & 4);
        __m256 lo = cw == 8 ? _mm256_loadu_ps(p[a] + j) : _mm256_maskz_loadu_ps(km, p[a] + j);
        __m256 hi = cw == 8 ? _mm256_loadu_ps(p[a + 4] + j) : _mm256_maskz_loadu_ps(km, p[a + 4] + j);
        r[k] = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
    }
    tr16x8_ps_(r, 0);
}

/* Rows p[0..15] (n floats each) -> T[0..n) (16 lanes = rows), 8 columns a
 * tile; *mx the per-lane max (-inf for n = 0), *nanbits the lanes with a
 * NaN. */
static inline __attribute__((always_inline)) void
smallv_in_f32_(const float *const *p, ptrdiff_t n, __m512 *T, __m512 *mx,
               int *nanbits)
{
    float S[16 * CSM_SMALL_MAX] __attribute__((aligned(64)));
    const float *ps[16];
    p = smallv_stage_f32_(p, n, S, ps);
    __m512 m = _mm512_set1_ps(-INFINITY);
    __mmask16 b = 0;
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m512 r[8];
        const ptrdiff_t cw = n - j < 8 ? n - j : 8;
        smallv_tile_in_f32_(p, j, cw, r);
        for (int i = 0; i < 8; ++i) T[j + i] = r[i];
        if (cw == 8) {      /* a tree: short dependency chains */
            b |= _mm512_cmp_ps_mask(r[0], r[1], _CMP_UNORD_Q) |
                 _mm512_cmp_ps_mask(r[2], r[3], _CMP_UNORD_Q) |
                 _mm512_cmp_ps_mask(r[4], r[5], _CMP_UNORD_Q) |
                 _mm512_cmp_ps_mask(r[6], r[7], _CMP_UNORD_Q);
            const __m512 a = _mm512_max_ps(_mm512_max_ps(r[0], r[1]), _mm512_max_ps(r[2], r[3]));
            const __m512 c = _mm512_max_ps(_mm512_max_ps(r[4], r[5]), _mm512_max_ps(r[6], r[7]));
            m = _mm512_max_ps(m, _mm512_max_ps(a, c));
        } else {
            for (ptrdiff_t i = 0; i < cw; ++i) {
                m = _mm512_max_ps(m, r[i]);
                b |= _mm512_cmp_ps_mask(r[i], r[i], _CMP_UNORD_Q);
            }
        }
    }
    *mx = m;
    *nanbits = b;
}

/* Rows p[0..15] (n floats each) -> T[0..n), no reduction (the backward
 * kernels, simd/small_bwd_f32_body.h) */
static inline __attribute__((always_inline)) void
smallv_load_f32_(const float *const *p, ptrdiff_t n, __m512 *T)
{
    float S[16 * CSM_SMALL_MAX] __attribute__((aligned(64)));
    const float *ps[16];
    p = smallv_stage_f32_(p, n, S, ps);
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m512 r[8];
        smallv_tile_in_f32_(p, j, n - j < 8 ? n - j : 8, r);
        for (int i = 0; i < 8; ++i) T[j + i] = r[i];
    }
}

/* T[0..n) back to rows q[k] for the lanes k set in `store` (other rows are
 * not touched: they may still be the input of an in-place call). */
static inline void smallv_out_f32_(const __m512 *T, ptrdiff_t n,
                                   float *const *q, int store)
{
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m512 r[8];
        const ptrdiff_t cw = n - j < 8 ? n - j : 8;
        const __mmask8 km = kmask8_(cw);
        for (int i = 0; i < 8; ++i) r[i] = T[j + i];
        tr16x8_ps_(r, 1);
        if (store == 0xFFFF && cw == 8) {
            for (int k = 0; k < 8; ++k) {
                _mm256_storeu_ps(q[k] + j, _mm512_castps512_ps256(r[k]));
                _mm256_storeu_ps(q[k + 8] + j, _mm512_extractf32x8_ps(r[k], 1));
            }
            continue;
        }
        for (int k = 0; k < 8; ++k) {
            const __m256 lo = _mm512_castps512_ps256(r[k]);
            const __m256 hi = _mm512_extractf32x8_ps(r[k], 1);
            if (store >> k & 1) {
                if (cw == 8) _mm256_storeu_ps(q[k] + j, lo);
                else _mm256_mask_storeu_ps(q[k] + j, km, lo);
            }
            if (store >> (k + 8) & 1) {
                if (cw == 8) _mm256_storeu_ps(q[k + 8] + j, hi);
                else _mm256_mask_storeu_ps(q[k + 8] + j, km, hi);
            }
        }
    }
}

#define v_absle_bits_(a, b)  ((int)_mm512_cmp_ps_mask(_mm512_abs_ps(a), _mm512_set1_ps(b), _CMP_LE_OQ))
#define vi_loadu_(p)         _mm512_loadu_si512((const void *)(p))
#define vi_eqk_(a, k)        _mm512_cmpeq_epi32_mask(a, _mm512_set1_epi32(k))
#define vi_negbits_(a)       ((int)_mm512_movepi32_mask(a))
#define vi_storeu_(p, a)     _mm512_storeu_si512((void *)(p), a)
#define vd_store_bits_(p, b, a) _mm512_mask_storeu_pd(p, (__mmask8)(b), a)

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
