"""Argument checking and layout helpers shared by the public functions.

Everything here runs before any kernel writes anything, so a bad argument
never leaves `out` (or the input) half-written.
"""
import operator

import numpy as np
from numpy.exceptions import AxisError

_FLOATS = (np.float32, np.float64)


# DLPack device types whose memory the CPU can read (the ones NumPy's
# from_dlpack accepts): CPU, CUDA pinned host, ROCm pinned host, CUDA managed.
_DL_HOST_DEVICES = {1: "cpu", 3: "cuda_host", 11: "rocm_host", 13: "cuda_managed"}
_DL_DEVICE_NAMES = {2: "cuda", 4: "opencl", 7: "vulkan", 8: "metal", 9: "vpi",
                    10: "rocm", 12: "ext_dev", 14: "oneapi", 15: "webgpu",
                    16: "hexagon", 17: "maia"}


def _device_name(x, dl_device=None):
    dev = getattr(x, "device", None)          # torch.device, jax Device, ...
    if dev is not None and not callable(dev):
        return str(dev)
    devices = getattr(x, "devices", None)     # jax.Array.devices()
    if callable(devices):
        try:
            return ", ".join(sorted(str(d) for d in devices()))
        except Exception:
            pass
    if dl_device is not None:
        return f"{_DL_DEVICE_NAMES.get(dl_device[0], 'unknown')} (DLPack device " \
               f"type {dl_device[0]}, id {dl_device[1]})"
    return "an unknown device"


def _from_dlpack(x, name):
    """Zero-copy ndarray view of an object exporting ``__dlpack__``.

    Policy (documented in the public docstrings):
    * memory must be readable by the CPU, else ValueError naming the device;
    * a torch tensor that requires grad is refused with TypeError: the
      NumPy-returning functions cannot carry a gradient, and silently
      dropping it (``.detach()``) would hide that -- pass ``x.detach()``;
    * bfloat16 becomes an ``ml_dtypes.bfloat16`` view (TypeError without
      ml_dtypes); another dtype NumPy cannot represent (float8, ...) is a
      TypeError.
    The view is read-only for producers that say so (JAX); csoftmax only
    reads its inputs, so that costs nothing.
    """
    kind = type(x).__module__.split(".")[0] + "." + type(x).__qualname__
    dl_device = None
    try:
        dl_device = tuple(x.__dlpack_device__())
    except AttributeError:
        pass
    except Exception as e:          # e.g. torch 'meta' tensors
        raise ValueError(f"{name} ({kind}) is on device {_device_name(x)}, whose "
                         "memory the CPU cannot read; csoftmax computes on the "
                         "CPU: move it there first (e.g. x.cpu())") from e
    if dl_device is not None and int(dl_device[0]) not in _DL_HOST_DEVICES:
        raise ValueError(f"{name} ({kind}) is on device {_device_name(x, dl_device)}; "
                         "csoftmax computes on the CPU: move it there first "
                         "(e.g. x.cpu() for torch, jax.device_put(x, "
                         "jax.devices('cpu')[0]) for JAX)")
    if getattr(x, "requires_grad", False) is True:
        raise TypeError(f"{name} is a {kind} that requires grad; csoftmax's NumPy "
                        "functions return ndarrays and cannot propagate a gradient. "
                        f"Pass {name}.detach() to compute on its values")
    x = _resolve_lazy_bits(x)
    if "bfloat16" in str(getattr(x, "dtype", "")):
        return _bfloat16_view(x, name, kind)
    try:
        return np.from_dlpack(x)
    except (BufferError, RuntimeError, TypeError, ValueError) as e:
        dt = getattr(x, "dtype", None)
        raise TypeError(f"{name} ({kind}, dtype {dt}) cannot be read through "
                        f"DLPack ({str(e).rstrip('.')}); csoftmax takes float16/32/64, integer "
                        "and bool data (convert first, e.g. x.float())") from e


def _bfloat16_view(x, name, kind):
    """A bfloat16 tensor (torch, JAX) as an ``ml_dtypes.bfloat16`` ndarray
    sharing its memory: NumPy's DLPack import does not know bfloat16, so the
    tensor is exported as 16-bit integers and the bits reinterpreted."""
    bf = bfloat16_dtype()
    if bf is None:
        raise TypeError(f"{name} ({kind}) is bfloat16; csoftmax reads bfloat16 through "
                        "the optional dependency ml_dtypes: pip install ml_dtypes "
                        "(or convert first, e.g. x.float())")
    view = getattr(x, "view", None)
    mod = type(x).__module__.split(".")[0]
    if mod == "torch" and callable(view):
        import torch
        return np.from_dlpack(x.view(torch.int16)).view(bf)
    a = np.asarray(x)           # JAX and others: NumPy arrays of ml_dtypes.bfloat16
    if a.dtype != bf:
        raise TypeError(f"{name} ({kind}) is bfloat16 but exports dtype {a.dtype}")
    return a


