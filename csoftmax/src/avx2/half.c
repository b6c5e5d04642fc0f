/*
 * avx2/half.c -- float16 / bfloat16 <-> float32 rows (csoftmax.h: csm_cvt_*),
 * AVX2 + F16C.  Not through common.h: these need F16C (vcvtph2ps /
 * vcvtps2ph) besides AVX2, and dispatch.c offers the AVX2 table only when
 * CPUID reports F16C too.
 *
 *   float16:  _mm256_cvtph_ps (exact) / _mm256_cvtps_ph with round to
 *             nearest even (overflow to inf, subnormals, quiet NaN: the
 *             IEEE conversion, the same bits as csm_f32_to_f16);
 *   bfloat16: integer shift (exact) / x + 0x7fff + lsb, >> 16 (round to
 *             nearest even, overflow to inf), NaN lanes x >> 16 | 0x40.
 * Tails (n % 8, n % 16) go through the scalar functions of csoftmax.h,
 * which give the same bits.
 */
#include "csoftmax.h"
#include "kernels.h"

#ifdef CSM_BUILD_AVX2

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx2,fma,f16c")
#endif

#include <immintrin.h>

void csm_cvt_f16_to_f32_avx2(const uint16_t *x, ptrdiff_t n_rows, ptrdiff_t n,
                             ptrdiff_t xrs, float *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const uint16_t *a = x + r * xrs;
        float *b = y + r * yrs;
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
            __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
            _mm256_storeu_ps(b + i, v0);
            _mm256_storeu_ps(b + i + 8, v1);
        }
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(b + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i))));
        for (; i < n; ++i) b[i] = csm_f16_to_f32(a[i]);
    }
}

void csm_cvt_f32_to_f16_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                             ptrdiff_t xrs, uint16_t *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *a = x + r * xrs;
        uint16_t *b = y + r * yrs;
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m128i h0 = _mm256_cvtps_ph(_mm256_loadu_ps(a + i), _MM_FROUND_TO_NEAREST_INT);
            __m128i h1 = _mm256_cvtps_ph(_mm256_loadu_ps(a + i + 8), _MM_FROUND_TO_NEAREST_INT);
            _mm_storeu_si128((__m128i *)(b + i), h0);
            _mm_storeu_si128((__m128i *)(b + i + 8), h1);
        }
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i *)(b + i),
                             _mm256_cvtps_ph(_mm256_loadu_ps(a + i), _MM_FROUND_TO_NEAREST_INT));
        for (; i < n; ++i) b[i] = csm_f32_to_f16(a[i]);
    }
}

void csm_cvt_bf16_to_f32_avx2(const uint16_t *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t xrs, float *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const uint16_t *a = x + r * xrs;
        float *b = y + r * yrs;
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8) {
            __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(a + i)));
            _mm256_storeu_si256((__m256i *)(b + i), _mm256_slli_epi32(w, 16));
        }
        for (; i < n; ++i) b[i] = csm_bf16_to_f32(a[i]);
    }
}

/* 8 float32 -> 8 bfloat16 in the low 16 bits of each 32-bit lane */
static inline __m256i f32_to_bf16_lanes_(__m256 v)
{
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i rn = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(bias, lsb)), 16);
    __m256i qn = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    return _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(rn),
                                                _mm256_castsi256_ps(qn), nan));
}

void csm_cvt_f32_to_bf16_avx2(const float *x, ptrdiff_t n_rows, ptrdiff_t n,
                              ptrdiff_t xrs, uint16_t *y, ptrdiff_t yrs)
{
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const float *a = x + r * xrs;
        uint16_t *b = y + r * yrs;
        ptrdiff_t i = 0;
        for (; i + 16 <= n; i += 16) {
            __m256i l0 = f32_to_bf16_lanes_(_mm256_loadu_ps(a + i));
            __m256i l1 = f32_to_bf16_lanes_(_mm256_loadu_ps(a + i + 8));
            /* packus per 128-bit half: [l0 0-3, l1 0-3, l0 4-7, l1 4-7] */
            __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(l0, l1), 0xD8);
            _mm256_storeu_si256((__m256i *)(b + i), p);
        }
        for (; i < n; ++i) b[i] = csm_f32_to_bf16(a[i]);
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif

#endif /* CSM_BUILD_AVX2 */
