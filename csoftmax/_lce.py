"""Fused linear + cross-entropy (the vocabulary head of a language model)
without the B x V logits -- facade over csoftmax._core's fused CE pass.

The rows are walked in chunks.  For each chunk the logits ``h_c @ W.T``
(+ bias) are written by BLAS (``numpy.matmul`` with ``out=``: NumPy calls its
BLAS with the GIL released) into one preallocated ``chunk x V`` buffer, the
fused cross-entropy pass (``_core.ce_pass``, the loop under
:func:`csoftmax.cross_entropy`) turns them in place into the per-row losses
and the gradient with respect to the logits, and BLAS folds that gradient
into ``dh = G @ W`` and ``dW += G.T @ h_c``.

Why ``numpy.matmul`` and not ``scipy.linalg.cython_blas``: measured on this
machine (Sapphire Rapids class, 2 threads, B=1024-row chunk of the
B=4096 / D=512 / V=32000 float32 head) the three GEMMs of a chunk take
98 / 115 / 101 ms through ``numpy.matmul(out=)`` and the beta=1 ``sgemm``
(what cython_blas would call) takes 100 ms for the dW product, against
101 ms + 6.6 ms for ``matmul`` into a temporary plus ``dW += tmp``: about
2 % of a chunk, for a runtime dependency on scipy and a second compiled
module.  Both are the same OpenBLAS.  The temporary is bounded (vocabulary
slices of at most ``chunk x V`` elements), so the memory bound holds.
"""

import math

import numpy as np

from . import _core
from ._losses import (_ignore, _labels, _reduce_loss, _reduction, _smoothing,
                      _split_parts, _target_array)
from ._typing import ArrayLike, Reduction, Result
from ._validate import as_input, half_kind, integer, positive_scalar

__all__ = ["linear_cross_entropy"]

#: default chunk: this many rows (see the docstring of linear_cross_entropy
#: for the measurement behind it) ...
_CHUNK_ROWS = 1024
#: ... fewer only when their logits would pass this many bytes
_CHUNK_MAX_BYTES = 1 << 30
#: the temporary for dW += G.T @ h: vocabulary slices of about this size
_TMP_BYTES = 8 << 20
_TMP_MIN_ROWS = 256


