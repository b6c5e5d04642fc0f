# float16 / bfloat16 data (HALF_BLOCKS, see _plan.pxi): the float32 paths on
# chunks converted through per-call float32 scratch.  Included into _core.pyx
# after the drivers (_rows_run, _cols_run, _ce_run, _bwd_run), which run
# unchanged on the scratch.
#
# A chunk is about HALF_CHUNK elements per thread (_half_chunk): the
# conversion (cvt_* kernels, threaded over CVT_UNIT-element units), the
# float32 driver (its own plan for the chunk, the same threads) and the
# conversion back, one chunk after the other, so the scratch is reused
# while it is in cache and the call reads and writes 2 bytes per element of
# main memory.  Results: the float32 path's result rounded once to the
# input's dtype (to nearest even), so within 1 ULP of the output dtype
# wherever the float32 result is within half a float32 ULP... of the exact
# one in practice (the float32 bounds are a few float32 ULP: 2^-21
# relative, far below a float16 / bfloat16 ULP: 2^-10 / 2^-7).
#
# 16-bit data arrive as uint16 views (bit patterns); `kind` says which.

from libc.string cimport memset

cdef inline void _cvt_in(int kind, const unsigned short *x, Py_ssize_t rows,
                         Py_ssize_t n, Py_ssize_t xrs, float *y,
                         Py_ssize_t yrs) noexcept nogil:
    if kind == HALF_BF16:
        _tab.cvt_bf16_to_f32(x, rows, n, xrs, y, yrs)
    else:
        _tab.cvt_f16_to_f32(x, rows, n, xrs, y, yrs)


cdef inline void _cvt_out(int kind, const float *x, Py_ssize_t rows,
                          Py_ssize_t n, Py_ssize_t xrs, unsigned short *y,
                          Py_ssize_t yrs) noexcept nogil:
    if kind == HALF_BF16:
        _tab.cvt_f32_to_bf16(x, rows, n, xrs, y, yrs)
    else:
        _tab.cvt_f32_to_f16(x, rows, n, xrs, y, yrs)


