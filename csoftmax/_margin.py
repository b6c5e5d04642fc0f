"""Distillation, margin-softmax family, softplus / soft hinge, sampling.

Facade over the Cython loops in ``_margin.pxi``: argument checking, dtype
rules and layout live here (everything is validated before anything is
written); the loops, threads and kernels live in ``csoftmax._core``.
"""
import math

import numpy as np

from ._typing import (ArrayLike, Axis, FloatArray, FloatResult, IntResult, KLReduction,
                      MarginKind, Reduction, Result)

from . import _core
from ._losses import _target_array
from ._validate import (as_input, comp_for_scale, flag, integer, normalize_axes,
                        positive_scalar, real_scalar, reshape_view, short_repr)

__all__ = ["distillation_loss", "kl_div", "margin_logits", "margin_cross_entropy",
           "softplus", "soft_hinge", "sample"]

_KINDS = {"normface": 0, "cosface": 1, "arcface": 2}


# ---------------------------------------------------------------------------
# helpers

def _class_axis(axis, ndim, name="logits"):
    if axis is None or isinstance(axis, (tuple, list)):
        raise TypeError(f"axis must be a single integer (the class axis), got {axis!r}")
    if ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the class axis)")
    return normalize_axes(axis, ndim)[0]


def _rows(a, ax):
    """2-D (rows, n) array with contiguous rows holding `a` with class axis
    `ax` last (a view when possible, else one copy); also the batch shape."""
    n = a.shape[ax]
    batch = a.shape[:ax] + a.shape[ax + 1:]
    rows = math.prod(batch)
    if ax == a.ndim - 1:
        v = reshape_view(a, (rows, n))
        item = a.itemsize
        if (v is not None and (n <= 1 or v.strides[1] == item)
                and v.strides[0] % item == 0):
            return v, batch
        return np.ascontiguousarray(a).reshape(rows, n), batch
    return np.ascontiguousarray(np.moveaxis(a, ax, -1)).reshape(rows, n), batch


def _unrows(g, batch, ax, ndim):
    """Inverse of _rows for a freshly allocated (rows, n) result."""
    g = g.reshape(batch + (g.shape[1],))
    return g if ax == ndim - 1 else np.moveaxis(g, -1, ax)


def _targets(target, batch, n, name="target"):
    """Integer class indices shaped like `batch`, as a flat int64 array."""
    t = _target_array(target, name, "keep the unmasked samples instead (their "
                      "rows of the input, and target.compressed())")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {t.dtype}")
    if t.shape != tuple(batch):
        raise ValueError(f"{name} has shape {t.shape}, expected {tuple(batch)} "
                         "(the input's shape without the class axis)")
    bad = (t < 0) | (t >= n)
    if bad.any():
        pos = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.ravel())), t.shape))
        raise ValueError(f"{name}{list(pos)} = {int(t[pos])} is not a class index "
                         f"in [0, {n})")
    return np.ascontiguousarray(t, dtype=np.int64).reshape(-1)


def _reduction(reduction, allowed):
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, allowed))}; "
                         f"got {reduction!r}")
    return reduction


def _integer(value, name, what):
    """_validate.integer with a message naming `what`."""
    return integer(value, f"{name} must be {what} or None, got {value!r}")


def _real(value, name):
    v = real_scalar(value, name)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {short_repr(value)}")
    return v


def _float_input(x, name):
    a, comp, res = as_input(x, name)
    return a.astype(comp, copy=False), comp, res


def _finish(losses, batch, reduction, res, count):
    """Apply the reduction to per-row float64 losses; `count` divides 'mean'."""
    if reduction == "none":
        out = losses.reshape(batch).astype(res)
        return out if out.ndim else out[()]
    total = float(np.sum(losses))
    if reduction in ("mean", "batchmean"):
        total = total / count if count else math.nan
    return res.type(total)


# ---------------------------------------------------------------------------
# knowledge distillation

