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

from cython.parallel cimport threadid

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
    int nth                           # threads of the call
    int cnth                          # threads inside a chunk (1: per-thread chunks)
    bint per_thread                   # chunks spread over the threads, each with
                                      # its own scratch (one parallel region)
    Py_ssize_t nchunks, ncol          # chunks; column chunks per outer slice


cdef inline void _hgeom_count(_hgeom *g) noexcept nogil:
    if g.layout == LAYOUT_COLS and g.c.cb < g.inner:
        g.ncol = (g.inner + g.c.cb - 1) // g.c.cb
        g.nchunks = g.outer * g.ncol
    else:
        g.ncol = 1
        g.nchunks = (g.outer + g.c.mo - 1) // g.c.mo


cdef _hgeom _hgeom_make(int layout, Py_ssize_t outer, Py_ssize_t n,
                        Py_ssize_t inner) noexcept nogil:
    """Per-thread chunks of HALF_CHUNK elements when there are at least as
    many as threads (each thread converts, computes and writes back its own
    chunks: one parallel region); otherwise (one thread, a few long rows)
    chunks of HALF_CHUNK x threads elements, each converted and computed by
    the whole team (a long row: the float32 LONG_ROW_SPLIT)."""
    cdef _hgeom g
    g.layout = layout
    g.outer = outer
    g.n = n
    g.inner = inner if layout == LAYOUT_COLS else 1
    g.nth = _nth(outer * n * g.inner, 0)
    g.c = _half_chunk(layout, outer, n, g.inner, 1)
    _hgeom_count(&g)
    g.per_thread = g.nth > 1 and g.nchunks >= g.nth
    g.cnth = 1
    if g.nth > 1 and not g.per_thread:
        g.c = _half_chunk(layout, outer, n, g.inner, g.nth)
        _hgeom_count(&g)
        g.cnth = g.nth
    return g


cdef inline Py_ssize_t _hfloats(const _hgeom *g) noexcept nogil:
    """Scratch floats per converted array of the call."""
    return g.c.floats * (g.nth if g.per_thread else 1)


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
        _h2f(kind, x + o0 * xos, 1, mo, g.n, 0, xos, s, g.cnth)
    else:
        _h2f(kind, x + o0 * xos + j0, mo, g.n, cb, xos, xrs, s, g.cnth)


cdef inline void _hout(const _hgeom *g, int kind, const float *s,
                       unsigned short *y, Py_ssize_t yos, Py_ssize_t yrs,
                       Py_ssize_t o0, Py_ssize_t mo, Py_ssize_t j0,
                       Py_ssize_t cb) noexcept nogil:
    if g.layout == LAYOUT_ROWS:
        _f2h(kind, s, 1, mo, g.n, y + o0 * yos, 0, yos, g.cnth)
    else:
        _f2h(kind, s, mo, g.n, cb, y + o0 * yos + j0, yos, yrs, g.cnth)


cdef inline csm_plan _hplan(const _hgeom *g, int op, Py_ssize_t mo,
                            Py_ssize_t cb, int flags) noexcept nogil:
    """The float32 plan of one chunk (the call's forced path where it can
    serve the chunk, else the planner's own choice), on the chunk's threads."""
    cdef csm_plan p = _plan_call_ex(op, False, g.layout, mo, g.n, cb, flags,
                                    g.cnth, True)
    if p.path == PATH_INVALID:
        p = _plan_call_ex(op, False, g.layout, mo, g.n, cb, flags, g.cnth, False)
    if g.cnth <= 1:
        p.threads = 1
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


# ---- softmax / log_softmax / reductions -----------------------------------

cdef struct _hfwd:
    int kind, op, flags
    const unsigned short *x
    unsigned short *y
    Py_ssize_t xos, xrs, yos, yrs
    double scale, alpha
    double *mx                         # OP_LSE: outputs (outer, inner)
    double *ls


