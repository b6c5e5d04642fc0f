"""dask adapter: softmax family and cross-entropy on chunked (and
vocabulary-sharded) dask arrays, for dask.distributed clusters.

``import csoftmax.dask`` needs dask (from a clone: ``pip install ".[dask]"``).  The
logits may be chunked along the rows **and along the class axis** (B x V
larger than one machine): nothing ever gathers a full row on one worker.

1. Every chunk reduces its slice of each row with the C kernels to a
   partial state ``(m, l)`` with ``LSE(s x_chunk) = s m + l`` (``s`` =
   1/temperature).
2. The partial states merge pairwise-exactly in a tree
   (:func:`dask.array.reduction` with a combine step, ``split_every``
   chunks at a time):

   .. math::

       M = \\max_k m_k,\\qquad
       L = \\operatorname{log1p}\\Bigl(\\operatorname{expm1}(l_{k^*})
            + \\sum_{k \\ne k^*} e^{s (m_k - M) + l_k}\\Bigr)

   (``k*`` a chunk holding the max; the ``log1p``/``expm1`` form keeps the
   accuracy of tiny sums, as the in-memory kernels do).
3. The merged per-row state is broadcast back (:func:`dask.array.blockwise`)
   to the chunks of the logits, whose softmax / log-softmax / cross-entropy
   gradient is written there by the same C kernels.

For cross-entropy each chunk also contributes the logit of the target class
(if it holds that column) and ``sum_c w_c x_c`` (label smoothing).

:func:`linear_cross_entropy` (hidden states instead of logits) is sharded
by rows only: each row block runs :func:`csoftmax.linear_cross_entropy`
with the weight, which enters the graph once.

Results equal the in-memory csoftmax results within the core's bounds
(float32: a few ULP).  Everything is lazy: call ``.compute()`` (or
``dask.compute(loss, grad)`` to share the reduction) on a
``distributed.Client`` -- e.g. ``Client("tcp://scheduler:8786")``.
"""
try:
    import dask.array as _da
except ImportError as _e:  # pragma: no cover - exercised only without dask
    raise ImportError(
        "csoftmax.dask needs dask, which is not installed. From a clone of csoftmax "
        "(it is not on PyPI yet): `pip install \".[dask]\"`; or dask alone: "
        "`pip install \"dask[distributed]\"`") from _e

import functools

import numpy as np

from . import _api, _core, _lce, _losses
from ._validate import _to_ndarray, half_kind, normalize_axes, positive_scalar

__all__ = ["logsumexp", "softmax", "log_softmax", "cross_entropy", "linear_cross_entropy"]

#: per-row partial state of a chunk: LSE(s * x) = s * m + l
STATE = np.dtype([("m", "<f8"), ("l", "<f8")])


# ---------------------------------------------------------------------------
# dtypes and arguments

def _dtypes(dt):
    """(compute, result) dtypes as csoftmax's in-memory rules."""
    dt = np.dtype(dt)
    if dt.kind == "c":
        raise TypeError(f"complex input ({dt}) is not supported")
    if half_kind(dt) == 2:          # ml_dtypes.bfloat16 (kind 'V'), as in memory
        return np.dtype(np.float32), dt
    if dt.kind not in "fiub":
        raise TypeError(f"input must be real numbers, got dtype {dt}")
    if dt == np.float16:
        return np.dtype(np.float32), np.dtype(np.float16)
    if dt == np.float32:
        return dt, dt
    return np.dtype(np.float64), np.dtype(np.float64)


def _asdask(x, name="x"):
    if not isinstance(x, _da.Array):
        x = _da.asarray(_to_ndarray(x, name))   # a MaskedArray: TypeError (its mask)
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension")
    if any(np.isnan(c).any() for c in x.chunks):
        raise ValueError(f"{name} has unknown chunk sizes; call compute_chunk_sizes() first")
    return x


def _axis(axis, ndim):
    if isinstance(axis, (tuple, list)) or axis is None:
        raise TypeError(f"axis must be a single integer (the class axis), got {axis!r}: "
                        "csoftmax.dask normalizes along one axis (csoftmax.dask.logsumexp "
                        "reduces several)")
    return normalize_axes(axis, ndim)[0]


