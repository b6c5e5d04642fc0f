"""Public functions of csoftmax (the facade): numpy conventions on top of
the Cython layer.  Validation and allocation live here; loops, threads and
SIMD live in ``_core`` and the C kernels."""
import math
import re

import numpy as np

from ._typing import Any, ArrayLike, Axes, DTypeLike, FloatArray, FloatResult, Result

from . import _core
from ._validate import (as_input, as_mask, check_out, comp_for_scale, half_kind,
                        may_write_directly, normalize_axes, positive_scalar, reshape_view,
                        resolve_dtype)
from ._version import __version__

__all__ = ["softmax", "log_softmax", "logsumexp", "smooth_max", "get_config",
           "set_num_threads", "get_num_threads", "set_output_cache"]


# ---------------------------------------------------------------------------
# layout: bring the reduction into one of the two shapes the kernels take

def _layout(shape, axes):
    """The kernels' view of a reduction over `axes` of an array of `shape`:
    ("rows", rows, n, 1) or ("cols", outer, n, inner).  The one place that
    chooses between the row and the column drivers (_plan arranges the
    data accordingly; _core.plan reports the path it leads to)."""
    if not axes:                                # axis=() or a 0-d array: n = 1
        return "rows", math.prod(shape), 1, 1
    n = math.prod(shape[i] for i in axes)
    if len(axes) == 1 or axes == tuple(range(axes[0], axes[0] + len(axes))):
        outer = math.prod(shape[:axes[0]])      # contiguous run of axes
        inner = math.prod(shape[axes[-1] + 1:])
        if inner == 1:
            return "rows", outer, n, 1
        return "cols", outer, n, inner
    # several non-adjacent axes: moved to the end (a copy)
    return "rows", math.prod(shape) // n if n else 0, n, 1


def _plan(a, axes):
    """How to run a reduction over `axes` of `a` without a transposed copy.

    Returns (kind, view, info): kind 'rows' -> view is 2-D (rows, n) with
    contiguous rows; kind 'cols' -> view is 3-D (outer, n, inner) with a
    contiguous last axis (kind: _layout).  A copy is made only when the
    memory layout admits neither (non-unit inner stride, several
    non-adjacent axes, ...).
    """
    if not a.flags.aligned:
        # the C kernels dereference typed pointers: misaligned data is copied
        a = np.array(a, order="K", copy=True)
    shape = a.shape
    item = a.itemsize
    nd = a.ndim
    kind, outer, n, inner = _layout(shape, axes)
    if not axes:                                # axis=() or a 0-d array: n = 1
        return "rows", np.ascontiguousarray(a).reshape(-1, 1), None
    if len(axes) == 1 or axes == tuple(range(axes[0], axes[0] + len(axes))):
        if kind == "rows":
            v = reshape_view(a, (outer, n))
            if v is not None and (v.strides[1] == item or n == 1) and v.strides[0] % item == 0:
                return "rows", v, None
            return "rows", np.ascontiguousarray(a).reshape(outer, n), None
        v = reshape_view(a, (outer, n, inner))
        if (v is not None and v.strides[2] == item and v.strides[1] % item == 0
                and v.strides[0] % item == 0):
            return "cols", v, None
        return "cols", np.ascontiguousarray(a).reshape(outer, n, inner), None
    # general case: move the axes to the end (copy)
    rest = [i for i in range(nd) if i not in axes]
    moved = np.transpose(a, rest + list(axes))
    return "rows", np.ascontiguousarray(moved).reshape(-1, n), (rest, list(axes))


