# where= masks: the drivers and entry points of the MASKED_ROWS and
# MASKED_COLS paths (included into _core.pyx after the planner).
#
# The mask is a byte array (numpy bool, or uint8 / int8: nonzero keeps an
# element) read by the kernels in the same pass as x (csoftmax.h, "Masked
# row kernels"); nothing of the size of x is allocated here.
#   rows:    x (rows, n) with contiguous rows, mask (rows, n) with a unit
#            element stride and any row stride (0: one mask for all rows);
#   columns: x (outer, n, inner) with contiguous inner, mask (outer, n,
#            inner) with any strides (0 where it broadcasts); float32 on
#            the SIMD tables copies blocks through tiles into the unmasked
#            column kernels (src/simd/masked_cols_f32_body.h), float64
#            and masks broadcast over the columns take the scalar ones.
#   backward: y, dy, out C-contiguous (outer, n, inner); inner == 1 takes
#            the masked backward row kernels, else the masked backward
#            column kernels (float32) or a Cython loop (float64).

cdef inline void _lse_rows_m(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                             Py_ssize_t rs, const unsigned char *m,
                             Py_ssize_t mrs, double scale, csm_lse_state *st,
                             const floating *w, Py_ssize_t wrs) noexcept nogil:
    if floating is float:
        _tab.lse_rows_masked_f32(x, rows, n, rs, m, mrs, scale, st, w, wrs)
    else:
        _tab.lse_rows_masked_f64(x, rows, n, rs, m, mrs, scale, st, w, wrs)