# ---------------------------------------------------------------------------
# 1-2: partial states and their tree merge

def _chunk_state(x, axis, keepdims, scale):
    ax = axis[0]
    comp, _ = _dtypes(x.dtype)
    a = np.asarray(x)
    m, l = _api._reduce(a, comp, (ax,), scale)
    s = np.empty(m.shape, STATE)
    s["m"] = m
    s["l"] = l
    return np.expand_dims(s, ax)


def _chunk_state_masked(xb, wb, ax, scale):
    """The state of a chunk over its kept entries (wb: bytes of the chunk's
    shape): the masked kernels; nothing kept gives m = -inf, l = 0."""
    comp, _ = _dtypes(xb.dtype)
    a = np.asarray(xb)
    m, l = _api._reduce(a, comp, (ax,), scale, np.asarray(wb))
    s = np.empty(m.shape, STATE)
    s["m"] = m
    s["l"] = l
    return np.expand_dims(s, ax)


def _pass_state(s, axis, keepdims):
    return s


def _mask_like(where, x):
    """where= as a dask array of bytes broadcast to x's shape with x's
    chunks (a numpy or dask mask; nonzero = included).  Broadcast axes stay
    broadcast (no mask of x's size is built on the workers)."""
    w = where if isinstance(where, _da.Array) else _da.asarray(_to_ndarray(where, "where"))
    bf16 = w.dtype.name == "bfloat16"       # ml_dtypes: kind 'V', a number
    if w.dtype.kind not in "biuf" and not bf16:
        raise TypeError(f"where must be a boolean array (or numbers, read as "
                        f"nonzero = kept), got dtype {w.dtype}")
    if w.dtype.itemsize != 1 or w.dtype.kind == "f" or bf16:
        w = w != 0
    try:
        w = _da.broadcast_to(w, x.shape)
    except ValueError:
        raise ValueError(f"where with shape {w.shape} does not broadcast to the "
                         f"input's shape {x.shape}") from None
    return w.rechunk(x.chunks)


def merge_states(s, axis, scale=1.0, keepdims=True):
    """Merge partial states (structured ``STATE`` arrays) along `axis`."""
    axis = normalize_axes(axis, s.ndim)[0]
    if s.shape[axis] == 1:
        return s if keepdims else np.squeeze(s, axis)
    m, l = s["m"], s["l"]
    with np.errstate(all="ignore"):
        M = np.max(m, axis=axis, keepdims=True)
        top = m == M                                  # also +-inf maxima
        k = np.argmax(top, axis=axis, keepdims=True)  # one chunk holding the max
        idx = np.arange(m.shape[axis]).reshape([-1 if i == axis else 1 for i in range(m.ndim)])
        d = np.where(top, 0.0, scale * (m - M))
        t = np.where(idx == k, 0.0, np.exp(d + l))
        lk = np.take_along_axis(l, k, axis)
        L = np.log1p(np.expm1(lk) + t.sum(axis=axis, keepdims=True))
        L = np.where(np.isnan(M), np.nan, L)
    out = np.empty(M.shape, STATE)
    out["m"] = M
    out["l"] = L
    return out if keepdims else np.squeeze(out, axis)


def _combine(s, axis, keepdims, scale):
    return merge_states(s, axis[0], scale, True)


def _aggregate(s, axis, keepdims, scale):
    return merge_states(s, axis[0], scale, keepdims)


def lse_state(x, axis=-1, *, temperature=1.0, split_every=None, where=None):
    """Lazy per-row state (structured ``STATE``: fields ``m``, ``l``, with
    ``LSE(x/T) = m/T + l``) of a dask array over the class `axis`; the
    shape of `x` without `axis`, chunked like `x`'s other axes.  `where`:
    a mask (dask or numpy, broadcast against `x`) of the entries to
    include.  float32 / float16 chunks of an axis split into several are
    reduced in float64 (see _state)."""
    return _state(x, axis, temperature, split_every, where, "split")