def _mask_view(mb, kind, vshape, moved):
    """The where= mask `mb` (bytes, broadcast to the input's shape) in the
    kernels' view of the input (_plan's kind, view shape and moved axes):
    (mask view, None), or (None, keep) when the mask is constant along the
    reduced axis of the rows layout (shape (B, 1) for (B, V)): then `keep`
    (one bool per row) selects whole rows.  The mask is copied (bytes, never
    x) only when its layout admits no view: a non-unit stride along the
    rows, or broadcast axes that do not merge."""
    if moved is not None:
        rest, axs = moved
        mb = np.transpose(mb, rest + axs)
    mv = reshape_view(mb, vshape)
    if kind == "rows":
        n = vshape[1]
        if mv is not None and n > 1 and mv.strides[1] == 0:
            return None, mv[:, 0].astype(bool)
        if mv is None or (n > 1 and mv.strides[1] != 1):
            mv = np.ascontiguousarray(mb).reshape(vshape)
        return mv, None
    if mv is None:
        mv = np.ascontiguousarray(mb).reshape(vshape)
    return mv, None


def _softmax_family(x, axis, temperature, out, dtype, log, where=None):
    a, comp, res = as_input(x)
    comp, res = resolve_dtype(dtype, comp, res)
    scale = 1.0 / positive_scalar(temperature, "temperature")
    comp, narrow = comp_for_scale(comp, scale), comp
    wide = comp != narrow
    axes = normalize_axes(axis, a.ndim)
    check_out(out, a.shape, res)
    mb = None if where is None else as_mask(where, a.shape)
    hk = half_kind(a.dtype)
    if hk and mb is None and res == a.dtype and a.size and not wide:
        return _softmax_half(a, axes, scale, out, log, hk)
    xc = a.astype(comp, copy=False)
    if a.size == 0:
        y = _core.empty(a.shape, res)
    else:
        kind, xv, moved = _plan(xc, axes)
        mv = keep = None
        if mb is not None:
            mv, keep = _mask_view(mb, kind, xv.shape, moved)
        y = None
        yv = None
        if out is not None and out.dtype == comp and moved is None:
            # write straight into out when it has a layout the kernels take
            # and it is not memory the kernel reads (out=x is: in place)
            yv = reshape_view(out, xv.shape)
            item = out.itemsize
            if (yv is None or not out.flags.aligned or any(s % item for s in yv.strides)
                    or yv.strides[-1] != item
                    or not may_write_directly(yv, (xv, mv), in_place=(xv,))):
                yv = None
            else:
                y = out
        if yv is None:
            y = _core.empty(xv.shape, comp)
            yv = y
        if mv is None:
            if kind == "rows":
                _core.rows_softmax(xv, yv, scale, 1.0, log)
            else:
                _core.cols_softmax(xv, yv, scale, 1.0, log)
            if keep is not None:            # whole rows dropped by the mask
                yv[~keep] = -np.inf if log else 0.0
        elif kind == "rows":
            _core.rows_softmax_masked(xv, mv, yv, scale, 1.0, log)
        else:
            _core.cols_softmax_masked(xv, mv, yv, scale, 1.0, log)
        if y is not out:
            if moved is not None:
                rest, axs = moved
                shp = [a.shape[i] for i in rest] + [a.shape[i] for i in axs]
                y = np.transpose(y.reshape(shp), np.argsort(rest + axs))
            else:
                y = y.reshape(a.shape)
            y = y.astype(res, copy=False)
    if out is not None:
        if y is not out:
            np.copyto(out, y, casting="unsafe")
        return out
    return y if y.ndim else y[()]


def _undo_moved(y, shape, moved):
    """The result of a kernel run on _plan's view, in the input's shape."""
    if moved is not None:
        rest, axs = moved
        shp = [shape[i] for i in rest] + [shape[i] for i in axs]
        return np.transpose(y.reshape(shp), np.argsort(rest + axs))
    return y.reshape(shape)


