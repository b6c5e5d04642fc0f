"""PyTorch adapter: csoftmax as differentiable ``torch`` functions.

``import csoftmax.torch`` needs PyTorch (``pip install csoftmax[torch]``).
Every function takes and returns **CPU tensors** and is a
:class:`torch.autograd.Function`, so it can be used inside an ``nn.Module``
forward and trained with any optimiser::

    import torch, csoftmax.torch as ct
    loss = ct.cross_entropy(model(x), y)      # like F.cross_entropy
    loss.backward()

The functions take the signatures of their torch counterparts --
``softmax`` / ``log_softmax`` / ``softmin(input, dim=None, _stacklevel=3,
dtype=None)`` as ``torch.nn.functional``, ``logsumexp(input, dim=None,
keepdim=False, *, out=None)`` as :func:`torch.logsumexp` (where `dim` is
required),
``cross_entropy`` / ``nll_loss`` as ``torch.nn.functional`` (``size_average``
/ ``reduce`` included) -- and the modules ``CrossEntropyLoss``, ``NLLLoss``,
``Softmax``, ``LogSoftmax``, ``Softmin``, ``Softmax2d`` the constructor
arguments of ``torch.nn``'s.  The csoftmax extras (``temperature``, the class
axis ``dim`` of the losses) are keyword-only.  As in torch:

* a 0-d tensor is one element: ``dim`` may be 0, -1 or ``(0,)``;
* ``dim=None`` for the softmax family picks torch's legacy implicit dim
  (0 for 0-, 1- and 3-d input, else 1) and warns as torch does;
* ``dtype=`` casts the input before the operation; the gradient flows back
  to the input's own dtype;
* integer and bool input: ``logsumexp`` computes in and returns
  ``torch.get_default_dtype()`` (as :func:`torch.logsumexp`); the softmax
  family (without a floating ``dtype=``) and the losses raise
  ``NotImplementedError``, as torch's kernels do;
* the deprecated ``size_average`` / ``reduce`` map to ``reduction`` by
  torch's legacy rule (both default True: mean; ``reduce=False``: none;
  ``size_average=False``: sum), with torch's deprecation warning;
* the losses check their arguments as torch does and raise torch's
  exception and message (RuntimeError "expected target dtype to be Long or
  Byte" for int32 targets, a weight of another dtype than the input's, a
  wrong weight length, IndexError "Target 5 is out of bounds.", ...); where
  csoftmax's NumPy API raises ValueError / TypeError for the same mistake,
  the exception derives from that class too.  Complex input raises
  NotImplementedError (also a TypeError).  A (1,) target for a 1-D input is
  a 0-d one, and zero classes give torch's values (NaN / -0.), as in torch.

Inputs reach the C kernels without a copy (``tensor.numpy()`` shares the
memory, strided layouts included) and results come back without a copy
(``torch.from_numpy``).  float32 and float64 are native; float16 and
bfloat16 are read and written in place in their own dtype and computed in
float32 on cache-sized chunks (bfloat16 through the optional ml_dtypes; without
it bfloat16 is converted to float32 and back).

The backward passes use csoftmax's fused kernels: softmax / log_softmax
backward are :func:`csoftmax.softmax_backward` /
:func:`csoftmax.log_softmax_backward` on the saved output; ``cross_entropy``
and ``margin_cross_entropy`` compute their gradient in the same pass as the
loss during forward (when an input requires grad) and backward only scales it
by ``grad_output``; ``nll_loss``'s gradient (``-w[y]`` at the targets) is
built in backward from the targets.  Backward functions are first-order:
a backward run with ``create_graph=True`` (for a second derivative) raises
RuntimeError rather than return a gradient whose own derivative is missing.
"""
try:
    import torch as _torch
except ImportError as _e:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "csoftmax.torch needs PyTorch, which is not installed. From a clone of csoftmax "
        "(it is not on PyPI yet): `pip install \".[torch]\"`; or PyTorch alone, the "
        "CPU build: `pip install torch --index-url https://download.pytorch.org/whl/cpu`"
    ) from _e

import warnings

import numpy as np
import functools as _functools


def _once(fn):
    """The backward functions are first-order: run under create_graph=True
    (grad mode on in backward) they raise, where torch's once_differentiable
    marks its outputs only when an incoming gradient requires grad -- so
    loss.backward(create_graph=True) or autograd.grad(loss, x,
    create_graph=True) got a constant first-order gradient and a silently
    wrong second derivative (gradient penalties, Hessian-vector products)."""
    @_functools.wraps(fn)
    def wrapper(ctx, *args):
        if _torch.is_grad_enabled():
            raise RuntimeError(
                "csoftmax.torch: the backward functions are first-order; "
                "create_graph=True (for a second derivative) is not supported -- use "
                "torch.nn.functional for double backward")
        return fn(ctx, *args)
    return wrapper

from . import _api, _lce, _losses, _margin, _validate
from ._validate import bfloat16_dtype as _bfloat16_dtype
from ._validate import real_scalar as _real_scalar

__all__ = ["softmax", "log_softmax", "softmin", "logsumexp", "cross_entropy", "nll_loss",
           "margin_cross_entropy", "linear_cross_entropy", "CrossEntropyLoss", "NLLLoss", "Softmax", "LogSoftmax",
           "Softmin", "Softmax2d"]

_NATIVE = (_torch.float16, _torch.float32, _torch.float64)


# ---------------------------------------------------------------------------
# torch's exception types
#
# Where torch raises RuntimeError / IndexError / NotImplementedError and
# csoftmax's NumPy API a ValueError or TypeError for the same mistake, the
# adapter raises a class deriving from both, with torch's message: code (and
# torch's own tests, assertRaisesRegex(RuntimeError, ...)) written for torch
# catches it, and so does code written for csoftmax.

class _RuntimeValueError(RuntimeError, ValueError):
    """torch's RuntimeError for a bad value or shape (ValueError in csoftmax)."""


class _RuntimeTypeError(RuntimeError, TypeError):
    """torch's RuntimeError for a wrong dtype (TypeError in csoftmax)."""