def _resolve_lazy_bits(x):
    """A torch tensor whose negation or conjugation is a lazy bit (``x.neg()``
    views, ``x.conj().imag``) exports its *unnegated* memory through DLPack:
    materialise such a tensor first (one copy), so the values read are the
    values the tensor holds."""
    for bit, resolve in (("is_neg", "resolve_neg"), ("is_conj", "resolve_conj")):
        test = getattr(x, bit, None)
        if callable(test) and test():
            x = getattr(x, resolve)()
    return x


# arguments in the log domain, for which -inf means "probability 0"
_LOGIT_NAMES = ("x", "logits", "log_probs", "log_p", "log_q", "input")


def _to_ndarray(x, name):
    """`x` as an ndarray, without a copy whenever its memory can be used as is.

    ndarrays pass through; objects exporting ``__dlpack__`` (torch CPU
    tensors, JAX CPU arrays, CuPy pinned arrays, ...) become views through
    ``np.from_dlpack``; everything else goes through ``np.asarray``, which
    is zero-copy for the buffer protocol (memoryview, array.array, bytes)
    and for ``__array_interface__`` / ``__array_struct__`` / ``__array__``
    providers.
    """
    if isinstance(x, np.ndarray):
        if type(x) is np.ndarray:
            return x
        if isinstance(x, np.ma.MaskedArray):
            if name == "where":
                hint = (f"pass {name}.filled(False) to leave the masked entries out, "
                        "or the plain data")
            elif name in _LOGIT_NAMES:
                hint = (f"pass {name}.filled(-np.inf) (masked entries get probability "
                        "0), where= with the mask inverted, or the plain data")
            else:
                hint = (f"pass {name}.filled(v) with the value v the masked entries "
                        "should take, or the plain data")
            raise TypeError(f"{name} is a numpy.ma.MaskedArray; csoftmax would ignore its "
                            f"mask: {hint}")
        # subclasses (np.matrix keeps two dimensions under reshape): compute on
        # the plain ndarray view of the same memory, return plain ndarrays
        return x.view(np.ndarray)
    if not isinstance(x, np.generic) and hasattr(type(x), "__dlpack__"):
        return _from_dlpack(x, name)
    return np.asarray(x)


def half_kind(dt):
    """1 for native float16, 2 for bfloat16 (``ml_dtypes.bfloat16``, however
    it arrived), 0 otherwise: the dtypes of the half-precision paths."""
    if dt.itemsize != 2:
        return 0
    if dt.kind == "f":
        return 1 if dt.isnative else 0
    if dt.name == "bfloat16":
        return 2
    return 0


def bfloat16_dtype():
    """The NumPy dtype of ``ml_dtypes.bfloat16`` (imported lazily: an
    optional dependency), or None when ml_dtypes is not installed."""
    try:
        import ml_dtypes
    except ImportError:
        return None
    return np.dtype(ml_dtypes.bfloat16)


def as_input(x, name="x"):
    """`x` as an ndarray with its compute dtype: (array, compute_dtype, result_dtype).

    The array shares memory with `x` whenever `x` exposes it (ndarray,
    DLPack, buffer or array protocol); see `_to_ndarray`.
    """
    a = _to_ndarray(x, name)
    dt = a.dtype
    if dt.kind == "c":
        raise TypeError(f"{name} has complex dtype {dt}; csoftmax works on real "
                        "floating-point data (take .real or abs() first)")
    if half_kind(dt) == 2:
        # ml_dtypes.bfloat16: computed in float32 lanes, returned as bfloat16
        return a, np.dtype(np.float32), dt
    if dt.kind == "f":
        if not dt.isnative:          # byte-swapped: compute (and return) native
            dt = dt.newbyteorder("=")
        if dt == np.float16:
            return a, np.dtype(np.float32), np.dtype(np.float16)
        if dt.type in _FLOATS:
            return a, dt, dt
        raise TypeError(f"{name} has dtype {dt}; supported floating dtypes are "
                        "float16, bfloat16 (ml_dtypes), float32 and float64")
    if dt.kind in "biu":
        return a, np.dtype(np.float64), np.dtype(np.float64)
    raise TypeError(f"{name} has non-numeric dtype {dt}; expected a real numeric array")