def _state(x, axis, temperature, split_every, where, wide):
    """lse_state; `wide`: when to reduce non-float64 chunks in float64 --
    "split" (the axis spans several chunks), "always" or None (never).

    The float32 kernels' states carry the log-sum to ~2^-29 absolute (the
    exact-reduction exp); a chunk's own LSE is redone in float64 only where
    it cancels near 0, but a merged LSE may cancel where no chunk's does
    (log-probabilities: one chunk log 0.9, another log 0.1 -- 1e7 ULP with
    4 chunks), and the label-smoothed CE gradient p_j A - w_j eps / C
    cancels against that error even with one chunk (2.9e4 ULP).  softmax
    / log_softmax and the unsmoothed CE use l only through exp(-l) or add
    it to a magnitude: float32 states suffice there."""
    x = _asdask(x)
    ax = _axis(axis, x.ndim)
    _dtypes(x.dtype)
    if x.dtype != np.float64 and (wide == "always" or (wide == "split" and x.numblocks[ax] > 1)):
        x = x.astype(np.float64)
    scale = 1.0 / positive_scalar(temperature, "temperature")
    if where is not None:
        w = _mask_like(where, x)
        ind = tuple(range(x.ndim))
        parts = _da.blockwise(_chunk_state_masked, ind, x, ind, w, ind, ax=ax,
                              scale=scale, adjust_chunks={ax: 1}, dtype=STATE,
                              meta=np.empty((0,) * x.ndim, STATE))
        return _da.reduction(
            parts, _pass_state, functools.partial(_aggregate, scale=scale),
            combine=functools.partial(_combine, scale=scale),
            axis=ax, keepdims=False, dtype=STATE, split_every=split_every,
            concatenate=True, meta=np.empty((0,) * (x.ndim - 1), STATE))
    return _da.reduction(
        x, functools.partial(_chunk_state, scale=scale),
        functools.partial(_aggregate, scale=scale),
        combine=functools.partial(_combine, scale=scale),
        axis=ax, keepdims=False, dtype=STATE, split_every=split_every,
        concatenate=True, meta=np.empty((0,) * (x.ndim - 1), STATE))


# ---------------------------------------------------------------------------
# logsumexp, softmax, log_softmax

def _lse_block(s, scale, res):
    with np.errstate(invalid="ignore"):
        return (scale * s["m"] + s["l"]).astype(res)


def logsumexp(x, axis=None, keepdims=False, *, split_every=None, where=None):
    r"""``log(sum(exp(x)))`` over `axis` of a dask array (lazy).

    Chunks along the axis are reduced separately by the C kernels and their
    (max, log-sum) states merged in a tree; see the module docstring.
    The default reduces every axis, as :func:`csoftmax.logsumexp`,
    ``csoftmax.jax.logsumexp`` and ``scipy.special.logsumexp``.

    Parameters
    ----------
    x : dask.array.Array or array_like
    axis : None, int or tuple of ints, optional
        The reduced axes (default: all).  Several axes are reduced one after
        the other in float64 (LSE is associative), then rounded once to the
        result dtype.
    keepdims : bool, optional
    split_every : int, optional
        Fan-in of the merge tree (dask's default if None).
    where : dask.array.Array or array_like of bool, optional
        Entries to include (broadcast against `x`, rechunked to `x`'s
        chunks; as :func:`csoftmax.logsumexp`'s `where`).  Each chunk is
        reduced by the masked kernels; nothing included gives -inf.

    Returns
    -------
    dask.array.Array
        Shape of `x` without the reduced axes; dtype as :func:`csoftmax.logsumexp`.
    """
    if not isinstance(x, _da.Array):
        x = _da.asarray(_to_ndarray(x, "x"))
    if x.ndim == 0:
        # a 0-d input (axis None or ()): its one element, as csoftmax.logsumexp
        normalize_axes(axis, 0)
        _, res = _dtypes(x.dtype)
        return x.astype(res)
    x = _asdask(x)
    axes = normalize_axes(axis, x.ndim)
    _, res = _dtypes(x.dtype)
    if len(axes) == 1:
        r = _lse_one_axis(x, axes[0], res, split_every, where)
    else:
        # the mask applies to the first reduction; the later ones see -inf
        # where nothing was included (which adds nothing)
        r = x if x.dtype == np.float64 else x.astype(np.float64)
        for k, ax in enumerate(sorted(axes, reverse=True)):
            if k == 0 and where is not None:
                w = _mask_like(where, r)
                r = _lse_one_axis(r, ax, np.dtype(np.float64), split_every, w)
            else:
                r = _lse_one_axis(r, ax, np.dtype(np.float64), split_every)
        r = r.astype(res)
    if keepdims:
        for ax in sorted(axes):
            r = _da.expand_dims(r, ax)
    return r


