/*
 * simd/small_tile_f32.h -- short rows (n <= CSM_SMALL_MAX), float32: 8 rows
 * of x transposed into (and out of) a column-major tile of __m256 on the
 * stack, 8x8 at a time, so that the lanes of a vector are rows.  Plain
 * 256-bit AVX2 code: the AVX2 and the AVX-512 short-row kernels share it
 * (simd/small_f32_body.h: 8 rows a group, the float64 work in one
 * 512-bit vector on AVX-512, see avx512/small.h, whose 16-row tiles serve
 * simd/small_lanes_f32_body.h).  Also the scalar fallbacks of a row the
 * vector lanes do not take.
 * (internal; included after the ISA's common.h)
 */
#ifndef CSM_SIMD_SMALL_TILE_F32_H
#define CSM_SIMD_SMALL_TILE_F32_H

/* ==== short rows: several rows per vector (n <= CSM_SMALL_MAX) ==========
 *
 * For short rows the per-row kernels above are dominated by fixed costs
 * (horizontal max and sums, masked tails, the per-row clamp, finalize and
 * call overhead).  These kernels put rows in the lanes instead: a group of
 * 8 rows (float32) or 4 rows (float64) is transposed, 8x8 / 4x4 tiles at a
 * time, into an aligned column-major scratch on the stack,
 *     T[i] = (x[r][i], x[r+1][i], ...),   i < n,
 * reduced or written with the per-element steps of the row kernels (the
 * float32 fast paths: clamp, int32 counts, float64 exp_f32acc_ for the sum,
 * softmax_v_f32_ for the write; float64: exp_f64_ and exact compares) with a
 * per-lane max / clamp / log_sum, finalized 4 lanes at a time as in
 * csm_finalize_avx2, and (write pass) transposed back.
 *
 * Every lane is computed on its own: a row that cannot take the float32
 * fast path (clamp not representable, |scale*max| > 2^20, alpha != 1) takes
 * the generic float64-exp step in a second masked sweep, and a row with a
 * NaN, an infinite max or no finite element is redone alone by the scalar
 * kernel (the per-row kernels do the same).  Unused lanes of a partial
 * group repeat the group's first row and are never stored.  So a row's
 * result does not depend on the rows around it, on its position in a
 * group, or on how rows are split into blocks and threads.
 */
#define SMALL_COLS ((CSM_SMALL_MAX + 7) & ~7)

static inline void tr8x8_ps_(__m256 *r)
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Partial tiles: the first cw (< 8 resp. < 4) elements, by 4/2/1-element
 * pieces (cheaper than vmaskmov, whose stores are slow on some CPUs);
 * the other lanes load as 0.  cw is the same for every row of a call, so
 * the branches are predictable. */
static inline __m128 small_load3_ps_(const float *p, ptrdiff_t r) /* r < 4 */
{
    if (r == 0) return _mm_setzero_ps();
    if (r == 1) return _mm_load_ss(p);
    __m128 a = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)p));
    return r == 2 ? a : _mm_movelh_ps(a, _mm_load_ss(p + 2));
}
static inline __m256 small_load_part_ps_(const float *p, ptrdiff_t cw)
{
    if (cw >= 4)
        return _mm256_set_m128(small_load3_ps_(p + 4, cw - 4), _mm_loadu_ps(p));
    return _mm256_set_m128(_mm_setzero_ps(), small_load3_ps_(p, cw));
}
static inline void small_store_part_ps_(float *p, __m256 v, ptrdiff_t cw)
{
    __m128 h = _mm256_castps256_ps128(v);
    if (cw >= 4) { _mm_storeu_ps(p, h); p += 4; cw -= 4; h = _mm256_extractf128_ps(v, 1); }
    if (cw >= 2) {
        _mm_storel_epi64((__m128i *)p, _mm_castps_si128(h));
        p += 2; cw -= 2; h = _mm_movehl_ps(h, h);
    }
    if (cw) _mm_store_ss(p, h);
}

