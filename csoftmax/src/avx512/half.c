/*
 * avx512/half.c -- float16 / bfloat16 <-> float32 rows (csoftmax.h:
 * csm_cvt_*) in 512-bit lanes, opmask tails.  Same bits as the scalar and
 * AVX2 conversions:
 *   float16:  _mm512_cvtph_ps / _mm512_cvtps_ph (round to nearest even);
 *   bfloat16: integer shift / x + 0x7fff + lsb, >> 16, NaN lanes
 *             x >> 16 | 0x40 -- the integer rounding rather than
 *             AVX512_BF16's vcvtneps2bf16, which would need its own CPUID
 *             check (and gives the same bits; this is memory-bound anyway).
 * Not through common.h: F16C is added to the target (the 256-bit forms).
 */
#include "csoftmax.h"
#include "kernels.h"

#ifdef CSM_BUILD_AVX512

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")
#endif

#include <immintrin.h>

static inline __mmask16 tail_mask_(ptrdiff_t k)
{
    return (__mmask16)((1u << k) - 1u);
}

void csm_cvt_f16_to_f32_avx512(const uint16_t *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t xrs, float *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const uint16_t *a = x + r * xrs;
        float *b = y + r * yrs;
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m512 v0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i)));
            __m512 v1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(a + i + 16)));
            _mm512_storeu_ps(b + i, v0);
            _mm512_storeu_ps(b + i + 16, v1);
        }
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask_(n - i);
            __m512 v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i));
            _mm512_mask_storeu_ps(b + i, m, v);
        }
    }
}

void csm_cvt_f32_to_f16_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                               ptrdiff_t xrs, uint16_t *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *a = x + r * xrs;
        uint16_t *b = y + r * yrs;
        ptrdiff_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m256i h0 = _mm512_cvtps_ph(_mm512_loadu_ps(a + i),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            __m256i h1 = _mm512_cvtps_ph(_mm512_loadu_ps(a + i + 16),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_storeu_si256((__m256i *)(b + i), h0);
            _mm256_storeu_si256((__m256i *)(b + i + 16), h1);
        }
        for (; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask_(n - i);
            __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, a + i),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            _mm256_mask_storeu_epi16(b + i, m, h);
        }
    }
}

void csm_cvt_bf16_to_f32_avx512(const uint16_t *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t xrs, float *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const uint16_t *a = x + r * xrs;
        float *b = y + r * yrs;
        for (ptrdiff_t i = 0; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask_(n - i);
            __m512i w = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, a + i));
            _mm512_mask_storeu_epi32(b + i, m, _mm512_slli_epi32(w, 16));
        }
    }
}

void csm_cvt_f32_to_bf16_avx512(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                                ptrdiff_t xrs, uint16_t *y, ptrdiff_t yrs)
{
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1);
    const __m512i quiet = _mm512_set1_epi32(0x40);
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *a = x + r * xrs;
        uint16_t *b = y + r * yrs;
        for (ptrdiff_t i = 0; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : tail_mask_(n - i);
            __m512 v = _mm512_maskz_loadu_ps(m, a + i);
            __m512i u = _mm512_castps_si512(v);
            __m512i hi = _mm512_srli_epi32(u, 16);
            __m512i rn = _mm512_srli_epi32(
                _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))), 16);
            __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
            rn = _mm512_mask_or_epi32(rn, nan, hi, quiet);
            _mm256_mask_storeu_epi16(b + i, m, _mm512_cvtepi32_epi16(rn));
        }
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif /* CSM_BUILD_AVX512 */