def _softmax_half(a, axes, scale, out, log, hk):
    """float16 / bfloat16 softmax and log_softmax (HALF_BLOCKS): read and
    written in the input's dtype, computed in float32 on chunks of scratch
    (no full-size float32 copy)."""
    kind, xv, moved = _plan(a, axes)
    y = yv = None
    if out is not None and moved is None:
        yv = reshape_view(out, xv.shape)
        item = out.itemsize
        if (yv is None or not out.flags.aligned or any(s % item for s in yv.strides)
                or yv.strides[-1] != item
                or not may_write_directly(yv, (xv,), in_place=(xv,))):
            yv = None
        else:
            y = out
    if yv is None:
        y = yv = _core.empty(xv.shape, a.dtype)
    _core.half_softmax(xv.view(np.uint16), yv.view(np.uint16), hk, scale, 1.0, log)
    if y is out:
        return out              # (0-d too: out itself, as numpy's out=)
    y = _undo_moved(y, a.shape, moved)
    if out is not None:
        np.copyto(out, y)
        return out
    return y if y.ndim else y[()]


def softmax(x: ArrayLike, axis: Axes = -1, *, temperature: float = 1.0,
            out: FloatArray | None = None, dtype: DTypeLike | None = None,
            where: ArrayLike | None = None) -> FloatArray:
    r"""Softmax of `x` along `axis`: ``exp(x/T - logsumexp(x/T))``.

    .. math:: \mathrm{softmax}(x)_i = \frac{e^{x_i/T}}{\sum_j e^{x_j/T}}

    computed as ``exp((x_i - max x)/T - log S)`` with the float64 sum
    ``S = sum_j exp((x_j - max x)/T)``, so it never overflows.

    Parameters
    ----------
    x : array_like
        Input. float32 and float64 are computed natively; float16 and
        bfloat16 (``ml_dtypes.bfloat16``, or torch / JAX bfloat16 tensors)
        are read and written in their own dtype and computed in float32 on
        cache-sized chunks of whole rows (float32 scratch of one chunk per
        thread; a row longer than a chunk gets scratch of its own length,
        see the guide's "Half precision"); integers and
        bools in float64.  Besides ndarrays, anything exposing
        ``__dlpack__`` (torch CPU tensors, JAX CPU arrays) or the buffer /
        array protocol (memoryview, array.array, ``__array_interface__``) is
        read in place, without a copy, when its dtype is float32/float64
        and its layout is one the kernels take (unit stride along the last
        axis, any outer strides).  The result is an ndarray.
    axis : int, tuple of ints or None, optional
        Axis or axes along which the probabilities sum to 1 (default: last).
        ``None`` means all axes.
    temperature : float, optional
        T > 0; the result is softmax(x / T). Large T flattens, small T
        sharpens towards one-hot (default 1).
    out : ndarray, optional
        Where to write the result; same shape as `x`, and the result dtype.
        ``out=x`` computes in place.
    dtype : dtype, optional
        Result (and compute) dtype: float16, bfloat16, float32 or float64.
    where : array_like of bool, optional
        Elements to include, broadcast against `x` (as ``jax.nn.softmax``'s
        `where`; numpy's ufunc rule for the dtype: nonzero = included).
        Excluded elements take no part in the max or the sum and give 0; a
        slice with nothing included gives all 0.  Their values are never
        used (NaN or inf there does not reach the result).  The mask is read
        by the kernels in the same pass as `x`: no masked copy of `x` is
        made.  Default: all included.

    Returns
    -------
    ndarray
        Same shape as `x`; each slice along `axis` is >= 0 and sums to 1.
        Rows containing NaN give NaN; an all -inf row gives NaN.  A row
        with +inf entries gives NaN at those entries and exactly 0 at every
        finite one -- the limit of softmax as those entries grow, with the
        undefined split among them marked NaN.  (scipy.special.softmax and
        torch return NaN for the whole row there.)

    Raises
    ------
    TypeError
        Complex or non-numeric input, bad `dtype`, `out` of the wrong dtype,
        a complex / object / string `where`.
    numpy.exceptions.AxisError
        `axis` out of range.
    ValueError
        `temperature` not a finite positive number, `out` of the wrong shape
        or read-only, `where` that does not broadcast to `x`, or `x` on a
        device the CPU cannot read (a CUDA tensor: move it with ``x.cpu()``
        first).

    A torch tensor with ``requires_grad=True`` is refused (TypeError): the
    result is an ndarray and cannot carry the gradient, so pass
    ``x.detach()`` explicitly.

    Notes
    -----
    float32 results are within 4 ULP of the exact result (measured at most
    about 2: the float32 exp of the SIMD kernels; 0.5 on the scalar table),
    float64 within the bound of docs/accuracy.md (x - max, 1/T and log S
    are rounded to float64).  Non-last axes are reduced in place across the contiguous
    inner dimension, without a transposed copy.

    Examples
    --------
    >>> import csoftmax
    >>> csoftmax.softmax([1.0, 2.0, 3.0, 4.0]).round(4)
    array([0.0321, 0.0871, 0.2369, 0.6439])
    >>> csoftmax.softmax([1.0, 2.0, 3.0, 4.0], temperature=10).round(4)
    array([0.2138, 0.2363, 0.2612, 0.2887])
    """
    return _softmax_family(x, axis, temperature, out, dtype, False, where)