def _lse_one_axis(x, ax, res, split_every, where=None):
    st = lse_state(x, ax, split_every=split_every, where=where)
    return st.map_blocks(_lse_block, 1.0, res, dtype=res, meta=np.empty((0,) * st.ndim, res))


def _rows_of(a, ax):
    """2-D (rows, n) contiguous array with `ax` last (a view when ax is last)."""
    a = np.moveaxis(a, ax, -1)
    # (rows counted, not -1: a chunk of width 0 along the class axis -- after
    # slicing or fancy indexing -- has size 0 and reshape(-1, 0) is ambiguous)
    rows = int(np.prod(a.shape[:-1], dtype=np.int64))
    return np.ascontiguousarray(a).reshape(rows, a.shape[-1]), a.shape


def _state_rows(s):
    return (np.ascontiguousarray(s["m"], dtype=np.float64).reshape(-1),
            np.ascontiguousarray(s["l"], dtype=np.float64).reshape(-1))


def _write_block(xb, sb, ax, scale, log, comp, res):
    x2, shape = _rows_of(np.asarray(xb, dtype=comp), ax)
    m, l = _state_rows(sb)
    y = np.empty_like(x2)
    _core.rows_write(x2, y, m, l, scale, 1.0, log)
    return np.moveaxis(y.reshape(shape), -1, ax).astype(res, copy=False)


def _write_block_masked(xb, wb, sb, ax, scale, log, comp, res):
    x2, shape = _rows_of(np.asarray(xb, dtype=comp), ax)
    w2, _ = _rows_of(np.asarray(wb).view(np.uint8), ax)
    m, l = _state_rows(sb)
    y = np.empty_like(x2)
    _core.rows_write_masked(x2, w2, y, m, l, scale, 1.0, log)
    return np.moveaxis(y.reshape(shape), -1, ax).astype(res, copy=False)


def _softmax_family(x, axis, temperature, split_every, log, where=None):
    x = _asdask(x)
    ax = _axis(axis, x.ndim)
    comp, res = _dtypes(x.dtype)
    scale = 1.0 / positive_scalar(temperature, "temperature")
    ind = tuple(range(x.ndim))
    sind = tuple(i for i in ind if i != ax)
    if where is not None:
        w = _mask_like(where, x)
        st = _state(x, ax, temperature, split_every, w, None)
        return _da.blockwise(_write_block_masked, ind, x, ind, w, ind, st, sind, ax=ax,
                             scale=scale, log=log, comp=comp, res=res, dtype=res,
                             meta=np.empty((0,) * x.ndim, res))
    st = _state(x, ax, temperature, split_every, None, None)
    return _da.blockwise(_write_block, ind, x, ind, st, sind, ax=ax, scale=scale, log=log,
                         comp=comp, res=res, dtype=res, meta=np.empty((0,) * x.ndim, res))


def softmax(x, axis=-1, *, temperature=1.0, split_every=None, where=None):
    r"""Softmax of a dask array along `axis` (lazy): ``exp(x/T - LSE(x/T))``.
    `axis` is one axis (the class axis): unlike :func:`csoftmax.softmax`,
    ``None`` or a tuple raises TypeError (:func:`logsumexp` takes them).

    The LSE of each row is merged across the chunks of `axis` and broadcast
    back; each output chunk is written by the C kernels on the worker that
    holds the logits chunk.  Same values as :func:`csoftmax.softmax` (float32
    within a few ULP).  `where` (dask or numpy, broadcast against `x` and
    rechunked to its chunks): the entries to include, as
    :func:`csoftmax.softmax`'s -- read by the masked kernels chunk by chunk;
    excluded entries give 0."""
    return _softmax_family(x, axis, temperature, split_every, False, where)