cdef inline void _write_rows_m(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                               Py_ssize_t xrs, const unsigned char *m,
                               Py_ssize_t mrs, double scale, const double *mx,
                               const double *ls, double alpha, floating *y,
                               Py_ssize_t yrs, bint log) noexcept nogil:
    if floating is float:
        if log:
            _tab.log_softmax_rows_masked_f32(x, rows, n, xrs, m, mrs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_rows_masked_f32(x, rows, n, xrs, m, mrs, scale, mx, ls, alpha, y, yrs)
    else:
        if log:
            _tab.log_softmax_rows_masked_f64(x, rows, n, xrs, m, mrs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_rows_masked_f64(x, rows, n, xrs, m, mrs, scale, mx, ls, alpha, y, yrs)


cdef void _masked_rows_block(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                             Py_ssize_t xrs, const unsigned char *m,
                             Py_ssize_t mrs, double scale, double alpha,
                             floating *y, Py_ssize_t yrs, int op, int path,
                             double *mx_out, double *ls_out) noexcept nogil:
    cdef csm_lse_state st[ROW_BLOCK]
    cdef double mx[ROW_BLOCK]
    cdef double ls[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, k
    if floating is float:
        if path == PATH_MASKED_FUSED:
            _tab.softmax_fused_rows_masked_f32(x, rows, n, xrs, m, mrs, scale,
                                               alpha, y, yrs, NULL)
            return
    while r0 < rows:
        k = min(ROW_BLOCK, rows - r0)
        # the write pass's destination is fetched during the reduction
        # (as TWO_PASS_PREFETCH) while a row is short enough to stay cached
        # (MASKED_PREFETCH_MAX: the 4 MiB rule of fresh pages, not re-measured)
        _lse_rows_m(x + r0 * xrs, k, n, xrs, m + r0 * mrs, mrs, scale, st,
                    y + r0 * yrs if (y != NULL and n * sizeof(floating) <= MASKED_PREFETCH_MAX)
                    else <floating *>NULL, yrs)
        if op == OP_LSE:
            _tab.finalize(st, k, scale, mx_out + r0, ls_out + r0)
        else:
            _tab.finalize(st, k, scale, mx, ls)
            _write_rows_m(x + r0 * xrs, k, n, xrs, m + r0 * mrs, mrs, scale, mx,
                          ls, alpha, y + r0 * yrs, yrs, op == OP_LOG_SOFTMAX)
        r0 += k


cdef void _masked_rows_run(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                           Py_ssize_t xrs, const unsigned char *m,
                           Py_ssize_t mrs, double scale, double alpha,
                           floating *y, Py_ssize_t yrs, const csm_plan *pl,
                           double *mx_out, double *ls_out) noexcept nogil:
    cdef int op = pl.op, nth = pl.threads
    cdef Py_ssize_t per = pl.block, nblocks = (rows + per - 1) // per, b, r0
    if nth <= 1:
        _note_serial()
        for b in range(nblocks):
            r0 = b * per
            _masked_rows_block(x + r0 * xrs, min(per, rows - r0), n, xrs,
                               m + r0 * mrs, mrs, scale, alpha,
                               y + r0 * yrs if y != NULL else y, yrs, op, pl.path,
                               mx_out + r0 if mx_out != NULL else mx_out,
                               ls_out + r0 if ls_out != NULL else ls_out)
        return
    for b in prange(nblocks, num_threads=nth, schedule='static'):
        if b == 0:
            _note_team()
        r0 = b * per
        _masked_rows_block(x + r0 * xrs, min(per, rows - r0), n, xrs,
                           m + r0 * mrs, mrs, scale, alpha,
                           y + r0 * yrs if y != NULL else y, yrs, op, pl.path,
                           mx_out + r0 if mx_out != NULL else mx_out,
                           ls_out + r0 if ls_out != NULL else ls_out)


cdef void _masked_cols_block(const floating *x, Py_ssize_t cols, Py_ssize_t n,
                             Py_ssize_t xrs, const unsigned char *m,
                             Py_ssize_t mrs, Py_ssize_t mcs, double scale,
                             double alpha, floating *y, Py_ssize_t yrs, int op,
                             double *mx_out, double *ls_out) noexcept nogil:
    cdef csm_lse_state st[COL_BLOCK]
    cdef double mx[COL_BLOCK]
    cdef double ls[COL_BLOCK]
    if floating is float:
        _tab.lse_cols_masked_f32(x, cols, n, xrs, m, mrs, mcs, scale, st)
    else:
        _tab.lse_cols_masked_f64(x, cols, n, xrs, m, mrs, mcs, scale, st)
    if op == OP_LSE:
        _tab.finalize(st, cols, scale, mx_out, ls_out)
        return
    _tab.finalize(st, cols, scale, mx, ls)
    if floating is float:
        if op == OP_LOG_SOFTMAX:
            _tab.log_softmax_cols_masked_f32(x, cols, n, xrs, m, mrs, mcs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_cols_masked_f32(x, cols, n, xrs, m, mrs, mcs, scale, mx, ls, alpha, y, yrs)
    else:
        if op == OP_LOG_SOFTMAX:
            _tab.log_softmax_cols_masked_f64(x, cols, n, xrs, m, mrs, mcs, scale, mx, ls, alpha, y, yrs)
        else:
            _tab.softmax_cols_masked_f64(x, cols, n, xrs, m, mrs, mcs, scale, mx, ls, alpha, y, yrs)


cdef void _masked_cols_run(const floating *x, Py_ssize_t outer, Py_ssize_t n,
                           Py_ssize_t inner, Py_ssize_t xos, Py_ssize_t xrs,
                           const unsigned char *m, Py_ssize_t mos,
                           Py_ssize_t mrs, Py_ssize_t mcs, double scale,
                           double alpha, floating *y, Py_ssize_t yos,
                           Py_ssize_t yrs, const csm_plan *pl, double *mx_out,
                           double *ls_out) noexcept nogil:
    cdef int op = pl.op, nth = pl.threads
    cdef Py_ssize_t cb = pl.block
    cdef Py_ssize_t nb = (inner + cb - 1) // cb
    cdef Py_ssize_t units = outer * nb, u, o, j0
    if nth <= 1:
        _note_serial()
        for u in range(units):
            o = u // nb
            j0 = (u % nb) * cb
            _masked_cols_block(x + o * xos + j0, min(cb, inner - j0), n, xrs,
                               m + o * mos + j0 * mcs, mrs, mcs, scale, alpha,
                               y + o * yos + j0 if y != NULL else y, yrs, op,
                               mx_out + o * inner + j0 if mx_out != NULL else mx_out,
                               ls_out + o * inner + j0 if ls_out != NULL else ls_out)
        return
    for u in prange(units, num_threads=nth, schedule='static'):
        if u == 0:
            _note_team()
        o = u // nb
        j0 = (u % nb) * cb
        _masked_cols_block(x + o * xos + j0, min(cb, inner - j0), n, xrs,
                           m + o * mos + j0 * mcs, mrs, mcs, scale, alpha,
                           y + o * yos + j0 if y != NULL else y, yrs, op,
                           mx_out + o * inner + j0 if mx_out != NULL else mx_out,
                           ls_out + o * inner + j0 if ls_out != NULL else ls_out)


cdef inline bint _is_f64(cnp.ndarray x):
    return x.dtype.num != cnp.NPY_FLOAT


def rows_softmax_masked(cnp.ndarray x, cnp.ndarray m, cnp.ndarray y,
                        double scale, double alpha, bint log):
    """y = softmax / log_softmax of the kept entries of each row of x (2-D,
    contiguous rows); m: (rows, n) bytes, unit element stride."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), yrs = _estride(y, 0), mrs = m.strides[0]
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef const unsigned char *pm = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef csm_plan pl
    if rows == 0 or n == 0:
        return
    pl = _plan_entry(OP_LOG_SOFTMAX if log else OP_SOFTMAX, _is_f64(x),
                     LAYOUT_ROWS, rows, n, 1,
                     PF_MASK | (PF_ALPHA1 if alpha == 1.0 else 0))
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if not _is_f64(x):
        with nogil:
            _masked_rows_run(<const float *>px, rows, n, xrs, pm, mrs, scale,
                             alpha, <float *>py, yrs, &pl, NULL, NULL)
    else:
        with nogil:
            _masked_rows_run(<const double *>px, rows, n, xrs, pm, mrs, scale,
                             alpha, <double *>py, yrs, &pl, NULL, NULL)


def rows_reduce_masked(cnp.ndarray x, cnp.ndarray m, double scale):
    """(max, log_sum) over the kept entries of each row (see rows_softmax_masked)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), mrs = m.strides[0]
    cdef cnp.ndarray mx = np.empty(rows, dtype=np.float64)
    cdef cnp.ndarray ls = np.empty(rows, dtype=np.float64)
    cdef double *pmx = <double *>cnp.PyArray_DATA(mx)
    cdef double *pls = <double *>cnp.PyArray_DATA(ls)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef const unsigned char *pm = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef csm_plan p
    if rows == 0:
        return mx, ls
    p = _plan_entry(OP_LSE, _is_f64(x), LAYOUT_ROWS, rows, n, 1, PF_ALPHA1 | PF_MASK)
    if p.path == PATH_INVALID:
        _raise_plan(p)
    if not _is_f64(x):
        with nogil:
            _masked_rows_run(<const float *>px, rows, n, xrs, pm, mrs, scale, 1.0,
                             <float *>NULL, 0, &p, pmx, pls)
    else:
        with nogil:
            _masked_rows_run(<const double *>px, rows, n, xrs, pm, mrs, scale, 1.0,
                             <double *>NULL, 0, &p, pmx, pls)
    return mx, ls


def cols_softmax_masked(cnp.ndarray x, cnp.ndarray m, cnp.ndarray y,
                        double scale, double alpha, bint log):
    """Masked softmax along axis 1 of a 3-D x (outer, n, inner), inner
    contiguous; m: (outer, n, inner) bytes, any strides."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t xos = _estride(x, 0), xrs = _estride(x, 1)
    cdef Py_ssize_t yos = _estride(y, 0), yrs = _estride(y, 1)
    cdef Py_ssize_t mos = m.strides[0], mrs = m.strides[1], mcs = m.strides[2]
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef const unsigned char *pm = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef csm_plan pl
    if outer == 0 or n == 0 or inner == 0:
        return
    pl = _plan_entry(OP_LOG_SOFTMAX if log else OP_SOFTMAX, _is_f64(x),
                     LAYOUT_COLS, outer, n, inner,
                     PF_MASK | (PF_ALPHA1 if alpha == 1.0 else 0))
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if not _is_f64(x):
        with nogil:
            _masked_cols_run(<const float *>px, outer, n, inner, xos, xrs, pm,
                             mos, mrs, mcs, scale, alpha, <float *>py, yos, yrs,
                             &pl, NULL, NULL)
    else:
        with nogil:
            _masked_cols_run(<const double *>px, outer, n, inner, xos, xrs, pm,
                             mos, mrs, mcs, scale, alpha, <double *>py, yos, yrs,
                             &pl, NULL, NULL)


def cols_reduce_masked(cnp.ndarray x, cnp.ndarray m, double scale):
    """(max, log_sum) of shape (outer, inner) over the kept entries."""
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1], inner = x.shape[2]
    cdef Py_ssize_t xos = _estride(x, 0), xrs = _estride(x, 1)
    cdef Py_ssize_t mos = m.strides[0], mrs = m.strides[1], mcs = m.strides[2]
    cdef cnp.ndarray mx = np.empty((outer, inner), dtype=np.float64)
    cdef cnp.ndarray ls = np.empty((outer, inner), dtype=np.float64)
    cdef double *pmx = <double *>cnp.PyArray_DATA(mx)
    cdef double *pls = <double *>cnp.PyArray_DATA(ls)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef const unsigned char *pm = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef csm_plan p
    if outer == 0 or inner == 0:
        return mx, ls
    p = _plan_entry(OP_LSE, _is_f64(x), LAYOUT_COLS, outer, n, inner,
                    PF_ALPHA1 | PF_MASK)
    if p.path == PATH_INVALID:
        _raise_plan(p)
    if not _is_f64(x):
        with nogil:
            _masked_cols_run(<const float *>px, outer, n, inner, xos, xrs, pm,
                             mos, mrs, mcs, scale, 1.0, <float *>NULL, 0, 0,
                             &p, pmx, pls)
    else:
        with nogil:
            _masked_cols_run(<const double *>px, outer, n, inner, xos, xrs, pm,
                             mos, mrs, mcs, scale, 1.0, <double *>NULL, 0, 0,
                             &p, pmx, pls)
    return mx, ls


# ---- backward ---------------------------------------------------------------

cdef void _bwd_masked_cols(const floating *y, const floating *dy, floating *o,
                           Py_ssize_t n, Py_ssize_t inner,
                           const unsigned char *m, Py_ssize_t mrs,
                           Py_ssize_t mcs, bint log) noexcept nogil:
    """One outer slice (n, inner): per column j the sums over kept i
    (float32: the table's masked column backward kernels)."""
    cdef Py_ssize_t i, j
    cdef double s
    if floating is float:
        if log:
            _tab.log_softmax_bwd_cols_masked_f32(y, dy, o, inner, n, inner, m, mrs, mcs)
        else:
            _tab.softmax_bwd_cols_masked_f32(y, dy, o, inner, n, inner, m, mrs, mcs)
        return
    for j in range(inner):
        s = 0.0
        for i in range(n):
            if m[i * mrs + j * mcs]:
                if log:
                    s = s + <double>dy[i * inner + j]
                else:
                    s = s + <double>y[i * inner + j] * <double>dy[i * inner + j]
        for i in range(n):
            if not m[i * mrs + j * mcs]:
                o[i * inner + j] = 0
            elif log:
                o[i * inner + j] = <floating>(<double>dy[i * inner + j]
                                              - c_exp(<double>y[i * inner + j]) * s)
            else:
                o[i * inner + j] = <floating>(<double>y[i * inner + j]
                                              * (<double>dy[i * inner + j] - s))


cdef inline void _bwd_row_m(const floating *y, const floating *dy, floating *o,
                            Py_ssize_t n, const unsigned char *m,
                            bint log) noexcept nogil:
    if floating is float:
        if log:
            _tab.log_softmax_bwd_rows_masked_f32(y, dy, o, 1, n, n, m, 0)
        else:
            _tab.softmax_bwd_rows_masked_f32(y, dy, o, 1, n, n, m, 0)
    else:
        if log:
            _tab.log_softmax_bwd_rows_masked_f64(y, dy, o, 1, n, n, m, 0)
        else:
            _tab.softmax_bwd_rows_masked_f64(y, dy, o, 1, n, n, m, 0)


cdef void _bwd_masked_run(const floating *y, const floating *dy, floating *o,
                          Py_ssize_t outer, Py_ssize_t n, Py_ssize_t inner,
                          const unsigned char *m, Py_ssize_t mos,
                          Py_ssize_t mrs, Py_ssize_t mcs, bint log,
                          const csm_plan *pl) noexcept nogil:
    cdef int nth = pl.threads
    cdef Py_ssize_t r, b
    if pl.path == PATH_MASKED_ROWS:
        if nth <= 1:
            for r in range(outer):
                _bwd_row_m(y + r * n, dy + r * n, o + r * n, n, m + r * mos, log)
        else:
            for r in prange(outer, num_threads=nth, schedule='static'):
                _bwd_row_m(y + r * n, dy + r * n, o + r * n, n, m + r * mos, log)
        return
    if nth <= 1:
        for r in range(outer):
            b = r * n * inner
            _bwd_masked_cols(y + b, dy + b, o + b, n, inner, m + r * mos, mrs, mcs, log)
    else:
        for r in prange(outer, num_threads=nth, schedule='static'):
            b = r * n * inner
            _bwd_masked_cols(y + b, dy + b, o + b, n, inner, m + r * mos, mrs, mcs, log)


def softmax_bwd_masked(cnp.ndarray y, cnp.ndarray dy, cnp.ndarray out,
                       cnp.ndarray m, bint log):
    """softmax_bwd with a where= mask m (outer, n, inner) of bytes: sums over
    kept entries, 0 at masked ones; inner == 1 needs a unit stride of m
    along n."""
    cdef Py_ssize_t outer = y.shape[0], n = y.shape[1], inner = y.shape[2]
    cdef Py_ssize_t mos = m.strides[0], mrs = m.strides[1], mcs = m.strides[2]
    cdef void *py = cnp.PyArray_DATA(y)
    cdef void *pd = cnp.PyArray_DATA(dy)
    cdef void *po = cnp.PyArray_DATA(out)
    cdef const unsigned char *pm = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef csm_plan pl
    if y.size == 0:
        return
    pl = _plan_entry(OP_LOG_SOFTMAX_BWD if log else OP_SOFTMAX_BWD, _is_f64(y),
                     LAYOUT_ROWS if inner == 1 else LAYOUT_COLS, outer, n, inner,
                     PF_GRAD | PF_MASK)
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if pl.path == PATH_MASKED_COLS:
        pl.threads = pl.threads if outer >= 2 else 1
    if not _is_f64(y):
        with nogil:
            _bwd_masked_run(<const float *>py, <const float *>pd, <float *>po,
                            outer, n, inner, pm, mos, mrs, mcs, log, &pl)
    else:
        with nogil:
            _bwd_masked_run(<const double *>py, <const double *>pd, <double *>po,
                            outer, n, inner, pm, mos, mrs, mcs, log, &pl)


def rows_write_masked(cnp.ndarray x, cnp.ndarray m, cnp.ndarray y, cnp.ndarray mx,
                      cnp.ndarray ls, double scale, double alpha, bint log):
    """rows_write with a where= mask m (rows, n) of bytes with a unit element
    stride: 0 / -inf at excluded entries (csoftmax.dask, the gradient pass
    of cross_entropy(where=)); threads for large calls."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), yrs = _estride(y, 0), mrs = m.strides[0]
    cdef const double *pm = <const double *>cnp.PyArray_DATA(mx)
    cdef const double *pl = <const double *>cnp.PyArray_DATA(ls)
    cdef const unsigned char *pk = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef Py_ssize_t per, nb, b, r0
    cdef int nth
    if rows == 0 or n == 0:
        return
    # blocks of rows over the threads of a call this large (cross_entropy's
    # gradient pass); one block per call otherwise
    nth = _threads_for(rows * n)
    per = max(1, min(ROW_BLOCK, BLOCK_BYTES // (n * x.itemsize)))
    nb = (rows + per - 1) // per
    if nth <= 1 or nb < 2:
        if not _is_f64(x):
            with nogil:
                _write_rows_m(<const float *>px, rows, n, xrs, pk, mrs, scale, pm, pl,
                              alpha, <float *>py, yrs, log)
        else:
            with nogil:
                _write_rows_m(<const double *>px, rows, n, xrs, pk, mrs, scale, pm, pl,
                              alpha, <double *>py, yrs, log)
        return
    if not _is_f64(x):
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _write_rows_m(<const float *>px + r0 * xrs, min(per, rows - r0), n, xrs,
                              pk + r0 * mrs, mrs, scale, pm + r0, pl + r0, alpha,
                              <float *>py + r0 * yrs, yrs, log)
    else:
        with nogil:
            for b in prange(nb, num_threads=nth, schedule='static'):
                r0 = b * per
                _write_rows_m(<const double *>px + r0 * xrs, min(per, rows - r0), n, xrs,
                              pk + r0 * mrs, mrs, scale, pm + r0, pl + r0, alpha,
                              <double *>py + r0 * yrs, yrs, log)


# ---- cross_entropy(where=), class axis last ---------------------------------

cdef void _ce_masked_block(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                           Py_ssize_t xrs, const unsigned char *m,
                           Py_ssize_t mrs, double scale, double alpha,
                           floating *y, Py_ssize_t yrs, int path,
                           double *mx_out, double *ls_out) noexcept nogil:
    """The states (max, log_sum) of a block of rows and y = alpha * the
    masked softmax: MASKED_FUSED (float32: one fused call, one exp per
    element, the states returned by the kernel) or MASKED_ROWS (reduction,
    finalize, write pass)."""
    cdef csm_lse_state st[ROW_BLOCK]
    cdef Py_ssize_t r0 = 0, k
    while r0 < rows:
        k = min(ROW_BLOCK, rows - r0)
        if floating is float:
            if path == PATH_MASKED_FUSED:
                _tab.softmax_fused_rows_masked_f32(x + r0 * xrs, k, n, xrs, m + r0 * mrs,
                                                   mrs, scale, alpha, y + r0 * yrs,
                                                   yrs, st)
                _tab.finalize(st, k, scale, mx_out + r0, ls_out + r0)
                r0 += k
                continue
        _lse_rows_m(x + r0 * xrs, k, n, xrs, m + r0 * mrs, mrs, scale, st,
                    y + r0 * yrs, yrs)
        _tab.finalize(st, k, scale, mx_out + r0, ls_out + r0)
        _write_rows_m(x + r0 * xrs, k, n, xrs, m + r0 * mrs, mrs, scale,
                      mx_out + r0, ls_out + r0, alpha, y + r0 * yrs, yrs, False)
        r0 += k


cdef void _ce_masked_run(const floating *x, Py_ssize_t rows, Py_ssize_t n,
                         Py_ssize_t xrs, const unsigned char *m, Py_ssize_t mrs,
                         double scale, double alpha, floating *y, Py_ssize_t yrs,
                         const csm_plan *pl, double *mx_out,
                         double *ls_out) noexcept nogil:
    cdef int nth = pl.threads
    cdef Py_ssize_t per = pl.block, nblocks = (rows + per - 1) // per, b, r0
    if nth <= 1:
        _note_serial()
        _ce_masked_block(x, rows, n, xrs, m, mrs, scale, alpha, y, yrs, pl.path,
                         mx_out, ls_out)
        return
    for b in prange(nblocks, num_threads=nth, schedule='static'):
        if b == 0:
            _note_team()
        r0 = b * per
        _ce_masked_block(x + r0 * xrs, min(per, rows - r0), n, xrs, m + r0 * mrs,
                         mrs, scale, alpha, y + r0 * yrs, yrs, pl.path,
                         mx_out + r0, ls_out + r0)


def ce_rows_masked(cnp.ndarray x, cnp.ndarray m, cnp.ndarray y, double scale,
                   double alpha):
    """cross_entropy(where=) with a gradient, classes along rows: y = alpha *
    the masked softmax of scale * x; returns the rows' (max, log_sum).
    x, y: 2-D with contiguous rows; m: bytes, unit element stride."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t xrs = _estride(x, 0), yrs = _estride(y, 0), mrs = m.strides[0]
    cdef cnp.ndarray mx = np.empty(rows, dtype=np.float64)
    cdef cnp.ndarray ls = np.empty(rows, dtype=np.float64)
    cdef double *pmx = <double *>cnp.PyArray_DATA(mx)
    cdef double *pls = <double *>cnp.PyArray_DATA(ls)
    cdef void *px = cnp.PyArray_DATA(x)
    cdef void *py = cnp.PyArray_DATA(y)
    cdef const unsigned char *pm = <const unsigned char *>cnp.PyArray_DATA(m)
    cdef csm_plan pl
    if rows == 0 or n == 0:
        return mx, ls
    pl = _plan_entry(OP_CE, _is_f64(x), LAYOUT_ROWS, rows, n, 1,
                     PF_MASK | PF_GRAD | (PF_ALPHA1 if alpha == 1.0 else 0))
    if pl.path == PATH_INVALID:
        _raise_plan(pl)
    if not _is_f64(x):
        with nogil:
            _ce_masked_run(<const float *>px, rows, n, xrs, pm, mrs, scale, alpha,
                           <float *>py, yrs, &pl, pmx, pls)
    else:
        with nogil:
            _ce_masked_run(<const double *>px, rows, n, xrs, pm, mrs, scale, alpha,
                           <double *>py, yrs, &pl, pmx, pls)
    return mx, ls