def log_softmax(x: ArrayLike, axis: Axes = -1, *, temperature: float = 1.0,
                out: FloatArray | None = None, dtype: DTypeLike | None = None,
                where: ArrayLike | None = None) -> FloatArray:
    r"""Logarithm of the softmax: ``x/T - logsumexp(x/T)`` along `axis`.

    Computed as ``(x_i - max x)/T - log S`` so that entries near 0 keep
    their relative accuracy (``log_softmax([0, -40])[0] = -4.25e-18``).

    Parameters
    ----------
    x : array_like
        Input (see :func:`softmax` for dtypes).
    axis : int, tuple of ints or None, optional
        Axis or axes of the normalisation (default: last).
    temperature : float, optional
        T > 0 (default 1).
    out : ndarray, optional
        Where to write the result; ``out=x`` computes in place.
    dtype : dtype, optional
        Result dtype: float16, bfloat16, float32 or float64.
    where : array_like of bool, optional
        Elements to include (see :func:`softmax`); excluded elements give
        -inf, and so does a slice with nothing included (``jax.nn.log_softmax``).

    Returns
    -------
    ndarray
        Same shape as `x`, all entries <= 0 (NaN for NaN rows and all -inf
        rows).  A row with +inf entries gives NaN at those entries and -inf
        at every finite one (the log of :func:`softmax`'s result).

    Raises
    ------
    TypeError, numpy.exceptions.AxisError, ValueError
        As for :func:`softmax`.

    Examples
    --------
    >>> import csoftmax
    >>> csoftmax.log_softmax([0.0, -40.0])
    array([-4.24835426e-18, -4.00000000e+01])
    """
    return _softmax_family(x, axis, temperature, out, dtype, True, where)


def _reduce(a, comp, axes, scale, mb=None):
    """(max, log_sum) of the reduction over `axes`, shaped like the kept axes
    (over the elements `mb` keeps, if given: a byte mask broadcast to a)."""
    kept = [a.shape[i] for i in range(a.ndim) if i not in axes]
    if a.size == 0 and math.prod(kept) == 0:
        z = np.empty(kept)
        return z, z.copy()
    if math.prod(a.shape[i] for i in axes) == 0:
        return np.full(kept, -np.inf), np.zeros(kept)
    hk = half_kind(a.dtype)
    if hk and mb is None:
        # float16 / bfloat16: chunks through float32 scratch (HALF_BLOCKS)
        kind, xv, moved = _plan(a, axes)
        mx, ls = _core.half_reduce(xv.view(np.uint16), hk, scale)
        return mx.reshape(kept), ls.reshape(kept)
    xc = a.astype(comp, copy=False)
    kind, xv, moved = _plan(xc, axes)
    mv = keep = None
    if mb is not None:
        mv, keep = _mask_view(mb, kind, xv.shape, moved)
    if mv is not None:
        if kind == "rows":
            mx, ls = _core.rows_reduce_masked(xv, mv, scale)
        else:
            mx, ls = _core.cols_reduce_masked(xv, mv, scale)
    elif kind == "rows":
        mx, ls = _core.rows_reduce(xv, scale)
        if keep is not None:            # whole rows dropped by the mask
            mx[~keep] = -np.inf
            ls[~keep] = 0.0
    else:
        mx, ls = _core.cols_reduce(xv, scale)
    return mx.reshape(kept), ls.reshape(kept)


