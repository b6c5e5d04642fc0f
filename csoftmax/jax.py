"""JAX adapter: csoftmax as differentiable, jit-compatible JAX functions.

``import csoftmax.jax`` needs JAX (from a clone: ``pip install ".[jax]"``).  Each
function is a :func:`jax.custom_vjp` whose forward and backward call the
csoftmax C kernels on the host through :func:`jax.pure_callback`, so they
work under :func:`jax.jit`, :func:`jax.grad` and :func:`jax.vmap` (CPU
arrays; on an accelerator the callback copies to the host and back)::

    import jax, csoftmax.jax as cj
    loss = jax.jit(jax.value_and_grad(lambda x, y: cj.cross_entropy(x, y)))

float32 and float64 are native (float64 needs ``jax_enable_x64``); float16
and bfloat16 are read and written in their own dtype and computed in float32
on cache-sized chunks.  The
backward rules are first-order (no higher derivatives through them).

The cross-entropy forward rule computes the gradient in the same fused pass
as the loss and keeps it as the residual; backward only scales it.
"""
try:
    import jax as _jax
    import jax.numpy as _jnp
except ImportError as _e:  # pragma: no cover - exercised only without jax
    raise ImportError(
        "csoftmax.jax needs JAX, which is not installed. From a clone of csoftmax "
        "(it is not on PyPI yet): `pip install \".[jax]\"`; or JAX alone: "
        "`pip install jax`") from _e

import functools

import numpy as np

from . import _api, _losses
from ._validate import normalize_axes, positive_scalar

__all__ = ["softmax", "log_softmax", "logsumexp", "cross_entropy"]


def _host(a):
    """ndarray for the kernels: bfloat16 stays bfloat16 (an ml_dtypes array,
    computed natively); other non-NumPy floats -> float32."""
    a = np.asarray(a)
    if (a.dtype not in (np.float16, np.float32, np.float64) and a.dtype.kind not in "iub"
            and a.dtype.name != "bfloat16"):
        a = a.astype(np.float32)
    return a


def _floating(x, name="x"):
    x = _jnp.asarray(x)
    if _jnp.issubdtype(x.dtype, _jnp.complexfloating):
        # as the core (csoftmax._validate.as_input): a cast would drop the
        # imaginary part silently (jax.nn computes a complex softmax)
        raise TypeError(f"{name} has complex dtype {x.dtype}; csoftmax works on real "
                        f"numbers (take .real explicitly, or use jax.nn)")
    if not _jnp.issubdtype(x.dtype, _jnp.floating):
        x = x.astype(_jnp.result_type(float))
    return x


def _sds(shape, dtype):
    return _jax.ShapeDtypeStruct(tuple(shape), dtype)


def _call(f, shapes, *args, vmap_method="sequential"):
    """pure_callback.  Under vmap (and the vmaps inside jacrev and batched
    VJPs) some arguments may be batched and others not (jacrev batches the
    cotangent, not the saved output): "broadcast_all" tiles them all to the
    full batch shape for one host call (the host functions take negative
    axes, so extra leading axes are fine); "sequential" makes one host call
    per batch element (for host functions with non-negative axes).
    "expand_dims" is not used: it hands over unbatched arguments with a
    size-1 leading axis, which the kernels would not broadcast."""
    if vmap_method not in ("sequential", "broadcast_all"):
        raise ValueError(f"unsupported vmap_method {vmap_method!r}")
    return _jax.pure_callback(f, shapes, *args, vmap_method=vmap_method)


# ---------------------------------------------------------------------------
# softmax / log_softmax