def log_softmax(x, axis=-1, *, temperature=1.0, split_every=None, where=None):
    r"""Log-softmax of a dask array along `axis` (lazy): ``x/T - LSE(x/T)``;
    see :func:`softmax` (excluded entries give -inf)."""
    return _softmax_family(x, axis, temperature, split_every, True, where)


# ---------------------------------------------------------------------------
# cross_entropy

def _check_labels(t, C, ignore):
    bad = (t != ignore) & ((t < 0) | (t >= C))
    if bad.any():
        i = int(np.argmax(bad.reshape(-1)))
        raise ValueError(f"target value {t.reshape(-1)[i]} is not a class index in "
                         f"[0, {C}) nor ignore_index={ignore}")


def _ce_partial_block(xb, tb, cb, wb, sb, ax, C, ignore, scale, eps):
    """(target logit if this chunk holds it else 0, sum_c w_c (x_c - m)) per
    row, stacked along `ax` (length 2); m: the row's merged max (the sum
    about it neither overflows nor cancels, as the in-memory kernels' --
    sum_c w_c x_c - W m did both: NaN for logits near 1e308, 2e4 ULP for
    logits near 1e6); only with label smoothing (eps), else 0."""
    x2, shape = _rows_of(np.asarray(xb, dtype=np.float64), ax)
    t = np.asarray(tb).reshape(-1)
    _check_labels(t, C, ignore)
    c0, n = (int(cb[0]) if len(cb) else 0), x2.shape[1]   # (a 0-wide chunk: none)
    j = t - c0
    inb = (t != ignore) & (j >= 0) & (j < n)
    zy = np.zeros(x2.shape[0])
    r = np.nonzero(inb)[0]
    zy[r] = x2[r, j[r]]
    if eps:
        m, _ = _state_rows(sb)
        with np.errstate(invalid="ignore", over="ignore"):
            d = x2 - m[:, None]
            wx = d.sum(axis=1) if wb is None else d @ np.asarray(wb, dtype=np.float64)
    else:
        wx = np.zeros(x2.shape[0])
    out = np.stack([zy, wx], axis=-1).reshape(shape[:-1] + (2,))
    return np.moveaxis(out, -1, ax)