def distillation_loss(student_logits: ArrayLike, teacher_logits: ArrayLike, *,
                      temperature: float = 1.0, axis: Axis = -1,
                      reduction: KLReduction = "batchmean", return_grad: bool = False) -> Result:
    r"""Knowledge-distillation loss ``T^2 KL(softmax(t/T) || softmax(s/T))``.

    For every distribution (slice along `axis`) with teacher probabilities
    :math:`p^t = \mathrm{softmax}(t/T)` and student probabilities
    :math:`p^s = \mathrm{softmax}(s/T)`:

    .. math::

        \ell = T^2 \sum_j p^t_j \left(\log p^t_j - \log p^s_j\right),
        \qquad
        \frac{\partial \ell}{\partial s_j} = T\,(p^s_j - p^t_j)

    (terms with :math:`p^t_j = 0` contribute 0).  The log-probabilities are
    formed as ``(x - max x)/T - log S`` in float64, never as the log of a
    rounded probability.  The gradient is written in the same pass as the
    loss.

    Parameters
    ----------
    student_logits, teacher_logits : array_like
        Same shape; float32/float64 native (float16 via float32, integers as
        float64); the computation uses the wider of the two dtypes.
    temperature : float, optional
        T > 0 (default 1).
    axis : int, optional
        Class axis (default last).
    reduction : {'batchmean', 'mean', 'sum', 'none'}, optional
        'batchmean' (default): sum of the per-distribution losses divided by
        the number B of distributions (the product of the non-class
        dimensions; for 2-D ``(batch, classes)`` input this is exactly
        ``T**2 * torch.nn.functional.kl_div(log_softmax(s/T), softmax(t/T),
        reduction='batchmean')``).  'mean': divided by the total number of
        elements (torch's 'mean').  'sum': the sum.  'none': the per-
        distribution losses, shape of the input without `axis` (torch would
        return element-wise terms).
    return_grad : bool, optional
        Also return ``d loss / d student_logits``: ``T (p^s - p^t) / B`` for
        'batchmean', ``/ N`` (elements) for 'mean', unscaled for 'sum' and
        'none' (for 'none' it is the gradient of the sum of the losses).

    Returns
    -------
    loss : scalar or ndarray
        In the promoted dtype of the two inputs (float16 for float16 inputs,
        float64 for integers; float64 accumulation throughout).
    grad : ndarray
        Only with ``return_grad=True``; shape and dtype of the student logits
        (float64 for integer student logits).

    Raises
    ------
    ValueError
        Shapes differ, bad `temperature` or `reduction`.
    TypeError
        Complex or non-numeric input, non-integer `axis`.
    numpy.exceptions.AxisError
        `axis` out of range.

    Examples
    --------
    >>> import csoftmax
    >>> s = [[1.0, 2.0, 3.0]]; t = [[1.0, 2.0, 3.0]]
    >>> float(csoftmax.distillation_loss(s, t, temperature=2.0))
    0.0
    """
    s, cs, rs = _float_input(student_logits, "student_logits")
    t, ct, rt = _float_input(teacher_logits, "teacher_logits")
    if s.shape != t.shape:
        raise ValueError(f"student_logits has shape {s.shape} but teacher_logits has "
                         f"shape {t.shape}; they must match")
    T = positive_scalar(temperature, "temperature")
    ax = _class_axis(axis, s.ndim, "student_logits")
    reduction = _reduction(reduction, ("batchmean", "mean", "sum", "none"))
    comp = comp_for_scale(np.promote_types(cs, ct), 1.0 / T)
    res = np.promote_types(rs, rt)
    s = s.astype(comp, copy=False)
    t = t.astype(comp, copy=False)
    sv, batch = _rows(s, ax)
    tv, _ = _rows(t, ax)
    rows, n = sv.shape
    count = {"batchmean": rows, "mean": rows * n}.get(reduction, 1)
    gscale = T / count if count else 0.0
    losses = np.zeros(rows, dtype=np.float64)
    grad = _core.empty((rows, n), comp) if return_grad else None
    if rows and n:
        _core.distill_rows(sv, tv, losses, grad, T, gscale)
    elif grad is not None:
        grad.fill(0)
    loss = _finish(losses, batch, reduction, res, count)
    if return_grad:
        return loss, _unrows(grad, batch, ax, s.ndim).astype(rs, copy=False)
    return loss