class _IndexValueError(IndexError, ValueError):
    """torch's IndexError for a class index out of range (ValueError in csoftmax)."""


class _NotImplementedTypeError(NotImplementedError, TypeError):
    """torch's NotImplementedError for a dtype without a kernel (complex)."""


# torch's ScalarType names, as its messages print them
_SCALAR_NAMES = {
    _torch.float64: "Double", _torch.float32: "Float", _torch.float16: "Half",
    _torch.bfloat16: "BFloat16", _torch.int64: "Long", _torch.int32: "Int",
    _torch.int16: "Short", _torch.int8: "Char", _torch.uint8: "Byte", _torch.bool: "Bool",
    _torch.complex64: "ComplexFloat", _torch.complex128: "ComplexDouble",
    _torch.complex32: "ComplexHalf"}
_SCALAR_NAMES.update({getattr(_torch, f"uint{b}"): f"UInt{b}" for b in (16, 32, 64)
                      if hasattr(_torch, f"uint{b}")})


def _scalar_name(dtype):
    """torch's name of a dtype in its messages ("Float", not "torch.float32")."""
    return _SCALAR_NAMES.get(dtype) or str(dtype).replace("torch.", "").capitalize()


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
        # torch's softmax-family and loss kernels raise NotImplementedError
        # ("... not implemented for 'ComplexFloat'"); TypeError as csoftmax's
        raise _NotImplementedTypeError(
            f"{name} is complex ({t.dtype}): not implemented for "
            f"'{_scalar_name(t.dtype)}'; csoftmax needs real input")
    t = t.detach()
    if t.dtype == _torch.bfloat16:
        bf = _bfloat16_dtype()
        if bf is None:            # without ml_dtypes: computed from a float32 copy
            return t.float().numpy()
        # bfloat16 read in place: NumPy has no bfloat16, ml_dtypes does
        return t.resolve_neg().view(_torch.int16).numpy().view(bf)
    return t.resolve_conj().resolve_neg().numpy()


def _tt(a, like=None):
    """Tensor sharing `a`'s memory; cast to `like`'s dtype if that is not a
    NumPy dtype (bfloat16)."""
    a = np.asarray(a)
    if a.dtype.name == "bfloat16":
        t = _torch.from_numpy(a.view(np.int16)).view(_torch.bfloat16)
    else:
        t = _torch.from_numpy(a)
    if like is not None and like.is_floating_point() and like.dtype not in _NATIVE:
        t = t.to(like.dtype)
    return t


def _dim(d):
    """`dim` as torch takes it: an integer (operator.index: Python and NumPy
    ints, integer 0-d tensors), a tuple or list of them, or None; a float,
    bool or string is torch's TypeError (int() would turn dim=1.7 into 1)."""
    msg = f"dim must be an int, a tuple of ints or None, got {d!r}"
    if isinstance(d, (list, tuple)):
        return tuple(_validate.integer(i, msg) for i in d)
    return None if d is None else _validate.integer(d, msg)


def _keepdim(k):
    """torch's `keepdim`: a Python bool, nothing else (not 1, not np.bool_)."""
    if not isinstance(k, bool):
        tp = type(k)
        name = tp.__name__ if tp.__module__ == "builtins" else f"{tp.__module__}.{tp.__name__}"
        raise TypeError(f"logsumexp(): argument 'keepdim' must be bool, not {name}")
    return k


def _no_repeats(dim, ndim):
    """A tuple of dims naming one dim twice: torch's RuntimeError (the
    NumPy layer would say ValueError)."""
    if isinstance(dim, tuple) and ndim > 0:
        seen = set()
        for d in dim:
            k = d % ndim if -ndim <= d < ndim else d    # out of range: IndexError later
            if k in seen:
                raise RuntimeError(f"dim {k} appears multiple times in the list of dims")
            seen.add(k)


def _tensor(t, name="input"):
    if not isinstance(t, _torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def _scalar_dims(dim):
    """Check `dim` for a 0-d input, which torch treats as one element: each
    dim must be 0 or -1 (IndexError otherwise, as torch), without repeats."""
    dims = dim if isinstance(dim, tuple) else (dim,)
    for d in dims:
        if d is not None and d not in (0, -1):
            raise IndexError(f"Dimension out of range (expected to be in range of [-1, 0], "
                             f"but got {d})")
    if len(dims) > 1 and None not in dims:
        raise RuntimeError("dim 0 appears multiple times in the list of dims")


def _dims_in_range(dim, ndim):
    """torch checks the dim before the dtype: an out-of-range dim is its
    IndexError even for an integer input (not NotImplementedError)."""
    if ndim == 0:
        _scalar_dims(dim)
        return
    for d in (dim if isinstance(dim, tuple) else (dim,)):
        if d is not None and not -ndim <= d < ndim:
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-ndim}, {ndim - 1}], but got {d})")


def _implicit_dim(name, ndim, stacklevel):
    """torch's legacy choice for ``dim=None`` (F._get_softmax_dim), with its
    deprecation warning."""
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                  "Change the call to include dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def _cast(t, dtype):
    """``input.to(dtype)`` before the op, as torch's `dtype=` (differentiable:
    the gradient comes back in the input's dtype)."""
    if dtype is None:
        return t
    if not isinstance(dtype, _torch.dtype):
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if not dtype.is_floating_point:
        # torch: NotImplementedError ("... not implemented for 'Long'")
        raise NotImplementedError(f"dtype={dtype}: as in torch, the softmax family is not "
                                  "implemented for integer, bool or complex dtypes")
    return t.to(dtype)


def _integral(t):
    return isinstance(t, _torch.Tensor) and not (t.is_floating_point() or t.is_complex())


def _floating_only(t, op, name="input", hint=""):
    """torch's softmax-family and loss kernels exist for floating dtypes only:
    an integer or bool tensor raises NotImplementedError there (a
    RuntimeError), instead of a float64 result here."""
    if _integral(t):
        raise NotImplementedError(
            f"{op}: {name} has dtype {t.dtype}; as in torch, it is not implemented for "
            f"integer or bool tensors (cast it to a floating dtype first{hint})")


