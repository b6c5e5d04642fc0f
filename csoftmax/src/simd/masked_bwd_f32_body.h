/*
 * simd/masked_bwd_f32_body.h -- float32 masked backward rows (where=):
 * softmax_bwd and log_softmax_bwd, written once against the lane
 * abstraction and compiled per ISA by src/avx2/masked_f32.c and
 * src/avx512/masked_f32.c.
 *
 * The row's dy is copied with the masked elements replaced by 0 (one
 * select per vector from the mask bytes), and for softmax y as well (the
 * sum of y * dy); log_softmax reads y itself, whose element i enters
 * output i only.  Whatever the masked entries hold never reaches a sum;
 * the unmasked backward row kernel of the same ISA (simd/backward_body.h)
 * runs on the copies, and the masked outputs are set to 0 after (also
 * where a non-finite kept dy made them NaN).  The
 * sums are then those of the kept elements and each kept output the
 * unmasked kernel's formula.  Rows up to MB_STACK elements copy to the
 * stack, longer ones to malloc (the scalar kernel if that fails).
 * (internal; included once, by those files, after common.h)
 */
#include <stdlib.h>

#define MB_STACK 4096

static void masked_row_copy_f32_(const float *a, const unsigned char *m,
                                 ptrdiff_t n, float fill, float *t)
{
    const V f = v_set1(fill);
    ptrdiff_t i = 0;
    for (; i + VLEN <= n; i += VLEN)
        v_store(t + i, v_select(v_keep(m + i), f, v_load(a + i)));
    for (; i < n; ++i)
        t[i] = m[i] ? a[i] : fill;
}

static void masked_row_fill_f32_(float *o, const unsigned char *m, ptrdiff_t n)
{
    const V z = v_zero();
    ptrdiff_t i = 0;
    for (; i + VLEN <= n; i += VLEN)
        v_store(o + i, v_select(v_keep(m + i), z, v_load(o + i)));
    for (; i < n; ++i)
        if (!m[i]) o[i] = 0.0f;
}

static void bwd_rows_masked_f32_(const float *y, const float *dy, float *o,
        ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride, int log)
{
    float stack[2 * MB_STACK];
    float *t = n <= MB_STACK ? stack : (float *)malloc(2 * (size_t)n * sizeof(float));
    if (t == NULL) {
        (log ? csm_log_softmax_bwd_rows_masked_f32_scalar
             : csm_softmax_bwd_rows_masked_f32_scalar)(
            y, dy, o, n_rows, n, row_stride, mask, mask_row_stride);
        return;
    }
    float *ty = t, *td = t + n;     /* (y: softmax only) */
    for (ptrdiff_t r = 0; r < n_rows; ++r) {
        const unsigned char *m = mask + r * mask_row_stride;
        float *orow = o + r * row_stride;
        masked_row_copy_f32_(dy + r * row_stride, m, n, 0.0f, td);
        if (log) {
            /* y enters output i only (dy_i - exp(y_i) s): no copy */
            SUFFIX(csm_log_softmax_bwd_rows_f32)(y + r * row_stride, td, orow, 1, n);
        } else {
            masked_row_copy_f32_(y + r * row_stride, m, n, 0.0f, ty);
            SUFFIX(csm_softmax_bwd_rows_f32)(ty, td, orow, 1, n);
        }
        masked_row_fill_f32_(orow, m, n);
    }
    if (t != stack) free(t);
}

void SUFFIX(csm_softmax_bwd_rows_masked_f32)(const float *y, const float *dy,
        float *o, ptrdiff_t n_rows, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride)
{
    bwd_rows_masked_f32_(y, dy, o, n_rows, n, row_stride, mask,
                         mask_row_stride, 0);
}

void SUFFIX(csm_log_softmax_bwd_rows_masked_f32)(const float *y,
        const float *dy, float *o, ptrdiff_t n_rows, ptrdiff_t n,
        ptrdiff_t row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride)
{
    bwd_rows_masked_f32_(y, dy, o, n_rows, n, row_stride, mask,
                         mask_row_stride, 1);
}