cdef void _fwd_chunk(const _hgeom *g, const _hfwd *a, Py_ssize_t k,
                     float *s) noexcept nogil:
    cdef Py_ssize_t o0, mo, j0, cb, off
    cdef csm_plan p
    cdef bint cols = g.layout == LAYOUT_COLS
    _hchunk(g, k, &o0, &mo, &j0, &cb)
    _hin(g, a.kind, a.x, a.xos, a.xrs, o0, mo, j0, cb, s)
    p = _hplan(g, a.op, mo, cb, a.flags)
    if a.op == OP_LSE:
        off = o0 * g.inner + j0 if cols else o0
        if cols:
            _cols_run(<const float *>s, mo, g.n, cb, g.n * cb, cb, a.scale, 1.0,
                      <float *>NULL, 0, 0, &p, a.mx + off, a.ls + off)
        else:
            _rows_run(<const float *>s, mo, g.n, g.n, a.scale, 1.0, <float *>NULL,
                      0, &p, a.mx + off, a.ls + off)
        return
    if cols:
        _cols_run(<const float *>s, mo, g.n, cb, g.n * cb, cb, a.scale, a.alpha,
                  s, g.n * cb, cb, &p, NULL, NULL)
    else:
        _rows_run(<const float *>s, mo, g.n, g.n, a.scale, a.alpha, s, g.n, &p,
                  NULL, NULL)
    _hout(g, a.kind, s, a.y, a.yos, a.yrs, o0, mo, j0, cb)


cdef void _fwd_run(const _hgeom *g, const _hfwd *a, float *s) noexcept nogil:
    cdef Py_ssize_t k
    if g.per_thread:
        for k in prange(g.nchunks, num_threads=g.nth, schedule='static'):
            _fwd_chunk(g, a, k, s + threadid() * g.c.floats)
    else:
        for k in range(g.nchunks):
            _fwd_chunk(g, a, k, s)


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
    cdef _hfwd a
    cdef _hgeom g
    cdef float *s
    a.kind = kind
    a.op = OP_LOG_SOFTMAX if log else OP_SOFTMAX
    a.flags = PF_ALPHA1 if alpha == 1.0 else 0
    a.x = <const unsigned short *>cnp.PyArray_DATA(x)
    a.y = <unsigned short *>cnp.PyArray_DATA(y)
    a.xos = _hs(x, 0)
    a.xrs = _hs(x, 1) if cols else 1
    a.yos = _hs(y, 0)
    a.yrs = _hs(y, 1) if cols else 1
    a.scale = scale
    a.alpha = alpha
    a.mx = NULL
    a.ls = NULL
    if outer == 0 or n == 0 or inner == 0:
        return
    _half_check(a.op, layout, outer, n, inner, a.flags)
    g = _hgeom_make(layout, outer, n, inner)
    s = _scratch(_hfloats(&g))
    with nogil:
        _fwd_run(&g, &a, s)
    free(s)


def half_reduce(cnp.ndarray x, int kind, double scale):
    """(max, log_sum) float64 of 16-bit x: 2-D rows -> shape (rows,), 3-D
    (outer, n, inner) -> (outer, inner)."""
    cdef bint cols = x.ndim == 3
    cdef int layout = LAYOUT_COLS if cols else LAYOUT_ROWS
    cdef Py_ssize_t outer = x.shape[0], n = x.shape[1]
    cdef Py_ssize_t inner = x.shape[2] if cols else 1
    shape = [outer, inner] if cols else [outer]
    cdef cnp.ndarray mx = np.empty(shape, dtype=np.float64)
    cdef cnp.ndarray ls = np.empty(shape, dtype=np.float64)
    cdef _hfwd a
    cdef _hgeom g
    cdef float *s
    a.kind = kind
    a.op = OP_LSE
    a.flags = PF_ALPHA1
    a.x = <const unsigned short *>cnp.PyArray_DATA(x)
    a.y = NULL
    a.xos = _hs(x, 0)
    a.xrs = _hs(x, 1) if cols else 1
    a.yos = 0
    a.yrs = 0
    a.scale = scale
    a.alpha = 1.0
    a.mx = <double *>cnp.PyArray_DATA(mx)
    a.ls = <double *>cnp.PyArray_DATA(ls)
    if outer == 0 or inner == 0:
        return mx, ls
    _half_check(OP_LSE, layout, outer, n, inner, PF_ALPHA1)
    g = _hgeom_make(layout, outer, n, inner)
    s = _scratch(_hfloats(&g))
    with nogil:
        _fwd_run(&g, &a, s)
    free(s)
    return mx, ls