def kl_div(log_q: ArrayLike, p_or_log_p: ArrayLike, *, log_target: bool = False,
           reduction: KLReduction = "mean") -> FloatResult:
    r"""Kullback-Leibler divergence with ``torch.nn.functional.kl_div`` semantics.

    `log_q` holds log-probabilities of the approximating distribution
    (torch's ``input``), `p_or_log_p` the target probabilities (or their
    logarithms with ``log_target=True``).  Element-wise terms:

    .. math::

        \text{log\_target=False:}\quad \ell_i = \mathrm{xlogy}(p_i, p_i) - p_i \log q_i
        \qquad
        \text{log\_target=True:}\quad \ell_i = e^{\log p_i} (\log p_i - \log q_i)

    where ``xlogy(0, 0) = 0``: a target of 0 contributes ``-0 * log q_i``,
    i.e. 0 for finite ``log q_i`` (NaN if ``log q_i`` is infinite, as torch).
    Negative targets give NaN (log of a negative number).

    Parameters
    ----------
    log_q : array_like
        Log-probabilities.
    p_or_log_p : array_like
        Target, broadcast against `log_q`.
    log_target : bool, optional
        Whether the target is given as log-probabilities (default False).
    reduction : {'mean', 'batchmean', 'sum', 'none'}, optional
        'mean' (default, torch's default): mean over all (broadcast)
        elements.  'batchmean': sum divided by ``log_q.shape[0]`` (the sum
        for 0-d input), the mathematically correct KL per sample.  'sum':
        the sum.  'none': the element-wise terms.

    Returns
    -------
    scalar or ndarray
        Dtype: the wider of the two input dtypes (float16 -> float16);
        terms are computed and summed in float64 (chunked, deterministic).

    Raises
    ------
    ValueError
        Shapes do not broadcast, bad `reduction`.
    TypeError
        Complex or non-numeric input.

    Examples
    --------
    >>> import numpy as np, csoftmax
    >>> p = np.array([[0.5, 0.5, 0.0]]); q = np.array([[0.25, 0.5, 0.25]])
    >>> round(float(csoftmax.kl_div(np.log(q), p, reduction='batchmean')), 6)
    0.346574
    """
    a, ca, ra = _float_input(log_q, "log_q")
    b, cb, rb = _float_input(p_or_log_p, "p_or_log_p")
    reduction = _reduction(reduction, ("mean", "batchmean", "sum", "none"))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError as e:
        raise ValueError(f"log_q with shape {a.shape} and p_or_log_p with shape "
                         f"{b.shape} do not broadcast") from e
    comp = np.promote_types(ca, cb)
    res = np.promote_types(ra, rb)
    af = np.ascontiguousarray(np.broadcast_to(a.astype(comp, copy=False), shape)).reshape(-1)
    bf = np.ascontiguousarray(np.broadcast_to(b.astype(comp, copy=False), shape)).reshape(-1)
    out = _core.empty(af.shape, comp) if reduction == "none" else None
    total = _core.kl_flat(af, bf, out, flag(log_target, "log_target"))
    if reduction == "none":
        out = out.reshape(shape).astype(res, copy=False)
        return out if out.ndim else out[()]
    if reduction == "mean":
        total = total / af.size if af.size else math.nan
    elif reduction == "batchmean" and a.ndim:
        total = total / a.shape[0] if a.shape[0] else math.nan
    return res.type(total)


# ---------------------------------------------------------------------------
# margin-softmax family