def _default_float(t):
    """torch.logsumexp's rule: integer and bool input computes in (and
    returns) torch.get_default_dtype()."""
    return t.to(_torch.get_default_dtype()) if _integral(t) else t


def _legacy_reduction(size_average, reduce, reduction):
    """torch's ``_Reduction.legacy_get_string``: the deprecated `size_average`
    and `reduce` (None = True) override `reduction` when either is given."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    ret = "mean" if (size_average and reduce) else "sum" if reduce else "none"
    warnings.warn("size_average and reduce args will be deprecated, please use "
                  f"reduction='{ret}' instead.", stacklevel=3)
    return ret


def _ignore_index(ignore_index, fn):
    """torch's int argument: int(1.5) would silently ignore class 1."""
    if isinstance(ignore_index, (bool, float)) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"{fn}(): argument 'ignore_index' (position 5) must be int, not "
                        f"{type(ignore_index).__name__}")
    return int(ignore_index)


def _reduction_name(reduction):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _class_dim(input, dim):
    """The class axis of a loss: torch's dim 1 (dim 0 for a 1-D input)."""
    if dim is None:
        dim = 1 if input.dim() >= 2 else 0
    dim = _validate.integer(dim, f"dim must be an integer, got {dim!r}")
    nd = input.dim()
    if nd and not -nd <= dim < nd:
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-nd}, {nd - 1}], but got {dim})")
    if nd:
        dim = dim % nd
    return dim


# ---------------------------------------------------------------------------
# torch's argument checks of cross_entropy / nll_loss

def _torch_layout(shape, dim):
    """`shape` with the class axis `dim` moved where torch has it (1; 0 for
    a 1-D input), so a csoftmax `dim=` is checked as torch checks dim 1."""
    shape = list(shape)
    if len(shape) >= 2 and dim != 1:
        shape.insert(1, shape.pop(dim))
    return shape


def _check_smoothing(label_smoothing):
    """torch refuses label_smoothing > 1 (RuntimeError); csoftmax also refuses
    a negative or NaN one, which torch ignores for class-index targets --
    it is no smoothing there, and an extrapolated target with probabilities."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise _RuntimeValueError(f"label_smoothing must be between 0.0 and 1.0. "
                                 f"Got: {label_smoothing:g}")


def _loss_checks(input, target, weight, dim, ignore_index, label_smoothing=None):
    """torch's checks of F.cross_entropy (`label_smoothing` a float) / F.nll_loss
    (None), in torch's order and with its exception types and messages, on
    the shapes and dtypes only (O(1)); the target values are checked by the
    kernels (see _out_of_bounds).  Returns the target and weight to use:
    torch takes a (1,) target for a 1-D input as a 0-d one, and any weight
    of C elements for a K-dim input.  A target or weight that is not a
    tensor keeps csoftmax's own checks."""
    if not isinstance(target, _torch.Tensor):
        return target, weight
    shape, tshape = _torch_layout(input.shape, dim), list(target.shape)
    nd = len(shape)
    wt = weight if isinstance(weight, _torch.Tensor) else None
    if label_smoothing is not None and list(input.shape) == tshape:
        # torch's rule: a target of the input's shape holds class probabilities
        if not target.is_floating_point():
            raise _RuntimeTypeError("Expected floating point type for target with class "
                                    f"probabilities, got {_scalar_name(target.dtype)}")
        if ignore_index >= 0:
            raise _RuntimeValueError("ignore_index is not supported for floating point "
                                     "target")
        if nd == 0:
            raise _IndexValueError("Dimension specified as 1 but tensor has no dimensions")
        n_classes = shape[1 if nd >= 2 else 0]
        if wt is not None and (wt.dim() != 1 or wt.numel() != n_classes):
            raise _RuntimeValueError(
                f"cross_entropy: weight tensor should be defined either for all {n_classes} "
                f"classes or no classes but got weight tensor of shape: {list(wt.shape)}")
        _check_smoothing(label_smoothing)
        return target, weight            # (any floating weight: torch promotes it)
    if label_smoothing is not None and label_smoothing != 0.0:
        _check_smoothing(label_smoothing)
    if nd == 0:
        if label_smoothing is not None:  # torch's log_softmax over dim 1
            raise _IndexValueError("Dimension out of range (expected to be in range of "
                                   "[-1, 0], but got 1)")
        raise ValueError("Expected 1 or more dimensions (got 0)")
    if nd != 1 and (tshape[0] if tshape else 0) != shape[0]:
        raise ValueError(f"Expected input batch_size ({shape[0]}) to match target "
                         f"batch_size ({tshape[0] if tshape else 0}).")
    n_classes = shape[1 if nd >= 2 else 0]
    if nd <= 2:
        if target.dim() > 1:
            raise _RuntimeValueError("0D or 1D target tensor expected, multi-target not "
                                     "supported")
        _check_index_dtype(target)
        if nd == 1 and target.dim() == 1:
            if tshape[0] != 1:
                raise ValueError("For 1D input, 1D target must have size 1, but got "
                                 f"target size: {tshape[0]}")
            target = target.reshape(())
        if wt is not None and (wt.dim() != 1 or wt.numel() != n_classes):
            raise _RuntimeValueError(
                f"weight tensor should be defined either for all {n_classes} classes or no "
                f"classes but got weight tensor of shape: {list(wt.shape)}")
    else:
        if nd == 4 and target.dim() != 3:   # torch's nll_loss2d, its own order
            raise _RuntimeValueError("only batches of spatial targets supported (3D "
                                     f"tensors) but got targets of dimension: {target.dim()}")
        if nd != 4 and tshape[1:] != shape[2:]:
            raise _RuntimeValueError(f"Expected target size {shape[:1] + shape[2:]}, got "
                                     f"{tshape}")
        _check_index_dtype(target)
        if wt is not None:
            if wt.numel() != n_classes:
                raise _RuntimeValueError("weight tensor should be defined either for all or "
                                         "no classes")
            weight = wt.reshape(-1)
        if nd == 4 and tshape[1:] != shape[2:]:
            raise _RuntimeValueError(f"size mismatch (got input: {shape} , target: {tshape}")
    if wt is not None and wt.dtype != input.dtype:
        raise _RuntimeTypeError(f"expected scalar type {_scalar_name(input.dtype)} but found "
                                f"{_scalar_name(wt.dtype)}")
    if wt is not None and wt.requires_grad and _torch.is_grad_enabled():
        # torch's nll_loss has no derivative for the class weight (with
        # probability targets it has one, below)
        _weight_not_differentiable("nll_loss2d_forward" if nd == 4 else "nll_loss_forward")
    return target, weight


