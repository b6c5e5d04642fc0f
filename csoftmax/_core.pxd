# Cython-level API of csoftmax (issue #6, section 4).
#
# Two layers, both usable without the GIL from another extension's own
# `prange` loops:
#
# 1. Row functions defined in _core.pyx and exported the Cython way (through
#    the module's __pyx_capi__ capsules, looked up when the downstream module
#    is imported -- no linking against _core's .so is needed):
#
#        lse_rows_f32/_f64          LSE(scale * x_r) of each row -> double out[r]
#        softmax_rows_f32/_f64      y_r = softmax(scale * x_r)
#        log_softmax_rows_f32/_f64  y_r = log_softmax(scale * x_r)
#        lse_rows / softmax_rows / log_softmax_rows   fused (float/double)
#        kernel_table()             the dispatched csm_kernel_table itself
#
#    Arguments: pointer, number of rows, row length n, row stride (elements
#    between row starts; elements within a row are contiguous), scale =
#    1/temperature > 0, then the outputs.  They run on the calling thread
#    (csoftmax starts no threads inside them), never allocate, hold no
#    locks, and go through the same ISA-dispatched kernel table as the
#    Python functions (AVX-512, AVX2+FMA or scalar, chosen once from CPUID, or by
#    CSOFTMAX_ISA; see csoftmax.h), with the same accuracy.  One row per
#    call gives bit for bit what csoftmax.softmax(x[r]) gives with one
#    thread (with more, csoftmax.softmax splits a row of 32768 elements or
#    more across the threads and may round the last bits differently); the
#    AVX2 kernels may round the last bit differently when rows are grouped
#    differently.  lse_rows returns LSE(scale * x) = scale*max + log(sum) in
#    double (for float32 rows it is accurate to float32 precision).
#    Usage:  `from csoftmax cimport softmax_rows_f64` (or `cimport csoftmax`
#    and `csoftmax.softmax_rows_f64(...)`), compiled with
#    include_dirs=[csoftmax.get_include()].
#
# 2. The C declarations of csoftmax/include/csoftmax.h (types, the kernel
#    table layout, the inline csm_lse_merge).  csm_kernels() & co. are C
#    functions inside _core's shared object and are NOT linkable from
#    another extension: reach the table through kernel_table() instead.
from cython cimport floating

