"""PyTorch adapter: csoftmax as differentiable ``torch`` functions.

``import csoftmax.torch`` needs PyTorch (``pip install csoftmax[torch]``).
Every function takes and returns **CPU tensors** and is a
:class:`torch.autograd.Function`, so it can be used inside an ``nn.Module``
forward and trained with any optimiser::

    import torch, csoftmax.torch as ct
    loss = ct.cross_entropy(model(x), y)      # like F.cross_entropy
    loss.backward()

Inputs reach the C kernels without a copy (``tensor.numpy()`` shares the
memory, strided layouts included) and results come back without a copy
(``torch.from_numpy``).  float32 and float64 are native, float16 is computed
in float32 and bfloat16 is converted to float32 and back.

The backward passes use csoftmax's fused kernels: softmax / log_softmax
backward are :func:`csoftmax.softmax_backward` /
:func:`csoftmax.log_softmax_backward` on the saved output; ``cross_entropy``
and ``margin_cross_entropy`` compute their gradient in the same pass as the
loss during forward (when an input requires grad) and backward only scales it
by ``grad_output``.  Backward functions are first-order
(``once_differentiable``): no double backward.
"""
try:
    import torch as _torch
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "csoftmax.torch needs PyTorch, which is not installed. From a clone of csoftmax "
        "(it is not on PyPI yet): `pip install \".[torch]\"`; or PyTorch alone, the "
        "CPU build: `pip install torch --index-url https://download.pytorch.org/whl/cpu`"
    ) from _e

import numpy as np
from torch.autograd.function import once_differentiable as _once

from . import _api, _losses, _margin

__all__ = ["softmax", "log_softmax", "logsumexp", "cross_entropy",
           "margin_cross_entropy", "CrossEntropyLoss"]

_NATIVE = (_torch.float16, _torch.float32, _torch.float64)


# ---------------------------------------------------------------------------
# tensor <-> ndarray without copies

def _np(t, name="input"):
    """NumPy view of a CPU tensor (no copy for float16/32/64 and integers)."""
    if not isinstance(t, _torch.Tensor):
        return np.asarray(t)
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on device {t.device}; csoftmax.torch works on CPU "
                         f"tensors only (move it with .cpu())")
    if t.is_complex():
        raise TypeError(f"{name} is complex ({t.dtype}); csoftmax needs real input")
    t = t.detach()
    if t.dtype == _torch.bfloat16:
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def _tt(a, like=None):
    """Tensor sharing `a`'s memory; cast to `like`'s dtype if that is not a
    NumPy dtype (bfloat16)."""
    t = _torch.from_numpy(np.asarray(a))
    if like is not None and like.is_floating_point() and like.dtype not in _NATIVE:
        t = t.to(like.dtype)
    return t


def _dim(d):
    if isinstance(d, (list, tuple)):
        return tuple(int(i) for i in d)
    return None if d is None else int(d)


# ---------------------------------------------------------------------------
# softmax / log_softmax

class _Softmax(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, temperature, log):
        xa = _np(x)
        y = (_api.log_softmax if log else _api.softmax)(xa, axis=dim, temperature=temperature)
        out = _tt(y, x)
        ctx.dim, ctx.temperature, ctx.log = dim, temperature, log
        ctx.save_for_backward(out)
        return out

    @staticmethod
    @_once
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        f = _losses.log_softmax_backward if ctx.log else _losses.softmax_backward
        ya, ga = _np(y, "output"), _np(g, "grad_output")
        if isinstance(ctx.dim, tuple):
            gx = _tuple_bwd(ya, ga, ctx.dim, ctx.log)
        else:
            gx = f(ya, ga.astype(ya.dtype, copy=False), axis=ctx.dim)
        if ctx.temperature != 1.0:
            gx = np.multiply(gx, 1.0 / ctx.temperature, out=gx, casting="unsafe")
        return _tt(gx, y), None, None, None


def _tuple_bwd(y, g, dims, log):
    """VJP for a softmax over several axes (rare): float64 NumPy."""
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    if log:
        r = g64 - np.exp(y64) * g64.sum(axis=dims, keepdims=True)
    else:
        r = y64 * (g64 - (y64 * g64).sum(axis=dims, keepdims=True))
    return r.astype(y.dtype)


