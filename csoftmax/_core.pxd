# Cython declarations of the public C API (csoftmax/include/csoftmax.h).
# Other Cython extensions can `cimport csoftmax._core` to reach the kernels.

cdef extern from "csoftmax.h" nogil:
    ctypedef enum csm_isa:
        CSM_ISA_SCALAR
        CSM_ISA_AVX2

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

    ctypedef struct csm_kernel_table:
        csm_isa isa
        const char *name
        csm_lse_rows_f32 lse_rows_f32
        csm_lse_rows_f64 lse_rows_f64
        csm_lse_rows_f32 lse_cols_f32
        csm_lse_rows_f64 lse_cols_f64
        csm_write_rows_f32 softmax_rows_f32
        csm_write_rows_f64 softmax_rows_f64
        csm_write_rows_f32 log_softmax_rows_f32
        csm_write_rows_f64 log_softmax_rows_f64
        csm_write_rows_f32 softmax_cols_f32
        csm_write_rows_f64 softmax_cols_f64
        csm_write_rows_f32 log_softmax_cols_f32
        csm_write_rows_f64 log_softmax_cols_f64
        csm_finalize_fn finalize

    const csm_kernel_table *csm_kernels()
    const csm_kernel_table *csm_kernels_for(csm_isa isa)
    int csm_isa_request_error()
    void csm_lse_merge(csm_lse_state *a, const csm_lse_state *b, double scale)


cdef extern from "omp_compat.h" nogil:
    int CSM_HAVE_OPENMP
    int omp_get_max_threads()