def _margin_args(cos, target, scale, margin, kind, easy_margin, axis):
    c, comp, res = _float_input(cos, "cos")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"kind must be 'normface', 'cosface' or 'arcface'; got {kind!r}")
    s = positive_scalar(scale, "scale")
    m = _real(margin, "margin")
    if m < 0:
        raise ValueError(f"margin must be >= 0, got {margin!r}")
    if kind == "normface" and m != 0:
        raise ValueError("kind='normface' has no margin; use margin=0 (or kind='cosface'/"
                         "'arcface')")
    if kind == "arcface" and not m < math.pi:
        raise ValueError(f"arcface margin must be an angle in [0, pi), got {margin!r}")
    ax = _class_axis(axis, c.ndim, "cos")
    cv, batch = _rows(c, ax)
    tg = _targets(target, batch, cv.shape[1])
    bad = _core.first_abs_gt1(cv)
    if bad >= 0:
        r, j = divmod(bad, cv.shape[1])
        raise ValueError(f"cos must hold cosines in [-1, 1]; found {float(cv[r, j])!r} "
                         f"(row {r}, class {j} of the flattened input)")
    return c, cv, batch, tg, ax, s, m, _KINDS[kind], flag(easy_margin, "easy_margin"), res


def margin_logits(cos: ArrayLike, target: ArrayLike, *, scale: float = 64.0,
                  margin: float = 0.0, kind: MarginKind = "normface",
                  easy_margin: bool = False, axis: Axis = -1) -> FloatArray:
    r"""Logits of the margin-softmax family (NormFace, CosFace, ArcFace).

    `cos` holds cosines :math:`\cos\theta_j` between normalised features and
    normalised class weights.  Every logit is :math:`s\cos\theta_j` except
    the target column :math:`y`, which becomes :math:`s\,f(\cos\theta_y)`:

    * ``'normface'``: :math:`f(c) = c` (no margin; `margin` must be 0);
    * ``'cosface'`` (AM-Softmax): :math:`f(c) = c - m`;
    * ``'arcface'``: :math:`f(c) = \cos(\theta + m) = c\cos m - \sqrt{1-c^2}\,\sin m`
      when :math:`\theta + m \le \pi`, i.e. :math:`c \ge \cos(\pi - m) = -\cos m`;
      otherwise the standard monotone fallback :math:`f(c) = c - m \sin m`.

    With ``easy_margin=True`` (cosface and arcface) the margin is applied only
    where :math:`c > 0` (:math:`f(c) = c` elsewhere) and arcface takes no
    fallback: with :math:`m > \pi/2`, :math:`\theta + m` passes :math:`\pi`
    for :math:`0 < c < -\cos m`, where :math:`\cos(\theta + m)` falls as
    :math:`c` grows (the target logit is not monotone there).

    Parameters
    ----------
    cos : array_like
        Cosines, every entry in [-1, 1] (NaN propagates).
    target : array_like of int
        Class index per row, shape of `cos` without `axis`.
    scale : float, optional
        s > 0 (default 64).
    margin : float, optional
        m >= 0 (an angle in [0, pi) for arcface); default 0.
    kind : {'normface', 'cosface', 'arcface'}, optional
    easy_margin : bool, optional
    axis : int, optional
        Class axis (default last).

    Returns
    -------
    ndarray
        Same shape as `cos`, its float dtype.

    Raises
    ------
    ValueError
        An entry of `cos` outside [-1, 1], bad class index (the first bad
        position is named), bad `kind`, `scale` or `margin`, or `target` of the
        wrong shape.
    TypeError
        Non-integer `target`, complex input.

    Examples
    --------
    >>> import csoftmax
    >>> csoftmax.margin_logits([[0.5, 0.1]], [0], scale=10, margin=0.2, kind='cosface')
    array([[3., 1.]])
    """
    c, cv, batch, tg, ax, s, m, k, easy, res = _margin_args(
        cos, target, scale, margin, kind, easy_margin, axis)
    z = _core.empty(cv.shape, cv.dtype)
    _core.margin_logits_rows(cv, tg, z, k, s, m, easy)
    return _unrows(z, batch, ax, c.ndim).astype(res, copy=False)