def _ce_rows(sb, pb, tb, ax, C, ignore, w, W, eps, scale):
    """Per-sample loss from the merged state and the summed partials."""
    m, l = sb["m"], sb["l"]
    zy = np.take(pb, 0, axis=ax)
    wx = np.take(pb, 1, axis=ax)
    t = np.asarray(tb)
    keep = t != ignore
    wy = np.where(keep, 1.0 if w is None else w[np.where(keep, t, 0)], 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        lpy = scale * (zy - m) - l
        loss = (1.0 - eps) * (-wy * lpy)
        if eps:
            swlp = scale * wx - W * l          # wx: sum_c w_c (x_c - m)
            loss = loss - eps / C * swlp
    return np.where(keep, loss, 0.0)


def _mean_loss(total, denom, smoothed):
    with np.errstate(divide="ignore", invalid="ignore"):
        if smoothed:
            return np.where(denom == 0, np.nan, total / denom)
        return np.asarray(total) / np.asarray(denom)


def _denom_block(tb, w, ignore):
    t = np.asarray(tb)
    keep = t != ignore
    if w is None:
        return np.where(keep, 1.0, 0.0)
    # a bad label is the label check's to report (ValueError), whichever task
    # runs first: never an IndexError from w[t] here, nor a wrapped w[-5]
    ok = keep & (t >= 0) & (t < len(w))
    return np.where(ok, w[np.where(ok, t, 0)], 0.0)


def _ce_grad_block(xb, sb, tb, cb, wb, coef, ax, C, ignore, w, W, eps, scale, res):
    x2, shape = _rows_of(np.asarray(xb, dtype=np.float64), ax)
    m, l = _state_rows(sb)
    coef = float(coef)
    p = np.empty_like(x2)
    _core.rows_write(x2, p, m, l, scale, 1.0, False)
    t = np.asarray(tb).reshape(-1)
    keep = t != ignore
    ts = np.where(keep, t, 0)
    wy = np.where(keep, 1.0 if w is None else w[ts], 0.0)
    A = (1.0 - eps) * wy + eps * W / C
    with np.errstate(invalid="ignore", over="ignore"):
        g = p                                        # in place: chunks may be large
        g *= (coef * A)[:, None]
        if eps:
            wc = np.ones(x2.shape[1]) if wb is None else np.asarray(wb, dtype=np.float64)
            g -= (coef * eps / C) * wc[None, :]
        c0, n = (int(cb[0]) if len(cb) else 0), x2.shape[1]   # (a 0-wide chunk: none)
        j = t - c0
        r = np.nonzero(keep & (j >= 0) & (j < n))[0]
        if r.size:
            jj = j[r]
            lpy = scale * (x2[r, jj] - m[r]) - l[r]
            a = coef * A[r]
            b = coef * wy[r] * ((1.0 - eps) + eps / C)
            g[r, jj] = b * np.expm1(lpy) + (a - b) * np.exp(lpy)
        # ignored rows, and rows whose coefficient is 0 (a class weight of 0,
        # no smoothing): zeros, as in memory -- not 0 * p, NaN at a +inf logit
        g[~keep | (coef * A == 0)] = 0.0
    del x2
    return np.moveaxis(g.reshape(shape), -1, ax).astype(res, copy=False)


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, temperature=1.0,
                  return_grad=False, split_every=None):
    r"""Cross-entropy of a (vocabulary-sharded) dask array of logits against
    integer class indices, optionally with its gradient -- lazy.

    Same definition and options as :func:`csoftmax.cross_entropy` for
    class-index targets (probability targets are not supported here).  The
    loss needs, per row, the merged LSE state, the target logit (taken from
    the one chunk holding that column) and, with label smoothing,
    ``sum_c w_c x_c``; the gradient

    .. math:: g_{ij} = \frac{c}{T}\bigl(p_{ij} A_i - w_j q'_{ij}\bigr)

    is written chunk by chunk where the logits live (``c`` = 1/denominator
    for 'mean').

    Parameters
    ----------
    logits : dask.array.Array or array_like
        Chunked along any axes, the class `axis` included.
    target : dask.array.Array or array_like of int
        Shape of `logits` without `axis`; rechunked to match the logits.
    axis, weight, ignore_index, reduction, label_smoothing, temperature
        As :func:`csoftmax.cross_entropy`.  `weight` is a small NumPy
        array of length C.
    return_grad : bool, optional
        Also return the lazy gradient (chunked like `logits`).
    split_every : int, optional
        Fan-in of the LSE merge tree.

    Returns
    -------
    loss : dask.array.Array
        0-d for 'mean' / 'sum', per-sample for 'none'.
    grad : dask.array.Array
        Only with ``return_grad=True``.

    Raises
    ------
    ValueError
        Bad shapes / options at call time; an invalid class index when the
        graph is computed.
    """
    x = _asdask(logits, "logits")
    ax = _axis(axis, x.ndim)
    comp, res = _dtypes(x.dtype)
    C = x.shape[ax]
    if C == 0:
        raise ValueError("logits have no classes (the class axis has length 0)")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    eps = _losses._smoothing(label_smoothing)
    scale = 1.0 / positive_scalar(temperature, "temperature")
    ignore = _losses._ignore(ignore_index)
    tshape = x.shape[:ax] + x.shape[ax + 1:]
    t = target if isinstance(target, _da.Array) else _da.asarray(_losses._target_array(target))
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got {t.dtype} "
                        "(probability targets are not supported by csoftmax.dask)")
    if t.shape != tshape:
        raise ValueError(f"target has shape {t.shape}; expected {tshape} (class indices) for "
                         f"logits of shape {x.shape} with class axis {ax}")
    tchunks = tuple(c for i, c in enumerate(x.chunks) if i != ax)
    t = t.rechunk(tchunks)
    if weight is not None:
        w = np.ascontiguousarray(_to_ndarray(weight, "weight"), dtype=np.float64)
        if w.shape != (C,):
            raise ValueError(f"weight has shape {w.shape}, expected ({C},) (one per class)")
        W = float(w.sum())
        wd = _da.from_array(w, chunks=(x.chunks[ax],))
    else:
        w, W, wd = None, float(C), None

    ind = tuple(range(x.ndim))
    sind = tuple(i for i in ind if i != ax)
    cols = _da.arange(C, chunks=(x.chunks[ax],))
    st = _state(x, ax, temperature, split_every, None, "always" if eps else None)
    wargs = (wd, (ax,)) if wd is not None else (None, None)
    parts = _da.blockwise(_ce_partial_block, ind, x, ind, t, sind, cols, (ax,), *wargs,
                          st, sind, ax=ax, C=C, ignore=ignore, scale=scale, eps=eps,
                          adjust_chunks={ax: 2},
                          dtype=np.float64, meta=np.empty((0,) * x.ndim, np.float64))
    nb = x.numblocks[ax]
    pidx = [slice(None)] * x.ndim
    if nb > 1:
        # per row: sum over class chunks (the target logit is in exactly one)
        zy = parts[tuple(pidx[:ax] + [slice(0, None, 2)] + pidx[ax + 1:])].sum(axis=ax)
        wx = parts[tuple(pidx[:ax] + [slice(1, None, 2)] + pidx[ax + 1:])].sum(axis=ax)
        parts = _da.stack([zy, wx], axis=ax).rechunk({ax: 2})
    per = _da.blockwise(_ce_rows, sind, st, sind, parts, ind, t, sind, ax=ax, C=C,
                        ignore=ignore, w=w, W=W, eps=eps, scale=scale, concatenate=True,
                        dtype=np.float64, meta=np.empty((0,) * (x.ndim - 1), np.float64))
    denom = None
    if reduction == "none":
        loss = per.astype(res)
    elif reduction == "sum":
        loss = per.sum().astype(res)
    else:
        denom = t.map_blocks(_denom_block, w, ignore, dtype=np.float64).sum()
        # zero total weight, like csoftmax.cross_entropy: the loss sum / 0
        # (+-inf; NaN for 0 / 0 and with label smoothing), the gradient NaN
        loss = _da.map_blocks(_mean_loss, per.sum(), denom, bool(eps),
                              dtype=np.float64).astype(res)
        denom = _da.where(denom == 0, np.nan, denom)
    if not return_grad:
        return loss
    coef = scale / denom if denom is not None else _da.asarray(np.float64(scale))
    grad = _da.blockwise(_ce_grad_block, ind, x, ind, st, sind, t, sind, cols, (ax,),
                         *wargs, coef, (), ax=ax, C=C, ignore=ignore, w=w, W=W, eps=eps,
                         scale=scale, res=res, dtype=res, meta=np.empty((0,) * x.ndim, res))
    return loss, grad