def _weight_not_differentiable(fn):
    raise RuntimeError(f"The function '{fn}' is not differentiable with respect to "
                       "argument 'weight'. This input cannot have requires_grad True.")


def _check_index_dtype(target):
    """torch's class-index kernels take int64 or uint8 targets.  (torch's K-dim
    kernels refuse uint8 too; csoftmax accepts it for every shape.)"""
    if target.dtype not in (_torch.int64, _torch.uint8):
        raise _RuntimeTypeError("expected target dtype to be Long or Byte, but got "
                                f"{_scalar_name(target.dtype)}")


def _out_of_bounds(target, n_classes, ignore_index, err):
    """After the kernels refused a class index (ValueError): torch's IndexError
    for the first target (in the target's order) out of [0, C) that is not
    ignore_index.  Run on the error path only, so a valid call costs nothing."""
    if not isinstance(target, _torch.Tensor) or target.is_floating_point():
        return
    t = target.detach().reshape(-1).to(_torch.int64)
    bad = (t != ignore_index) & ((t < 0) | (t >= n_classes))
    if bool(bad.any()):
        v = int(t[bad.nonzero()[0, 0]])
        raise _IndexValueError(f"Target {v} is out of bounds.") from err


def _torch_loss_classless(input, target, weight, dim, reduction, ignore_index,
                          label_smoothing=None):
    """Zero classes (an empty class axis): torch's own F.cross_entropy /
    F.nll_loss, which give a value (e.g. -0. per sample and NaN for 'mean'
    with probability targets) where the kernels refuse logits without
    classes.  Nothing is computed, and autograd is torch's."""
    if input.dim() >= 2 and dim != 1:
        if label_smoothing is not None and target.shape == input.shape:
            target = target.movedim(dim, 1)          # probabilities
        input = input.movedim(dim, 1)
    if label_smoothing is None:
        return _torch.nn.functional.nll_loss(input, target, weight, ignore_index=ignore_index,
                                             reduction=reduction)
    return _torch.nn.functional.cross_entropy(input, target, weight,
                                              ignore_index=ignore_index,
                                              reduction=reduction,
                                              label_smoothing=label_smoothing)


# ---------------------------------------------------------------------------
# softmax / log_softmax

class _Softmax(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, temperature, log, where=None, where_t=None):
        xa = _np(x)
        y = (_api.log_softmax if log else _api.softmax)(xa, axis=dim, temperature=temperature,
                                                        where=where)
        out = _tt(y, x)
        ctx.dim, ctx.temperature, ctx.log = dim, temperature, log
        ctx.where = _save_mask(ctx, where, where_t, out)
        return out

    @staticmethod
    @_once
    def backward(ctx, g):
        y, where_t = ctx.saved_tensors
        if where_t is not None:
            ctx.where = _mask(where_t, y)
        f = _losses.log_softmax_backward if ctx.log else _losses.softmax_backward
        ya, ga = _np(y, "output"), _np(g, "grad_output")
        if isinstance(ctx.dim, tuple):
            gx = _tuple_bwd(ya, ga, ctx.dim, ctx.log, ctx.where)
        else:
            gx = f(ya, ga.astype(ya.dtype, copy=False), axis=ctx.dim, where=ctx.where)
        if ctx.temperature != 1.0:
            gx = np.multiply(gx, 1.0 / ctx.temperature, out=gx, casting="unsafe")
        return _tt(gx, y), None, None, None, None, None


def _tuple_bwd(y, g, dims, log, where=None):
    """VJP for a softmax over several axes (rare): float64 NumPy (masked
    entries: y is 0 / -inf there, and their dy is left out)."""
    y64, g64 = y.astype(np.float64), g.astype(np.float64)
    if where is not None:
        g64 = np.where(np.asarray(where, dtype=bool), g64, 0.0)
    if log:
        r = g64 - np.exp(y64) * g64.sum(axis=dims, keepdims=True)
    else:
        r = y64 * (g64 - (y64 * g64).sum(axis=dims, keepdims=True))
    return r.astype(y.dtype)


def _mask(where, x):
    """where= (a bool tensor or array_like) as a byte array broadcast to x's
    shape (no copy for bool / uint8 CPU tensors).  Anything but a tensor goes
    to csoftmax's own as_mask as it is (a MaskedArray is refused there)."""
    if where is None:
        return None
    src = _np(where, "where") if isinstance(where, _torch.Tensor) else where
    return _validate.as_mask(src, tuple(x.shape))


def _mask_args(where, x):
    """The mask of a Function that reads it again in backward, as the
    arguments (where, where_t) of its apply: a tensor mask is also passed on
    as where_t, which the Function saves for backward (changed in place
    after the forward, torch then refuses the backward, as for its own saved
    inputs); any other mask (an ndarray, a memoryview, a bytearray, an
    array.array: memory the kernels would read in place) is copied first,
    at its own shape, not the broadcast one, so a later change cannot reach
    the gradient."""
    if where is None:
        return None, None
    if isinstance(where, _torch.Tensor):
        return _mask(where, x), where
    _mask(where, x)                     # refusals (MaskedArray, dtype, shape) first
    return _mask(np.array(where, copy=True), x), None


def _save_mask(ctx, where, where_t, *tensors):
    """Save `tensors` and the mask tensor where_t (or None) for backward;
    returns the mask backward reads when there is no tensor (None with a
    tensor: backward rebuilds it from the saved tensor)."""
    ctx.save_for_backward(*tensors, where_t)
    return where if where_t is None else None