cdef extern from "csoftmax.h" nogil:
    ctypedef enum csm_isa:
        CSM_ISA_SCALAR
        CSM_ISA_AVX2
        CSM_ISA_NEON
        CSM_ISA_AVX512

    ctypedef struct csm_lse_state:
        double max
        double count
        double rest

    ctypedef void (*csm_lse_rows_f32)(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                                      Py_ssize_t row_stride, double scale,
                                      csm_lse_state *states) noexcept nogil
    ctypedef void (*csm_lse_rows_f64)(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                                      Py_ssize_t row_stride, double scale,
                                      csm_lse_state *states) noexcept nogil
    ctypedef void (*csm_write_rows_f32)(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                                        Py_ssize_t x_row_stride, double scale,
                                        const double *max, const double *log_sum,
                                        double alpha, float *y,
                                        Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_write_rows_f64)(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                                        Py_ssize_t x_row_stride, double scale,
                                        const double *max, const double *log_sum,
                                        double alpha, double *y,
                                        Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_finalize_fn)(const csm_lse_state *states, Py_ssize_t n,
                                     double scale, double *max,
                                     double *log_sum) noexcept nogil

    ctypedef void (*csm_bwd_rows_f32)(const float *y, const float *dy, float *o,
                                      Py_ssize_t n_rows, Py_ssize_t n) noexcept nogil
    ctypedef void (*csm_bwd_rows_f64)(const double *y, const double *dy, double *o,
                                      Py_ssize_t n_rows, Py_ssize_t n) noexcept nogil
    int CSM_SMALL_MAX
    ctypedef void (*csm_lse_small_f32)(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                                       Py_ssize_t row_stride, double scale, int for_lse,
                                       double *max, double *log_sum) noexcept nogil
    ctypedef void (*csm_lse_small_f64)(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                                       Py_ssize_t row_stride, double scale, int for_lse,
                                       double *max, double *log_sum) noexcept nogil
    ctypedef void (*csm_small_rows_f32)(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                                        Py_ssize_t x_row_stride, double scale, float *y,
                                        Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_small_rows_f64)(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                                        Py_ssize_t x_row_stride, double scale, double *y,
                                        Py_ssize_t y_row_stride) noexcept nogil

    ctypedef void (*csm_softmax_fused_rows_f32)(const float *x, Py_ssize_t n_rows,
                                                Py_ssize_t n, Py_ssize_t x_row_stride,
                                                double scale, double alpha, float *y,
                                                Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_softmax_fused_rows_f64)(const double *x, Py_ssize_t n_rows,
                                                Py_ssize_t n, Py_ssize_t x_row_stride,
                                                double scale, double alpha, double *y,
                                                Py_ssize_t y_row_stride) noexcept nogil

    ctypedef void (*csm_lse_store_rows_f32)(const float *x, Py_ssize_t n_rows,
                                            Py_ssize_t n, Py_ssize_t x_row_stride,
                                            double scale, csm_lse_state *states,
                                            float *e, Py_ssize_t e_row_stride) noexcept nogil

    ctypedef void (*csm_lse_store_rows_f64)(const double *x, Py_ssize_t n_rows,
                                            Py_ssize_t n, Py_ssize_t x_row_stride,
                                            double scale, csm_lse_state *states,
                                            double *e, Py_ssize_t e_row_stride) noexcept nogil
    ctypedef void (*csm_copy_rows_f32)(float *d, Py_ssize_t d_row_stride,
                                       const float *s, Py_ssize_t s_row_stride,
                                       Py_ssize_t n_rows, Py_ssize_t n) noexcept nogil
    ctypedef void (*csm_lse_rows_pw_f32)(const float *x, Py_ssize_t n_rows,
                                         Py_ssize_t n, Py_ssize_t row_stride,
                                         double scale, csm_lse_state *states,
                                         const float *w, Py_ssize_t w_row_stride) noexcept nogil
    ctypedef void (*csm_lse_rows_pw_f64)(const double *x, Py_ssize_t n_rows,
                                         Py_ssize_t n, Py_ssize_t row_stride,
                                         double scale, csm_lse_state *states,
                                         const double *w, Py_ssize_t w_row_stride) noexcept nogil

    ctypedef void (*csm_ce_small_f32)(const float *x, Py_ssize_t n_rows,
                                      Py_ssize_t n, Py_ssize_t x_row_stride,
                                      double scale, const double *a,
                                      const int *t, double *lp, float *y,
                                      Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_ce_small_f64)(const double *x, Py_ssize_t n_rows,
                                      Py_ssize_t n, Py_ssize_t x_row_stride,
                                      double scale, const double *a,
                                      const int *t, double *lp, double *y,
                                      Py_ssize_t y_row_stride) noexcept nogil

    ctypedef void (*csm_expm1_le0_f64)(const double *t, double *out,
                                       Py_ssize_t n) noexcept nogil

    ctypedef void (*csm_ce_soft_sums_f32)(const float *x, Py_ssize_t n_rows,
                                          Py_ssize_t n, Py_ssize_t x_row_stride,
                                          const double *max, const float *q,
                                          Py_ssize_t q_row_stride, const double *w,
                                          double cq, double c0, double *A,
                                          double *B) noexcept nogil
    ctypedef void (*csm_ce_soft_f32)(const float *x, Py_ssize_t n_rows,
                                     Py_ssize_t n, Py_ssize_t x_row_stride,
                                     double scale, const double *max,
                                     const double *log_sum, const double *a,
                                     const float *q, Py_ssize_t q_row_stride,
                                     const double *w, double cq, double c0,
                                     float *g, Py_ssize_t g_row_stride,
                                     double *sum) noexcept nogil
    ctypedef void (*csm_ce_soft_fix_f32)(float *g, Py_ssize_t n_rows, Py_ssize_t n,
                                         Py_ssize_t g_row_stride, const float *q,
                                         Py_ssize_t q_row_stride, const double *w,
                                         double cq, double c0,
                                         const double *sum) noexcept nogil

    ctypedef void (*csm_bwd_cols_f32)(const float *y, const float *dy, float *o,
                                      Py_ssize_t n_cols, Py_ssize_t n,
                                      Py_ssize_t row_stride) noexcept nogil
    ctypedef void (*csm_bwd_cols_f64)(const double *y, const double *dy, double *o,
                                      Py_ssize_t n_cols, Py_ssize_t n,
                                      Py_ssize_t row_stride) noexcept nogil

    # half precision <-> float32 rows (16-bit data as bit patterns)
    ctypedef void (*csm_cvt_h2f)(const unsigned short *x, Py_ssize_t n_rows,
                                 Py_ssize_t n, Py_ssize_t x_row_stride, float *y,
                                 Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_cvt_f2h)(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                                 Py_ssize_t x_row_stride, unsigned short *y,
                                 Py_ssize_t y_row_stride) noexcept nogil
    # masked kernels (where=)
    ctypedef void (*csm_lse_rows_masked_f32)(const float *x, Py_ssize_t n_rows,
            Py_ssize_t n, Py_ssize_t row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, double scale,
            csm_lse_state *states, const float *w, Py_ssize_t w_row_stride) noexcept nogil
    ctypedef void (*csm_lse_rows_masked_f64)(const double *x, Py_ssize_t n_rows,
            Py_ssize_t n, Py_ssize_t row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, double scale,
            csm_lse_state *states, const double *w, Py_ssize_t w_row_stride) noexcept nogil
    ctypedef void (*csm_write_rows_masked_f32)(const float *x, Py_ssize_t n_rows,
            Py_ssize_t n, Py_ssize_t x_row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, double scale, const double *max,
            const double *log_sum, double alpha, float *y,
            Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_write_rows_masked_f64)(const double *x, Py_ssize_t n_rows,
            Py_ssize_t n, Py_ssize_t x_row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, double scale, const double *max,
            const double *log_sum, double alpha, double *y,
            Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_softmax_fused_rows_masked_f32)(const float *x,
            Py_ssize_t n_rows, Py_ssize_t n, Py_ssize_t x_row_stride,
            const unsigned char *mask, Py_ssize_t mask_row_stride, double scale,
            double alpha, float *y, Py_ssize_t y_row_stride,
            csm_lse_state *states) noexcept nogil
    ctypedef void (*csm_lse_cols_masked_f32)(const float *x, Py_ssize_t n_cols,
            Py_ssize_t n, Py_ssize_t row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, Py_ssize_t mask_col_stride, double scale,
            csm_lse_state *states) noexcept nogil
    ctypedef void (*csm_lse_cols_masked_f64)(const double *x, Py_ssize_t n_cols,
            Py_ssize_t n, Py_ssize_t row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, Py_ssize_t mask_col_stride, double scale,
            csm_lse_state *states) noexcept nogil
    ctypedef void (*csm_write_cols_masked_f32)(const float *x, Py_ssize_t n_cols,
            Py_ssize_t n, Py_ssize_t x_row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, Py_ssize_t mask_col_stride, double scale,
            const double *max, const double *log_sum, double alpha, float *y,
            Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_write_cols_masked_f64)(const double *x, Py_ssize_t n_cols,
            Py_ssize_t n, Py_ssize_t x_row_stride, const unsigned char *mask,
            Py_ssize_t mask_row_stride, Py_ssize_t mask_col_stride, double scale,
            const double *max, const double *log_sum, double alpha, double *y,
            Py_ssize_t y_row_stride) noexcept nogil
    ctypedef void (*csm_bwd_rows_masked_f32)(const float *y, const float *dy, float *o,
            Py_ssize_t n_rows, Py_ssize_t n, Py_ssize_t row_stride,
            const unsigned char *mask, Py_ssize_t mask_row_stride) noexcept nogil
    ctypedef void (*csm_bwd_rows_masked_f64)(const double *y, const double *dy, double *o,
            Py_ssize_t n_rows, Py_ssize_t n, Py_ssize_t row_stride,
            const unsigned char *mask, Py_ssize_t mask_row_stride) noexcept nogil
    ctypedef void (*csm_bwd_cols_masked_f32)(const float *y, const float *dy, float *o,
            Py_ssize_t n_cols, Py_ssize_t n, Py_ssize_t row_stride,
            const unsigned char *mask, Py_ssize_t mask_row_stride,
            Py_ssize_t mask_col_stride) noexcept nogil

    # the kernel list at run time (dispatch.c)
    int csm_kernel_count()
    const char *csm_kernel_name(int i)
    int csm_isa_request_error()
    # the streaming-store hint of the column tile kernels (per thread)
    void csm_set_stream_stores(int on) noexcept nogil
    int csm_stream_stores() noexcept nogil
    int csm_page_resident(const void *p) noexcept nogil
    void csm_lse_merge(csm_lse_state *a, const csm_lse_state *b, double scale)