def softmax(input, dim=-1, *, temperature=1.0):
    r"""Differentiable :func:`csoftmax.softmax` of a CPU tensor along `dim`
    (``exp(x/T - LSE(x/T))``; an int or a tuple of dims).  Same result as
    ``torch.softmax(input / temperature, dim)``; float32 is accumulated in
    float64 (within 1 ULP of the exact result)."""
    return _Softmax.apply(input, _dim(dim), float(temperature), False)


def log_softmax(input, dim=-1, *, temperature=1.0):
    r"""Differentiable :func:`csoftmax.log_softmax` of a CPU tensor along `dim`
    (``x/T - LSE(x/T)``).  Same result as
    ``torch.log_softmax(input / temperature, dim)``."""
    return _Softmax.apply(input, _dim(dim), float(temperature), True)


# ---------------------------------------------------------------------------
# logsumexp

class _LogSumExp(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim):
        xa = _np(x)
        r = _api.logsumexp(xa, axis=dim, keepdims=keepdim)
        ctx.dim, ctx.keepdim = dim, keepdim
        ctx.save_for_backward(x)
        return _tt(r, x)

    @staticmethod
    @_once
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        xa, ga = _np(x), _np(g, "grad_output")
        dim = ctx.dim
        axes = _api.normalize_axes(dim, xa.ndim)
        if len(axes) == 1 and xa.size:
            # one fused pass: softmax(x) * dy written by the kernels
            gx = _losses.logsumexp_backward(xa, ga, axis=axes[0])
        else:
            if not ctx.keepdim:
                ga = np.expand_dims(ga, axes)
            gx = (_api.softmax(xa, axis=axes).astype(np.float64) * ga).astype(xa.dtype)
        return _tt(gx, x), None, None


def logsumexp(input, dim=-1, keepdim=False):
    r"""Differentiable :func:`csoftmax.logsumexp` of a CPU tensor over `dim`
    (an int, a tuple of dims or None for all), as :func:`torch.logsumexp`.
    The gradient is ``softmax(x) * grad_output`` (one fused kernel pass)."""
    return _LogSumExp.apply(input, _dim(dim), bool(keepdim))


# ---------------------------------------------------------------------------
# cross_entropy