# ---- cross-entropy (and logsumexp_backward) --------------------------------

cdef struct _hce:
    int kind, op, flags
    const _ce_par *p
    const unsigned short *x
    const unsigned short *q16          # probability targets, 16-bit (or NULL)
    const float *q32                   # probability targets, float32 (or NULL)
    unsigned short *g                  # gradient (or NULL)
    Py_ssize_t xos, xrs, qos, qrs, gos, grs


cdef void _ce_chunk(const _hgeom *gm, const _hce *a, Py_ssize_t k, float *xs,
                    float *gs, float *qs) noexcept nogil:
    cdef Py_ssize_t o0, mo, j0, cb, off, cqos = 0, cqrs = 0
    cdef Py_ssize_t C = gm.n
    cdef bint cols = gm.layout == LAYOUT_COLS
    cdef _ce_par pc = a.p[0]
    cdef const float *qc = NULL
    cdef csm_plan pl
    _hchunk(gm, k, &o0, &mo, &j0, &cb)
    _hin(gm, a.kind, a.x, a.xos, a.xrs, o0, mo, j0, cb, xs)
    # the chunk's samples: offset the per-sample arrays
    off = o0 * gm.inner + j0 if cols else o0
    if pc.y != NULL:
        pc.y = pc.y + off
    if pc.dy != NULL:
        pc.dy = pc.dy + off
    if pc.loss != NULL:
        pc.loss = pc.loss + off
    if a.q16 != NULL:
        _hin(gm, a.kind, a.q16, a.qos, a.qrs, o0, mo, j0, cb, qs)
        qc = qs
        cqos = C * cb if cols else C
        cqrs = cb if cols else 1
    elif a.q32 != NULL:
        qc = a.q32 + o0 * a.qos + j0
        cqos = a.qos
        cqrs = a.qrs
    pl = _hplan(gm, a.op, mo, cb, a.flags)
    if cols:
        _ce_run(<const float *>xs, qc, gs, mo, cb, C * cb, cb, cqos, cqrs,
                C * cb, cb, &pc, &pl)
    else:
        _ce_run(<const float *>xs, qc, gs, mo, 1, C, 1, cqos, cqrs, C, 1, &pc, &pl)
    if gs != NULL:
        _hout(gm, a.kind, gs, a.g, a.gos, a.grs, o0, mo, j0, cb)


cdef void _ce_half_run(const _hgeom *gm, const _hce *a, float *xs, float *gs,
                       float *qs) noexcept nogil:
    cdef Py_ssize_t k, t, f = gm.c.floats
    if gm.per_thread:
        for k in prange(gm.nchunks, num_threads=gm.nth, schedule='static'):
            t = threadid()
            _ce_chunk(gm, a, k, xs + t * f, (gs + t * f) if gs != NULL else NULL,
                      (qs + t * f) if qs != NULL else NULL)
    else:
        for k in range(gm.nchunks):
            _ce_chunk(gm, a, k, xs, gs, qs)


