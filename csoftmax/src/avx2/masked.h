/*
 * avx2/masked.h -- mask bytes -> lane masks, masked row maximum
 * (internal; included by masked_f32.c / masked_f64.c after common.h)
 *
 * A mask byte != 0 keeps its element.  Lane masks are all-ones where kept,
 * so blendv(fill, x, keep) replaces masked lanes before any arithmetic
 * sees them (a NaN or inf there never reaches a max, a sum or a result).
 */
#ifndef CSM_AVX2_MASKED_H
#define CSM_AVX2_MASKED_H

/* 8 mask bytes -> 8 int32 lane masks; the first r (< 8) of them
 * (simd/v_avx2.h) */
#define keep8_(m) v_keep(m)
#define keep8t_(m, r) v_keep_tail(m, r)
/* 4 mask bytes -> 4 int64 lane masks */
static inline __m256d keep4_(const unsigned char *m)
{
    int v;
    memcpy(&v, m, 4);
    __m256i w = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(v));
    return _mm256_castsi256_pd(_mm256_cmpgt_epi64(w, _mm256_setzero_si256()));
}
static inline __m256d keep4t_(const unsigned char *m, ptrdiff_t r)
{
    unsigned char b[4] = {0, 0, 0, 0};
    memcpy(b, m, (size_t)r);
    return keep4_(b);
}

/* max of the kept elements (NaN if one of them is NaN; -inf if none) */
static CSM_MAYBE_UNUSED double row_max_masked_f32_(const float *x, const unsigned char *mk,
                                  ptrdiff_t n)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 m0 = ninf, m1 = ninf, bad = _mm256_setzero_ps();
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a = _mm256_blendv_ps(ninf, _mm256_loadu_ps(x + i), keep8_(mk + i));
        __m256 b = _mm256_blendv_ps(ninf, _mm256_loadu_ps(x + i + 8),
                                    keep8_(mk + i + 8));
        m0 = _mm256_max_ps(m0, a);
        m1 = _mm256_max_ps(m1, b);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
    }
    for (; i < n; i += 8) {
        __m256 a;
        if (i + 8 <= n)
            a = _mm256_blendv_ps(ninf, _mm256_loadu_ps(x + i), keep8_(mk + i));
        else
            a = _mm256_blendv_ps(ninf, _mm256_maskload_ps(x + i, tail_mask32_(n - i)),
                                 keep8t_(mk + i, n - i));
        m0 = _mm256_max_ps(m0, a);
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(bad)) return NAN;
    __m256 m = _mm256_max_ps(m0, m1);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return (double)_mm_cvtss_f32(h);
}

#endif /* CSM_AVX2_MASKED_H */
