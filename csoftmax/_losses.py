"""Loss functions (cross-entropy and friends) -- facade over csoftmax._core.

Validation, dtype rules and layout live here (everything is checked before
the first write); the loops run in ``_core`` (``_losses.pxi``) with the GIL
released, on the same C kernels as :func:`csoftmax.softmax`.
"""

import math

import numpy as np

from ._typing import ArrayLike, Axes, Axis, FloatArray, FloatResult, Reduction, Result

from . import _core
from ._api import _mask_view, _plan, _reduce, _softmax_family
from ._validate import (_to_ndarray, as_input, as_mask, check_out, comp_for_scale,
                        half_kind, integer, may_write_directly, normalize_axes,
                        positive_scalar, real_scalar, reshape_view, short_repr)

# the dtype advice of check_out for functions without a dtype= argument
_NO_DTYPE = "the result dtype follows the inputs' dtypes; this function has no dtype="

__all__ = ["cross_entropy", "nll_loss", "softmax_backward",
           "log_softmax_backward", "logsumexp_backward"]

_REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------
# argument helpers

def _class_axis(a, axis, name):
    if axis is None or isinstance(axis, (tuple, list)):
        # (None would be "every axis" in the forward functions: not a class axis)
        raise TypeError(f"axis must be a single integer (the class axis), got {axis!r}")
    if a.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the class axis)")
    return normalize_axes(axis, a.ndim)[0]


def _several_axes(fn, x, dy, axis, out, names, reduced, **kw):
    """The backward of a forward call over several axes (axis=None or a
    tuple, as softmax / logsumexp take them): those axes moved last and
    merged into one, `fn` along it, the result moved back.  None when
    `axis` names one axis (the caller goes on)."""
    if axis is not None and not isinstance(axis, (tuple, list)):
        return None
    a, _, _ = as_input(x, names[0])
    axes = normalize_axes(axis, a.ndim)
    if len(axes) == 1:
        return fn(x, dy, axes[0], out=out, **kw)
    d, _, _ = as_input(dy, names[1])
    rest = [i for i in range(a.ndim) if i not in axes]
    perm = rest + list(axes)
    rshape = tuple(a.shape[i] for i in rest)
    n = math.prod([a.shape[i] for i in axes])
    if reduced:
        kshape = tuple(1 if i in axes else a.shape[i] for i in range(a.ndim))
        if d.shape not in (rshape, kshape):
            raise ValueError(f"{names[1]} has shape {d.shape}, expected {rshape} (or "
                             f"{kshape}) for {names[0]} of shape {a.shape} with axis {axis!r}")
        d2 = d.reshape(rshape)
    else:
        if d.shape != a.shape:
            raise ValueError(f"{names[1]} has shape {d.shape}, expected {a.shape} "
                             f"(the shape of {names[0]})")
        d2 = np.transpose(d, perm).reshape(rshape + (n,))
    where = kw.pop("where", None)
    if where is not None:
        m = np.broadcast_to(as_mask(where, a.shape), a.shape)
        kw["where"] = np.transpose(m, perm).reshape(rshape + (n,))
    a2 = np.transpose(a, perm).reshape(rshape + (n,))
    r = fn(a2, d2, -1, **kw)
    r = np.transpose(r.reshape(rshape + tuple(a.shape[i] for i in axes)), np.argsort(perm))
    if out is not None:
        check_out(out, a.shape, r.dtype, "out", _NO_DTYPE)
        np.copyto(out, r)
        return out
    # (not np.ascontiguousarray: it makes a 0-d result 1-d)
    return r if r.flags.c_contiguous else np.ascontiguousarray(r)


def _target_array(target, name="target",
                  hint="pass target.filled(ignore_index) to leave the masked samples out"):
    """`target` as an ndarray by the conversion of every array argument
    (_validate._to_ndarray: DLPack, subclasses as plain views), a MaskedArray
    refused with `hint` (its mask would be ignored)."""
    if isinstance(target, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; csoftmax would ignore its "
                        f"mask: {hint}")
    return _to_ndarray(target, name)


def _target_kind(tshape, tdtype, shape, ax, ignore):
    """True for probability targets (the logits' shape, floating), False for
    class indices (the shape without the class axis; their dtype is checked
    with the values, _labels); else the error.  The rule of cross_entropy
    and of the adapters' checks at the call (csoftmax.jax)."""
    rows = tuple(shape[:ax]) + tuple(shape[ax + 1:])
    if tuple(tshape) == tuple(shape):
        if tdtype.kind != "f" and half_kind(tdtype) != 2:
            raise TypeError(f"target has the shape of logits {tuple(shape)}, so it holds "
                            f"class probabilities and must be floating, got {tdtype}")
        if ignore >= 0:
            raise ValueError("ignore_index is not supported with probability targets "
                             f"(got ignore_index={ignore})")
        return True
    if tuple(tshape) == rows:
        if tdtype.kind not in "iu":
            raise TypeError(f"target with shape {tuple(tshape)} holds class indices and must "
                            f"have an integer dtype, got {tdtype}")
        return False
    raise ValueError(f"target has shape {tuple(tshape)}; expected {rows} (class indices) "
                     f"or {tuple(shape)} (probabilities) for logits of shape {tuple(shape)} "
                     f"with class axis {ax}")