def _lse(a, comp, axes, k, res, mb=None):
    """max + log_sum / k over `axes` (logsumexp, smooth_max), shaped like
    the kept axes, in dtype `res`: written by the kernels' drivers block by
    block when `res` is the computing dtype (no float64 (max, log_sum)
    arrays of the outputs' size, no cast), else from _reduce."""
    kept = [a.shape[i] for i in range(a.ndim) if i not in axes]
    if (mb is not None or half_kind(a.dtype) or np.dtype(res) != np.dtype(comp)
            or math.prod(kept) == 0 or math.prod(a.shape[i] for i in axes) == 0):
        mx, ls = _reduce(a, comp, axes, k, mb)
        return np.asarray(_lse_of(mx, ls, k), dtype=np.float64).astype(res, copy=False)
    xc = a.astype(comp, copy=False)
    kind, xv, moved = _plan(xc, axes)
    out = _core.empty(kept, comp)
    if kind == "rows":
        _core.rows_reduce(xv, k, out.reshape(-1))
    else:
        _core.cols_reduce(xv, k, out.reshape(-1))
    return out


def _lse_of(mx, ls, k):
    """max + log_sum / k, in place in the reduction's float64 arrays (fresh
    arrays of _reduce, never the caller's): the reductions' last step costs
    one pass over the outputs, not four."""
    with np.errstate(invalid="ignore"):
        if k != 1.0:
            np.divide(ls, k, out=ls)
        return np.add(mx, ls, out=mx)


def _keep(r, shape, axes, keepdims):
    if keepdims:
        r = r.reshape([1 if i in axes else s for i, s in enumerate(shape)])
    return r


