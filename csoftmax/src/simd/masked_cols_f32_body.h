/*
 * simd/masked_cols_f32_body.h -- float32 masked columns (where= along a
 * non-last axis), written once against the lane abstraction and compiled
 * per ISA by src/avx2/masked_f32.c and src/avx512/masked_f32.c.
 *
 * A block of up to MC_TW columns is copied into a contiguous tile with
 * the masked elements replaced by -inf for the reduction, by the column's
 * max for the write pass (mask bytes -> lane masks, one select per
 * vector); the unmasked column kernels of the same ISA
 * (simd/cols_f32_body.h) then run on the tile.  For a column whose kept
 * elements are finite this is exactly the masked reduction: a -inf term is
 * below every clamp and never equals the finite max, so the state (max,
 * count, rest) is that of the kept elements.  Where it is not -- a kept
 * NaN or +-inf, nothing kept, every kept element -inf: a non-finite max --
 * only the count differs (the masked -inf counted with a -inf max): max +
 * log_sum is the same NaN / +inf / -inf, and the write pass gives the kept
 * elements the same NaN / 0 as the scalar masked kernel (with the masked
 * ones at the max, +inf or -inf, they are NaN or 0 as well).  Every masked
 * output is then set to 0 (softmax) or -inf (log_softmax), whatever the
 * tile gave there.
 * Mask bytes that are not contiguous along the columns (a mask broadcast
 * over them) and blocks narrower than VLEN take the scalar kernels.
 * (internal; included once, by those files, after common.h)
 */
#include <stdlib.h>

#define MC_TW 64            /* columns per tile (the Cython blocks' width) */
#define MC_STACK 8192       /* floats of tile on the stack; larger: malloc */

/* t[i * MC_TW + l] = x[i * rs + l] if kept else f[l], l < w (rows n) */
static void masked_cols_tile_f32_(const float *x, ptrdiff_t w, ptrdiff_t n,
                                  ptrdiff_t rs, const unsigned char *mask,
                                  ptrdiff_t mrs, const float *f, float *t)
{
    for (ptrdiff_t i = 0; i < n; ++i) {
        const float *xi = x + i * rs;
        const unsigned char *mi = mask + i * mrs;
        float *ti = t + i * MC_TW;
        ptrdiff_t l = 0;
        for (; l + VLEN <= w; l += VLEN)
            v_store(ti + l, v_select(v_keep(mi + l), v_load(f + l), v_load(xi + l)));
        for (; l < w; ++l)
            ti[l] = mi[l] ? xi[l] : f[l];
    }
}

static float *masked_cols_buf_(ptrdiff_t n, float *stack)
{
    if (n * MC_TW <= MC_STACK) return stack;
    return (float *)malloc((size_t)n * MC_TW * sizeof(float));
}

void SUFFIX(csm_lse_cols_masked_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        csm_lse_state *states)
{
    float stack[MC_STACK];
    float *t = NULL;
    if (mask_col_stride == 1 && n_cols >= VLEN && n > 0)
        t = masked_cols_buf_(n, stack);
    if (t == NULL) {
        csm_lse_cols_masked_f32_scalar(x, n_cols, n, row_stride, mask,
                                       mask_row_stride, mask_col_stride, scale,
                                       states);
        return;
    }
    float ninf[MC_TW];
    for (int l = 0; l < MC_TW; ++l) ninf[l] = -INFINITY;
    for (ptrdiff_t j0 = 0; j0 < n_cols; j0 += MC_TW) {
        const ptrdiff_t w = n_cols - j0 < MC_TW ? n_cols - j0 : MC_TW;
        masked_cols_tile_f32_(x + j0, w, n, row_stride, mask + j0,
                              mask_row_stride, ninf, t);
        SUFFIX(csm_lse_cols_f32)(t, w, n, MC_TW, scale, states + j0);
    }
    if (t != stack) free(t);
}

static void write_cols_masked_f32_(const float *x, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        const double *max, const double *log_sum, double alpha, float *y,
        ptrdiff_t y_row_stride, int log)
{
    float stack[MC_STACK];
    float *t = NULL;
    if (mask_col_stride == 1 && n_cols >= VLEN && n > 0)
        t = masked_cols_buf_(n, stack);
    if (t == NULL) {
        (log ? csm_log_softmax_cols_masked_f32_scalar
             : csm_softmax_cols_masked_f32_scalar)(
            x, n_cols, n, x_row_stride, mask, mask_row_stride, mask_col_stride,
            scale, max, log_sum, alpha, y, y_row_stride);
        return;
    }
    const V fill = v_set1(log ? -INFINITY : 0.0f);
    float mf[MC_TW];
    for (ptrdiff_t j0 = 0; j0 < n_cols; j0 += MC_TW) {
        const ptrdiff_t w = n_cols - j0 < MC_TW ? n_cols - j0 : MC_TW;
        /* masked elements -> the column max (a float32 of the column; a
         * -inf there would make the write pass compute subnormal terms,
         * 4x slower from the assists), overwritten below */
        for (ptrdiff_t l = 0; l < MC_TW; ++l)
            mf[l] = l < w ? (float)max[j0 + l] : 0.0f;
        masked_cols_tile_f32_(x + j0, w, n, x_row_stride, mask + j0,
                              mask_row_stride, mf, t);
        (log ? SUFFIX(csm_log_softmax_cols_f32) : SUFFIX(csm_softmax_cols_f32))(
            t, w, n, MC_TW, scale, max + j0, log_sum + j0, alpha, y + j0,
            y_row_stride);
        /* the masked outputs, whatever the tile's max gave there */
        for (ptrdiff_t i = 0; i < n; ++i) {
            const unsigned char *mi = mask + i * mask_row_stride + j0;
            float *yi = y + i * y_row_stride + j0;
            ptrdiff_t l = 0;
            for (; l + VLEN <= w; l += VLEN)
                v_store(yi + l, v_select(v_keep(mi + l), fill, v_load(yi + l)));
            for (; l < w; ++l)
                if (!mi[l]) yi[l] = log ? -INFINITY : 0.0f;
        }
    }
    if (t != stack) free(t);
}

void SUFFIX(csm_softmax_cols_masked_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        const double *max, const double *log_sum, double alpha, float *y,
        ptrdiff_t y_row_stride)
{
    write_cols_masked_f32_(x, n_cols, n, x_row_stride, mask, mask_row_stride,
                           mask_col_stride, scale, max, log_sum, alpha, y,
                           y_row_stride, 0);
}

void SUFFIX(csm_log_softmax_cols_masked_f32)(const float *x, ptrdiff_t n_cols,
        ptrdiff_t n, ptrdiff_t x_row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride, double scale,
        const double *max, const double *log_sum, double alpha, float *y,
        ptrdiff_t y_row_stride)
{
    write_cols_masked_f32_(x, n_cols, n, x_row_stride, mask, mask_row_stride,
                           mask_col_stride, scale, max, log_sum, alpha, y,
                           y_row_stride, 1);
}
