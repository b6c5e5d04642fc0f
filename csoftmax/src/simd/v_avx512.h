/*
 * simd/v_avx512.h -- the lane abstraction of the shared kernel bodies for
 * AVX-512 F/BW/DQ/VL: 16 float32 lanes (V), 8 float64 lanes (VD), opmask
 * registers for lane masks (VM) and tails (VT).  See v_avx2.h.
 * (internal; included by src/avx512/common.h after <immintrin.h> and
 * exp.h, whose kmask16_ and row_max_f32_512_ it uses)
 */
#ifndef CSM_V_AVX512_H
#define CSM_V_AVX512_H

#define VLEN 16
typedef __m512 V;
typedef __m512d VD;
typedef __m512i VI;
typedef __mmask16 VM;
typedef __mmask16 VT;

#define CSM_SUFFIX_CAT_(a, b) a##b
#define SUFFIX(name) CSM_SUFFIX_CAT_(name, _avx512)

#define v_set1(f)        _mm512_set1_ps(f)
#define v_zero()         _mm512_setzero_ps()
#define v_load(p)        _mm512_loadu_ps(p)
#define v_store(p, a)    _mm512_storeu_ps(p, a)
#define v_add(a, b)      _mm512_add_ps(a, b)
#define v_sub(a, b)      _mm512_sub_ps(a, b)
#define v_mul(a, b)      _mm512_mul_ps(a, b)
#define v_max(a, b)      _mm512_max_ps(a, b)
#define v_fmadd(a, b, c) _mm512_fmadd_ps(a, b, c)
#define v_fmsub(a, b, c) _mm512_fmsub_ps(a, b, c)
#define v_fnmadd(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define v_cmpeq(a, b)    _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define v_select(m, a, b) _mm512_mask_mov_ps(a, m, b)
#define v_signmask(a)    _mm512_movepi32_mask(_mm512_castps_si512(a))

#define v_tail(r)        kmask16_(r)
#define v_loadz_tail(p, t)    _mm512_maskz_loadu_ps(t, p)
#define v_load_tail(p, t, fill) _mm512_mask_loadu_ps(fill, t, p)
#define v_store_tail(p, t, a) _mm512_mask_storeu_ps(p, t, a)

#define vi_zero()        _mm512_setzero_si512()
#define vi_count(c, m)   _mm512_mask_add_epi32(c, m, c, _mm512_set1_epi32(1))
#define vi_hsum(c)       _mm512_reduce_add_epi32(c)
#define v_addexp(p, t) _mm512_castsi512_ps(_mm512_add_epi32( \
    _mm512_castps_si512(p), _mm512_slli_epi32(_mm512_castps_si512(t), 23)))

#define vd_set1(f)       _mm512_set1_pd(f)
#define vd_zero()        _mm512_setzero_pd()
#define vd_add(a, b)     _mm512_add_pd(a, b)
#define vd_sub(a, b)     _mm512_sub_pd(a, b)
#define vd_fmsub(a, b, c) _mm512_fmsub_pd(a, b, c)
#define vd_hsum(a)       _mm512_reduce_add_pd(a)
#define v_lo_pd(a)       _mm512_cvtps_pd(_mm512_castps512_ps256(a))
#define v_hi_pd(a)       _mm512_cvtps_pd(_mm512_extractf32x8_ps(a, 1))
#define v_from_pd(lo, hi) _mm512_insertf32x8( \
    _mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1)

#define v_row_max_f32(x, n) row_max_f32_512_(x, n)

#endif /* CSM_V_AVX512_H */