def logsumexp(x: ArrayLike, axis: Axes = None, b: ArrayLike | None = None,
              keepdims: bool = False, return_sign: bool = False, *,
              where: ArrayLike | None = None) -> Result:
    r"""Log of the sum of exponentials, ``log(sum(b * exp(x)))``, computed stably.

    Same signature and semantics as :func:`scipy.special.logsumexp`:
    ``LSE(x) = m + log(sum exp(x - m))`` with ``m = max x``.  Without `b`
    the sum is split into the elements equal to the max (counted exactly)
    and the rest, and ``log1p`` is used, so ``logsumexp([0, -40])`` is
    ``4.25e-18``, not 0.

    Parameters
    ----------
    x : array_like
        Input (float32/float64 natively; float16 / bfloat16 read natively and
        computed in float32, result in the input's dtype; ints as float64).
    axis : None, int or tuple of ints, optional
        Axes to reduce; None (default) reduces all of them.
    b : array_like, optional
        Weights broadcast against `x`; may be negative (then see
        `return_sign`).  Entries with ``b == 0`` are ignored, including
        infinite `x` there.
    keepdims : bool, optional
        Keep the reduced axes as size-1 dimensions.
    return_sign : bool, optional
        If True return ``(log|sum|, sign(sum))``; otherwise a negative sum
        gives NaN.
    where : array_like of bool, optional
        Elements to include, broadcast against `x` (``jax.nn.logsumexp``'s
        `where`; nonzero = included).  Excluded elements take no part in the
        max or the sum and their values are never used; a reduction with
        nothing included gives -inf (sign 0).  Read by the kernels in the
        same pass as `x` (with `b`: folded into the weights, ``b = 0``
        where excluded).

    Returns
    -------
    res : ndarray or scalar
        The reduction: the dtype of the input (float64 for integer input),
        promoted with a floating `b`'s as in scipy (float32 `x` with
        float64 `b`: float64; float16 / bfloat16 `x` with a wider or the
        other half-precision `b`: float32 or wider).
    sgn : ndarray or scalar
        Only with ``return_sign=True``: the sign of the sum (+1, 0 or -1;
        NaN where the result is NaN).

    Raises
    ------
    TypeError
        Complex or non-numeric `x` or `b`.
    numpy.exceptions.AxisError
        `axis` out of range.
    ValueError
        `b` or `where` does not broadcast with `x`.
    TypeError
        A complex / object / string `where`.

    Examples
    --------
    >>> import csoftmax
    >>> round(float(csoftmax.logsumexp([1.0, 2.0, 3.0, 4.0])), 4)
    4.4402
    >>> float(csoftmax.logsumexp([0.0, -40.0]))
    4.248354255291589e-18
    """
    a, comp, res = as_input(x)
    if b is not None:
        bb, bcomp, _ = as_input(b, "b")
        try:
            a, bb = np.broadcast_arrays(a, bb)
        except ValueError as e:
            raise ValueError(f"b with shape {bb.shape} does not broadcast with "
                             f"x of shape {a.shape}") from e
        if bb.dtype.kind == "f" or half_kind(bb.dtype) == 2:
            # floating weights promote the result as in scipy (float32 x with
            # float64 b -> float64); integer weights do not.  (bfloat16 is
            # dtype kind 'V': float16 x with bfloat16 b gave float16)
            res = np.result_type(res, bb.dtype.newbyteorder("="))
    mb = None if where is None else as_mask(where, a.shape)
    axes = normalize_axes(axis, a.ndim)
    if b is None:
        lse = _lse(a, comp, axes, 1.0, res, mb)
        if return_sign:
            sgn = np.where(np.isnan(lse), np.nan, np.where(lse == -np.inf, 0.0, 1.0))
    else:
        if mb is not None:
            bb = np.where(mb.view(bool), bb, 0)
        lse, sgn = _weighted_lse(a, bb, axes)
        if not return_sign:
            lse = np.where(sgn < 0, np.nan, lse)
    lse = _keep(np.asarray(lse), a.shape, axes, keepdims).astype(res, copy=False)
    if not keepdims and lse.ndim == 0:
        lse = lse[()]
    if return_sign:
        sgn = _keep(np.asarray(sgn, dtype=np.float64), a.shape, axes, keepdims).astype(res)
        if not keepdims and sgn.ndim == 0:
            sgn = sgn[()]
        return lse, sgn
    return lse


def _weighted_lse(a, b, axes):
    """log|sum b*exp(a)| and its sign over `axes`, in float64."""
    rest = [i for i in range(a.ndim) if i not in axes]
    kept = [a.shape[i] for i in rest]
    n = math.prod(a.shape[i] for i in axes)
    rows = math.prod(kept)
    a2 = np.ascontiguousarray(np.transpose(a, rest + list(axes)), dtype=np.float64).reshape(rows, n)
    b2 = np.ascontiguousarray(np.transpose(b, rest + list(axes)), dtype=np.float64).reshape(rows, n)
    lse, sgn = _core.rows_weighted_lse(a2, b2)
    hit = np.isinf(b2) & (a2 > -np.inf)
    if hit.any():
        # an infinite weight on a term that is not exp(-inf) = 0: the sum is
        # that infinity, however small exp(a) is -- the kernels formed
        # b exp(a - max), which underflows to inf * 0 = NaN for a far below
        # the max.  As in the kernels, entries with b == 0 take no part
        # (whatever a is); infinite terms of both signs, a NaN or
        # exp(-inf) * inf give NaN.  Rows without an infinite weight on a
        # finite or +inf a keep the kernels' result.
        part = b2 != 0
        big = hit | ((a2 == np.inf) & part)
        pos = (big & (b2 > 0)).any(axis=1)
        neg = (big & (b2 < 0)).any(axis=1)
        bad = ((np.isnan(a2) & part) | np.isnan(b2) |
               ((a2 == -np.inf) & np.isinf(b2))).any(axis=1)
        rows = hit.any(axis=1)
        lse = np.where(rows, np.where(bad | (pos & neg), np.nan, np.inf), lse)
        sgn = np.where(rows, np.where(bad | (pos & neg), np.nan, np.where(pos, 1.0, -1.0)), sgn)
    return lse.reshape(kept), sgn.reshape(kept)