def half_ce_pass(cnp.ndarray x, q, g, int kind, y, w, double W, double scale,
                 double eps, double coef, long long ignore, int mode, dy, loss):
    """ce_pass on 16-bit logits x (uint16 view, 2-D rows or 3-D cols); q
    (probability targets): None, a uint16 view of the same kind, or float32
    -- any of these with x's shape and a contiguous last axis; g: None or a
    uint16 view (the gradient, same kind; may be x itself: a chunk is read
    before it is written).  y, w, dy, loss: as for ce_pass."""
    cdef _ce_par p
    cdef _hce a
    cdef bint cols = x.ndim == 3
    cdef int layout = LAYOUT_COLS if cols else LAYOUT_ROWS
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t inner = x.shape[2] if cols else 1
    cdef cnp.ndarray qa, ga
    cdef _hgeom gm
    cdef float *xs = NULL
    cdef float *gs = NULL
    cdef float *qs = NULL
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
    a.kind = kind
    a.op = OP_CE + mode
    a.flags = 0
    a.p = &p
    a.x = <const unsigned short *>cnp.PyArray_DATA(x)
    a.xos = _hs(x, 0)
    a.xrs = _hs(x, 1) if cols else 1
    a.q16 = NULL
    a.q32 = NULL
    a.g = NULL
    a.qos = a.qrs = a.gos = a.grs = 0
    if q is not None:
        qa = q
        if qa.dtype.num == cnp.NPY_FLOAT:
            a.q32 = <const float *>cnp.PyArray_DATA(qa)
            a.qos = qa.strides[0] // 4
            a.qrs = qa.strides[1] // 4 if cols else 1
        else:
            a.q16 = <const unsigned short *>cnp.PyArray_DATA(qa)
            a.qos = _hs(qa, 0)
            a.qrs = _hs(qa, 1) if cols else 1
    if g is not None:
        ga = g
        a.g = <unsigned short *>cnp.PyArray_DATA(ga)
        a.gos = _hs(ga, 0)
        a.grs = _hs(ga, 1) if cols else 1
        a.flags |= PF_GRAD
    if eps != 0.0:
        a.flags |= PF_SMOOTH
    if outer == 0 or inner == 0:
        return
    _half_check(a.op, layout, outer, C, inner, a.flags)
    gm = _hgeom_make(layout, outer, C, inner)
    try:
        xs = _scratch(_hfloats(&gm))
        if a.g != NULL:
            gs = _scratch(_hfloats(&gm))
        if a.q16 != NULL:
            qs = _scratch(_hfloats(&gm))
        with nogil:
            _ce_half_run(&gm, &a, xs, gs, qs)
    finally:
        free(xs)
        free(gs)
        free(qs)


# ---- softmax_backward / log_softmax_backward -------------------------------

cdef void _bwd_chunk(const _hgeom *g, int kind, const unsigned short *py,
                     const unsigned short *pd, unsigned short *po, bint log,
                     int op, Py_ssize_t k, float *ys, float *ds) noexcept nogil:
    cdef Py_ssize_t o0, mo, j0, cb
    cdef Py_ssize_t os = g.n * g.inner, rs = g.inner
    cdef csm_plan p
    _hchunk(g, k, &o0, &mo, &j0, &cb)
    _hin(g, kind, py, os, rs, o0, mo, j0, cb, ys)
    _hin(g, kind, pd, os, rs, o0, mo, j0, cb, ds)
    p = _hplan(g, op, mo, cb, PF_GRAD)
    _bwd_run(<const float *>ys, <const float *>ds, ds, mo, g.n,
             cb if g.layout == LAYOUT_COLS else 1, log, &p)
    _hout(g, kind, ds, po, os, rs, o0, mo, j0, cb)


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
    cdef float *ys = NULL
    cdef float *ds = NULL
    cdef Py_ssize_t k, t, f
    if y.size == 0:
        return
    _half_check(op, layout, outer, n, inner, PF_GRAD)
    g = _hgeom_make(layout, outer, n, inner)
    f = g.c.floats
    try:
        ys = _scratch(_hfloats(&g))
        ds = _scratch(_hfloats(&g))
        with nogil:
            if g.per_thread:
                for k in prange(g.nchunks, num_threads=g.nth, schedule='static'):
                    t = threadid()
                    _bwd_chunk(&g, kind, py, pd, po, log, op, k, ys + t * f, ds + t * f)
            else:
                for k in range(g.nchunks):
                    _bwd_chunk(&g, kind, py, pd, po, log, op, k, ys, ds)
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