def _where_allowed(prob, eps):
    if prob or eps != 0.0:
        raise ValueError("where= is supported with class-index targets without "
                         "label smoothing")


def _smoothing(label_smoothing):
    """label_smoothing as a float in [0, 1] (TypeError / ValueError else)."""
    eps = real_scalar(label_smoothing, "label_smoothing")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {short_repr(label_smoothing)}")
    return eps


def _reduction(reduction):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _ignore(ignore_index):
    v = integer(ignore_index, f"ignore_index must be an integer, got {ignore_index!r}")
    if not _INT64_MIN <= v <= _INT64_MAX:
        raise OverflowError(f"ignore_index={v} does not fit in a signed 64-bit "
                            "integer (labels are int64)")
    return v


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _weight(weight, C):
    if weight is None:
        return None
    w, _, _ = as_input(weight, "weight")
    if w.shape != (C,):
        raise ValueError(f"weight has shape {w.shape}, expected ({C},) (one per class)")
    return np.ascontiguousarray(w, dtype=np.float64)


def _labels(t, tshape, C, ignore, w, name="target"):
    """int64 class indices (flat, sample order); checks the range."""
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name} with shape {t.shape} holds class indices and must "
                        f"have an integer dtype, got {t.dtype}")
    # by value, whatever the dtype's byte order: a uint64 label above the int64
    # range would wrap to a negative one (and could equal ignore_index)
    if t.dtype.kind == "u" and t.itemsize >= 8 and t.size and int(t.max()) > _INT64_MAX:
        bad = int(np.argmax((t > _INT64_MAX).reshape(-1)))
        pos = np.unravel_index(bad, tshape)
        raise ValueError(f"{name}[{', '.join(map(str, pos))}] = {t.reshape(-1)[bad]} "
                         f"is not a class index in [0, {C})")
    y = np.ascontiguousarray(t, dtype=np.int64).reshape(-1)
    bad, tot, cnt = _core.check_labels(y, C, ignore, w)
    if bad >= 0:
        pos = np.unravel_index(bad, tshape)
        raise ValueError(f"{name}[{', '.join(map(str, pos))}] = {y[bad]} is not a class "
                         f"index in [0, {C}) nor ignore_index={ignore}")
    return y, tot, cnt


def _rows_view(arr, shape):
    """`arr` (already of the compute dtype) as `shape` with a contiguous last
    axis and element-multiple strides; a view when possible."""
    v = reshape_view(arr, shape)
    item = arr.itemsize
    if v is None or v.strides[-1] != item or any(s % item for s in v.strides):
        v = np.ascontiguousarray(arr).reshape(shape)
    return v


def _grad_target(grad_out, xv, reads, comp):
    """(array the kernels write, its view of xv's shape): grad_out itself when
    its layout allows and it overlaps none of the arrays the kernel `reads`
    (except being exactly the logits `xv`: in place), else a fresh buffer."""
    if grad_out is not None and grad_out.dtype == comp:
        gv = reshape_view(grad_out, xv.shape)
        item = grad_out.itemsize
        if (gv is not None and grad_out.flags.aligned and gv.strides[-1] == item
                and not any(s % item for s in gv.strides)
                and may_write_directly(gv, reads, in_place=(xv,))):
            return grad_out, gv
    g = _core.empty(xv.shape, comp)
    return g, g


def _finish(g, gv_owner, shape, res, grad_out):
    if g is grad_out:
        return grad_out
    g = g.reshape(shape)
    if grad_out is not None:
        np.copyto(grad_out, g, casting="unsafe")
        return grad_out
    return g.astype(res, copy=False)


def _div(a, b):
    """a / b as float64 division under IEEE rules (+-inf, NaN over a zero
    b) without numpy's error-state context manager, which costs more than
    a small cross-entropy's kernel."""
    a, b = float(a), float(b)
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _reduce_loss(lo, reduction, denom, tshape, res, parts=None):
    """The loss of per-sample losses `lo` by `reduction` ('mean' over
    `denom`, the kept samples' total weight).  parts (_split_parts; given
    only for a label-smoothed 'mean' over a zero denom): (A, B, eps, C), the
    sums of the two parts of the per-sample loss, lo_i = (1 - eps) a_i +
    (eps / C) b_i (a_i = -w_y log p_y, b_i = -sum_c w_c log p_c), which
    torch divides by the denom separately."""
    # a zero loss is +0: the kernels may form -(log p) = -0 where log p is
    # +0 (a one-class row), and did so on some paths and not others -- the
    # loss must have the same bits with and without its gradient
    lo = lo + 0.0
    if reduction == "none":
        r = lo.reshape(tshape).astype(res)
        return r if r.ndim else r[()]
    total = float(lo.sum())
    if reduction == "mean":
        # over a zero total weight, as torch: sum / 0 -- +-inf, NaN for 0 / 0
        # (weights of both signs can cancel where the losses do not); with
        # label smoothing torch divides its two parts separately,
        # (1 - eps) (A / 0) + (eps / C) (B / 0), which the fused sum cannot
        # tell apart: the parts from `parts`
        if denom == 0 and parts is not None:
            A, B, eps, C = parts
            with np.errstate(all="ignore"):
                v = ((1.0 - eps) * np.float64(_div(A, denom)) +
                     (eps / C) * np.float64(_div(B, denom)))
            return res.type(v)
        total = _div(total, denom)
    return res.type(total)


