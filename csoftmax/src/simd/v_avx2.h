/*
 * simd/v_avx2.h -- the lane abstraction of the shared kernel bodies
 * (src/simd/, the *_body.h files and xr_f32.h) for AVX2 + FMA: 8 float32 lanes (V),
 * 4 float64 lanes (VD, half a V), int32 lanes (VI), a lane mask (VM: all-ones
 * lanes of a float vector), a tail mask (VT: the first r lanes).
 * A body written against these names compiles to the AVX2 kernels here and
 * to the AVX-512 kernels with v_avx512.h; each operation is the intrinsic
 * (or the short sequence) the hand-written kernels used, so the results
 * are those of the hand-written code, bit for bit, per ISA.
 * (internal; included by src/avx2/common.h, after <immintrin.h> and
 * exp.h, whose tail_mask32_ and hsum_pd_ it uses)
 */
#ifndef CSM_V_AVX2_H
#define CSM_V_AVX2_H

#include <string.h>

#define VLEN 8
typedef __m256 V;
typedef __m256d VD;
typedef __m256i VI;
typedef __m256 VM;
typedef __m256i VT;

#define CSM_SUFFIX_CAT_(a, b) a##b
#define SUFFIX(name) CSM_SUFFIX_CAT_(name, _avx2)

#define v_set1(f)        _mm256_set1_ps(f)
#define v_zero()         _mm256_setzero_ps()
#define v_load(p)        _mm256_loadu_ps(p)
#define v_store(p, a)    _mm256_storeu_ps(p, a)
#define v_add(a, b)      _mm256_add_ps(a, b)
#define v_sub(a, b)      _mm256_sub_ps(a, b)
#define v_mul(a, b)      _mm256_mul_ps(a, b)
#define v_max(a, b)      _mm256_max_ps(a, b)
#define v_fmadd(a, b, c) _mm256_fmadd_ps(a, b, c)
#define v_fmsub(a, b, c) _mm256_fmsub_ps(a, b, c)
#define v_fnmadd(a, b, c) _mm256_fnmadd_ps(a, b, c)
/* lanes where a == b (ordered) */
#define v_cmpeq(a, b)    _mm256_cmp_ps(a, b, _CMP_EQ_OQ)
/* m ? b : a */
#define v_select(m, a, b) _mm256_blendv_ps(a, b, m)
/* lanes whose sign bit is set */
#define v_signmask(a)    (a)

/* tails: the first r lanes (r >= VLEN: all) */
#define v_tail(r)        tail_mask32_(r)
#define v_loadz_tail(p, t)    _mm256_maskload_ps(p, t)
#define v_load_tail(p, t, fill) \
    _mm256_blendv_ps(fill, _mm256_maskload_ps(p, t), _mm256_castsi256_ps(t))
#define v_store_tail(p, t, a) _mm256_maskstore_ps(p, t, a)

/* int32 lanes: counts of mask lanes, exponent field */
#define vi_zero()        _mm256_setzero_si256()
#define vi_count(c, m)   _mm256_sub_epi32(c, _mm256_castps_si256(m))
static inline int vi_hsum_(VI c)
{
    __m128i c4 = _mm_add_epi32(_mm256_castsi256_si128(c),
                               _mm256_extracti128_si256(c, 1));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0x4E));
    c4 = _mm_add_epi32(c4, _mm_shuffle_epi32(c4, 0xB1));
    return _mm_cvtsi128_si32(c4);
}
#define vi_hsum(c)       vi_hsum_(c)
/* p * 2^(bits of t << 23): an integer add to the exponent field */
#define v_addexp(p, t) _mm256_castsi256_ps(_mm256_add_epi32( \
    _mm256_castps_si256(p), _mm256_slli_epi32(_mm256_castps_si256(t), 23)))