# ---------------------------------------------------------------------------
# linear_cross_entropy: rows across workers, the weight broadcast once

def _lce_block(hb, tb, W, b, cw, denom, ignore, eps, temperature, chunk, need):
    """One row block: (per-row float64 losses, dh, dW, db) with the global
    gradient coefficient (the 'mean' denominator is computed beforehand)."""
    P = _lce._prepare(hb, W, tb, b, cw, ignore, "sum", eps, temperature, chunk)
    if denom is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            P["coef"] = float(np.float64(P["scale"]) / np.float64(denom))
    return _lce._run(P, need)


def _lce_denom(tb, V, ignore, cw):
    t = np.asarray(tb)
    if t.ndim == 2:                 # probability targets: the number of rows
        return float(t.shape[0])
    return float(np.sum(_denom_block(t, cw, ignore)))


def _pairwise_sum(parts):
    import dask
    add = dask.delayed(np.add, pure=True)
    while len(parts) > 1:
        parts = [add(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
                 for i in range(0, len(parts), 2)]
    return parts[0]


def linear_cross_entropy(h, weight, target, *, bias=None, class_weight=None,
                         ignore_index=-100, reduction="mean", label_smoothing=0.0,
                         temperature=1.0, return_grad=False, chunk_size=None):
    """:func:`csoftmax.linear_cross_entropy` on a dask array of hidden states
    chunked along the rows -- lazy.

    Each row block runs the in-memory function on its worker; `weight` (and
    `bias`, `class_weight`: NumPy arrays) enter the graph once, as one key
    each, so every worker receives them once.  The losses and ``dh`` stay
    per block; ``dweight`` and ``dbias`` are summed over the blocks in a
    pairwise tree.  For 'mean' the denominator (the kept samples' weight)
    is summed from the targets first and each block's gradients carry the
    global ``1 / denominator``, so the numbers are the in-memory ones (up
    to the order of the final sums).

    Parameters
    ----------
    h : dask.array.Array or array_like, shape (B, D)
        Chunked along the rows only (one chunk across the features).
    weight : array_like, shape (V, D)
        A NumPy array (it is broadcast whole).
    target : dask.array.Array or array_like
        Class indices (B,) or probabilities (B, V); rechunked to `h`'s rows.
    bias, class_weight, ignore_index, reduction, label_smoothing, temperature, chunk_size
        As :func:`csoftmax.linear_cross_entropy` (`chunk_size`: rows per
        chunk within a block).
    return_grad : bool, optional
        Also return ``(dh, dweight[, dbias])`` as dask arrays.

    Returns
    -------
    loss : dask.array.Array
        0-d for 'mean' / 'sum', (B,) for 'none'.
    grads : tuple of dask.array.Array
        Only with ``return_grad=True``.
    """
    import dask
    x = _asdask(h, "h")
    if x.ndim != 2:
        raise ValueError(f"h must be 2-D (rows, features), got shape {x.shape}")
    B, D = x.shape
    if x.numblocks[1] != 1:
        raise ValueError(f"h is chunked along the features ({x.chunks[1]}); chunk it "
                         "along the rows only: h.rechunk({1: -1})")
    W = _to_ndarray(weight, "weight")
    b = None if bias is None else _to_ndarray(bias, "bias")
    cw = None if class_weight is None else _to_ndarray(class_weight, "class_weight")
    t = target if isinstance(target, _da.Array) else _da.asarray(_losses._target_array(target))
    # every check but the label range (done per block at compute time)
    probe = _lce._prepare(np.empty((0, D), x.dtype), W, np.empty((0,) + t.shape[1:], t.dtype),
                          b, cw, ignore_index, reduction, label_smoothing, temperature,
                          chunk_size)
    V, comp, res = probe["V"], probe["comp"], probe["res"]
    if t.shape not in ((B,), (B, V)):
        raise ValueError(f"target has shape {t.shape}; expected {(B,)} (class indices) "
                         f"or {(B, V)} (probabilities) for h of shape {x.shape}")
    t = t.rechunk((x.chunks[0],) + ((V,) if t.ndim == 2 else ()))
    cw64 = probe["w"]
    ignore = probe["ignore"]
    Wk = dask.delayed(W, pure=True)
    bk = None if b is None else dask.delayed(b, pure=True)
    cwk = None if cw is None else dask.delayed(cw, pure=True)
    denom = None
    if reduction == "mean":
        parts_den = [dask.delayed(_lce_denom, pure=True)(tb, V, ignore, cw64)
                     for tb in t.to_delayed().ravel()]
        denom = dask.delayed(sum, pure=True)(parts_den)
    blk = dask.delayed(_lce_block, pure=True, nout=4)
    parts = [blk(hb, tb, Wk, bk, cwk, denom, ignore_index, label_smoothing, temperature,
                 chunk_size, return_grad)
             for hb, tb in zip(x.to_delayed().ravel(), t.to_delayed().ravel())]
    rows = x.chunks[0]
    lo = _da.concatenate([_da.from_delayed(p[0], (r,), np.float64)
                          for p, r in zip(parts, rows)]) if parts else \
        _da.zeros((0,), np.float64)
    if reduction == "none":
        loss = lo.astype(res)
    elif reduction == "sum":
        loss = lo.sum().astype(res)
    else:
        dn = _da.from_delayed(denom, (), np.float64)
        loss = (lo.sum() / _da.where(dn == 0, np.nan, dn)).astype(res)
    if not return_grad:
        return loss
    dh = _da.concatenate([_da.from_delayed(p[1], (r, D), comp)
                          for p, r in zip(parts, rows)]).astype(res)
    dW = _da.from_delayed(_pairwise_sum([p[2] for p in parts]), (V, D), comp).astype(res)
    grads = (dh, dW)
    if b is not None:
        db = _da.from_delayed(_pairwise_sum([p[3] for p in parts]), (V,), np.float64)
        grads += (db.astype(res),)
    return loss, grads
