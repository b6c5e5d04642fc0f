"""Argument checking and layout helpers shared by the public functions.

Everything here runs before any kernel writes anything, so a bad argument
never leaves `out` (or the input) half-written.
"""
import operator

import numpy as np
from numpy.exceptions import AxisError

_FLOATS = (np.float32, np.float64)


def as_input(x, name="x"):
    """`x` as an ndarray with its compute dtype: (array, compute_dtype, result_dtype)."""
    a = np.asarray(x)
    dt = a.dtype
    if dt.kind == "c":
        raise TypeError(f"{name} has complex dtype {dt}; csoftmax works on real "
                        "floating-point data (take .real or abs() first)")
    if dt.kind == "f":
        if not dt.isnative:          # byte-swapped: compute (and return) native
            dt = dt.newbyteorder("=")
        if dt == np.float16:
            return a, np.dtype(np.float32), np.dtype(np.float16)
        if dt.type in _FLOATS:
            return a, dt, dt
        raise TypeError(f"{name} has dtype {dt}; supported floating dtypes are "
                        "float16, float32 and float64")
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
    if d == np.float16:
        return np.dtype(np.float32), d
    if d.type in _FLOATS:
        return d, d
    raise TypeError(f"dtype={d} is not supported; use float16, float32 or float64")


def positive_scalar(value, name):
    try:
        v = operator.index(value) if isinstance(value, (int, np.integer)) else float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a real number, got {value!r}") from e
    v = float(v)
    if not (v > 0.0 and np.isfinite(v)):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


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


def _one_axis(a, ndim):
    try:
        a = operator.index(a)
    except TypeError as e:
        raise TypeError(f"axis must be an integer, a tuple of integers or None, got {a!r}") from e
    if not -ndim <= a < ndim:
        raise AxisError(a, ndim)
    return a % ndim


def check_out(out, shape, dtype, name="out"):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{name} has dtype {out.dtype}, expected {dtype} "
                        "(pass dtype= to choose another result dtype)")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def reshape_view(a, shape):
    """a.reshape(shape) if that is a view, else None (never copies)."""
    try:
        return np.reshape(a, shape, copy=False)
    except ValueError:
        return None
    except TypeError:  # numpy < 2.1 has no copy= in reshape
        v = a.view()
        try:
            v.shape = shape
        except AttributeError:
            return None
        return v