/* The last tile when it is at most 4 columns wide: rows k and k + 4 share
 * a vector, r[k] = (row k | row k+4) (k < 4), transposed inside the 128-bit
 * halves: r[i] = column i of rows 0-3 | rows 4-7 -- 8 shuffles and 4
 * inserts instead of the 8x8 transpose's 24 shuffles.  Its own inverse. */
static inline void tr4x4x2_ps_(__m256 *r)
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    r[0] = _mm256_shuffle_ps(t0, t2, 0x44);
    r[1] = _mm256_shuffle_ps(t0, t2, 0xEE);
    r[2] = _mm256_shuffle_ps(t1, t3, 0x44);
    r[3] = _mm256_shuffle_ps(t1, t3, 0xEE);
}
static inline __m128 small_load4_ps_(const float *p, ptrdiff_t cw) /* cw <= 4 */
{
    return cw == 4 ? _mm_loadu_ps(p) : small_load3_ps_(p, cw);
}
static inline void small_store4_ps_(float *p, __m128 h, ptrdiff_t cw) /* cw <= 4 */
{
    if (cw == 4) { _mm_storeu_ps(p, h); return; }
    if (cw >= 2) {
        _mm_storel_epi64((__m128i *)p, _mm_castps_si128(h));
        p += 2; cw -= 2; h = _mm_movehl_ps(h, h);
    }
    if (cw) _mm_store_ss(p, h);
}

/* Rows p[0..7] (n floats each) -> T[0..n); whole 8-column tiles are stored
 * (columns past n hold zeros and are never read as data), and of a last
 * tile at most 4 wide its 4 columns.  With want_max,
 * *mx gets the per-lane max (-inf for n = 0) and *bad the NaN lanes. */
static inline __attribute__((always_inline)) void
small_in_f32_(const float *const *p, ptrdiff_t n, __m256 *T, __m256 *mx,
              __m256 *bad, const int want_max)
{
    __m256 m = _mm256_set1_ps(-INFINITY), b = _mm256_setzero_ps();
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m256 r[8];
        ptrdiff_t cw = n - j < 8 ? n - j : 8;
        if (cw <= 4) {                  /* the last, narrow tile */
            for (int k = 0; k < 4; ++k)
                r[k] = _mm256_set_m128(small_load4_ps_(p[k + 4] + j, cw),
                                       small_load4_ps_(p[k] + j, cw));
            tr4x4x2_ps_(r);
            for (int i = 0; i < 4; ++i) T[j + i] = r[i];
        } else {
            if (cw == 8) {
                for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(p[k] + j);
            } else {
                for (int k = 0; k < 8; ++k) r[k] = small_load_part_ps_(p[k] + j, cw);
            }
            tr8x8_ps_(r);
            for (int i = 0; i < 8; ++i) T[j + i] = r[i];
        }
        if (want_max)
            for (ptrdiff_t i = 0; i < cw; ++i) {
                m = _mm256_max_ps(m, r[i]);
                b = _mm256_or_ps(b, _mm256_cmp_ps(r[i], r[i], _CMP_UNORD_Q));
            }
    }
    if (want_max) { *mx = m; *bad = b; }
}

/* T[0..n) back to rows q[k] for the lanes k set in `store` (other rows are
 * not touched: they may still be the input of an in-place call). */