def smooth_max(x: ArrayLike, axis: Axes = -1, *, sharpness: float = 1.0,
               keepdims: bool = False,
               where: ArrayLike | None = None) -> FloatResult:
    r"""Smooth (differentiable) maximum ``LSE(k*x)/k`` along `axis`.

    ``max(x) <= smooth_max(x) <= max(x) + log(n)/k``; as the sharpness
    ``k`` grows the result tends to ``max(x)``, and its gradient is
    ``softmax(k*x)``.

    Parameters
    ----------
    x : array_like
        Input.
    axis : int, tuple of ints or None, optional
        Axes to reduce (default: last).
    sharpness : float, optional
        k > 0 (default 1, the plain LogSumExp).
    keepdims : bool, optional
        Keep the reduced axes as size-1 dimensions.
    where : array_like of bool, optional
        Elements to include, broadcast against `x` (nonzero = included), as
        in :func:`logsumexp`: excluded elements take no part and their
        values are never used; a reduction with nothing included gives
        -inf.

    Returns
    -------
    ndarray or scalar

    Raises
    ------
    ValueError
        `sharpness` not a finite positive number; `where` does not
        broadcast with `x`.
    TypeError
        A complex / object / string `where`.

    Examples
    --------
    >>> import csoftmax
    >>> x = [1.0, 2.0, 3.0, 4.0]
    >>> round(float(csoftmax.smooth_max(x, sharpness=10)), 4)
    4.0
    """
    a, comp, res = as_input(x)
    k = positive_scalar(sharpness, "sharpness")
    comp = comp_for_scale(comp, k)
    axes = normalize_axes(axis, a.ndim)
    mb = None if where is None else as_mask(where, a.shape)
    r = _lse(a, comp, axes, k, res, mb)
    r = _keep(r, a.shape, axes, keepdims)
    return r if r.ndim else r[()]


def get_config() -> dict[str, Any]:
    """Build and runtime configuration.

    Returns
    -------
    dict
        ``version``, ``isa`` (kernel table in use), ``available_isas``,
        ``openmp`` (built with OpenMP), ``num_threads``, ``max_threads``
        (the largest count :func:`set_num_threads` accepts), ``output_cache``
        (the byte limit of :func:`set_output_cache`).
    """
    return {
        "version": __version__,
        "isa": _core.isa(),
        "available_isas": _core.available_isas(),
        "openmp": _core.have_openmp(),
        "num_threads": _core.get_num_threads(),
        "max_threads": _core.max_num_threads(),
        "output_cache": _core.output_cache_stats()["limit"],
    }


DEFAULT_OUTPUT_CACHE = 256 << 20