def _split_parts(run, N, eps, C, reduction, denom):
    """`parts` for _reduce_loss where it needs them (a mean over a zero
    total weight with smoothing; else None), from `run(eps, lo)`, a
    loss-only pass of the same call with smoothing eps into lo: eps = 0
    gives a_i, eps = 1 gives b_i / C (no samples: A = B = 0, NaN).  Two more
    passes in that case only; called before the call's own pass, which may
    write into its logits."""
    if not (reduction == "mean" and denom == 0 and eps != 0.0):
        return None
    a = _core.empty(N, np.float64)
    b = _core.empty(N, np.float64)
    if N:
        run(0.0, a)
        run(1.0, b)
    return float(a.sum()), float(b.sum()) * C, eps, C


# ---------------------------------------------------------------------------
# cross_entropy

def cross_entropy(logits: ArrayLike, target: ArrayLike, *, axis: Axis = -1,
                  weight: ArrayLike | None = None, ignore_index: int = -100,
                  reduction: Reduction = "mean", label_smoothing: float = 0.0,
                  temperature: float = 1.0, return_grad: bool = False,
                  grad_out: FloatArray | None = None,
                  where: ArrayLike | None = None) -> Result:
    r"""Cross-entropy of ``softmax(logits / T)`` against `target`, optionally
    with its gradient, in one fused pass.

    Semantics are those of :func:`torch.nn.functional.cross_entropy` (with
    the class axis at `axis` instead of dimension 1).  With
    ``z = logits / T`` (``T`` = `temperature`, applied first),
    ``log p_c = z_c - LSE(z)``, ``C`` classes, weights ``w_c`` (1 without
    `weight`), ``W = sum_c w_c`` and smoothing ``eps``:

    **Class-index targets** (integer `target`, shape of `logits` without
    `axis`).  For each sample ``i`` with ``y_i != ignore_index``

    .. math::

        \ell_i = (1-\varepsilon)\,(-w_{y_i} \log p_{i,y_i})
                 + \frac{\varepsilon}{C} \sum_c (-w_c \log p_{i,c})

    and ``l_i = 0`` for ignored samples.  ``'mean'`` divides the sum by the
    weight of the kept samples, ``sum_{i kept} w_{y_i}`` (the count of kept
    samples without `weight`) -- for both terms, as torch does; if every
    sample is ignored, or the kept samples' weights are all 0, the mean is
    NaN (with label smoothing too).  Weights of both signs whose kept total
    is 0: the sum over 0, +-inf (NaN for 0 / 0); with label smoothing, as
    torch, the two terms each over 0, ``(1-eps) (A/0) + (eps/C) (B/0)``
    (+-inf where A and B have one sign, NaN where they differ, where one
    is 0, and at eps = 1).  Where a term cancels to about its rounding,
    its sign is that of csoftmax's accurate sum; torch's may differ.

    **Probability targets** (floating `target`, same shape as `logits`;
    `ignore_index` must stay negative).  With ``q' = (1-eps) q + eps/C``

    .. math:: \ell_i = -\sum_c w_c\, q'_{i,c} \log p_{i,c}

    and ``'mean'`` divides by the number of samples (not by the weights).

    **Gradient** (``return_grad=True``) with respect to the *original*
    logits, of the returned loss (of ``loss.sum()`` for ``'none'``):

    .. math::

        \frac{\partial L}{\partial x_{i,j}} = \frac{s}{T}\Big(p_{i,j}\,\sum_c w_c q'_{i,c}
                                               - w_j\, q'_{i,j}\Big)

    where, for class targets, ``q'_{i,c} = (1-eps)[c = y_i] + eps/C``
    (so ``sum_c w_c q'_c = (1-eps) w_y + eps W/C``), ignored samples get 0,
    and ``s`` is 1/denominator for ``'mean'``, 1 otherwise.  The logits are
    read once for the max and sum and once for the gradient write; no
    probability array is formed, and the target entry is computed as
    ``b * expm1(log p_y) + (a - b) p_y`` (no cancellation as ``p_y -> 1``).

    Parameters
    ----------
    logits : array_like
        Unnormalised scores. float32/float64 natively; float16 / bfloat16
        read natively (with probability targets of the same dtype) and
        computed in float32 on cache-sized chunks of whole rows (a row
        longer than a chunk: float32 scratch of its length per converted
        array), loss and gradient in the logits' dtype; integers as float64.
    target : array_like
        Integer class indices (shape of `logits` without `axis`) or class
        probabilities (floating, shape of `logits`).  Probabilities are read
        in the dtype the logits are computed in -- float32 for float32,
        float16 and bfloat16 logits, float64 for float64 -- so float64
        probabilities with float32 logits are rounded to float32 first
        (torch refuses the mixed dtypes); `weight` stays float64.
    axis : int, optional
        The class axis (default: last).
    weight : array_like, optional
        Per-class weights, shape ``(C,)``.
    ignore_index : int, optional
        Class-index value whose samples contribute neither loss nor gradient
        (default -100).
    reduction : {'mean', 'sum', 'none'}, optional
    label_smoothing : float, optional
        ``eps`` in [0, 1] (default 0).
    temperature : float, optional
        ``T > 0``; the logits are divided by it before everything else
        (default 1).  The gradient carries the chain-rule factor ``1/T``.
    return_grad : bool, optional
        Also return the gradient with respect to `logits`.
    grad_out : ndarray, optional
        Where to write the gradient (shape of `logits`, result dtype);
        ``grad_out=logits`` overwrites the logits in place.  Requires
        ``return_grad=True``.
    where : array_like of bool, optional
        Classes to include, broadcast against `logits` (e.g. shape ``(C,)``
        for a padded vocabulary, or per sample): excluded classes are left
        out of the normaliser, ``log p`` over the included ones, as
        ``jax.nn.log_softmax(x, where=...)``.  Class-index targets without
        label smoothing only.  A target on an excluded class has
        ``p = 0``: its loss is ``+inf`` (what
        ``optax.softmax_cross_entropy_with_integer_labels`` gives for a
        ``-inf`` logit there) and, the loss being that constant, the
        sample's gradient is 0 (as ``jax.grad`` of
        ``-log_softmax(x, where=...)[y]`` gives).  The gradient of an
        excluded class is always exactly 0.  The mask is read by the masked kernels (the
        normaliser, and the softmax of the gradient), not folded into a
        copy of the logits.

    Returns
    -------
    loss : scalar or ndarray
        A scalar of the result dtype (that of `logits`; float64 for integer
        logits) for ``'mean'`` / ``'sum'``, an array of the target's
        per-sample shape for ``'none'``.
    grad : ndarray
        Only with ``return_grad=True``: ``dL/dlogits`` (`grad_out` if given).

    Raises
    ------
    ValueError
        Bad `target` shape, a class index ``>= C`` or ``< 0`` (other than
        `ignore_index`; the message names the first bad position), bad
        `weight` shape, `reduction`, `label_smoothing` or `temperature`,
        non-negative `ignore_index` with probability targets, `grad_out`
        without `return_grad` or of the wrong shape / read-only; `where`
        that does not broadcast to `logits`, or `where` with probability
        targets or label smoothing.
    TypeError
        Complex or non-numeric input, integer probabilities or floating
        class indices, `grad_out` of the wrong dtype.
    numpy.exceptions.AxisError
        `axis` out of range.

    Notes
    -----
    Nothing is written (to `grad_out` or the logits) when an exception is
    raised.  Sums run in float64 for float32 inputs too, so huge logits
    (``[1e8, 0]``) give the exact loss (``1e8``, not 0).

    Differences from torch: the class axis defaults to the last one (pass
    ``axis=1`` for torch's layout); float32 inputs are accumulated in float64
    (results agree with torch to float32 rounding, and are more accurate);
    ignored samples get an exact zero gradient even if their logits hold
    NaN (torch propagates the NaN); `temperature` has no torch counterpart
    (it equals passing ``logits / T``).

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> x = np.array([[38.0, 20.0, 40.0, 39.0]])
    >>> round(float(csoftmax.cross_entropy(x, np.array([0]))), 6)
    2.407606
    >>> loss, g = csoftmax.cross_entropy(x, np.array([2]), return_grad=True)
    >>> g.round(4)
    array([[ 0.09  ,  0.    , -0.3348,  0.2447]])
    """
    a, comp, res = as_input(logits, "logits")
    ax = _class_axis(a, axis, "logits")
    C = a.shape[ax]
    reduction = _reduction(reduction)
    eps = _smoothing(label_smoothing)
    scale = 1.0 / positive_scalar(temperature, "temperature")
    comp, narrow = comp_for_scale(comp, scale), comp
    wide = comp != narrow
    ignore = _ignore(ignore_index)
    w = _weight(weight, C)
    t = _target_array(target)
    tshape = a.shape[:ax] + a.shape[ax + 1:]
    prob = _target_kind(t.shape, t.dtype, a.shape, ax, ignore)
    if grad_out is not None and not return_grad:
        raise ValueError("grad_out= needs return_grad=True")
    check_out(grad_out, a.shape, res, "grad_out", _NO_DTYPE)
    if C == 0:
        raise ValueError("logits have no classes (the class axis has length 0)")
    N = math.prod(tshape)
    if prob:
        y = None
        denom = N
    else:
        y, tot, cnt = _labels(t, tshape, C, ignore, w)
        denom = tot if w is not None else cnt
    mb = None
    if where is not None:
        mb = as_mask(where, a.shape)
        _where_allowed(prob, eps)
    W = float(np.sum(w)) if w is not None else float(C)
    if reduction == "mean":
        coef = _div(scale, denom)
    else:
        coef = scale

    # ---- nothing is written before this point
    if mb is not None:
        return _ce_masked(a, comp, res, ax, mb, y, w, ignore, scale, coef, reduction,
                          denom, tshape, return_grad, grad_out)
    hk = half_kind(a.dtype)
    if hk and N and not wide:
        return _ce_half(a, ax, t if prob else None, y, w, W, scale, eps, coef, ignore,
                        N, reduction, denom, tshape, res, return_grad, grad_out, hk)
    xc = a.astype(comp, copy=False)
    kind, xv, _ = _plan(xc, (ax,))
    qv = _rows_view(t.astype(comp, copy=False), xv.shape) if prob else None
    lo = _core.empty(N, np.float64)
    g = gv = None
    if return_grad:
        g, gv = _grad_target(grad_out, xv, (xv, qv, y, w), comp)
    parts = _split_parts(lambda e, out: _core.ce_pass(xv, qv, None, y, w, W, scale, e,
                                                      coef, ignore, 1 if prob else 0,
                                                      None, out), N, eps, C, reduction, denom)
    if N:
        _core.ce_pass(xv, qv, gv, y, w, W, scale, eps, coef, ignore,
                      1 if prob else 0, None, lo)
    loss = _reduce_loss(lo, reduction, denom, tshape, res, parts)
    if not return_grad:
        return loss
    return loss, _finish(g, gv, a.shape, res, grad_out)