cdef void _h2f(int kind, const unsigned short *x, Py_ssize_t mo, Py_ssize_t nr,
               Py_ssize_t w, Py_ssize_t xos, Py_ssize_t xrs, float *s,
               int nth) noexcept nogil:
    """s[(o, i, j)] (contiguous (mo, nr, w)) = x[o*xos + i*xrs + j], in units
    of about CVT_UNIT elements over nth threads."""
    cdef Py_ssize_t sw, nseg, rb, nrb, per, units, u, o, i0, j0, rem
    if xrs == w and (mo == 1 or xos == nr * w):
        # contiguous (short rows back to back): one long row
        w = mo * nr * w
        nr = 1
        mo = 1
    sw = min(w, <Py_ssize_t>CVT_UNIT)
    nseg = (w + sw - 1) // sw
    rb = max(1, CVT_UNIT // w)
    nrb = (nr + rb - 1) // rb
    per = nrb * nseg
    units = mo * per
    if nth <= 1 or units < 2:
        for u in range(units):
            o = u // per
            rem = u % per
            i0 = (rem // nseg) * rb
            j0 = (rem % nseg) * sw
            _cvt_in(kind, x + o * xos + i0 * xrs + j0, min(rb, nr - i0),
                    min(sw, w - j0), xrs, s + (o * nr + i0) * w + j0, w)
        return
    for u in prange(units, num_threads=nth, schedule='static'):
        o = u // per
        rem = u % per
        i0 = (rem // nseg) * rb
        j0 = (rem % nseg) * sw
        _cvt_in(kind, x + o * xos + i0 * xrs + j0, min(rb, nr - i0),
                min(sw, w - j0), xrs, s + (o * nr + i0) * w + j0, w)


cdef void _f2h(int kind, const float *s, Py_ssize_t mo, Py_ssize_t nr,
               Py_ssize_t w, unsigned short *y, Py_ssize_t yos, Py_ssize_t yrs,
               int nth) noexcept nogil:
    """y[o*yos + i*yrs + j] = s[(o, i, j)] rounded (the inverse of _h2f)."""
    cdef Py_ssize_t sw, nseg, rb, nrb, per, units, u, o, i0, j0, rem
    if yrs == w and (mo == 1 or yos == nr * w):
        w = mo * nr * w          # contiguous: one long row
        nr = 1
        mo = 1
    sw = min(w, <Py_ssize_t>CVT_UNIT)
    nseg = (w + sw - 1) // sw
    rb = max(1, CVT_UNIT // w)
    nrb = (nr + rb - 1) // rb
    per = nrb * nseg
    units = mo * per
    if nth <= 1 or units < 2:
        for u in range(units):
            o = u // per
            rem = u % per
            i0 = (rem // nseg) * rb
            j0 = (rem % nseg) * sw
            _cvt_out(kind, s + (o * nr + i0) * w + j0, min(rb, nr - i0),
                     min(sw, w - j0), w, y + o * yos + i0 * yrs + j0, yrs)
        return
    for u in prange(units, num_threads=nth, schedule='static'):
        o = u // per
        rem = u % per
        i0 = (rem // nseg) * rb
        j0 = (rem % nseg) * sw
        _cvt_out(kind, s + (o * nr + i0) * w + j0, min(rb, nr - i0),
                 min(sw, w - j0), w, y + o * yos + i0 * yrs + j0, yrs)


cdef struct _hgeom:
    # a HALF_BLOCKS call: the data as (outer, n, inner) -- rows layout: outer
    # rows of n (inner 1) -- and its chunks
    int layout
    Py_ssize_t outer, n, inner
    half_chunk c
    int nth
    Py_ssize_t nchunks, ncol          # chunks; column chunks per outer slice


cdef _hgeom _hgeom_make(int layout, Py_ssize_t outer, Py_ssize_t n,
                        Py_ssize_t inner) noexcept nogil:
    cdef _hgeom g
    g.layout = layout
    g.outer = outer
    g.n = n
    g.inner = inner if layout == LAYOUT_COLS else 1
    g.nth = _nth(outer * n * g.inner, 0)
    g.c = _half_chunk(layout, outer, n, g.inner, g.nth)
    if layout == LAYOUT_COLS and g.c.cb < g.inner:
        g.ncol = (g.inner + g.c.cb - 1) // g.c.cb
        g.nchunks = outer * g.ncol
    else:
        g.ncol = 1
        g.nchunks = (outer + g.c.mo - 1) // g.c.mo
    return g


cdef inline void _hchunk(const _hgeom *g, Py_ssize_t k, Py_ssize_t *o0,
                         Py_ssize_t *mo, Py_ssize_t *j0, Py_ssize_t *cb) noexcept nogil:
    """Chunk k: outer slices o0 .. o0+mo, columns j0 .. j0+cb (cols layout)."""
    if g.ncol > 1:
        o0[0] = k // g.ncol
        mo[0] = 1
        j0[0] = (k % g.ncol) * g.c.cb
        cb[0] = min(g.c.cb, g.inner - j0[0])
    else:
        o0[0] = k * g.c.mo
        mo[0] = min(g.c.mo, g.outer - o0[0])
        j0[0] = 0
        cb[0] = g.inner


cdef inline void _hin(const _hgeom *g, int kind, const unsigned short *x,
                      Py_ssize_t xos, Py_ssize_t xrs, Py_ssize_t o0,
                      Py_ssize_t mo, Py_ssize_t j0, Py_ssize_t cb,
                      float *s) noexcept nogil:
    """Chunk of x -> scratch: rows layout (mo, n) contiguous; cols layout
    (mo, n, cb) contiguous."""
    if g.layout == LAYOUT_ROWS:
        _h2f(kind, x + o0 * xos, 1, mo, g.n, 0, xos, s, g.nth)
    else:
        _h2f(kind, x + o0 * xos + j0, mo, g.n, cb, xos, xrs, s, g.nth)


cdef inline void _hout(const _hgeom *g, int kind, const float *s,
                       unsigned short *y, Py_ssize_t yos, Py_ssize_t yrs,
                       Py_ssize_t o0, Py_ssize_t mo, Py_ssize_t j0,
                       Py_ssize_t cb) noexcept nogil:
    if g.layout == LAYOUT_ROWS:
        _f2h(kind, s, 1, mo, g.n, y + o0 * yos, 0, yos, g.nth)
    else:
        _f2h(kind, s, mo, g.n, cb, y + o0 * yos + j0, yos, yrs, g.nth)


cdef inline csm_plan _hplan(const _hgeom *g, int op, Py_ssize_t mo,
                            Py_ssize_t cb, int flags) noexcept nogil:
    """The float32 plan of one chunk (the call's forced path where it can
    serve the chunk, else the planner's own choice)."""
    cdef csm_plan p = _plan_call_ex(op, False, g.layout, mo, g.n, cb, flags,
                                    g.nth, True)
    if p.path == PATH_INVALID:
        p = _plan_call_ex(op, False, g.layout, mo, g.n, cb, flags, g.nth, False)
    return p


cdef float *_scratch(Py_ssize_t floats) except NULL:
    cdef float *s = <float *>malloc(max(floats, 1) * sizeof(float))
    if s == NULL:
        raise MemoryError(f"csoftmax: cannot allocate the {floats * 4} bytes of "
                          "float32 scratch of a half-precision call")
    return s


cdef inline Py_ssize_t _hs(cnp.ndarray a, int axis):
    return a.strides[axis] // 2


cdef void _half_check(int op, int layout, Py_ssize_t outer, Py_ssize_t n,
                      Py_ssize_t inner, int flags) except *:
    """Plan the whole call once with the GIL (diagnostics: _last_plan; a
    forced path that cannot serve it raises, as for float32)."""
    cdef csm_plan p = _plan_entry(op, False, layout, outer, n, inner, flags)
    if p.path == PATH_INVALID:
        _raise_plan(p)


def half_softmax(cnp.ndarray x, cnp.ndarray y, int kind, double scale,
                 double alpha, bint log):
    """softmax / log_softmax of 16-bit x into 16-bit y (uint16 views, same
    shape): 2-D rows (contiguous rows) or 3-D (outer, n, inner), inner
    contiguous.  y may be x (in place): a chunk is read before it is
    written, and chunks are disjoint."""
    cdef bint cols = x.ndim == 3
    cdef int layout = LAYOUT_COLS if cols else LAYOUT_ROWS
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t inner = x.shape[2] if cols else 1
    cdef Py_ssize_t xos = _hs(x, 0)
    cdef Py_ssize_t xrs = _hs(x, 1) if cols else 1
    cdef Py_ssize_t yos = _hs(y, 0)
    cdef Py_ssize_t yrs = _hs(y, 1) if cols else 1
    cdef const unsigned short *px = <const unsigned short *>cnp.PyArray_DATA(x)
    cdef unsigned short *py = <unsigned short *>cnp.PyArray_DATA(y)
    cdef int op = OP_LOG_SOFTMAX if log else OP_SOFTMAX
    cdef int flags = PF_ALPHA1 if alpha == 1.0 else 0
    cdef _hgeom g
    cdef csm_plan p
    cdef float *s
    cdef Py_ssize_t k, o0, mo, j0, cb
    if outer == 0 or n == 0 or inner == 0:
        return
    _half_check(op, layout, outer, n, inner, flags)
    g = _hgeom_make(layout, outer, n, inner)
    s = _scratch(g.c.floats)
    with nogil:
        for k in range(g.nchunks):
            _hchunk(&g, k, &o0, &mo, &j0, &cb)
            _hin(&g, kind, px, xos, xrs, o0, mo, j0, cb, s)
            p = _hplan(&g, op, mo, cb, flags)
            if cols:
                _cols_run(<const float *>s, mo, n, cb, n * cb, cb, scale, alpha,
                          s, n * cb, cb, &p, NULL, NULL)
            else:
                _rows_run(<const float *>s, mo, n, n, scale, alpha, s, n, &p,
                          NULL, NULL)
            _hout(&g, kind, s, py, yos, yrs, o0, mo, j0, cb)
    free(s)


def half_reduce(cnp.ndarray x, int kind, double scale):
    """(max, log_sum) float64 of 16-bit x: 2-D rows -> shape (rows,), 3-D
    (outer, n, inner) -> (outer, inner)."""
    cdef bint cols = x.ndim == 3
    cdef int layout = LAYOUT_COLS if cols else LAYOUT_ROWS
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t inner = x.shape[2] if cols else 1
    cdef Py_ssize_t xos = _hs(x, 0)
    cdef Py_ssize_t xrs = _hs(x, 1) if cols else 1
    cdef const unsigned short *px = <const unsigned short *>cnp.PyArray_DATA(x)
    shape = [outer, inner] if cols else [outer]
    cdef cnp.ndarray mx = np.empty(shape, dtype=np.float64)
    cdef cnp.ndarray ls = np.empty(shape, dtype=np.float64)
    cdef double *pm = <double *>cnp.PyArray_DATA(mx)
    cdef double *pl = <double *>cnp.PyArray_DATA(ls)
    cdef _hgeom g
    cdef csm_plan p
    cdef float *s
    cdef Py_ssize_t k, o0, mo, j0, cb, off
    if outer == 0 or inner == 0:
        return mx, ls
    _half_check(OP_LSE, layout, outer, n, inner, PF_ALPHA1)
    g = _hgeom_make(layout, outer, n, inner)
    s = _scratch(g.c.floats)
    with nogil:
        for k in range(g.nchunks):
            _hchunk(&g, k, &o0, &mo, &j0, &cb)
            _hin(&g, kind, px, xos, xrs, o0, mo, j0, cb, s)
            p = _hplan(&g, OP_LSE, mo, cb, PF_ALPHA1)
            if cols:
                off = o0 * inner + j0
                _cols_run(<const float *>s, mo, n, cb, n * cb, cb, scale, 1.0,
                          <float *>NULL, 0, 0, &p, pm + off, pl + off)
            else:
                _rows_run(<const float *>s, mo, n, n, scale, 1.0, <float *>NULL,
                          0, &p, pm + o0, pl + o0)
    free(s)
    return mx, ls


def half_ce_pass(cnp.ndarray x, q, g, int kind, y, w, double W, double scale,
                 double eps, double coef, long long ignore, int mode, dy, loss):
    """ce_pass on 16-bit logits x (uint16 view, 2-D rows or 3-D cols); q
    (probability targets): None, a uint16 view of the same kind, or float32
    -- any of these with x's shape and a contiguous last axis; g: None or a
    uint16 view (the gradient, same kind; may be x itself).  y, w, dy,
    loss: as for ce_pass."""
    cdef _ce_par p, pc
    cdef bint cols = x.ndim == 3
    cdef int layout = LAYOUT_COLS if cols else LAYOUT_ROWS
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t inner = x.shape[2] if cols else 1
    cdef Py_ssize_t xos = _hs(x, 0)
    cdef Py_ssize_t xrs = _hs(x, 1) if cols else 1
    cdef Py_ssize_t qos = 0, qrs = 0, gos = 0, grs = 0
    cdef const unsigned short *px = <const unsigned short *>cnp.PyArray_DATA(x)
    cdef const unsigned short *pq16 = NULL
    cdef const float *pq32 = NULL
    cdef unsigned short *pg = NULL
    cdef cnp.ndarray qa, ga
    cdef _hgeom gm
    cdef csm_plan pl
    cdef int flags = 0
    cdef float *xs = NULL
    cdef float *gs = NULL
    cdef float *qs = NULL
    cdef const float *qc
    cdef Py_ssize_t k, o0, mo, j0, cb, off, chunk_qos, chunk_qrs
    p.C = C
    p.mode = mode
    p.y = <const long long *>cnp.PyArray_DATA(y) if y is not None else NULL
    p.w = <const double *>cnp.PyArray_DATA(w) if w is not None else NULL
    p.W = W
    p.scale = scale
    p.eps = eps
    p.coef = coef
    p.ignore = ignore
    p.dy = <const double *>cnp.PyArray_DATA(dy) if dy is not None else NULL
    p.loss = <double *>cnp.PyArray_DATA(loss) if loss is not None else NULL
    if q is not None:
        qa = q
        if qa.dtype.num == cnp.NPY_FLOAT:
            pq32 = <const float *>cnp.PyArray_DATA(qa)
            qos = qa.strides[0] // 4
            qrs = qa.strides[1] // 4 if cols else 1
        else:
            pq16 = <const unsigned short *>cnp.PyArray_DATA(qa)
            qos = _hs(qa, 0)
            qrs = _hs(qa, 1) if cols else 1
    if g is not None:
        ga = g
        pg = <unsigned short *>cnp.PyArray_DATA(ga)
        gos = _hs(ga, 0)
        grs = _hs(ga, 1) if cols else 1
        flags |= PF_GRAD
    if eps != 0.0:
        flags |= PF_SMOOTH
    if outer == 0 or inner == 0:
        return
    _half_check(OP_CE + mode, layout, outer, C, inner, flags)
    gm = _hgeom_make(layout, outer, C, inner)
    try:
        xs = _scratch(gm.c.floats)
        if pg != NULL:
            gs = _scratch(gm.c.floats)
        if pq16 != NULL:
            qs = _scratch(gm.c.floats)
        with nogil:
            for k in range(gm.nchunks):
                _hchunk(&gm, k, &o0, &mo, &j0, &cb)
                _hin(&gm, kind, px, xos, xrs, o0, mo, j0, cb, xs)
                # the chunk's samples: offset the per-sample arrays
                off = o0 * inner + j0 if cols else o0
                pc = p
                if pc.y != NULL:
                    pc.y = pc.y + off
                if pc.dy != NULL:
                    pc.dy = pc.dy + off
                if pc.loss != NULL:
                    pc.loss = pc.loss + off
                qc = NULL
                chunk_qos = 0
                chunk_qrs = 0
                if qs != NULL:
                    _hin(&gm, kind, pq16, qos, qrs, o0, mo, j0, cb, qs)
                    qc = qs
                    chunk_qos = C * cb if cols else C
                    chunk_qrs = cb if cols else 1
                elif pq32 != NULL:
                    qc = pq32 + o0 * qos + j0
                    chunk_qos = qos
                    chunk_qrs = qrs
                pl = _hplan(&gm, OP_CE + mode, mo, cb, flags)
                if cols:
                    _ce_run(<const float *>xs, qc, gs, mo, cb, C * cb, cb,
                            chunk_qos, chunk_qrs, C * cb, cb, &pc, &pl)
                else:
                    _ce_run(<const float *>xs, qc, gs, mo, 1, C, 1,
                            chunk_qos, chunk_qrs, C, 1, &pc, &pl)
                if gs != NULL:
                    _hout(&gm, kind, gs, pg, gos, grs, o0, mo, j0, cb)
    finally:
        free(xs)
        free(gs)
        free(qs)


def half_softmax_bwd(cnp.ndarray y, cnp.ndarray dy, cnp.ndarray out, int kind,
                     bint log):
    """softmax_bwd on C-contiguous 3-D (outer, n, inner) uint16 views of one
    kind; out may alias y or dy (chunks are read before they are written)."""
    cdef Py_ssize_t outer = y.shape[0], n = y.shape[1], inner = y.shape[2]
    cdef int layout = LAYOUT_ROWS if inner == 1 else LAYOUT_COLS
    cdef const unsigned short *py = <const unsigned short *>cnp.PyArray_DATA(y)
    cdef const unsigned short *pd = <const unsigned short *>cnp.PyArray_DATA(dy)
    cdef unsigned short *po = <unsigned short *>cnp.PyArray_DATA(out)
    cdef int op = OP_LOG_SOFTMAX_BWD if log else OP_SOFTMAX_BWD
    cdef _hgeom g
    cdef csm_plan p
    cdef float *ys = NULL
    cdef float *ds = NULL
    cdef Py_ssize_t k, o0, mo, j0, cb, os, rs
    if y.size == 0:
        return
    _half_check(op, layout, outer, n, inner, PF_GRAD)
    g = _hgeom_make(layout, outer, n, inner)
    os = n * inner if layout == LAYOUT_COLS else n   # outer stride of the chunks
    rs = inner
    try:
        ys = _scratch(g.c.floats)
        ds = _scratch(g.c.floats)
        with nogil:
            for k in range(g.nchunks):
                _hchunk(&g, k, &o0, &mo, &j0, &cb)
                _hin(&g, kind, py, os, rs, o0, mo, j0, cb, ys)
                _hin(&g, kind, pd, os, rs, o0, mo, j0, cb, ds)
                p = _hplan(&g, op, mo, cb, PF_GRAD)
                _bwd_run(<const float *>ys, <const float *>ds, ds, mo, n,
                         cb if layout == LAYOUT_COLS else 1, log, &p)
                _hout(&g, kind, ds, po, os, rs, o0, mo, j0, cb)
    finally:
        free(ys)
        free(ds)


def half_convert(cnp.ndarray x, cnp.ndarray y, int kind, isa=None):
    """Convert 2-D x -> y (contiguous rows, any row strides) with the
    current (or the named) table's cvt kernels: uint16 -> float32 or float32
    -> uint16 (tests of the kernels themselves)."""
    cdef const csm_kernel_table *t = _tab
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1]
    if isa is not None:
        t = csm_kernels_for({"scalar": CSM_ISA_SCALAR, "avx2": CSM_ISA_AVX2,
                             "avx512": CSM_ISA_AVX512, "neon": CSM_ISA_NEON}[isa])
        if t == NULL:
            raise ValueError(f"ISA {isa!r} is not available on this CPU/build")
    if x.shape[0] != y.shape[0] or x.shape[1] != y.shape[1]:
        raise ValueError("shapes differ")
    if x.dtype.num == cnp.NPY_UINT16 and y.dtype.num == cnp.NPY_FLOAT:
        (t.cvt_bf16_to_f32 if kind == HALF_BF16 else t.cvt_f16_to_f32)(
            <const unsigned short *>cnp.PyArray_DATA(x), rows, n, x.strides[0] // 2,
            <float *>cnp.PyArray_DATA(y), y.strides[0] // 4)
    elif x.dtype.num == cnp.NPY_FLOAT and y.dtype.num == cnp.NPY_UINT16:
        (t.cvt_f32_to_bf16 if kind == HALF_BF16 else t.cvt_f32_to_f16)(
            <const float *>cnp.PyArray_DATA(x), rows, n, x.strides[0] // 4,
            <unsigned short *>cnp.PyArray_DATA(y), y.strides[0] // 2)
    else:
        raise TypeError("uint16 -> float32 or float32 -> uint16")