def margin_cross_entropy(cos: ArrayLike, target: ArrayLike, *, scale: float = 64.0,
                         margin: float = 0.0, kind: MarginKind = "normface",
                         easy_margin: bool = False, axis: Axis = -1,
                         reduction: Reduction = "mean", return_grad: bool = False) -> Result:
    r"""Fused margin logits + cross-entropy (+ gradient with respect to `cos`).

    With :math:`z` = :func:`margin_logits` ``(cos, target, ...)`` the loss of a
    row is

    .. math::

        \ell = \mathrm{LSE}(z) - z_y
             = \log\Bigl(1 + \sum_{j \ne y} e^{s c_j - s f(c_y)}\Bigr)

    evaluated as ``softplus(log Q)`` from the kernel's (max, count, rest)
    reduction of :math:`s c` with the target removed, so that small losses
    keep their relative accuracy.  The gradient with respect to the cosines,
    through the margin, is

    .. math::

        \frac{\partial \ell}{\partial c_j} = s\,p_j \quad (j \ne y),
        \qquad
        \frac{\partial \ell}{\partial c_y} = s\,(p_y - 1)\,f'(c_y),

    with :math:`p = \mathrm{softmax}(z)`, :math:`p_y - 1 = \mathrm{expm1}(-\ell)`,
    :math:`f' = 1` for normface/cosface and for the arcface fallback, and for
    arcface where the margin applies

    .. math::

        \frac{d\cos(\theta + m)}{d\cos\theta} = \cos m + \sin m\,\frac{\cos\theta}{\sin\theta}

    (:math:`\sin\theta = \sqrt{1 - c^2}`; +inf at :math:`c = 1` for m > 0, as
    with autograd on the usual implementation).  The gradient is written by
    the SIMD softmax kernel in the pass after the reduction; no logits array
    is materialised.

    Parameters
    ----------
    cos, target, scale, margin, kind, easy_margin, axis
        As in :func:`margin_logits`.
    reduction : {'mean', 'sum', 'none'}, optional
        Mean over rows (default), sum, or per-row losses.
    return_grad : bool, optional
        Also return ``d loss / d cos`` (for 'none': of the sum of the losses).

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        Only with ``return_grad=True``: shape and dtype of `cos`.

    Raises
    ------
    ValueError, TypeError
        As in :func:`margin_logits`; bad `reduction`.

    Examples
    --------
    >>> import csoftmax
    >>> round(float(csoftmax.margin_cross_entropy([[0.5, 0.1]], [0], scale=10,
    ...                                           margin=0.2, kind='cosface')), 6)
    0.126928
    """
    reduction = _reduction(reduction, ("mean", "sum", "none"))
    c, cv, batch, tg, ax, s, m, k, easy, res = _margin_args(
        cos, target, scale, margin, kind, easy_margin, axis)
    rows, n = cv.shape
    count = rows if reduction == "mean" else 1
    losses = np.zeros(rows, dtype=np.float64)
    grad = _core.empty((rows, n), cv.dtype) if return_grad else None
    _core.margin_ce_rows(cv, tg, losses, grad, k, s, m, easy, 1.0 / count if count else 0.0)
    loss = _finish(losses, batch, reduction, res, count)
    if return_grad:
        return loss, _unrows(grad, batch, ax, c.ndim).astype(res, copy=False)
    return loss


# ---------------------------------------------------------------------------
# softplus and the smooth multi-class hinge

def softplus(x: ArrayLike, *, beta: float = 1.0, threshold: float = 20.0) -> FloatResult:
    r"""Softplus ``log(1 + exp(beta x)) / beta``, torch semantics, stable.

    .. math::

        \mathrm{softplus}(x) =
        \begin{cases} x & \beta x > \text{threshold} \\
        \frac{1}{\beta}\log\left(1 + e^{\beta x}\right) & \text{otherwise}\end{cases}

    (as ``torch.nn.functional.softplus``).  The logarithm is evaluated as
    ``u + log1p(exp(-u))`` for ``u = beta x > 0`` and ``log1p(exp(u))``
    otherwise, in float64, so it neither overflows (any threshold) nor loses
    the tiny values for very negative x.

    Parameters
    ----------
    x : array_like
        Input (float32/float64 native, float16 via float32, integers as float64).
    beta : float, optional
        beta > 0 (default 1).
    threshold : float, optional
        Above ``beta x > threshold`` the identity is returned (default 20).

    Returns
    -------
    ndarray or scalar
        Same shape and float dtype as `x`.

    Raises
    ------
    ValueError
        `beta` not finite and > 0, `threshold` NaN.
    TypeError
        Complex or non-numeric input.

    Examples
    --------
    >>> import csoftmax
    >>> csoftmax.softplus([-800.0, 0.0, 30.0])
    array([ 0.        ,  0.69314718, 30.        ])
    """
    a, comp, res = _float_input(x, "x")
    b = positive_scalar(beta, "beta")
    th = real_scalar(threshold, "threshold")
    if math.isnan(th):
        raise ValueError("threshold must not be NaN")
    flat = np.ascontiguousarray(a).reshape(-1)
    y = _core.empty(flat.shape, comp)
    _core.softplus_flat(flat, y, b, th)
    y = y.reshape(a.shape).astype(res, copy=False)
    return y if y.ndim else y[()]