def _ce_half(a, ax, t, y, w, W, scale, eps, coef, ignore, N, reduction, denom,
             tshape, res, return_grad, grad_out, hk):
    """cross_entropy of float16 / bfloat16 logits (HALF_BLOCKS): logits,
    probability targets of the same dtype and the gradient stay 16-bit;
    chunks are computed in float32 scratch.  Targets of another floating
    dtype are read as float32."""
    kind, xv, _ = _plan(a, (ax,))
    qv = None
    if t is not None:
        qv = (_rows_view(t, xv.shape) if t.dtype == a.dtype
              else _rows_view(t.astype(np.float32, copy=False), xv.shape))
    qh = None if qv is None else (qv.view(np.uint16) if qv.itemsize == 2 else qv)
    parts = _split_parts(lambda e, out: _core.half_ce_pass(
        xv.view(np.uint16), qh, None, hk, y, w, W, scale, e, coef, ignore,
        0 if t is None else 1, None, out), N, eps, a.shape[ax], reduction, denom)
    lo = _core.empty(N, np.float64)
    g = gv = None
    if return_grad:
        g, gv = _grad_target(grad_out, xv, (xv, qv, y, w), res)
    _core.half_ce_pass(xv.view(np.uint16), qh,
                       None if gv is None else gv.view(np.uint16), hk, y, w, W, scale,
                       eps, coef, ignore, 0 if t is None else 1, None, lo)
    loss = _reduce_loss(lo, reduction, denom, tshape, res, parts)
    if not return_grad:
        return loss
    return loss, _finish(g, gv, a.shape, res, grad_out)