/* float64 lanes (half a V each) */
#define vd_set1(f)       _mm256_set1_pd(f)
#define vd_zero()        _mm256_setzero_pd()
#define vd_add(a, b)     _mm256_add_pd(a, b)
#define vd_sub(a, b)     _mm256_sub_pd(a, b)
#define vd_fmsub(a, b, c) _mm256_fmsub_pd(a, b, c)
#define vd_hsum(a)       hsum_pd_(a)
/* V -> two VD (low, high half) and back */
#define v_lo_pd(a)       _mm256_cvtps_pd(_mm256_castps256_ps128(a))
#define v_hi_pd(a)       _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1))
#define v_from_pd(lo, hi) _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo))


/* ---- more float64-lane operations (column kernels) ---------------------- */
typedef __m256d VDM;                 /* float64 lane mask */
#define VDLEN 4
#define vd_loadu(p)      _mm256_loadu_pd(p)
#define vd_storeu(p, a)  _mm256_storeu_pd(p, a)
#define vd_mul(a, b)     _mm256_mul_pd(a, b)
#define vd_div(a, b)     _mm256_div_pd(a, b)
#define vd_fmadd(a, b, c) _mm256_fmadd_pd(a, b, c)
#define vd_fnmadd(a, b, c) _mm256_fnmadd_pd(a, b, c)
#define vd_abs(a) _mm256_and_pd(a, _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL)))
#define vd_round(a) _mm256_round_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vd_cmp(a, b, P)  _mm256_cmp_pd(a, b, P)
#define vdm_and(a, b)    _mm256_and_pd(a, b)
#define vdm_bits(m)      _mm256_movemask_pd(m)
#define vdm_all(m)       (_mm256_movemask_pd(m) == 15)
/* exponent (as a double) and mantissa in [1, 2) of u > 0 */
static inline void vd_frexp_(VD u, VD *e, VD *f)
{
    __m256i b = _mm256_castpd_si256(u);
    *e = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(b, 52),
                                            _mm256_set1_epi64x(0x4330000000000000LL))),
        _mm256_set1_pd(0x1p52 + 1023.0));
    *f = _mm256_castsi256_pd(_mm256_or_si256(
        _mm256_and_si256(b, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
        _mm256_set1_epi64x(0x3FF0000000000000LL)));
}
/* int32 lanes -> float64 (low, high half) */
#define vi_lo_pd(c)      _mm256_cvtepi32_pd(_mm256_castsi256_si128(c))
#define vi_hi_pd(c)      _mm256_cvtepi32_pd(_mm256_extracti128_si256(c, 1))
/* the low 32 bits of every float64 lane of lo, hi as int32 lanes */
#define v_lowbits_pd(lo, hi) _mm256_permute4x64_epi64(_mm256_castps_si256( \
    _mm256_shuffle_ps(_mm256_castpd_ps(lo), _mm256_castpd_ps(hi), 0x88)), 0xD8)
#define vi_max(a, b)     _mm256_max_epi32(a, b)
#define vi_set1(k)       _mm256_set1_epi32(k)
/* 2^(k - 127) from int32 lanes k in [1, 254] */
#define v_pow2_bits(k)   _mm256_castsi256_ps(_mm256_slli_epi32(k, 23))
#define v_xor(a, b)      _mm256_xor_ps(a, b)
#define v_stream(p, a)   _mm256_stream_ps(p, a)
#define v_anynan(m)      _mm256_movemask_ps(m)
#define v_cmp(a, b, P)   _mm256_cmp_ps(a, b, P)
#define v_cmpunord(a, b) _mm256_cmp_ps(a, b, _CMP_UNORD_Q)
#define vm_or(a, b)      _mm256_or_ps(a, b)
#define vm_none()        _mm256_setzero_ps()