def _softmax_family(input, dim, stacklevel, dtype, temperature, log, name, where=None):
    _tensor(input)
    if dim is None:
        dim = _implicit_dim(name, input.dim(), stacklevel + 1)
    x = _cast(input, dtype)
    dim = _dim(dim)
    _dims_in_range(dim, x.dim())
    _floating_only(x, name, hint=", or pass dtype=")
    T = _real_scalar(temperature, "temperature")
    _no_repeats(dim, x.dim())
    w, wt = _mask_args(where, x)
    if x.dim() == 0:
        # one element: run it as a 1-element vector (reshape is differentiable)
        _scalar_dims(dim)
        return _Softmax.apply(x.reshape(1), 0, T, log,
                              None if w is None else w.reshape(1),
                              None if wt is None else wt.reshape(1)).reshape(())
    return _Softmax.apply(x, dim, T, log, w, wt)


def softmax(input, dim=None, _stacklevel=3, dtype=None, *, temperature=1.0, where=None):
    r"""Differentiable :func:`csoftmax.softmax` of a CPU tensor along `dim`
    (``exp(x/T - LSE(x/T))``; an int or a tuple of dims), with the signature
    of :func:`torch.nn.functional.softmax`.  Same result as
    ``F.softmax(input / temperature, dim, dtype=dtype)``; float32 is
    accumulated in float64 (within 1 ULP of the exact result).

    ``dim=None`` takes torch's legacy implicit dim (with its warning);
    `dtype` casts the input first; a 0-d input is one element (result 1).
    ``where=`` (a bool tensor broadcastable to `input`, as
    :func:`csoftmax.softmax`'s `where`): excluded elements are left out of
    the normalisation and give 0; their gradient is 0."""
    return _softmax_family(input, dim, _stacklevel, dtype, temperature, False, "softmax",
                           where)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None, *, temperature=1.0,
                where=None):
    r"""Differentiable :func:`csoftmax.log_softmax` of a CPU tensor along `dim`
    (``x/T - LSE(x/T)``), with the signature of
    :func:`torch.nn.functional.log_softmax`.  Same result as
    ``F.log_softmax(input / temperature, dim, dtype=dtype)``.  ``where=``:
    excluded elements give -inf and a zero gradient (see :func:`softmax`)."""
    return _softmax_family(input, dim, _stacklevel, dtype, temperature, True, "log_softmax",
                           where)


def softmin(input, dim=None, _stacklevel=3, dtype=None, *, temperature=1.0):
    r"""``softmax(-input)``, with the signature of
    :func:`torch.nn.functional.softmin` (as torch, the input is negated
    before the `dtype` cast)."""
    _tensor(input)
    if dim is None:
        dim = _implicit_dim("softmin", input.dim(), _stacklevel)
    return _softmax_family(-input, dim, _stacklevel, dtype, temperature, False, "softmin")


# ---------------------------------------------------------------------------
# logsumexp

class _LogSumExp(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, dim, keepdim, where=None, where_t=None):
        xa = _np(x)
        r = _api.logsumexp(xa, axis=dim, keepdims=keepdim, where=where)
        ctx.dim, ctx.keepdim = dim, keepdim
        ctx.where = _save_mask(ctx, where, where_t, x)
        return _tt(r, x)

    @staticmethod
    @_once
    def backward(ctx, g):
        x, where_t = ctx.saved_tensors
        if where_t is not None:
            ctx.where = _mask(where_t, x)
        xa, ga = _np(x), _np(g, "grad_output")
        dim = ctx.dim
        axes = _api.normalize_axes(dim, xa.ndim)
        if len(axes) == 1 and xa.size and ctx.where is None:
            # one fused pass: softmax(x) * dy written by the kernels
            gx = _losses.logsumexp_backward(xa, ga, axis=axes[0])
        else:
            if not ctx.keepdim:
                ga = np.expand_dims(ga, axes)
            # (masked: softmax(where=) is 0 at excluded entries, also where
            # a reduction keeps nothing)
            gx = (_api.softmax(xa, axis=axes, where=ctx.where).astype(np.float64)
                  * ga).astype(xa.dtype)
        return _tt(gx, x), None, None, None, None


def logsumexp(input, dim=None, keepdim=False, *, out=None, where=None):
    r"""Differentiable :func:`csoftmax.logsumexp` of a CPU tensor over `dim`
    (an int, a tuple of dims or None for all), as :func:`torch.logsumexp`.
    torch's `dim` has no default; here the default is csoftmax's own, all
    dims (as :func:`csoftmax.logsumexp`, ``csoftmax.jax`` and
    ``csoftmax.dask``; pass ``dim=-1`` for the last).  A 0-d input is
    one element (dim 0, -1, ``(0,)``; the result is the input).  Integer
    and bool input computes in ``torch.get_default_dtype()``, as torch's.
    The gradient is ``softmax(x) * grad_output`` (one fused kernel pass).
    ``where=``: a bool tensor of included elements, as
    :func:`csoftmax.logsumexp`'s (nothing included: -inf, gradient 0).

    ``out=``, as torch's: the result is written into `out` (a floating
    tensor, any strides; cast to its dtype, computed in it if it is wider
    than the input's) and `out` is returned; an `out` of another shape is
    resized, with torch's warning when it had elements.
    As in torch it is not differentiable: with grad mode on, an input or
    `out` that requires grad raises RuntimeError."""
    if out is not None:
        return _logsumexp_out(input, dim, keepdim, out, where)
    input = _default_float(_tensor(input))
    dim, keepdim = _dim(dim), _keepdim(keepdim)
    _no_repeats(dim, input.dim())
    w, wt = _mask_args(where, input)
    if input.dim() == 0:
        _scalar_dims(dim)
        return _LogSumExp.apply(input.reshape(1), 0, keepdim,
                                None if w is None else w.reshape(1),
                                None if wt is None else wt.reshape(1)).reshape(())
    return _LogSumExp.apply(input, dim, keepdim, w, wt)


