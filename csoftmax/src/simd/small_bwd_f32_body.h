/*
 * simd/small_bwd_f32_body.h -- the backward (vector-Jacobian products) of
 * softmax / log_softmax over float32 short rows (n <= CSM_SMALL_MAX),
 * VLEN rows a group in the lanes of V (the tiles smallv_load_f32_ /
 * smallv_out_f32_: 16x8 on AVX-512, avx512/small.h; 8x8 on AVX2,
 * avx2/small.h), for contiguous rows as the row kernels
 * (simd/backward_body.h) take them.
 *
 * For short rows those row kernels are dominated by what every row costs
 * whatever its length -- masked tails, the horizontal sum, the dependency
 * of the write pass on it: about 9 ns a row on AMD Zen4 (softmax_backward
 * 262144 x 10, 0.92 ns/element; rows of 4, 2.4).  Here a group's sums are
 * vertical, one per lane.
 *
 * Per lane the row kernels' arithmetic: float64 lanes; softmax s = sum
 * y_i dy_i (exact products, float64 sums), y (dy - s); log_softmax s = sum
 * dy_i, dy - exp(y) s as one fused multiply-add with exp_mid_ (lsb_f32_);
 * each result rounded once to float32.  Only the order of the float64 sum
 * differs (two accumulators per half, in element order, against the row
 * kernels' four and a horizontal sum): the results agree with theirs to
 * the backward contract, not bit for bit.  log_softmax: lanes holding
 * y > 0 or a NaN are not stored and are redone by the scalar row kernel
 * (libm exp, IEEE propagation), as the row kernels do such a row; so a
 * row's result never depends on the rows around it.  Partial groups
 * repeat their first row in the unused lanes, never stored.  o may be y or
 * dy: a group is read whole before it is written.
 * (internal; included by avx2/small_f32.c and avx512/small_f32.c after
 * small.h)
 */

#if VLEN == 16
#define SMALLB_NLE0_BITS_(a) \
    ((int)_mm512_cmp_ps_mask(a, _mm512_setzero_ps(), _CMP_NLE_UQ))
#else
#define SMALLB_NLE0_BITS_(a) \
    _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_NLE_UQ))
#endif

static inline __attribute__((always_inline)) void
smallv_bwd_f32_(const float *y, const float *dy, float *o, ptrdiff_t n_rows,
                ptrdiff_t n, const int LOG)
{
    V Y[SMALL_COLS], G[SMALL_COLS];
    VD Yd[2 * SMALL_COLS], Gd[2 * SMALL_COLS];  /* low, high half of each */
    for (ptrdiff_t g = 0; g < n_rows; g += VLEN) {
        const ptrdiff_t w = n_rows - g < VLEN ? n_rows - g : VLEN;
        const float *py[VLEN], *pg[VLEN];
        float *q[VLEN];
        for (int k = 0; k < VLEN; ++k) {
            const ptrdiff_t r = g + (k < w ? k : 0);
            py[k] = y + r * n;
            pg[k] = dy + r * n;
            q[k] = o + r * n;
        }
        smallv_load_f32_(py, n, Y);
        smallv_load_f32_(pg, n, G);
        /* widened once for both loops, summed in two accumulators per
         * half */
        VD a0 = vd_zero(), a1 = a0, b0 = a0, b1 = a0;
        int bad = 0;
        ptrdiff_t i = 0;
        for (; i < n; ++i) {
            const V yi = Y[i], gi = G[i];
            Yd[2 * i] = v_lo_pd(yi);
            Yd[2 * i + 1] = v_hi_pd(yi);
            Gd[2 * i] = v_lo_pd(gi);
            Gd[2 * i + 1] = v_hi_pd(gi);
            if (LOG) bad |= SMALLB_NLE0_BITS_(yi);
        }
        for (i = 0; i + 2 <= n; i += 2) {
            if (LOG) {
                a0 = vd_add(a0, Gd[2 * i]);
                a1 = vd_add(a1, Gd[2 * i + 1]);
                b0 = vd_add(b0, Gd[2 * i + 2]);
                b1 = vd_add(b1, Gd[2 * i + 3]);
            } else {
                a0 = vd_fmadd(Yd[2 * i], Gd[2 * i], a0);
                a1 = vd_fmadd(Yd[2 * i + 1], Gd[2 * i + 1], a1);
                b0 = vd_fmadd(Yd[2 * i + 2], Gd[2 * i + 2], b0);
                b1 = vd_fmadd(Yd[2 * i + 3], Gd[2 * i + 3], b1);
            }
        }
        if (i < n) {
            if (LOG) {
                a0 = vd_add(a0, Gd[2 * i]);
                a1 = vd_add(a1, Gd[2 * i + 1]);
            } else {
                a0 = vd_fmadd(Yd[2 * i], Gd[2 * i], a0);
                a1 = vd_fmadd(Yd[2 * i + 1], Gd[2 * i + 1], a1);
            }
        }
        const VD s0 = vd_add(a0, b0), s1 = vd_add(a1, b1);
        for (i = 0; i < n; ++i) {
            if (LOG)
                G[i] = v_from_pd(lsb_f32_(Yd[2 * i], s0, Gd[2 * i]),
                                 lsb_f32_(Yd[2 * i + 1], s1, Gd[2 * i + 1]));
            else
                G[i] = v_from_pd(vd_mul(Yd[2 * i], vd_sub(Gd[2 * i], s0)),
                                 vd_mul(Yd[2 * i + 1], vd_sub(Gd[2 * i + 1], s1)));
        }
        const int wm = (int)((1u << w) - 1);
        if (~bad & wm) smallv_out_f32_(G, n, q, ~bad & wm);
        for (unsigned redo = (unsigned)(bad & wm); redo; redo &= redo - 1) {
            const int k = __builtin_ctz(redo);
            csm_log_softmax_bwd_rows_f32_scalar(py[k], pg[k], q[k], 1, n);
        }
    }
}

#ifndef CSM_BWD_SMALL_SOFTMAX_FROM_AVX2    /* see avx512/small_f32.c */
void SUFFIX(csm_softmax_bwd_small_f32)(const float *y, const float *dy, float *o,
                                       ptrdiff_t n_rows, ptrdiff_t n)
{
    smallv_bwd_f32_(y, dy, o, n_rows, n, 0);
}
#endif

void SUFFIX(csm_log_softmax_bwd_small_f32)(const float *y, const float *dy,
                                           float *o, ptrdiff_t n_rows, ptrdiff_t n)
{
    smallv_bwd_f32_(y, dy, o, n_rows, n, 1);
}