/* ---- VLEN elements as two VD halves (backward kernels) ------------------ */
#define vload2_f32   load8_f32_
#define vload2m_f32  load8m_f32_
#define vstore2_f32  store8_f32_
#define vstore2m_f32 store8m_f32_
#define vload2_f64   load8_f64_
#define vload2m_f64  load8m_f64_
#define vstore2_f64  store8_f64_
#define vstore2m_f64 store8m_f64_
#define vdm_or(a, b) _mm256_or_pd(a, b)
#define vdm_none()   _mm256_setzero_pd()
#define vdm_any(m)   _mm256_movemask_pd(m)


/* ---- float64-lane kernels (simd/generic.h, rows_f64_body.h) ------------- */
#define vd_max(a, b)     _mm256_max_pd(a, b)
#define vd_unless(m, a)  _mm256_andnot_pd(m, a)      /* m ? 0 : a */
#define vd_when(m, a)    _mm256_and_pd(m, a)         /* m ? a : 0 */
#define vd_blend(m, a, b) _mm256_blendv_pd(a, b, m)  /* m ? b : a */
/* the first r (>= 1) of VDLEN float64 lanes */
#define vd_load_tail(p, r, fill) _mm256_blendv_pd(_mm256_set1_pd(fill), \
    _mm256_maskload_pd(p, tail_mask64_(r)), _mm256_castsi256_pd(tail_mask64_(r)))
#define vd_loadz_tail(p, r) _mm256_maskload_pd(p, tail_mask64_(r))
#define vd_store_tail(p, r, a) _mm256_maskstore_pd(p, tail_mask64_(r), a)

#define vd_addexp(p, t) _mm256_castsi256_pd(_mm256_add_epi64( \
    _mm256_castpd_si256(p), _mm256_slli_epi64(_mm256_castpd_si256(t), 52)))
#define vd_hmax(a)       hmax_pd_(a)
static inline float v_hmax_(V m)
{
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}
#define v_hmax(a)        v_hmax_(a)

/* float64 lanes rounded to float32 and back */
#define vd_round_f32(a)  _mm256_cvtps_pd(_mm256_cvtpd_ps(a))

/* the float64 lanes k with bit k of `bits` set, as a lane mask */
static inline VDM vdm_from_bits(int bits)
{
    const __m256i b = _mm256_setr_epi64x(1, 2, 4, 8);
    __m256i v = _mm256_and_si256(_mm256_set1_epi64x(bits & 15), b);
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(v, b));
}

/* where= masks: VLEN mask bytes (nonzero = kept) -> a lane mask; the tail
 * form reads only the first r (< VLEN) bytes, the other lanes not kept */
static inline VM v_keep(const unsigned char *m)
{
    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
}
static inline VM v_keep_tail(const unsigned char *m, ptrdiff_t r)
{
    unsigned char b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(b, m, (size_t)r);
    return v_keep(b);
}

/* ---- sums of VDLEN vectors at once (grouped rows) ----------------------- */
/* lane j = the sum of the lanes of a[j], j < VDLEN */
static inline VD vd_hsums_(const VD *a)
{
    const VD b0 = _mm256_add_pd(_mm256_unpacklo_pd(a[0], a[1]),
                                _mm256_unpackhi_pd(a[0], a[1]));
    const VD b1 = _mm256_add_pd(_mm256_unpacklo_pd(a[2], a[3]),
                                _mm256_unpackhi_pd(a[2], a[3]));
    return _mm256_add_pd(_mm256_permute2f128_pd(b0, b1, 0x20),
                         _mm256_permute2f128_pd(b0, b1, 0x31));
}
/* the lanes from d on (d < VLEN), and a lane mask's intersection */
#define v_lanes_from(d)  _mm256_castsi256_ps(_mm256_xor_si256( \
    tail_mask32_(d), _mm256_set1_epi32(-1)))
#define vm_and(a, b)     _mm256_and_ps(a, b)
/* int32 counts -> float64 lanes with the same total */
#define vi_pairs_pd(c)   _mm256_cvtepi32_pd(_mm_add_epi32( \
    _mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)))

#endif /* CSM_V_AVX2_H */