def _logsumexp_out(input, dim, keepdim, out, where):
    """torch.logsumexp(..., out=out): torch's checks, then the result copied
    into `out` (a reduction's result is small next to its input)."""
    _tensor(input)
    _tensor(out, "out")
    if _torch.is_grad_enabled() and (input.requires_grad or out.requires_grad):
        raise RuntimeError("logsumexp(): functions with out=... arguments don't support "
                           "automatic differentiation, but one of the arguments requires "
                           "grad.")
    if not out.is_floating_point():
        raise _RuntimeTypeError("logsumexp(): Expected floating point type for result "
                                f"tensor, but got: {_scalar_name(out.dtype)}")
    x = _default_float(input)
    wide = _torch.promote_types(x.dtype, out.dtype)
    if wide != x.dtype:
        # torch computes in out's dtype: a float64 `out` gets a float64 result
        # (a narrower `out` gets the input dtype's result, rounded once)
        x = x.to(wide)
    with _torch.no_grad():
        r = logsumexp(x, dim, keepdim, where=where)
        if out.shape != r.shape:
            # torch's resize_output: a non-empty `out` of another shape warns
            if out.numel():
                warnings.warn(
                    f"An output with one or more elements was resized since it had shape "
                    f"{list(out.shape)}, which does not match the required output shape "
                    f"{list(r.shape)}. This behavior is deprecated, and in a future PyTorch "
                    "release outputs will not be resized unless they have zero elements. "
                    "You can explicitly reuse an out tensor t by resizing it, inplace, to "
                    "zero elements with t.resize_(0).", UserWarning, stacklevel=3)
            out.resize_(r.shape)
        out.copy_(r)
    return out


# ---------------------------------------------------------------------------
# cross_entropy

class _CrossEntropy(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, weight, dim, ignore_index, reduction,
                label_smoothing, temperature, where=None):
        xa, ta = _np(x), _np(target, "target")
        wa = None if weight is None else _np(weight, "weight")
        kw = dict(axis=dim, weight=wa, ignore_index=ignore_index, reduction=reduction,
                  label_smoothing=label_smoothing, temperature=temperature)
        if where is not None:
            kw["where"] = where
        need_x = ctx.needs_input_grad[0]
        need_t = ctx.needs_input_grad[1]
        # probability targets: torch's loss has the promoted dtype of input,
        # target and weight (its gradient the input's).  Wider than the
        # input, the call runs on float64 logits and each result is rounded
        # once, the loss to that dtype, the gradient to the input's.
        ldt = x.dtype
        if ta.shape == xa.shape:
            for t in (target, weight):
                if t is not None and t.is_floating_point():
                    ldt = _torch.promote_types(ldt, t.dtype)
        wide = ldt != x.dtype
        xc = _np(x.detach().double()) if wide else xa
        if need_x:
            loss, grad = _losses.cross_entropy(xc, ta, return_grad=True, **kw)
            ctx.grad = _tt(grad).to(x.dtype) if wide else _tt(grad, x)
        else:
            loss = _losses.cross_entropy(xc, ta, **kw)
            ctx.grad = None
        ctx.dim, ctx.reduction = dim, reduction
        ctx.eps, ctx.temperature = label_smoothing, temperature
        ctx.prob = ta.shape == xa.shape
        need_w = ctx.prob and weight is not None and ctx.needs_input_grad[2]
        ctx.save_for_backward(x if (need_t or need_w) else None, weight,
                              target if need_w else None)
        return _tt(np.asarray(loss)).to(ldt) if wide else _tt(np.asarray(loss), x)

    @staticmethod
    @_once
    def backward(ctx, g):
        x, weight, target = ctx.saved_tensors
        gx = gt = gw = None
        if ctx.grad is not None:
            gx = ctx.grad
            if ctx.reduction == "none":
                gx = gx * g.unsqueeze(ctx.dim).to(gx.dtype)
            else:
                gx = gx * g.to(gx.dtype)
        if x is not None:       # probability targets, target or weight gradient
            lp = _tt(_api.log_softmax(_np(x), axis=ctx.dim, temperature=ctx.temperature), x)
        if target is not None:
            # dL/dw_c = -sum_i q'_ic log p_ic (each sample times its
            # grad_output; / N for 'mean'), q' = (1-eps) q + eps/C
            q = target.detach().to(lp.dtype)
            t = -((1.0 - ctx.eps) * q + ctx.eps / x.shape[ctx.dim]) * lp
            if ctx.reduction == "mean":
                t = t / (x.numel() // x.shape[ctx.dim])
            t = t * (g.unsqueeze(ctx.dim) if ctx.reduction == "none" else g).to(t.dtype)
            gw = t.movedim(ctx.dim, -1).reshape(-1, x.shape[ctx.dim]).sum(0)
            gw = gw.to(weight.dtype)
        if ctx.needs_input_grad[1] and ctx.prob:
            # dL/dq_c = -(1-eps) w_c log p_c (/ N for 'mean'), per sample
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
        return gx, gt, gw, None, None, None, None, None, None


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0, *, dim=None,
                  temperature=1.0, where=None):
    r"""Differentiable :func:`csoftmax.cross_entropy` with the signature of
    :func:`torch.nn.functional.cross_entropy`.

    `input` holds logits with the class axis at `dim` -- by default torch's
    convention: dim 1 (dim 0 for a 1-D input).  `target` is integer class
    indices (shape of `input` without `dim`) or class probabilities (shape
    of `input`).  `weight`, `ignore_index`, `reduction`, `label_smoothing`
    are torch's, and so is the legacy mapping of the deprecated
    `size_average` / `reduce` onto `reduction`; `temperature` divides the
    logits first.

    The gradient with respect to `input` is computed in the forward pass by
    the fused kernel (only when `input` requires grad) and scaled by
    ``grad_output`` in backward.  Probability targets that require grad get
    ``-(1-eps) w_c log p_c`` (divided by N for 'mean'); a `weight` that
    requires grad gets ``-sum_i q'_ic log p_ic`` with probability targets
    and, as in torch, raises RuntimeError with class indices.  ``where=``: a bool tensor of the classes to include
    (broadcast against `input`), as :func:`csoftmax.cross_entropy`'s
    (class-index targets, no smoothing; a target on an excluded class gives
    +inf loss and no gradient).
    """
    _floating_only(_tensor(input), "cross_entropy")
    reduction = _legacy_reduction(size_average, reduce, reduction)
    reduction = _reduction_name(reduction)
    dim, ignore_index = _class_dim(input, dim), _ignore_index(ignore_index, "cross_entropy_loss")
    eps = _real_scalar(label_smoothing, "label_smoothing")
    target, weight = _loss_checks(input, target, weight, dim, ignore_index, eps)
    n_classes = input.shape[dim] if input.dim() else 1
    if n_classes == 0:
        # (temperature and where= have nothing to act on)
        return _torch_loss_classless(input, target, weight, dim, reduction, ignore_index, eps)
    mask = _mask(where, input)
    try:
        return _CrossEntropy.apply(input, target, weight, dim, ignore_index, reduction, eps,
                                   _real_scalar(temperature, "temperature"), mask)
    except ValueError as e:
        _out_of_bounds(target, n_classes, ignore_index, e)
        raise