def resolve_dtype(dtype, compute, result):
    """Apply a user `dtype=`: returns (compute_dtype, result_dtype)."""
    if dtype is None:
        return compute, result
    try:
        d = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype={dtype!r} is not a valid dtype") from e
    if d.kind == "f" and not d.isnative:
        # a byte-swapped request ('>f8'): computed and returned in native
        # order, as numpy's ufuncs take dtype= (the kernels read native)
        d = d.newbyteorder("=")
    if d == np.float16 or half_kind(d) == 2:
        return np.dtype(np.float32), d
    if d.type in _FLOATS:
        return d, d
    raise TypeError(f"dtype={d} is not supported; use float16, bfloat16, float32 or float64")


def short_repr(value, limit=60):
    """repr(value) cut to `limit` characters (an int of 10**400 has 401
    digits; past 4300, repr itself raises)."""
    try:
        r = repr(value)
    except ValueError:
        return f"<{type(value).__name__} too large to print>"
    return r if len(r) <= limit else r[:limit - 3] + "..."


def real_scalar(value, name):
    """The one reading of every real scalar parameter (temperature,
    sharpness, beta, threshold, margin, scale, label_smoothing, ...): a
    Python or NumPy int / float, a 0-d real array, or any number float()
    takes (fractions.Fraction, decimal.Decimal), as a float -- possibly inf
    or NaN, which the caller judges.  Strings, bools, complex numbers and
    arrays with elements raise TypeError naming `name`; an int too large
    for a float raises ValueError (float() would raise OverflowError)."""
    # float() would also take "1", True, np.complex128(2+5j) (dropping the
    # imaginary part) or a 1-element tensor: not real numbers here
    bad = isinstance(value, (str, bytes, bytearray, bool, np.bool_, complex,
                             np.complexfloating))
    if isinstance(value, np.ndarray):
        bad = bad or value.ndim != 0 or value.dtype.kind not in "iuf"
        if not bad:
            value = value[()]
    elif getattr(value, "ndim", 0) != 0:      # a torch / JAX array with elements
        bad = True
    if bad:
        raise TypeError(f"{name} must be a real number, got {short_repr(value)}")
    try:
        return float(operator.index(value) if isinstance(value, (int, np.integer))
                     else value)
    except OverflowError as e:
        raise ValueError(f"{name} must be a finite number, got {short_repr(value)} "
                         "(too large for a float)") from e
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a real number, got {short_repr(value)}") from e


def flag(value, name):
    """A boolean switch (log_target, easy_margin): True / False, NumPy's
    bools, or the ints 0 / 1; anything else -- a string such as "no", which
    bool() would take as True, None, 2 -- is TypeError naming `name`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {short_repr(value)}")


def positive_scalar(value, name):
    v = real_scalar(value, name)
    if not (v > 0.0 and np.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {short_repr(value)}")
    if v < _MIN_INVERTIBLE:
        # 1/v overflows float64: the kernels would scale by inf and give NaN
        raise ValueError(f"{name} must be >= {_MIN_INVERTIBLE:.17g} (the smallest "
                         f"number whose reciprocal is finite in float64), got {short_repr(value)}")
    return v


# the smallest positive double whose reciprocal is finite: 1 / DBL_MAX,
# rounded up (2^-1024 would give exactly 2^1024 = inf)
_MIN_INVERTIBLE = float(np.nextafter(1.0 / np.finfo(np.float64).max, 1.0))


# The float32 kernels reduce exp's argument with the scale (1/T, the
# sharpness) rounded to float32: a scale past 2^64 (T < 5.4e-20) is computed
# in float64 instead -- at 2^128 (T < 2.9e-39) float32 has no such number
# (inf: NaN probabilities, sample() drawing class 0).  Float64 takes every
# scale up to 1/_MIN_INVERTIBLE.
F32_SCALE_MAX = 2.0 ** 64


def comp_for_scale(comp, scale):
    """The compute dtype for `scale`: float64 where float32 cannot carry it."""
    comp = np.dtype(comp)
    if comp == np.float32 and not (scale <= F32_SCALE_MAX):
        return np.dtype(np.float64)
    return comp


def normalize_axes(axis, ndim):
    """Tuple of distinct non-negative axes; None means all axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(_one_axis(a, ndim) for a in axis)
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in axis={axis!r}")
        return axes
    return (_one_axis(axis, ndim),)