def soft_hinge(logits: ArrayLike, target: ArrayLike, *, margin: float = 0.0, axis: Axis = -1,
               reduction: Reduction = "mean", return_grad: bool = False) -> Result:
    r"""Smooth multi-class hinge loss ``softplus(LSE_{j != y} x_j - x_y + m)``.

    The hinge ``max(0, max_{j != y} x_j - x_y + m)`` with both the max and
    the ReLU smoothed (LogSumExp and softplus), as in the seed articles:

    .. math::

        u = \log\sum_{j \ne y} e^{x_j} - x_y + m, \qquad
        \ell = \log(1 + e^{u}),

    .. math::

        \frac{\partial \ell}{\partial x_j} = \sigma(u)\, q_j \quad (j \ne y),
        \qquad
        \frac{\partial \ell}{\partial x_y} = -\sigma(u),

    with :math:`q = \mathrm{softmax}` over the non-target classes and
    :math:`\sigma` the logistic function.  With m = 0 this equals the
    cross-entropy ``LSE(x) - x_y``.  The LSE without the target comes from
    the kernel's reduction with the target removed (re-summed exactly when
    the target was the only maximum and the rest underflows); a single class
    gives u = -inf, loss 0, gradient 0.

    Parameters
    ----------
    logits : array_like
        Scores (float32/float64 native).
    target : array_like of int
        Class index per row, shape of `logits` without `axis`.
    margin : float, optional
        m (any finite real; default 0).
    axis : int, optional
        Class axis (default last).
    reduction : {'mean', 'sum', 'none'}, optional
    return_grad : bool, optional
        Also return ``d loss / d logits`` (for 'none': of the sum of the losses).

    Returns
    -------
    loss : scalar or ndarray
    grad : ndarray
        Only with ``return_grad=True``; shape and dtype of `logits`.

    Raises
    ------
    ValueError
        Bad class index (first bad position named), `target` shape, `margin`
        or `reduction`.
    TypeError
        Non-integer `target`, complex input.

    Examples
    --------
    >>> import csoftmax
    >>> round(float(csoftmax.soft_hinge([[2.0, 0.0, 0.0]], [0], margin=1.0)), 6)
    0.551445
    """
    reduction = _reduction(reduction, ("mean", "sum", "none"))
    a, comp, res = _float_input(logits, "logits")
    m = _real(margin, "margin")
    ax = _class_axis(axis, a.ndim)
    xv, batch = _rows(a, ax)
    rows, n = xv.shape
    tg = _targets(target, batch, n)
    count = rows if reduction == "mean" else 1
    losses = np.zeros(rows, dtype=np.float64)
    grad = _core.empty((rows, n), comp) if return_grad else None
    _core.soft_hinge_rows(xv, tg, losses, grad, m, 1.0 / count if count else 0.0)
    loss = _finish(losses, batch, reduction, res, count)
    if return_grad:
        return loss, _unrows(grad, batch, ax, a.ndim).astype(res, copy=False)
    return loss


# ---------------------------------------------------------------------------
# sampling

_SAMPLE_ERRORS = {
    1: "contains NaN",
    2: "contains +inf (the distribution softmax(x/T) is undefined)",
    3: "has no class with nonzero probability (all entries are -inf)",
}