class CrossEntropyLoss(_torch.nn.Module):
    """``nn.CrossEntropyLoss`` on csoftmax's fused kernels (same arguments,
    plus keyword-only `dim` and `temperature`); see :func:`cross_entropy`."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", label_smoothing=0.0, *, dim=None, temperature=1.0):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.label_smoothing = label_smoothing
        self.dim = dim
        self.temperature = temperature

    def forward(self, input, target):
        return cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                             reduction=self.reduction, label_smoothing=self.label_smoothing,
                             dim=self.dim, temperature=self.temperature)


# ---------------------------------------------------------------------------
# nll_loss

class _NLLLoss(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, target, weight, dim, ignore_index, reduction):
        xa, ta = _np(x), _np(target, "target")
        wa = None if weight is None else _np(weight, "weight")
        loss = _losses.nll_loss(xa, ta, axis=dim, weight=wa, ignore_index=ignore_index,
                                reduction=reduction)
        ctx.dim, ctx.ignore_index, ctx.reduction = dim, ignore_index, reduction
        ctx.shape, ctx.dtype = x.shape, x.dtype
        ctx.save_for_backward(target, weight)
        return _tt(np.asarray(loss), x)

    @staticmethod
    @_once
    def backward(ctx, g):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        target, weight = ctx.saved_tensors
        # d loss_i / d input[i, y_i] = -w[y_i] (/ sum of the kept w[y] for 'mean');
        # 0 everywhere else and for ignored samples.  A zero total weight gives
        # -0/0 = NaN at the kept targets, as torch.
        y = target.detach().to(_torch.int64)
        keep = y != ctx.ignore_index
        yc = _torch.where(keep, y, _torch.zeros_like(y))
        if weight is None:
            wy = keep.to(_torch.float64)
        else:
            wy = weight.detach().to(_torch.float64)[yc] * keep
        if ctx.reduction == "mean":
            wy = _torch.where(keep, wy / wy.sum(), _torch.zeros_like(wy))
        coef = -wy * g.detach().to(_torch.float64)
        gx = _torch.zeros(ctx.shape, dtype=ctx.dtype)
        gx.scatter_(ctx.dim, yc.unsqueeze(ctx.dim), coef.unsqueeze(ctx.dim).to(ctx.dtype))
        return gx, None, None, None, None, None


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean", *, dim=None):
    r"""Differentiable :func:`csoftmax.nll_loss` with the signature of
    :func:`torch.nn.functional.nll_loss`.

    `input` holds log-probabilities with the class axis at `dim` (default
    torch's: dim 1, dim 0 for a 1-D input; targets ``(N, d1, ...)`` for
    input ``(N, C, d1, ...)``).  ``'mean'`` divides by the sum of the kept
    samples' weights (NaN if every sample is ignored).  The gradient with
    respect to `input` is ``-w[y]`` (divided by that sum for 'mean') at each
    kept sample's target entry and 0 elsewhere; `weight` is not
    differentiated.
    """
    _floating_only(_tensor(input), "nll_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction)
    reduction = _reduction_name(reduction)
    dim, ignore_index = _class_dim(input, dim), _ignore_index(ignore_index, "nll_loss_nd")
    target, weight = _loss_checks(input, target, weight, dim, ignore_index)
    n_classes = input.shape[dim] if input.dim() else 1
    if n_classes == 0:
        return _torch_loss_classless(input, target, weight, dim, reduction, ignore_index)
    try:
        return _NLLLoss.apply(input, target, weight, dim, ignore_index, reduction)
    except ValueError as e:
        _out_of_bounds(target, n_classes, ignore_index, e)
        raise


class NLLLoss(_torch.nn.Module):
    """``nn.NLLLoss`` over :func:`nll_loss` (same arguments, plus keyword-only
    `dim`)."""

    def __init__(self, weight=None, size_average=None, ignore_index=-100, reduce=None,
                 reduction="mean", *, dim=None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction)
        self.dim = dim

    def forward(self, input, target):
        return nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                        reduction=self.reduction, dim=self.dim)


# ---------------------------------------------------------------------------
# softmax modules

class Softmax(_torch.nn.Module):
    """``nn.Softmax(dim)`` over :func:`softmax` (plus keyword-only
    `temperature`)."""

    def __init__(self, dim=None, *, temperature=1.0):
        super().__init__()
        self.dim = dim
        self.temperature = temperature

    def forward(self, input):
        return softmax(input, self.dim, _stacklevel=5, temperature=self.temperature)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """``nn.LogSoftmax(dim)`` over :func:`log_softmax`."""

    def forward(self, input):
        return log_softmax(input, self.dim, _stacklevel=5, temperature=self.temperature)


class Softmin(Softmax):
    """``nn.Softmin(dim)`` over :func:`softmin`."""

    def forward(self, input):
        return softmin(input, self.dim, _stacklevel=5, temperature=self.temperature)


class Softmax2d(_torch.nn.Module):
    """``nn.Softmax2d``: softmax over the channels (dim -3) of a (C, H, W) or
    (N, C, H, W) input."""

    def forward(self, input):
        if input.dim() not in (3, 4):
            raise ValueError(f"Softmax2d: expected input to be 3D or 4D, got {input.dim()}D "
                             "instead")
        return softmax(input, -3, _stacklevel=5)


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
    dim = _class_dim(cos, dim)
    return _MarginCE.apply(cos, target, _real_scalar(scale, "scale"),
                           _real_scalar(margin, "margin"), kind,
                           bool(easy_margin), dim, reduction)


# ---------------------------------------------------------------------------
# linear_cross_entropy

class _LinearCE(_torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, target, cw, reduction, ignore_index, eps, temperature,
                chunk):
        need = ctx.needs_input_grad[:3]
        xa, wa, ta = _np(x), _np(w, "linear_weight"), _np(target, "target")
        ba = None if b is None else _np(b, "linear_bias")
        cwa = None if cw is None else _np(cw, "weight")
        args = (ba, cwa, ignore_index, reduction, eps, temperature)
        ctx.grads = None
        ctx.reduction = reduction
        # the scalars only: bias and class weight come back from the saved
        # tensors (in-place changes after the forward are torch's error)
        ctx.args = (ignore_index, eps, temperature, chunk)
        if any(need) and reduction != "none":
            loss, grads = _lce._linear_ce(xa, wa, ta, *args, True, chunk)
            ctx.grads = tuple(_tt(g, t) for g, t in zip(grads, (x, w, b)))
        else:
            loss = _lce._linear_ce(xa, wa, ta, *args, False, chunk)
        if any(need) and reduction == "none":
            # each row's gradient weighs by its grad_output: recomputed in
            # backward (dW = G^T diag(g) h needs G itself)
            ctx.save_for_backward(x, w, b, target, cw)
        return _tt(np.asarray(loss), x)

    @staticmethod
    @_once
    def backward(ctx, g):
        out = [None] * 10
        if ctx.reduction == "none":
            if not any(ctx.needs_input_grad[:3]):
                return tuple(out)
            x, w, b, target, cw = ctx.saved_tensors
            ignore_index, eps, temperature, chunk = ctx.args
            ba = None if b is None else _np(b, "linear_bias")
            cwa = None if cw is None else _np(cw, "weight")
            _, grads = _lce._linear_ce(_np(x), _np(w, "linear_weight"),
                                       _np(target, "target"), ba, cwa, ignore_index,
                                       "sum", eps, temperature, True, chunk,
                                       row_scale=_np(g.detach(), "grad_output"))
            grads = tuple(_tt(d, t) for d, t in zip(grads, (x, w, b)))
        else:
            if ctx.grads is None:
                return tuple(out)
            grads = tuple(d * g.to(d.dtype) for d in ctx.grads)
        for i, d in enumerate(grads):
            if ctx.needs_input_grad[i]:
                out[i] = d
        return tuple(out)


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None, temperature=1.0, chunk_size=None):
    r"""Differentiable :func:`csoftmax.linear_cross_entropy` with the signature
    of :func:`torch.nn.functional.linear_cross_entropy` (torch 2.13).

    ``cross_entropy(input @ linear_weight.T + linear_bias, target, weight=weight,
    ...)`` without the logits: `input` is ``(N, in_features)`` or
    ``(in_features,)``, `linear_weight` ``(C, in_features)``, `linear_bias`
    ``(C,)``; `target` class indices (``ignore_index=None`` means -100, as
    torch) or probabilities ``(N, C)``.  The gradients of `input`,
    `linear_weight` and `linear_bias` are computed in the forward pass
    (chunk by chunk, for the tensors that require grad) and scaled by
    ``grad_output`` in backward.  `options` (a
    ``torch.nn.LinearCrossEntropyOptions``) is accepted for compatibility:
    its ``batch_chunk_size``, if set, is the chunk size; `chunk_size` (an
    extra keyword) overrides it.  `weight` and probability targets are not
    differentiated: requiring grad, they raise (RuntimeError for a class
    weight with class indices, as torch; NotImplementedError with
    probabilities, where torch differentiates them) instead of a silent
    None.

    With ``reduction='none'`` each row's gradient weighs by its
    ``grad_output``, so the gradients are computed in backward (a second
    pass over the chunks, with the logits recomputed) instead of forward.
    """
    _floating_only(_tensor(input), "linear_cross_entropy")
    _floating_only(_tensor(linear_weight, "linear_weight"), "linear_cross_entropy",
                   "linear_weight")
    _floating_only(linear_bias, "linear_cross_entropy", "linear_bias")
    if input.dim() not in (1, 2):
        raise ValueError(f"input must be 1-D (in_features,) or 2-D (N, in_features), "
                         f"got shape {tuple(input.shape)}")
    if ignore_index is None:
        ignore_index = -100
    if _torch.is_grad_enabled():
        prob = isinstance(target, _torch.Tensor) and target.is_floating_point()
        if isinstance(weight, _torch.Tensor) and weight.requires_grad and not prob:
            _weight_not_differentiable("nll_loss_forward")
        for t, name in ((weight, "weight"), (target, "target")):
            if prob and isinstance(t, _torch.Tensor) and t.requires_grad:
                raise NotImplementedError(
                    f"csoftmax.torch.linear_cross_entropy does not differentiate {name} "
                    "(probability targets): detach it, or use cross_entropy on the logits")
    if chunk_size is None and options is not None:
        chunk_size = getattr(options, "batch_chunk_size", None)
    return _LinearCE.apply(input, linear_weight, linear_bias, target, weight, reduction,
                           _ignore_index(ignore_index, "linear_cross_entropy"),
                           _real_scalar(label_smoothing, "label_smoothing"),
                           _real_scalar(temperature, "temperature"),
                           chunk_size)