class _CrossEntropy(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, weight, dim, ignore_index, reduction,
                label_smoothing, temperature):
        xa, ta = _np(x), _np(target, "target")
        wa = None if weight is None else _np(weight, "weight")
        kw = dict(axis=dim, weight=wa, ignore_index=ignore_index, reduction=reduction,
                  label_smoothing=label_smoothing, temperature=temperature)
        need_x = ctx.needs_input_grad[0]
        need_t = ctx.needs_input_grad[1]
        if need_x:
            loss, grad = _losses.cross_entropy(xa, ta, return_grad=True, **kw)
            ctx.grad = _tt(grad, x)
        else:
            loss = _losses.cross_entropy(xa, ta, **kw)
            ctx.grad = None
        ctx.dim, ctx.reduction = dim, reduction
        ctx.eps, ctx.temperature = label_smoothing, temperature
        ctx.prob = ta.shape == xa.shape
        ctx.save_for_backward(x if need_t else None, weight)
        return _tt(np.asarray(loss), x)

    @staticmethod
    @_once
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        gx = gt = None
        if ctx.grad is not None:
            gx = ctx.grad
            if ctx.reduction == "none":
                gx = gx * g.unsqueeze(ctx.dim).to(gx.dtype)
            else:
                gx = gx * g.to(gx.dtype)
        if ctx.needs_input_grad[1] and ctx.prob:
            # dL/dq_c = -(1-eps) w_c log p_c (/ N for 'mean'), per sample
            xa = _np(x)
            lp = _tt(_api.log_softmax(xa, axis=ctx.dim, temperature=ctx.temperature), x)
            gt = -(1.0 - ctx.eps) * lp
            if weight is not None:
                shape = [1] * x.dim()
                shape[ctx.dim] = -1
                gt = gt * weight.detach().to(gt.dtype).reshape(shape)
            if ctx.reduction == "mean":
                gt = gt / (x.numel() // x.shape[ctx.dim])
            if ctx.reduction == "none":
                gt = gt * g.unsqueeze(ctx.dim).to(gt.dtype)
            else:
                gt = gt * g.to(gt.dtype)
        return gx, gt, None, None, None, None, None, None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, dim=None, temperature=1.0):
    r"""Differentiable :func:`csoftmax.cross_entropy` with the signature of
    :func:`torch.nn.functional.cross_entropy`.

    `input` holds logits with the class axis at `dim` -- by default torch's
    convention: dim 1 (dim 0 for a 1-D input).  `target` is integer class
    indices (shape of `input` without `dim`) or class probabilities (shape
    of `input`).  `weight`, `ignore_index`, `reduction`, `label_smoothing`
    are torch's; `temperature` divides the logits first.

    The gradient with respect to `input` is computed in the forward pass by
    the fused kernel (only when `input` requires grad) and scaled by
    ``grad_output`` in backward.  Probability targets that require grad get
    ``-(1-eps) w_c log p_c`` (divided by N for 'mean'); `weight` is not
    differentiated.
    """
    if not isinstance(input, _torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
    if dim is None:
        dim = 1 if input.dim() >= 2 else 0
    dim = int(dim)
    if input.dim():
        dim = dim % input.dim()
    return _CrossEntropy.apply(input, target, weight, dim, int(ignore_index), reduction,
                               float(label_smoothing), float(temperature))


class CrossEntropyLoss(_torch.nn.Module):
    """``nn.CrossEntropyLoss`` on csoftmax's fused kernels (same arguments,
    plus `dim` and `temperature`); see :func:`cross_entropy`."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean",
                 label_smoothing=0.0, *, dim=None, temperature=1.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.dim = dim
        self.temperature = temperature

    def forward(self, input, target):
        return cross_entropy(input, target, self.weight, self.ignore_index, self.reduction,
                             self.label_smoothing, dim=self.dim, temperature=self.temperature)


# ---------------------------------------------------------------------------
# margin_cross_entropy

class _MarginCE(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, cos, target, scale, margin, kind, easy_margin, dim, reduction):
        ca, ta = _np(cos, "cos"), _np(target, "target")
        kw = dict(scale=scale, margin=margin, kind=kind, easy_margin=easy_margin,
                  axis=dim, reduction=reduction)
        if ctx.needs_input_grad[0]:
            loss, grad = _margin.margin_cross_entropy(ca, ta, return_grad=True, **kw)
            ctx.grad = _tt(grad, cos)
        else:
            loss = _margin.margin_cross_entropy(ca, ta, **kw)
            ctx.grad = None
        ctx.dim, ctx.reduction = dim, reduction
        return _tt(np.asarray(loss), cos)

    @staticmethod
    @_once
    def backward(ctx, g):
        gx = ctx.grad
        if gx is not None:
            if ctx.reduction == "none":
                gx = gx * g.unsqueeze(ctx.dim).to(gx.dtype)
            else:
                gx = gx * g.to(gx.dtype)
        return gx, None, None, None, None, None, None, None


def margin_cross_entropy(cos, target, *, scale=64.0, margin=0.0, kind="normface",
                         easy_margin=False, dim=-1, reduction="mean"):
    r"""Differentiable :func:`csoftmax.margin_cross_entropy` (NormFace /
    CosFace / ArcFace softmax cross-entropy on cosine logits `cos`, class
    axis `dim`).  The gradient with respect to `cos` (through the margin) is
    computed in the fused forward pass and scaled by ``grad_output``."""
    if not isinstance(cos, _torch.Tensor):
        raise TypeError(f"cos must be a torch.Tensor, got {type(cos).__name__}")
    dim = int(dim)
    if cos.dim():
        dim = dim % cos.dim()
    return _MarginCE.apply(cos, target, float(scale), float(margin), kind,
                           bool(easy_margin), dim, reduction)