/* ---- along a non-last axis ------------------------------------------------
 * Blocks of up to MBC_TW columns: dy (and for softmax y; log_softmax y
 * as it is) copied into tiles of pitch MBC_TW with the masked entries set
 * to 0, the unmasked column backward kernel of the same ISA run on the
 * tiles into an output tile, which is copied out with 0 at the masked
 * elements (the output may be an input: a block is read before it is
 * written).  Masks not contiguous along the columns, blocks narrower than
 * VLEN and a failed malloc take the scalar kernel. */
#define MBC_TW 64

static void bwd_cols_masked_f32_(const float *y, const float *dy, float *o,
        ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t rs, const unsigned char *mask,
        ptrdiff_t mrs, ptrdiff_t mcs, int log)
{
    float *t = NULL;
    if (mcs == 1 && n_cols >= VLEN && n > 0)
        t = (float *)malloc(3 * (size_t)n * MBC_TW * sizeof(float));
    if (t == NULL) {
        (log ? csm_log_softmax_bwd_cols_masked_f32_scalar
             : csm_softmax_bwd_cols_masked_f32_scalar)(
            y, dy, o, n_cols, n, rs, mask, mrs, mcs);
        return;
    }
    float *ty = t, *td = t + n * MBC_TW, *to = t + 2 * n * MBC_TW;
    const V z = v_zero();
    for (ptrdiff_t j0 = 0; j0 < n_cols; j0 += MBC_TW) {
        const ptrdiff_t w = n_cols - j0 < MBC_TW ? n_cols - j0 : MBC_TW;
        for (ptrdiff_t i = 0; i < n; ++i) {
            const unsigned char *mi = mask + i * mrs + j0;
            const float *yi = y + i * rs + j0, *di = dy + i * rs + j0;
            float *tyi = ty + i * MBC_TW, *tdi = td + i * MBC_TW;
            ptrdiff_t l = 0;
            for (; l + VLEN <= w; l += VLEN) {
                const VM k = v_keep(mi + l);
                v_store(tdi + l, v_select(k, z, v_load(di + l)));
                v_store(tyi + l, log ? v_load(yi + l) : v_select(k, z, v_load(yi + l)));
            }
            for (; l < w; ++l) {
                tdi[l] = mi[l] ? di[l] : 0.0f;
                tyi[l] = (log || mi[l]) ? yi[l] : 0.0f;
            }
        }
        (log ? SUFFIX(csm_log_softmax_bwd_cols_f32)
             : SUFFIX(csm_softmax_bwd_cols_f32))(ty, td, to, w, n, MBC_TW);
        for (ptrdiff_t i = 0; i < n; ++i) {
            const unsigned char *mi = mask + i * mrs + j0;
            const float *toi = to + i * MBC_TW;
            float *oi = o + i * rs + j0;
            ptrdiff_t l = 0;
            for (; l + VLEN <= w; l += VLEN)
                v_store(oi + l, v_select(v_keep(mi + l), z, v_load(toi + l)));
            for (; l < w; ++l)
                oi[l] = mi[l] ? toi[l] : 0.0f;
        }
    }
    free(t);
}

void SUFFIX(csm_softmax_bwd_cols_masked_f32)(const float *y, const float *dy,
        float *o, ptrdiff_t n_cols, ptrdiff_t n, ptrdiff_t row_stride,
        const unsigned char *mask, ptrdiff_t mask_row_stride,
        ptrdiff_t mask_col_stride)
{
    bwd_cols_masked_f32_(y, dy, o, n_cols, n, row_stride, mask,
                         mask_row_stride, mask_col_stride, 0);
}

void SUFFIX(csm_log_softmax_bwd_cols_masked_f32)(const float *y,
        const float *dy, float *o, ptrdiff_t n_cols, ptrdiff_t n,
        ptrdiff_t row_stride, const unsigned char *mask,
        ptrdiff_t mask_row_stride, ptrdiff_t mask_col_stride)
{
    bwd_cols_masked_f32_(y, dy, o, n_cols, n, row_stride, mask,
                         mask_row_stride, mask_col_stride, 1);
}