def _ce_masked(a, comp, res, ax, mb, y, w, ignore, scale, coef, reduction,
               denom, tshape, return_grad, grad_out):
    """cross_entropy with where= (class targets, no smoothing): the masked
    kernels give (max, log_sum) over the kept classes, the loss is
    -w_y log p_y with log p_y = scale (x_y - max) - log_sum in float64; the
    gradient is the masked softmax times a = coef w_y (planner: MASKED_FUSED
    / MASKED_ROWS of cross_entropy), with the target entry a expm1(log p_y);
    other layouts: the masked reduction and softmax of the facade."""
    xc = a.astype(comp, copy=False)
    # class axis last with a mask the row kernels take: the driver
    # _core.ce_rows_masked returns the states (max, log_sum) for the loss and
    # writes alpha * the masked softmax (alpha = the 'mean' / sum factor);
    # the loss alone: one masked reduction
    kind, xv, moved = _plan(xc, (ax,))
    mv = keep = None
    if kind == "rows" and moved is None:
        mv, keep = _mask_view(mb, kind, xv.shape, moved)
    gv = None
    if mv is not None and return_grad:
        # one driver: the states and the gradient's softmax in one pass over
        # the blocks (float32: the fused masked kernel, one exp per element)
        g = None
        if grad_out is not None and grad_out.dtype == comp:
            gv = reshape_view(grad_out, xv.shape)
            item = grad_out.itemsize
            if (gv is None or not grad_out.flags.aligned or gv.strides[-1] != item
                    or any(st % item for st in gv.strides)
                    or not may_write_directly(gv, (xv, mv, y, w, mb), in_place=(xv,))):
                gv = None
            else:
                g = grad_out
        if gv is None:
            g = gv = _core.empty(xv.shape, comp)
        # the target logits before an in-place gradient overwrites them
        yy0 = np.where(y == ignore, 0, y)
        xt0 = xv[np.arange(xv.shape[0]), yy0].astype(np.float64)
        mx, ls = _core.ce_rows_masked(xv, mv, gv, scale, coef if w is None else 1.0)
    elif mv is not None:
        mx, ls = _core.rows_reduce_masked(xv, mv, scale)
    else:
        mx, ls = _reduce(xc, comp, (ax,), scale, mb)
    mx, ls = mx.reshape(-1), ls.reshape(-1)
    ign = y == ignore
    yy = np.where(ign, 0, y)
    ynd = yy.reshape(tshape)[..., None]
    if gv is not None:
        xt = xt0
    else:
        xt = np.take_along_axis(np.moveaxis(xc, ax, -1), ynd, axis=-1).reshape(-1)
    kt = np.take_along_axis(np.moveaxis(mb, ax, -1), ynd, axis=-1).reshape(-1) != 0
    with np.errstate(invalid="ignore", over="ignore"):
        lp = scale * (xt.astype(np.float64) - mx) - ls
    lp = np.where(kt, lp, -np.inf)
    wt = w[yy] if w is not None else np.ones(y.shape)
    with np.errstate(invalid="ignore"):
        lo = np.where(ign | (wt == 0), 0.0, -wt * lp)
    loss = _reduce_loss(lo, reduction, denom, tshape, res)
    if not return_grad:
        return loss
    # a target on an excluded class: the loss is the constant +inf, so the
    # sample's gradient is 0 (as jax differentiates log_softmax(where=))
    zero = ign | ~kt
    acoef = np.where(zero, 0.0, coef * wt)
    # (the targets, weights and mask are read again after the gradient is
    # written: grad_out overlapping one of them takes a temporary)
    direct = (grad_out is not None and grad_out.dtype == comp
              and may_write_directly(grad_out, (y, w, mb)))
    if gv is not None:
        if w is not None:
            gv *= (coef * wt)[:, None].astype(comp)
        if g is not grad_out:
            g = g.reshape(a.shape)
        gm = np.moveaxis(g, ax, -1)
    else:
        g = _softmax_family(xc, ax, 1.0 / scale, grad_out if direct else None, comp,
                            False, mb)
        gm = np.moveaxis(g, ax, -1)
        gm *= acoef.reshape(tshape)[..., None].astype(comp)
    if zero.any():
        gm[zero.reshape(tshape)] = 0    # exact zeros, NaN logits too
    with np.errstate(invalid="ignore"):
        tv = np.where(kt & ~ign, acoef * np.expm1(lp), 0.0)
    np.put_along_axis(gm, ynd, tv.reshape(tshape)[..., None].astype(comp), axis=-1)
    if grad_out is not None:
        if g is not grad_out:
            np.copyto(grad_out, g, casting="unsafe")
            g = grad_out
    else:
        g = g.astype(res, copy=False)
    return loss, g


