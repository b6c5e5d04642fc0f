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

/* 8 mask bytes -> 8 int32 lane masks */
static inline __m256 keep8_(const unsigned char *m)
{
    __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(w, _mm256_setzero_si256()));
}
/* the first r (< 8) mask bytes; the other lanes masked (not read) */
static inline __m256 keep8t_(const unsigned char *m, ptrdiff_t r)
{
    unsigned char b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(b, m, (size_t)r);
    return keep8_(b);
}
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

#endif /* CSM_AVX2_MASKED_H */