# csm_kernel_table: its members are the lines of csoftmax_kernels.def
# (generated at build time by csoftmax/src/gen_kernel_list.py)
include "_kernel_table.pxi"

cdef extern from "csoftmax.h" nogil:
    const csm_kernel_table *csm_kernels()
    const csm_kernel_table *csm_kernels_for(csm_isa isa)
    int csm_kernel_present(const csm_kernel_table *t, int i)



# ---- exported row functions (defined in _core.pyx) -------------------------

cdef const csm_kernel_table *kernel_table() noexcept nogil

cdef void lse_rows_f32(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                       Py_ssize_t row_stride, double scale,
                       double *out) noexcept nogil
cdef void lse_rows_f64(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                       Py_ssize_t row_stride, double scale,
                       double *out) noexcept nogil
cdef void softmax_rows_f32(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                           Py_ssize_t x_row_stride, double scale, float *y,
                           Py_ssize_t y_row_stride) noexcept nogil
cdef void softmax_rows_f64(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                           Py_ssize_t x_row_stride, double scale, double *y,
                           Py_ssize_t y_row_stride) noexcept nogil
cdef void log_softmax_rows_f32(const float *x, Py_ssize_t n_rows, Py_ssize_t n,
                               Py_ssize_t x_row_stride, double scale, float *y,
                               Py_ssize_t y_row_stride) noexcept nogil