def default_chunk_size(B, V, itemsize):
    """Rows per chunk when `chunk_size` is None: 1024, fewer only when their
    logits would pass 1 GiB, at most the batch."""
    rows = min(_CHUNK_ROWS, _CHUNK_MAX_BYTES // max(1, V * itemsize))
    return int(max(1, min(B, rows)))


def _class_weight(class_weight, V):
    if class_weight is None:
        return None
    w, _, _ = as_input(class_weight, "class_weight")
    if w.shape != (V,):
        raise ValueError(f"class_weight has shape {w.shape}, expected ({V},) (one per class)")
    return np.ascontiguousarray(w, dtype=np.float64)


def _prepare(h, weight, target, bias, class_weight, ignore_index, reduction,
             label_smoothing, temperature, chunk_size):
    """Everything checked and converted before any work: a dict of the
    arrays and scalars the loop needs."""
    ha, hcomp, hres = as_input(h, "h")
    wa, wcomp, wres = as_input(weight, "weight")
    if ha.ndim == 0:
        raise ValueError("h must have at least one dimension (the hidden features, last)")
    if wa.ndim != 2:
        raise ValueError(f"weight must be 2-D (classes, features), got shape {wa.shape}")
    D = ha.shape[-1]
    V = wa.shape[0]
    if wa.shape[1] != D:
        raise ValueError(f"weight has shape {wa.shape}, expected ({V}, {D}): h has "
                         f"{D} features (its last axis)")
    if V == 0:
        raise ValueError("weight has no classes (its first axis has length 0)")
    # float32 only if both are float32 (float16 computes in float32), else float64
    comp = np.result_type(hcomp, wcomp)
    res = np.result_type(hres, wres)
    ba = None
    if bias is not None:
        ba, bcomp, bres = as_input(bias, "bias")
        if ba.shape != (V,):
            raise ValueError(f"bias has shape {ba.shape}, expected ({V},) (one per class)")
        comp = np.result_type(comp, bcomp)
        res = np.result_type(res, bres)
    reduction = _reduction(reduction)
    eps = _smoothing(label_smoothing)
    scale = 1.0 / positive_scalar(temperature, "temperature")
    ignore = _ignore(ignore_index)
    w = _class_weight(class_weight, V)
    tshape = ha.shape[:-1]
    lshape = tshape + (V,)
    B = math.prod(tshape)
    if chunk_size is None:
        chunk = default_chunk_size(B, V, comp.itemsize)
    else:
        chunk = integer(chunk_size, f"chunk_size must be an integer, got {chunk_size!r}")
        if chunk < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
        chunk = int(min(chunk, max(B, 1)))
    t = _target_array(target)
    if t.shape == lshape:
        prob = True
        if t.dtype.kind != "f" and half_kind(t.dtype) != 2:   # (bfloat16: kind 'V')
            raise TypeError(f"target has the shape of the logits {lshape}, so it holds "
                            f"class probabilities and must be floating, got {t.dtype}")
        if ignore >= 0:
            raise ValueError("ignore_index is not supported with probability targets "
                             f"(got ignore_index={ignore})")
        y = None
        denom = B
        q = t.reshape(B, V)
    elif t.shape == tshape:
        prob = False
        y, tot, cnt = _labels(t, tshape, V, ignore, w)
        denom = tot if w is not None else cnt
        q = None
    else:
        raise ValueError(f"target has shape {t.shape}; expected {tshape} (class indices) "
                         f"or {lshape} (probabilities) for h of shape {ha.shape} and "
                         f"weight of shape {wa.shape}")
    Wsum = float(np.sum(w)) if w is not None else float(V)
    if reduction == "mean":
        with np.errstate(divide="ignore"):
            coef = float(np.float64(scale) / np.float64(denom))
    else:
        coef = scale
    return dict(h=ha, weight=wa, bias=ba, comp=comp, res=res, B=B, D=D, V=V,
                tshape=tshape, y=y, q=q, prob=prob, w=w, Wsum=Wsum, scale=scale,
                eps=eps, coef=coef, ignore=ignore, reduction=reduction,
                denom=denom, chunk=chunk)


def _run(P, return_grad, row_scale=None):
    """The chunk loop: (per-row float64 losses, dh2d, dW, db) in P['comp'].
    row_scale (float64, one per row): the gradients of sum_i s_i loss_i
    instead of the loss's (torch's backward of reduction='none')."""
    comp, B, D, V, chunk = P["comp"], P["B"], P["D"], P["V"], P["chunk"]
    h2 = np.ascontiguousarray(P["h"], dtype=comp).reshape(B, D)
    W = np.ascontiguousarray(P["weight"], dtype=comp)
    bias = None if P["bias"] is None else np.ascontiguousarray(P["bias"], dtype=comp)
    y, q, w = P["y"], P["q"], P["w"]
    mode = 1 if P["prob"] else 0
    lo = _core.empty(B, np.float64)
    dh = dW = db = None
    if return_grad:
        dh = _core.empty((B, D), comp)
        dW = np.zeros((V, D), dtype=comp)
        db = np.zeros(V, dtype=np.float64) if bias is not None else None
    if B == 0:
        return lo, dh, dW, db
    buf = _core.empty((min(chunk, B), V), comp)
    tmp = None
    first = True
    for r0 in range(0, B, chunk):
        m = min(chunk, B - r0)
        g = buf[:m]
        hc = h2[r0:r0 + m]
        np.matmul(hc, W.T, out=g)
        if bias is not None:
            np.add(g, bias, out=g)
        qc = None if q is None else np.ascontiguousarray(q[r0:r0 + m], dtype=comp)
        yc = None if y is None else y[r0:r0 + m]
        _core.ce_pass(g, qc, g if return_grad else None, yc, w, P["Wsum"], P["scale"],
                      P["eps"], P["coef"], P["ignore"], mode, None, lo[r0:r0 + m])
        if not return_grad:
            continue
        dhc = dh[r0:r0 + m]
        np.matmul(g, W, out=dhc)
        if row_scale is not None:
            sc = row_scale[r0:r0 + m]
            np.multiply(dhc, sc[:, None], out=dhc, casting="unsafe")
            hc = (hc * sc[:, None]).astype(comp, copy=False)
            if db is not None:
                db += sc.astype(comp) @ g
        elif db is not None:
            db += g.sum(axis=0, dtype=np.float64)
        if first:
            np.matmul(g.T, hc, out=dW)
            first = False
            continue
        # dW += g.T @ hc through a temporary of vocabulary slices: about
        # _TMP_BYTES (but >= _TMP_MIN_ROWS rows for BLAS), never more than
        # m x V elements (the memory bound)
        vb = max(_TMP_MIN_ROWS, _TMP_BYTES // max(1, D * comp.itemsize))
        vb = int(max(1, min(V, vb, (m * V) // max(D, 1))))
        if tmp is None or tmp.shape[0] < vb:
            tmp = np.empty((vb, D), dtype=comp)
        for v0 in range(0, V, vb):
            v1 = min(V, v0 + vb)
            t = tmp[:v1 - v0]
            np.matmul(g[:, v0:v1].T, hc, out=t)
            np.add(dW[v0:v1], t, out=dW[v0:v1])
    return lo, dh, dW, db


def linear_cross_entropy(h: ArrayLike, weight: ArrayLike, target: ArrayLike, *,
                         bias: ArrayLike | None = None,
                         class_weight: ArrayLike | None = None,
                         ignore_index: int = -100, reduction: Reduction = "mean",
                         label_smoothing: float = 0.0, temperature: float = 1.0,
                         return_grad: bool = False,
                         chunk_size: int | None = None) -> Result:
    r"""Cross-entropy of the linear map ``h @ weight.T + bias`` against
    `target`, optionally with the gradients, without forming the logits.

    The result is :func:`cross_entropy` of ``logits = h @ weight.T + bias``
    (class axis last; same arguments: `class_weight` is cross_entropy's
    `weight`), i.e. :func:`torch.nn.functional.linear_cross_entropy`.  The
    ``B x V`` logits are never held: the rows go through in chunks of
    `chunk_size`; each chunk's logits are computed by BLAS into one
    ``chunk x V`` buffer, turned in place into the gradient with respect to
    the logits by the fused cross-entropy pass (the same C kernels as
    ``cross_entropy(..., return_grad=True)``), and multiplied into ``dh``
    and ``dweight`` by BLAS.  Extra memory: at most ``2 x chunk x V``
    elements (the buffer and a temporary for accumulating ``dweight``, of
    at most 8 MiB or ``chunk x V``) on top of the outputs, besides
    ``O(B + V)`` bookkeeping, copies of `h` / `weight` that are not
    C-contiguous in the compute dtype, and a converted chunk of probability
    targets whose dtype differs from the compute dtype.  Only the rows are
    chunked: one row of V logits must fit in memory.

    Parameters
    ----------
    h : array_like, shape (..., D)
        Hidden states; the last axis holds the features.
    weight : array_like, shape (V, D)
        The linear layer's weight (one row per class).
    target : array_like
        Integer class indices (shape ``h.shape[:-1]``) or class probabilities
        (floating, shape ``h.shape[:-1] + (V,)``).
    bias : array_like, shape (V,), optional
        Added to the logits.
    class_weight : array_like, shape (V,), optional
        Per-class weights (:func:`cross_entropy`'s `weight`).
    ignore_index, reduction, label_smoothing, temperature
        As for :func:`cross_entropy`.
    return_grad : bool, optional
        Also return the gradients of the returned loss (of ``loss.sum()``
        for ``'none'``) with respect to `h`, `weight` and (if given) `bias`.
    chunk_size : int, optional
        Rows per chunk (>= 1; larger than the batch means one chunk).  The
        default is 1024 rows -- fewer only when their logits would pass
        1 GiB (V > 262144 in float32), at most the batch: the buffer is
        125 MiB for V=32000 float32, 512 MiB for V=131072.  Why 1024: the
        time is the three GEMMs per chunk, and the one contracting over
        the vocabulary (``dh = G @ W``, inner length V) runs far below
        BLAS speed for short chunks when BLAS threads (2 threads, loaded
        2-core machine, loss and gradients): B=4096, D=512, V=32000 took
        17.4 / 7.7 / 5.1 / 6.1 / 5.6 s for 256 / 512 / 1024 / 2048 / 4096
        rows, and B=2048, V=131072 38.1 / 17.6 / 10.7 s for 256 / 512 /
        1024 rows, while the peak memory grows with the chunk.  1024 rows
        is where the time stops improving.  See BENCHMARKS.md.

    Returns
    -------
    loss : scalar or ndarray
        As :func:`cross_entropy`: a scalar of the result dtype for
        ``'mean'`` / ``'sum'``, an array of shape ``h.shape[:-1]`` for
        ``'none'``.
    grads : tuple
        Only with ``return_grad=True``: ``(dh, dweight)`` or, with `bias`,
        ``(dh, dweight, dbias)``, of the shapes of `h`, `weight`, `bias`.

    Raises
    ------
    ValueError
        `weight` not 2-D or not ``(V, D)``, no classes, bad `bias` /
        `class_weight` / `target` shape, a class index out of range (first
        bad position named), bad `reduction`, `label_smoothing`,
        `temperature`, non-negative `ignore_index` with probability targets,
        ``chunk_size < 1``.
    TypeError
        Complex or non-numeric input, integer probabilities or floating
        class indices, a non-integer `chunk_size`.

    Notes
    -----
    Dtypes: float32 when `h`, `weight` (and `bias`) are all float32 (float16
    is computed in float32), else float64; the result has the promoted
    input dtype.  The logits are rounded to that dtype by the GEMM, so
    against an exact (float64) reference the loss carries, besides
    :func:`cross_entropy`'s bound, the GEMM's rounding of the logits (at
    most ``2 max_c |Δz_c|`` per row), and the gradients the GEMM's
    rounding of ``G @ W`` and ``G.T @ h``.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> h = np.array([[1.0, 2.0], [0.5, -1.0]])
    >>> W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> y = np.array([2, 0])
    >>> loss = csoftmax.linear_cross_entropy(h, W, y)
    >>> bool(np.isclose(loss, csoftmax.cross_entropy(h @ W.T, y)))
    True
    >>> loss, (dh, dW) = csoftmax.linear_cross_entropy(h, W, y, return_grad=True)
    >>> dh.shape, dW.shape
    ((2, 2), (3, 2))
    """
    return _linear_ce(h, weight, target, bias, class_weight, ignore_index, reduction,
                      label_smoothing, temperature, return_grad, chunk_size)


def _linear_ce(h, weight, target, bias, class_weight, ignore_index, reduction,
               label_smoothing, temperature, return_grad, chunk_size, row_scale=None):
    P = _prepare(h, weight, target, bias, class_weight, ignore_index, reduction,
                 label_smoothing, temperature, chunk_size)
    if row_scale is not None:
        row_scale = np.ascontiguousarray(row_scale, dtype=np.float64).reshape(-1)
        if row_scale.shape != (P["B"],):
            raise ValueError(f"row_scale has {row_scale.size} values, expected {P['B']}")
    parts = _split_parts(lambda e, out: np.copyto(out, _run(dict(P, eps=e), False)[0]),
                         P["B"], P["eps"], P["V"], P["reduction"], P["denom"])
    lo, dh, dW, db = _run(P, return_grad, row_scale)
    res = P["res"]
    loss = _reduce_loss(lo, P["reduction"], P["denom"], P["tshape"], res, parts)
    if not return_grad:
        return loss
    grads = (dh.reshape(P["h"].shape).astype(res, copy=False),
             dW.astype(res, copy=False))
    if db is not None:
        grads += (db.astype(res),)
    return loss, grads