static inline void small_out_f32_(const __m256 *T, ptrdiff_t n,
                                  float *const *q, int store)
{
    for (ptrdiff_t j = 0; j < n; j += 8) {
        __m256 r[8];
        const ptrdiff_t cw = n - j < 8 ? n - j : 8;
        if (cw <= 4) {                  /* the last, narrow tile */
            for (int i = 0; i < 4; ++i) r[i] = T[j + i];
            tr4x4x2_ps_(r);
            for (int k = 0; k < 4; ++k) {
                if (store >> k & 1)
                    small_store4_ps_(q[k] + j, _mm256_castps256_ps128(r[k]), cw);
                if (store >> (k + 4) & 1)
                    small_store4_ps_(q[k + 4] + j, _mm256_extractf128_ps(r[k], 1), cw);
            }
            break;
        }
        for (int i = 0; i < 8; ++i) r[i] = T[j + i];
        tr8x8_ps_(r);
        if (store == 255) {
            if (cw == 8) for (int k = 0; k < 8; ++k) _mm256_storeu_ps(q[k] + j, r[k]);
            else for (int k = 0; k < 8; ++k) small_store_part_ps_(q[k] + j, r[k], cw);
        } else {
            for (int k = 0; k < 8; ++k)
                if (store >> k & 1) {
                    if (cw == 8) _mm256_storeu_ps(q[k] + j, r[k]);
                    else small_store_part_ps_(q[k] + j, r[k], cw);
                }
        }
    }
}

static inline __m256 small_lanes_ps_(int bits)
{
    const __m256i b = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i v = _mm256_and_si256(_mm256_set1_epi32(bits & 255), b);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, b));
}

static CSM_MAYBE_UNUSED void small_lse_row_f32_(const float *xr, ptrdiff_t n, double scale,
                               double *mx, double *ls)
{
    csm_lse_state st;
    csm_lse_rows_f32_scalar(xr, 1, n, n, scale, &st);
    csm_finalize_scalar(&st, 1, scale, mx, ls);
}

static CSM_MAYBE_UNUSED void small_lse_row_f64_(const double *xr, ptrdiff_t n, double scale,
                               double *mx, double *ls)
{
    csm_lse_state st;
    csm_lse_rows_f64_scalar(xr, 1, n, n, scale, &st);
    csm_finalize_scalar(&st, 1, scale, mx, ls);
}

/* One row of the fused short-row softmax / log_softmax outside the vector
 * lanes (a NaN, a non-finite max, no clamp): the scalar reduction and
 * write. */
#define DEFINE_FUSED_SMALL_ROW(T, SUF)                                         \
static CSM_MAYBE_UNUSED void fused_small_row_##SUF##_(const T *x, T *y, ptrdiff_t n, \
                                                      double scale, int log)   \
{                                                                              \
    double mx, ls;                                                             \
    small_lse_row_##SUF##_(x, n, scale, &mx, &ls);                             \
    if (log)                                                                   \
        csm_log_softmax_rows_##SUF##_scalar(x, 1, n, 0, scale, &mx, &ls, 1.0, y, 0); \
    else                                                                       \
        csm_softmax_rows_##SUF##_scalar(x, 1, n, 0, scale, &mx, &ls, 1.0, y, 0); \
}

/* One row of the ce_small kernels outside the vector lanes (a NaN or a
 * non-finite max): the scalar kernels, zeros for a == 0, then the target
 * entry a * expm1(lp) with libm and lp stored. */
#define DEFINE_CE_SMALL_ROW(T, SUF)                                            \
static CSM_MAYBE_UNUSED void ce_small_row_##SUF##_(const T *x, T *y, ptrdiff_t n, double scale, \
                                  double a, int t, double *lp)                 \
{                                                                              \
    double mx, ls, l = 0.0;                                                    \
    small_lse_row_##SUF##_(x, n, scale, &mx, &ls);                             \
    if (t >= 0) l = scale * ((double)x[t] - mx) - ls;                          \
    if (a == 0.0)                                                              \
        for (ptrdiff_t i = 0; i < n; ++i) y[i] = 0;                            \
    else                                                                       \
        csm_softmax_rows_##SUF##_scalar(x, 1, n, 0, scale, &mx, &ls, a, y, 0); \
    if (t >= 0) {                                                              \
        y[t] = (T)(a * (l < -0.3 ? exp(l) - 1.0 : expm1(l)));                  \
        *lp = l;                                                               \
    }                                                                          \
}

#endif /* CSM_SIMD_SMALL_TILE_F32_H */