# ---------------------------------------------------------------------------
# nll_loss

def nll_loss(log_probs: ArrayLike, target: ArrayLike, *, axis: Axis = -1,
             weight: ArrayLike | None = None, ignore_index: int = -100,
             reduction: Reduction = "mean") -> FloatResult:
    r"""Negative log-likelihood loss, as :func:`torch.nn.functional.nll_loss`
    (class axis at `axis`).

    .. math:: \ell_i = -w_{y_i}\, \mathrm{lp}_{i, y_i}  \quad (0 \text{ if } y_i = \text{ignore\_index})

    ``'sum'`` adds the ``l_i``; ``'mean'`` divides the sum by
    ``sum_{i kept} w_{y_i}`` (the number of kept samples without `weight`;
    NaN if all are ignored).

    Parameters
    ----------
    log_probs : array_like
        Log-probabilities (e.g. :func:`csoftmax.log_softmax` output).
    target : array_like of int
        Class indices, shape of `log_probs` without `axis`.
    axis : int, optional
        The class axis (default: last).
    weight : array_like, optional
        Per-class weights, shape ``(C,)``.
    ignore_index : int, optional
        Class-index value to skip (default -100).
    reduction : {'mean', 'sum', 'none'}, optional

    Returns
    -------
    scalar or ndarray
        Scalar of the input's dtype for ``'mean'`` / ``'sum'``; per-sample
        array for ``'none'``.

    Raises
    ------
    ValueError
        Bad target shape, class index out of range (first bad position named),
        bad weight shape or reduction.
    TypeError
        Non-integer target, complex input.
    """
    a, comp, res = as_input(log_probs, "log_probs")
    ax = _class_axis(a, axis, "log_probs")
    C = a.shape[ax]
    reduction = _reduction(reduction)
    ignore = _ignore(ignore_index)
    w = _weight(weight, C)
    t = _target_array(target)
    tshape = a.shape[:ax] + a.shape[ax + 1:]
    if t.shape != tshape:
        raise ValueError(f"target has shape {t.shape}, expected {tshape} for log_probs "
                         f"of shape {a.shape} with class axis {ax}")
    y, tot, cnt = _labels(t, tshape, C, ignore, w)
    denom = tot if w is not None else cnt
    N = y.size
    lo = _core.empty(N, np.float64)
    if N:
        _, xv, _ = _plan(a.astype(comp, copy=False), (ax,))
        _core.nll_pass(xv, y, w, ignore, lo)
    return _reduce_loss(lo, reduction, denom, tshape, res)