def _mask(where, x):
    """where= as a bool array of x's rank (leading 1s added, no broadcast
    copy: the host broadcasts it, also under vmap's added leading axes).
    Bool, or numbers read as nonzero = included (numpy's ufunc rule)."""
    if where is None:
        return None
    w = _jnp.asarray(where)
    if w.dtype != _jnp.bool_:
        w = w != 0
    try:
        ok = w.ndim <= x.ndim and _jnp.broadcast_shapes(w.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:      # checked here, not in the host callback (a JaxRuntimeError)
        raise ValueError(f"where with shape {w.shape} does not broadcast to the "
                         f"input's shape {x.shape}")
    return w.reshape((1,) * (x.ndim - w.ndim) + w.shape)


def _sm_host(x, w, axis, temperature, log, dtype):
    f = _api.log_softmax if log else _api.softmax
    return np.asarray(f(_host(x), axis=axis, temperature=temperature,
                        where=w)).astype(dtype, copy=False)


def _sm_bwd_host(y, g, w, axis, temperature, log, dtype):
    y, g = _host(y), _host(g)
    if len(axis) == 1:
        f = _losses.log_softmax_backward if log else _losses.softmax_backward
        r = f(y, g.astype(y.dtype, copy=False), axis=axis[0], where=w)
    else:
        y64, g64 = y.astype(np.float64), g.astype(np.float64)
        if w is not None:       # y is 0 / -inf at excluded entries; drop their g
            g64 = np.where(np.asarray(w, dtype=bool), g64, 0.0)
        if log:
            r = g64 - np.exp(y64) * g64.sum(axis=axis, keepdims=True)
        else:
            r = y64 * (g64 - (y64 * g64).sum(axis=axis, keepdims=True))
    r = np.asarray(r, dtype=np.float64 if r.dtype == np.float64 else r.dtype)
    if temperature != 1.0:
        r = r * (1.0 / temperature)
    return r.astype(dtype, copy=False)


@functools.partial(_jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _softmax(x, w, axis, temperature, log):
    return _call(functools.partial(_sm_host, axis=axis, temperature=temperature, log=log,
                                   dtype=x.dtype),
                 _sds(x.shape, x.dtype), x, w, vmap_method="broadcast_all")


def _softmax_fwd(x, w, axis, temperature, log):
    y = _softmax(x, w, axis, temperature, log)
    return y, (y, w)


def _softmax_bwd(axis, temperature, log, res, g):
    y, w = res
    gx = _call(functools.partial(_sm_bwd_host, axis=axis, temperature=temperature, log=log,
                                 dtype=y.dtype),
               _sds(y.shape, y.dtype), y, g, w, vmap_method="broadcast_all")
    return (gx, None)


_softmax.defvjp(_softmax_fwd, _softmax_bwd)


def _neg_axes(axis, ndim):
    """Axes as a tuple of negative ints (valid under vmap's extra leading dims)."""
    return tuple(a - ndim for a in normalize_axes(axis, ndim))


def softmax(x, axis=-1, where=None, *, temperature=1.0):
    r"""Differentiable :func:`csoftmax.softmax` (``exp(x/T - LSE(x/T))``)
    along `axis` (int, tuple or None); same values as
    ``jax.nn.softmax(x / temperature, axis, where=where)``: excluded
    elements give 0 (and a zero gradient), a slice with nothing included
    all 0."""
    x = _floating(x)
    return _softmax(x, _mask(where, x), _neg_axes(axis, x.ndim),
                    positive_scalar(temperature, "temperature"), False)


def log_softmax(x, axis=-1, where=None, *, temperature=1.0):
    r"""Differentiable :func:`csoftmax.log_softmax` (``x/T - LSE(x/T)``) along
    `axis`; same values as ``jax.nn.log_softmax(x / temperature, axis,
    where=where)`` (excluded elements: -inf, zero gradient)."""
    x = _floating(x)
    return _softmax(x, _mask(where, x), _neg_axes(axis, x.ndim),
                    positive_scalar(temperature, "temperature"), True)


# ---------------------------------------------------------------------------
# logsumexp

def _lse_host(x, w, axis, keepdims, dtype):
    return np.asarray(_api.logsumexp(_host(x), axis=axis, keepdims=keepdims,
                                     where=w)).astype(dtype)


def _lse_bwd_host(x, g, w, axis, keepdims, dtype):
    x, g = _host(x), _host(g)
    if w is not None:
        if not keepdims:
            g = np.expand_dims(g, axis)
        r = np.asarray(_api.softmax(x, axis=axis, where=w), dtype=np.float64) * g
    elif len(axis) == 1 and x.size:
        r = _losses.logsumexp_backward(x, g, axis=axis[0])
    else:
        if not keepdims:
            g = np.expand_dims(g, axis)
        r = np.asarray(_api.softmax(x, axis=axis), dtype=np.float64) * g
    return np.asarray(r).astype(dtype, copy=False)


def _lse_shape(shape, axis, keepdims):
    ax = [a % len(shape) for a in axis]
    if keepdims:
        return tuple(1 if i in ax else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in ax)


@functools.partial(_jax.custom_vjp, nondiff_argnums=(2, 3))
def _logsumexp(x, w, axis, keepdims):
    return _call(functools.partial(_lse_host, axis=axis, keepdims=keepdims, dtype=x.dtype),
                 _sds(_lse_shape(x.shape, axis, keepdims), x.dtype), x, w,
                 vmap_method="broadcast_all")


def _logsumexp_fwd(x, w, axis, keepdims):
    return _logsumexp(x, w, axis, keepdims), (x, w)


def _logsumexp_bwd(axis, keepdims, res, g):
    x, w = res
    gx = _call(functools.partial(_lse_bwd_host, axis=axis, keepdims=keepdims, dtype=x.dtype),
               _sds(x.shape, x.dtype), x, g, w, vmap_method="broadcast_all")
    return (gx, None)


_logsumexp.defvjp(_logsumexp_fwd, _logsumexp_bwd)


def logsumexp(x, axis=None, b=None, keepdims=False, return_sign=False, where=None):
    r"""Differentiable :func:`csoftmax.logsumexp` over `axis` (None: all
    axes), with the signature of ``jax.nn.logsumexp`` /
    ``jax.scipy.special.logsumexp``.  The gradient ``softmax(x) * g`` is one
    fused kernel pass.  ``where=`` as ``jax.nn.logsumexp``'s: excluded
    elements are left out (nothing included: -inf, gradient 0).

    With weights `b` or ``return_sign=True`` the call is
    ``jax.scipy.special.logsumexp`` itself (differentiable in `x` and `b`;
    the csoftmax kernels serve the unweighted reduction only here)."""
    if b is not None or return_sign:
        from jax.scipy.special import logsumexp as _jlse
        return _jlse(x, axis=axis, b=b, keepdims=keepdims, return_sign=return_sign,
                     where=where)
    x = _floating(x)
    return _logsumexp(x, _mask(where, x), _neg_axes(axis, x.ndim), bool(keepdims))


# ---------------------------------------------------------------------------
# cross_entropy

def _ce_host(x, t, w, m, *, opts, dtype, grad):
    x = _host(x)
    t = np.asarray(t)
    if t.dtype.kind == "f":
        t = _host(t)
    w = None if w is None else _host(w)
    r = _losses.cross_entropy(x, t, weight=w, return_grad=grad, where=m, **opts)
    if grad:
        loss, g = r
        return np.asarray(loss).astype(dtype), np.asarray(g).astype(dtype, copy=False)
    return np.asarray(r).astype(dtype)


def _ce_tgrad_host(x, w, *, opts, dtype):
    """d loss_i / d q_c = -(1-eps) w_c log p_c (probability targets)."""
    x = _host(x)
    ax = opts["axis"]
    lp = _api.log_softmax(x, axis=ax, temperature=opts["temperature"]).astype(np.float64)
    r = -(1.0 - opts["label_smoothing"]) * lp
    if w is not None:
        shape = [1] * x.ndim
        shape[ax] = -1
        r = r * np.asarray(w, dtype=np.float64).reshape(shape)
    if opts["reduction"] == "mean":
        r = r / (x.size // x.shape[ax])
    return r.astype(dtype)


def _ce_wgrad_host(x, t, w, m, ct, *, opts, dtype):
    """d (sum of ct * loss) / d w_c, in float64 on the host.

    Probability targets: loss_i = -sum_c w_c q'_ic log p_ic, q' = (1-eps) q
    + eps/C ('mean': / N).  Class indices y_i (kept samples): loss_i =
    (1-eps) w_{y_i} (-log p_{i,y_i}) + (eps/C) sum_c w_c (-log p_ic);
    'mean' divides the sum by W = sum_kept w_{y_i}, so its derivative is
    (dS/dw_c - L n_c) / W with n_c the kept samples of class c."""
    x = _host(x)
    ax, eps = opts["axis"], opts["label_smoothing"]
    lp = _api.log_softmax(x, axis=ax, temperature=opts["temperature"],
                          where=None if m is None else np.asarray(m))
    lp = np.moveaxis(lp.astype(np.float64), ax, -1).reshape(-1, x.shape[ax])
    C = lp.shape[1]
    w = np.asarray(w, dtype=np.float64)
    ct = np.asarray(ct, dtype=np.float64)
    red = opts["reduction"]
    cts = ct.reshape(-1, 1) if red == "none" else np.full((lp.shape[0], 1), float(ct))
    t = np.asarray(t)
    with np.errstate(invalid="ignore"):
        if t.dtype.kind not in "biu":   # probabilities (float16, bfloat16 too)
            q = np.moveaxis(_host(t).astype(np.float64), ax, -1).reshape(-1, C)
            d = -((1.0 - eps) * q + eps / C) * lp
            if red == "mean":
                d = d / lp.shape[0]
            return (d * cts).sum(axis=0).astype(dtype)
        y = t.reshape(-1).astype(np.int64)
        kept = y != opts["ignore_index"]
        lpk, yk, ck = lp[kept], y[kept], cts[kept]
        d = np.zeros_like(lpk)
        if eps:
            d += (eps / C) * -lpk
        d[np.arange(len(yk)), yk] += (1.0 - eps) * -lpk[np.arange(len(yk)), yk]
        if red != "mean":
            return (d * ck).sum(axis=0).astype(dtype)
        W = w[yk].sum()
        if W == 0:      # no kept weight (all ignored, empty): the loss is NaN,
            return np.zeros(C, dtype)   # its gradients 0, as the logits'
        S = (d * w).sum()
        n = np.bincount(yk, minlength=C).astype(np.float64)
        return (float(ct) * (d.sum(axis=0) - (S / W) * n) / W).astype(dtype)


def _loss_shape(x, t, opts):
    if opts["reduction"] != "none":
        return ()
    ax = opts["axis"]
    return tuple(s for i, s in enumerate(x.shape) if i != ax)


@functools.partial(_jax.custom_vjp, nondiff_argnums=(4,))
def _cross_entropy(x, t, w, m, opts):
    return _call(functools.partial(_ce_host, opts=dict(opts), dtype=x.dtype, grad=False),
                 _sds(_loss_shape(x, t, dict(opts)), x.dtype), x, t, w, m)


def _cross_entropy_fwd(x, t, w, m, opts):
    o = dict(opts)
    loss, g = _call(functools.partial(_ce_host, opts=o, dtype=x.dtype, grad=True),
                    (_sds(_loss_shape(x, t, o), x.dtype), _sds(x.shape, x.dtype)), x, t, w, m)
    return loss, (g, x, t, w, m)


def _cross_entropy_bwd(opts, res, ct):
    g, x, t, w, m = res
    o = dict(opts)
    ax = o["axis"]
    scale = _jnp.expand_dims(ct, ax) if o["reduction"] == "none" else ct
    gx = g * scale.astype(g.dtype)
    gt = None
    if _jnp.issubdtype(t.dtype, _jnp.floating):
        tg = _call(functools.partial(_ce_tgrad_host, opts=o, dtype=t.dtype),
                   _sds(x.shape, t.dtype), x, w)
        gt = tg * scale.astype(t.dtype)
    gw = None
    if w is not None:
        gw = _call(functools.partial(_ce_wgrad_host, opts=o, dtype=w.dtype),
                   _sds(w.shape, w.dtype), x, t, w, m, ct)
    return gx, gt, gw, None


_cross_entropy.defvjp(_cross_entropy_fwd, _cross_entropy_bwd)


def cross_entropy(logits, target, *, axis=-1, weight=None, ignore_index=-100,
                  reduction="mean", label_smoothing=0.0, temperature=1.0, where=None):
    r"""Differentiable :func:`csoftmax.cross_entropy` (all its options; class
    axis `axis`, default last as in optax).

    `target` holds integer class indices (shape of `logits` without `axis`)
    or class probabilities (shape of `logits`, differentiable:
    ``-(1-eps) w_c log p_c``), and so is `weight` (class indices or
    probabilities; with 'mean' through the division by the kept samples'
    total weight).  With ``reduction='none'`` and no options this equals
    ``optax.softmax_cross_entropy_with_integer_labels``.

    Arguments and shapes are checked at the call; bad class indices (values)
    in the host callback, when the computation runs (under :func:`jax.jit`
    that surfaces as an ``XlaRuntimeError`` carrying csoftmax's message).

    ``where=``: the classes to include (as :func:`csoftmax.cross_entropy`'s;
    the loss over ``jax.nn.log_softmax(x, where=where)``).
    """
    x = _floating(logits, "logits")
    t = _jnp.asarray(target)
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the class axis)")
    ax = normalize_axes(axis, x.ndim)[0]
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    # the core's own rules, at the call (not in the host callback, where
    # they surfaced as an INTERNAL CpuCallback error, under jit at run time)
    ignore = _losses._ignore(ignore_index)
    eps = _losses._smoothing(label_smoothing)
    temp = positive_scalar(temperature, "temperature")
    prob = _losses._target_kind(t.shape, np.dtype(t.dtype), x.shape, ax, ignore)
    if where is not None:
        _losses._where_allowed(prob, eps)
    if x.shape[ax] == 0:
        raise ValueError("logits have no classes (the class axis has length 0)")
    w = None if weight is None else _jnp.asarray(weight, dtype=x.dtype)
    if w is not None and w.shape != (x.shape[ax],):
        raise ValueError(f"weight has shape {w.shape}, expected ({x.shape[ax]},): one per "
                         "class")
    opts = (("axis", ax), ("ignore_index", ignore), ("reduction", reduction),
            ("label_smoothing", eps), ("temperature", temp))
    return _cross_entropy(x, t, w, _mask(where, x), opts)