def set_output_cache(nbytes: int) -> int:
    """Set how many bytes of freed results csoftmax keeps for reuse.

    A result of 1 MiB or more (a softmax, a gradient, ...) is allocated
    through csoftmax's own NumPy memory handler (not while the caller has
    installed a handler of their own).  When NumPy frees such an array, its
    memory is kept -- up to `nbytes` in all, at most 8 blocks, the least
    recently freed dropped first -- and the next result of about the same
    size reuses it.  A fresh block of tens of MiB costs the operating
    system's zeroing of every page on first touch, a third of a softmax
    call into such memory (BENCHMARKS.md); a kept block does not.  The blocks
    are 64-byte aligned.  Kept memory is not returned to the operating
    system until it is dropped (or a new block cannot be had: then all are
    dropped and the allocation is tried again).  See docs/threads.md.

    Parameters
    ----------
    nbytes : int
        The limit in bytes; 0 turns the cache off and frees the memory it
        holds.  The default is 256 MiB, or ``CSOFTMAX_OUTPUT_CACHE`` at
        import (bytes, or a number with a K, M or G suffix: ``512M``, ``0``).

    Returns
    -------
    int
        The previous limit.

    Raises
    ------
    ValueError
        `nbytes` < 0.
    TypeError
        `nbytes` is not an integer (bools are refused).

    Examples
    --------
    >>> import csoftmax
    >>> prev = csoftmax.set_output_cache(0)      # off
    >>> csoftmax.get_config()["output_cache"]
    0
    >>> _ = csoftmax.set_output_cache(prev)
    """
    return _core.set_output_cache(nbytes)


def _output_cache_from_env(value):
    """The limit CSOFTMAX_OUTPUT_CACHE asks for, or None if it is invalid."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:([KMG])(?:I?B)?|B)?\s*", value, re.IGNORECASE)
    if m is None:
        return None
    return int(m.group(1)) << {None: 0, "K": 10, "M": 20, "G": 30}[
        m.group(2).upper() if m.group(2) else None]


def set_num_threads(n: int | None) -> int | None:
    """Fix the number of OpenMP threads csoftmax uses, or follow OpenMP again.

    By default (and after ``set_num_threads(None)``) csoftmax reads the
    OpenMP runtime's thread count at every call -- ``omp_get_max_threads()``
    of the calling thread -- so ``OMP_NUM_THREADS`` and
    ``threadpoolctl.threadpool_limits`` apply to it like to any other
    OpenMP library in the process.  ``set_num_threads(n)`` pins the count
    to ``n`` for csoftmax only and takes precedence over both, until
    ``set_num_threads(None)``.

    Parameters
    ----------
    n : int or None
        Thread count for large inputs, ``1 <= n <= get_config()["max_threads"]``
        (4 per processor, at least 64, and within ``OMP_THREAD_LIMIT``), or
        None to follow OpenMP.

    Returns
    -------
    int or None
        The previous setting (None if it followed OpenMP), so that
        ``prev = set_num_threads(1); ...; set_num_threads(prev)`` restores it.

    Raises
    ------
    ValueError
        ``n < 1``, or ``n`` above the cap: more threads only oversubscribe
        the cores, and an OpenMP runtime that cannot create them aborts the
        process.  (A larger ``OMP_NUM_THREADS`` is clamped to the cap.)
    TypeError
        `n` is neither an integer nor None (bools are refused).

    Notes
    -----
    Inputs below 32768 elements always run on one thread.  Without OpenMP
    in the build the count is always 1.  The OpenMP setting is per calling
    thread: ``threadpool_limits`` entered in one Python thread does not
    limit csoftmax calls made from another.

    Examples
    --------
    >>> import csoftmax
    >>> prev = csoftmax.set_num_threads(1)
    >>> csoftmax.get_num_threads()
    1
    >>> _ = csoftmax.set_num_threads(prev)
    """
    return _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads csoftmax will use for large inputs now.

    The :func:`set_num_threads` value if one is set, else the OpenMP
    runtime's current ``omp_get_max_threads()`` (``OMP_NUM_THREADS``, the
    number of CPUs, or a ``threadpoolctl.threadpool_limits`` in force).
    """
    return _core.get_num_threads()