# ---------------------------------------------------------------------------
# backward (vector-Jacobian products)

def _bwd_inputs(y, dy, axis, out, names):
    a, comp, res = as_input(y, names[0])
    d, dcomp, dres = as_input(dy, names[1])
    if d.shape != a.shape:
        raise ValueError(f"{names[1]} has shape {d.shape}, expected {a.shape} "
                         f"(the shape of {names[0]})")
    if dres != res:
        # the wider of the two (numpy's promotion: float16 with bfloat16,
        # neither wider than the other, is float32 either way round)
        comp, res = np.result_type(comp, dcomp), np.result_type(res, dres)
    ax = _class_axis(a, axis, names[0])
    check_out(out, a.shape, res, "out", _NO_DTYPE)
    return a, d, comp, res, ax


def _bwd(y, dy, axis, out, log, names, where=None):
    a, d, comp, res, ax = _bwd_inputs(y, dy, axis, out, names)
    shape = a.shape
    outer = math.prod(shape[:ax])
    inner = math.prod(shape[ax + 1:])
    s3 = (outer, shape[ax], inner)
    hk = half_kind(a.dtype)
    if hk and where is None and d.dtype == a.dtype and res == a.dtype:
        # float16 / bfloat16 (HALF_BLOCKS): 16-bit in and out, float32 chunks
        yc = np.ascontiguousarray(a).reshape(s3)
        dc = np.ascontiguousarray(d).reshape(s3)
        direct = out is not None and out.flags.c_contiguous
        if direct:
            o = np.asarray(out).reshape(s3)
            direct = may_write_directly(o, (yc, dc), in_place=(yc, dc))
        if not direct:
            o = _core.empty(s3, res)
        _core.half_softmax_bwd(yc.view(np.uint16), dc.view(np.uint16), o.view(np.uint16),
                               hk, log)
        if out is not None:
            if not direct:
                np.copyto(out, o.reshape(shape))
            return out
        return o.reshape(shape)
    mv = None
    if where is not None:
        # the mask as (outer, n, inner) bytes, a view where its layout allows
        # (the row kernels need a unit stride along n when inner == 1)
        mb = as_mask(where, shape)
        mv = reshape_view(mb, s3)
        if mv is None or (inner == 1 and s3[1] > 1 and mv.strides[1] != 1):
            mv = np.ascontiguousarray(mb).reshape(s3)
    yc = np.ascontiguousarray(a, dtype=comp).reshape(s3)
    dc = np.ascontiguousarray(d, dtype=comp).reshape(s3)
    direct = out is not None and out.dtype == comp and out.flags.c_contiguous
    if direct:
        o = np.asarray(out).reshape(s3)
        # out=y / out=dy work in place (each slice's sum is formed before
        # it is written); any other overlap goes through a temporary
        direct = may_write_directly(o, (yc, dc, mv), in_place=(yc, dc))
    if not direct:
        o = _core.empty(s3, comp)
    if mv is None:
        _core.softmax_bwd(yc, dc, o, log)
    else:
        _core.softmax_bwd_masked(yc, dc, o, mv, log)
    if out is not None:
        if not direct:
            np.copyto(out, o.reshape(shape), casting="unsafe")
        return out
    r = o.reshape(shape).astype(res, copy=False)
    return r