def integer(value, message):
    """operator.index(value), refusing bools (an int to operator.index:
    axis=True would silently mean axis 1; numpy, scipy and torch refuse
    it) and non-integers with TypeError(message)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(message)
    try:
        return operator.index(value)
    except TypeError as e:
        raise TypeError(message) from e


def _one_axis(a, ndim):
    a = integer(a, f"axis must be an integer, a tuple of integers or None, got {a!r}")
    if not -ndim <= a < ndim:
        if ndim == 0:
            # scipy.special.softmax(3.0) is 1.0: say how to get that here
            raise AxisError(a, ndim, msg_prefix="a 0-d input has no axis to reduce: pass "
                            "axis=None (every axis, scipy's default) or use csoftmax.scipy")
        raise AxisError(a, ndim)
    return a % ndim


def check_out(out, shape, dtype, name="out",
              hint="pass dtype= to choose another result dtype"):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        if out.dtype.newbyteorder("=") == dtype and not out.dtype.isnative:
            raise TypeError(f"{name} has non-native byte order ({out.dtype.str}); "
                            f"expected {dtype} in native order")
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype} ({hint})")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def same_memory(a, b):
    """True when `a` and `b` view exactly the same elements the same way
    (first byte, dtype, shape and strides): an elementwise kernel may then
    write one while reading the other."""
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.dtype == b.dtype and a.strides == b.strides and a.shape == b.shape)


def may_write_directly(dest, reads, in_place=()):
    """May a kernel write `dest` while it reads the arrays in `reads`?

    The one overlap rule of every function that writes caller memory
    (``out=``, ``grad_out=``): yes when `dest` shares no memory with any
    array the kernel reads, or when it *is* one of the arrays in `in_place`
    (same elements, same layout: those kernels finish reading each slice
    before they write it).  Otherwise -- any partial or differently strided
    overlap, with any argument -- the caller must compute into a fresh
    temporary and copy it into `dest` afterwards.  `reads` holds the arrays
    exactly as they are passed to the kernel (after any dtype or layout
    conversion); None entries are skipped.  A `dest` whose own elements
    share memory (an as_strided view, stride 0 along an axis) is never
    written directly: some kernels read back what they wrote (the rescale
    of kept terms), and an aliased element would hold another's value when
    read; through the temporary such a `dest` ends as numpy's ``out=`` does,
    the last of the aliased elements' results.
    """
    if has_internal_overlap(dest):
        return False
    for r in reads:
        if r is None or not np.may_share_memory(dest, r):
            continue
        if (any(r is i for i in in_place) and same_memory(dest, r)
                and not has_internal_overlap(dest)):
            continue
        return False
    return True


def has_internal_overlap(a):
    """Whether two elements of `a` share memory (as_strided views whose
    rows overlap, stride-0 broadcasts): in place, writing one element
    would change another that is still to be read."""
    if a.flags.c_contiguous or a.flags.f_contiguous:
        return False    # distinct elements by layout (the common case, cheaply)
    dims = sorted((abs(st), n) for st, n in zip(a.strides, a.shape) if n > 1)
    if any(n == 0 for n in a.shape):
        return False
    extent = a.itemsize
    for st, n in dims:
        if st < extent:
            return True
        extent = st * (n - 1) + extent
    return False


def reshape_view(a, shape):
    """a.reshape(shape) if that is a view, else None (never copies).  An
    ndarray subclass (np.matrix, which stays 2-D) is viewed as ndarray."""
    a = np.asarray(a)
    try:
        return a.reshape(shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # numpy < 2.1 has no copy= in reshape
        v = a.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v


def as_mask(where, shape, name="where"):
    """`where=` as a byte array broadcast to `shape` (a read-only view).

    numpy's rule for ufunc ``where=``: any array_like, true where it is
    nonzero.  bool, uint8 and int8 masks are read in place (the kernels
    take a byte as kept when it is nonzero); other integer and floating
    masks are converted with ``!= 0`` (a bool array of the mask's own
    shape, not of the broadcast one).  Complex, object and string masks
    are refused (TypeError); a shape that does not broadcast to `shape`
    gives ValueError naming both shapes.
    """
    if isinstance(where, np.ndarray):
        m = _to_ndarray(where, name)    # a MaskedArray: TypeError (its mask)
    else:
        try:
            m = _to_ndarray(where, name)
        except (TypeError, ValueError, BufferError):
            m = np.asarray(where)
    k = m.dtype.kind
    if half_kind(m.dtype) == 2:     # ml_dtypes.bfloat16: a number like float16
        k = "f"
    if k not in "biuf":
        raise TypeError(f"{name} must be a boolean array (or numbers, read as "
                        f"nonzero = kept), got dtype {m.dtype}")
    if m.dtype.itemsize != 1 or k == "f":
        m = m != 0
    m = m.view(np.uint8)
    try:
        mb = np.broadcast_to(m, tuple(shape))
    except ValueError:
        raise ValueError(f"{name} with shape {m.shape} does not broadcast to the "
                         f"input's shape {tuple(shape)}") from None
    if not mb.flags.aligned:     # (bytes are always aligned)
        mb = np.array(mb)
    return mb