cdef void log_softmax_rows_f64(const double *x, Py_ssize_t n_rows, Py_ssize_t n,
                               Py_ssize_t x_row_stride, double scale, double *y,
                               Py_ssize_t y_row_stride) noexcept nogil

# Cross-entropy of one contiguous row with a hard label, and its gradient:
#   returns loss = LSE(scale*x) - scale*x[target]   (NaN if target not in [0, n))
#   if grad != NULL: grad = grad_scale * d loss / d x
#                         = grad_scale * scale * (softmax(scale*x) - onehot(target))
#   (x is read twice: once for max+sum, once for the gradient write; grad may be x).
cdef double cross_entropy_row_f32(const float *x, Py_ssize_t n, Py_ssize_t target,
                                  double scale, float *grad,
                                  double grad_scale) noexcept nogil
cdef double cross_entropy_row_f64(const double *x, Py_ssize_t n, Py_ssize_t target,
                                  double scale, double *grad,
                                  double grad_scale) noexcept nogil


# fused conveniences (compiled into the caller, no extra indirection)

cdef inline void lse_rows(const floating *x, Py_ssize_t n_rows, Py_ssize_t n,
                          Py_ssize_t row_stride, double scale,
                          double *out) noexcept nogil:
    if floating is float:
        lse_rows_f32(x, n_rows, n, row_stride, scale, out)
    else:
        lse_rows_f64(x, n_rows, n, row_stride, scale, out)

cdef inline void softmax_rows(const floating *x, Py_ssize_t n_rows, Py_ssize_t n,
                              Py_ssize_t x_row_stride, double scale, floating *y,
                              Py_ssize_t y_row_stride) noexcept nogil:
    if floating is float:
        softmax_rows_f32(x, n_rows, n, x_row_stride, scale, y, y_row_stride)
    else:
        softmax_rows_f64(x, n_rows, n, x_row_stride, scale, y, y_row_stride)

cdef inline void log_softmax_rows(const floating *x, Py_ssize_t n_rows, Py_ssize_t n,
                                  Py_ssize_t x_row_stride, double scale, floating *y,
                                  Py_ssize_t y_row_stride) noexcept nogil:
    if floating is float:
        log_softmax_rows_f32(x, n_rows, n, x_row_stride, scale, y, y_row_stride)
    else:
        log_softmax_rows_f64(x, n_rows, n, x_row_stride, scale, y, y_row_stride)