def softmax_backward(y: ArrayLike, dy: ArrayLike, axis: Axes = -1, *,
                     out: FloatArray | None = None,
                     where: ArrayLike | None = None) -> FloatArray:
    r"""Vector-Jacobian product of softmax: the gradient with respect to the
    softmax *input*, given its output `y` and the upstream gradient `dy`.

    .. math:: dx_i = y_i \Big(dy_i - \sum_j y_j\, dy_j\Big)

    (sum along `axis`, in float64).  With ``y = softmax(x / T)`` multiply the
    result by ``1/T``.

    Parameters
    ----------
    y : array_like
        Softmax output.
    dy : array_like
        Upstream gradient, same shape as `y`.
    axis : int, tuple of ints or None, optional
        The softmax axis (default: last); several axes or None (every
        axis) as in :func:`softmax`.
    out : ndarray, optional
        Where to write the result (shape of `y`, result dtype); may be `y`
        or `dy` (in place).
    where : array_like of bool, optional
        The mask of the forward call (``softmax(x, where=...)``), broadcast
        against `y`: the sum runs over the included elements only and the
        result is exactly 0 at the excluded ones, whatever `y` and `dy`
        hold there (jax.nn's gradient).

    Returns
    -------
    ndarray
        Same shape as `y`; dtype: the wider of `y`'s and `dy`'s float types.

    Raises
    ------
    ValueError
        `dy` of another shape; `out` of the wrong shape or read-only;
        `where` that does not broadcast to `y`.
    TypeError
        Complex input; `out` of the wrong dtype; a complex / object /
        string `where`.
    numpy.exceptions.AxisError
        `axis` out of range.
    """
    r = _several_axes(softmax_backward, y, dy, axis, out, ("y", "dy"), False, where=where)
    if r is not None:
        return r
    return _bwd(y, dy, axis, out, False, ("y", "dy"), where)


def log_softmax_backward(y: ArrayLike, dy: ArrayLike, axis: Axes = -1, *,
                         out: FloatArray | None = None,
                         where: ArrayLike | None = None) -> FloatArray:
    r"""Vector-Jacobian product of log-softmax, given its output `y` (the
    log-probabilities) and the upstream gradient `dy`.

    .. math:: dx_i = dy_i - e^{y_i} \sum_j dy_j

    (sum along `axis`, in float64).  With ``y = log_softmax(x / T)`` multiply
    the result by ``1/T``.  With ``where=`` (the forward call's mask) the
    sum runs over the included elements and excluded ones get exactly 0.

    Parameters, returns and exceptions as for :func:`softmax_backward`.
    """
    r = _several_axes(log_softmax_backward, y, dy, axis, out, ("y", "dy"), False,
                      where=where)
    if r is not None:
        return r
    return _bwd(y, dy, axis, out, True, ("y", "dy"), where)


def logsumexp_backward(x: ArrayLike, dy: ArrayLike, axis: Axes = -1, *,
                       out: FloatArray | None = None) -> FloatArray:
    r"""Vector-Jacobian product of ``LSE(x)`` along `axis`: the gradient with
    respect to `x`.

    .. math:: dx_i = \mathrm{softmax}(x)_i \cdot dy

    where `dy` (one value per reduced slice) is broadcast along `axis`.
    Runs on the fused softmax kernels (one reduction read and one write of
    `x`; the per-slice factor is folded into the write).

    Parameters
    ----------
    x : array_like
        The input of the LogSumExp.
    dy : array_like
        Upstream gradient: shape of `x` without `axis` (or with a length-1
        `axis`, as from ``keepdims=True``).
    axis : int, tuple of ints or None, optional
        The reduced axis (default: last); several axes or None (every axis)
        as in :func:`logsumexp`.
    out : ndarray, optional
        Where to write the result (shape of `x`); ``out=x`` works in place.

    Returns
    -------
    ndarray
        Same shape and dtype as `x` (float64 for integer input).

    Raises
    ------
    ValueError
        `dy` of another shape; `out` of the wrong shape or read-only.
    TypeError
        Complex input; `out` of the wrong dtype.
    numpy.exceptions.AxisError
        `axis` out of range.
    """
    r = _several_axes(logsumexp_backward, x, dy, axis, out, ("x", "dy"), True)
    if r is not None:
        return r
    a, comp, res = as_input(x, "x")
    ax = _class_axis(a, axis, "x")
    d, _, _ = as_input(dy, "dy")
    tshape = a.shape[:ax] + a.shape[ax + 1:]
    kshape = a.shape[:ax] + (1,) + a.shape[ax + 1:]
    if d.shape not in (tshape, kshape):
        raise ValueError(f"dy has shape {d.shape}, expected {tshape} (or {kshape}) "
                         f"for x of shape {a.shape} with axis {ax}")
    check_out(out, a.shape, res, "out", _NO_DTYPE)
    dv = np.ascontiguousarray(d, dtype=np.float64).reshape(-1)
    if a.size == 0:
        g = _core.empty(a.shape, res)
        if out is not None:
            return out
        return g
    hk = half_kind(a.dtype)
    if hk:
        # float16 / bfloat16 (HALF_BLOCKS)
        _, xv, _ = _plan(a, (ax,))
        g, gv = _grad_target(out, xv, (xv, dv), res)
        _core.half_ce_pass(xv.view(np.uint16), None, gv.view(np.uint16), hk, None, None,
                           0.0, 1.0, 0.0, 1.0, -100, 2, dv, None)
        return _finish(g, gv, a.shape, res, out)
    xc = a.astype(comp, copy=False)
    _, xv, _ = _plan(xc, (ax,))
    g, gv = _grad_target(out, xv, (xv, dv), comp)
    _core.ce_pass(xv, None, gv, None, None, 0.0, 1.0, 0.0, 1.0, -100, 2, dv, None)
    return _finish(g, gv, a.shape, res, out)