def _seed_key(seed):
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    sd = _integer(seed, "seed", "a non-negative integer")
    if sd < 0:
        raise ValueError(f"seed must be >= 0, got {sd}")
    return int(np.random.SeedSequence(sd).generate_state(1, np.uint64)[0])


def sample(logits: ArrayLike, *, temperature: float = 1.0, top_k: int | None = None,
           axis: Axis = -1, seed: int | None = None) -> IntResult:
    r"""Draw one class index per row from ``softmax(x / T)`` (optionally top-k).

    For every slice along `axis` a class :math:`j` is drawn with probability

    .. math:: P(j) = \frac{e^{x_j/T}}{\sum_{i \in K} e^{x_i/T}}, \quad j \in K,

    where :math:`K` is the set of the `top_k` largest entries (all classes
    if `top_k` is None; ties at the k-th value are broken towards lower
    indices).  ``temperature=0`` returns the argmax (first maximal index).

    The probabilities come from the SIMD softmax kernel; the class is found
    by inverse-CDF search with one uniform number per row.  The uniforms are
    counter-based: ``u_r = splitmix64^2(key + (r+1)·φ)`` with a 64-bit `key`
    derived from `seed` (numpy.random.SeedSequence), so a given seed gives
    the same result for any number of threads and any row blocking.

    Parameters
    ----------
    logits : array_like
        Scores (float32/float64 native).  -inf entries have probability 0.
    temperature : float, optional
        T >= 0 (default 1); 0 means argmax.  A T > 0 whose reciprocal
        overflows float64 (below ~5.6e-309) is refused, as by every
        temperature parameter.
    top_k : int or None, optional
        Restrict to the k >= 1 largest entries (None: all).
    axis : int, optional
        Class axis (default last).
    seed : int or None, optional
        Non-negative integer for reproducible draws; None draws fresh entropy.

    Returns
    -------
    int64 ndarray or scalar
        Class indices, shape of `logits` without `axis`.

    Raises
    ------
    ValueError
        A row with NaN, all -inf, or (T > 0) +inf (the row is named); no
        classes; bad `temperature`, `top_k` or `seed`.
    TypeError
        Non-integer `top_k` or `seed`, complex input.

    Examples
    --------
    >>> import csoftmax
    >>> int(csoftmax.sample([1.0, 5.0, 2.0], temperature=0))
    1
    >>> a = csoftmax.sample([[0.0, 1.0, 2.0]] * 4, seed=42)
    >>> bool((a == csoftmax.sample([[0.0, 1.0, 2.0]] * 4, seed=42)).all())
    True
    """
    a, comp, res = _float_input(logits, "logits")
    T = real_scalar(temperature, "temperature")
    if not (T >= 0 and math.isfinite(T)):
        raise ValueError(f"temperature must be a finite number >= 0, "
                         f"got {short_repr(temperature)}")
    if T > 0:
        # the rule of every temperature: 1/T must be finite (0 means argmax)
        T = positive_scalar(T, "temperature")
    ax = _class_axis(axis, a.ndim)
    n = a.shape[ax]
    if n == 0:
        raise ValueError("logits has no classes along axis (size 0)")
    k = 0
    if top_k is not None:
        k = _integer(top_k, "top_k", "an integer")
        if k < 1:
            raise ValueError(f"top_k must be >= 1, got {k}")
        if k >= n:
            k = 0
    key = _seed_key(seed)
    scale = 1.0 / T if T > 0 else 0.0
    a = a.astype(comp_for_scale(a.dtype, scale), copy=False)
    xv, batch = _rows(a, ax)
    rows = xv.shape[0]
    out = np.empty(rows, dtype=np.int64)
    err = np.zeros(rows, dtype=np.int8)
    _core.sample_rows(xv, out, err, scale, k, key)
    if err.any():
        r = int(np.argmax(err != 0))
        code = int(err[r])
        if code == 4:
            raise MemoryError("sample: could not allocate a row buffer")
        pos = [int(i) for i in np.unravel_index(r, batch)]
        where = f"row {pos}" if pos else "(its one row)"
        raise ValueError(f"logits {where} {_SAMPLE_ERRORS[code]}")
    out = out.reshape(batch)
    return out if out.ndim else out[()]
