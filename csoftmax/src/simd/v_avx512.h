/*
 * simd/v_avx512.h -- the lane abstraction of the shared kernel bodies for
 * AVX-512 F/BW/DQ/VL: 16 float32 lanes (V), 8 float64 lanes (VD), opmask
 * registers for lane masks (VM) and tails (VT).  See v_avx2.h.
 * (internal; included by src/avx512/common.h after <immintrin.h> and
 * exp.h, whose kmask16_ it uses)
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


/* ---- more float64-lane operations (column kernels) ---------------------- */
typedef __mmask8 VDM;
#define VDLEN 8
#define vd_loadu(p)      _mm512_loadu_pd(p)
#define vd_storeu(p, a)  _mm512_storeu_pd(p, a)
#define vd_mul(a, b)     _mm512_mul_pd(a, b)
#define vd_div(a, b)     _mm512_div_pd(a, b)
#define vd_fmadd(a, b, c) _mm512_fmadd_pd(a, b, c)
#define vd_fnmadd(a, b, c) _mm512_fnmadd_pd(a, b, c)
#define vd_abs(a)        _mm512_abs_pd(a)
#define vd_round(a) _mm512_roundscale_pd(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define vd_cmp(a, b, P)  _mm512_cmp_pd_mask(a, b, P)
#define vdm_and(a, b)    ((VDM)((a) & (b)))
#define vdm_bits(m)      ((int)(m))
#define vdm_all(m)       ((m) == 0xFF)
static inline void vd_frexp_(VD u, VD *e, VD *f)
{
    __m512i b = _mm512_castpd_si512(u);
    *e = _mm512_sub_pd(
        _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64(b, 52),
                                            _mm512_set1_epi64(0x4330000000000000LL))),
        _mm512_set1_pd(0x1p52 + 1023.0));
    *f = _mm512_castsi512_pd(_mm512_or_si512(
        _mm512_and_si512(b, _mm512_set1_epi64(0x000FFFFFFFFFFFFFLL)),
        _mm512_set1_epi64(0x3FF0000000000000LL)));
}
#define vi_lo_pd(c)      _mm512_cvtepi32_pd(_mm512_castsi512_si256(c))
#define vi_hi_pd(c)      _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(c, 1))
#define v_lowbits_pd(lo, hi) _mm512_inserti64x4(_mm512_castsi256_si512( \
    _mm512_cvtepi64_epi32(_mm512_castpd_si512(lo))), \
    _mm512_cvtepi64_epi32(_mm512_castpd_si512(hi)), 1)
#define vi_max(a, b)     _mm512_max_epi32(a, b)
#define vi_set1(k)       _mm512_set1_epi32(k)
#define v_pow2_bits(k)   _mm512_castsi512_ps(_mm512_slli_epi32(k, 23))
#define v_xor(a, b)      _mm512_xor_ps(a, b)
#define v_stream(p, a)   _mm512_stream_ps(p, a)
#define v_anynan(m)      (m)
#define v_cmp(a, b, P)   _mm512_cmp_ps_mask(a, b, P)
#define v_cmpunord(a, b) _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q)
#define vm_or(a, b)      ((VM)((a) | (b)))
#define vm_none()        ((VM)0)

/* ---- VLEN elements as two VD halves (backward kernels) ------------------ */
#define vload2_f32   load16_f32_
#define vload2m_f32  load16m_f32_
#define vstore2_f32  store16_f32_
#define vstore2m_f32 store16m_f32_
#define vload2_f64   load16_f64_
#define vload2m_f64  load16m_f64_
#define vstore2_f64  store16_f64_
#define vstore2m_f64 store16m_f64_
#define vdm_or(a, b) ((VDM)((a) | (b)))
#define vdm_none()   ((VDM)0)
#define vdm_any(m)   ((int)(m))


/* ---- float64-lane kernels (simd/generic.h, rows_f64_body.h) ------------- */
#define vd_max(a, b)     _mm512_max_pd(a, b)
#define vd_unless(m, a)  _mm512_maskz_mov_pd((__mmask8)~(m), a)
#define vd_when(m, a)    _mm512_maskz_mov_pd(m, a)
#define vd_blend(m, a, b) _mm512_mask_mov_pd(a, m, b)  /* m ? b : a */
#define vd_load_tail(p, r, fill) _mm512_mask_loadu_pd(_mm512_set1_pd(fill), kmask8_(r), p)
#define vd_loadz_tail(p, r) _mm512_maskz_loadu_pd(kmask8_(r), p)
#define vd_store_tail(p, r, a) _mm512_mask_storeu_pd(p, kmask8_(r), a)

#define vd_addexp(p, t) _mm512_castsi512_pd(_mm512_add_epi64( \
    _mm512_castpd_si512(p), _mm512_slli_epi64(_mm512_castpd_si512(t), 52)))
#define vd_hmax(a)       _mm512_reduce_max_pd(a)
#define v_hmax(a)        _mm512_reduce_max_ps(a)

/* float64 lanes rounded to float32 and back */
#define vd_round_f32(a)  _mm512_cvtps_pd(_mm512_cvtpd_ps(a))

/* the float64 lanes k with bit k of `bits` set, as a lane mask */
#define vdm_from_bits(bits) ((VDM)(bits))

/* where= masks: VLEN mask bytes (nonzero = kept) -> a lane mask; the tail
 * form reads only the first r (< VLEN) bytes, the other lanes not kept */
static inline VM v_keep(const unsigned char *m)
{
    return _mm_cmpneq_epi8_mask(_mm_loadu_si128((const __m128i *)m),
                                _mm_setzero_si128());
}
static inline VM v_keep_tail(const unsigned char *m, ptrdiff_t r)
{
    return _mm_cmpneq_epi8_mask(_mm_maskz_loadu_epi8(kmask16_(r), m),
                                _mm_setzero_si128());
}

/* ---- sums of VDLEN vectors at once (grouped rows) ----------------------- */
/* lane j = the sum of the lanes of a[j], j < VDLEN: a transposing tree, 14
 * shuffles and 7 adds for 8 sums (the horizontal sum is 6 and 3 for one) */
static inline VD vd_hsums_(const VD *a)
{
    VD b[4], c[2];
    for (int k = 0; k < 4; ++k)
        b[k] = _mm512_add_pd(_mm512_unpacklo_pd(a[2 * k], a[2 * k + 1]),
                             _mm512_unpackhi_pd(a[2 * k], a[2 * k + 1]));
    for (int k = 0; k < 2; ++k)
        c[k] = _mm512_add_pd(_mm512_shuffle_f64x2(b[2 * k], b[2 * k + 1], 0x88),
                             _mm512_shuffle_f64x2(b[2 * k], b[2 * k + 1], 0xDD));
    return _mm512_add_pd(_mm512_shuffle_f64x2(c[0], c[1], 0x88),
                         _mm512_shuffle_f64x2(c[0], c[1], 0xDD));
}
/* the lanes from d on (d < VLEN), and a lane mask's intersection */
#define v_lanes_from(d)  ((VM)(0xFFFFu << (d)))
#define vm_and(a, b)     ((VM)((a) & (b)))
/* int32 counts -> float64 lanes with the same total */
#define vi_pairs_pd(c)   _mm512_cvtepi32_pd(_mm256_add_epi32( \
    _mm512_castsi512_si256(c), _mm512_extracti64x4_epi64(c, 1)))

#endif /* CSM_V_AVX512_H */
