"""Drop-in replacements for ``scipy.special.logsumexp``, ``softmax`` and
``log_softmax``.

::

    from csoftmax.scipy import logsumexp, softmax, log_softmax

Same signatures, argument names and defaults as scipy.special (1.15+):
`softmax` and `log_softmax` normalise over the *whole* array by default
(``axis=None``), a 0-d input is one element, result dtypes follow NumPy's
promotion of `a` and `b` (integers compute in float64), and `return_sign`,
`keepdims` and the ``b == 0`` rule are scipy's.  The work is done by the
csoftmax kernels (:func:`csoftmax.logsumexp`, :func:`csoftmax.softmax`,
:func:`csoftmax.log_softmax`), so results are within csoftmax's accuracy
contract (float32: <= 4 ULP; scipy itself is off by up to 73 216 ULP in
float32 log_softmax).

Differences: complex input raises TypeError (csoftmax works on real data);
inputs are NumPy arrays or anything NumPy converts (array API namespaces
other than NumPy are not supported); results are NumPy arrays or NumPy
scalars.  csoftmax's own functions keep their defaults (``axis=-1`` for
softmax / log_softmax, as jax.nn and torch).
"""
import numpy as np

from . import _api
from ._validate import as_input

__all__ = ["logsumexp", "softmax", "log_softmax"]


def _real(x, name):
    a, _, _ = as_input(x, name)     # complex / object / str -> TypeError
    return a


def _result_dtype(a, b=None):
    """scipy's result dtype: NumPy's promotion of a (and b), integers and
    bools -> the default float (float64)."""
    dts = [a.dtype] + ([b.dtype] if b is not None else [])
    dt = np.result_type(*[d.newbyteorder("=") for d in dts])
    if dt.kind in "biu":
        return np.dtype(np.float64)
    return dt


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """``log(sum(b * exp(a)))``, as :func:`scipy.special.logsumexp`.

    Parameters
    ----------
    a : array_like
        Real input.
    axis : None, int or tuple of ints, optional
        Axes to reduce (default: all).
    b : array_like, optional
        Weights broadcast with `a`; entries with ``b == 0`` are left out
        (also where `a` is infinite).
    keepdims : bool, optional
        Keep the reduced axes as size-1 dimensions.
    return_sign : bool, optional
        Return ``(log|sum|, sign(sum))``; without it a negative sum gives NaN.

    Returns
    -------
    res : ndarray or scalar
        Dtype: NumPy's promotion of `a` and `b` (float64 for integers).
    sgn : ndarray or scalar
        Only with ``return_sign=True``.

    Examples
    --------
    >>> from csoftmax.scipy import logsumexp
    >>> float(logsumexp([0.0, -40.0]))
    4.248354255291589e-18
    """
    aa = _real(a, "a")
    bb = None if b is None else _real(b, "b")
    dt = _result_dtype(aa, bb)
    res = _api.logsumexp(aa.astype(dt, copy=False), axis=axis,
                         b=None if bb is None else bb.astype(dt, copy=False),
                         keepdims=keepdims, return_sign=return_sign)
    if return_sign:
        r, s = res
        return _scalar(r, dt), _scalar(s, dt)
    return _scalar(res, dt)


def _scalar(r, dt):
    r = np.asarray(r, dtype=dt)
    return r[()] if r.ndim == 0 else r


def _family(x, axis, log):
    a = _real(x, "x")
    dt = _result_dtype(a)
    if dt == np.float16:
        dt = np.dtype(np.float16)
    f = _api.log_softmax if log else _api.softmax
    r = f(a.astype(dt, copy=False), axis=axis)
    return _scalar(r, dt)


def softmax(x, axis=None):
    r"""``exp(x - logsumexp(x, axis))``, as :func:`scipy.special.softmax`:
    by default over the whole array (``axis=None``).

    Examples
    --------
    >>> import numpy as np
    >>> from csoftmax.scipy import softmax
    >>> softmax(np.ones((2, 3))).round(4)
    array([[0.1667, 0.1667, 0.1667],
           [0.1667, 0.1667, 0.1667]])
    >>> float(softmax(3.0))
    1.0
    """
    return _family(x, axis, False)


def log_softmax(x, axis=None):
    r"""``x - logsumexp(x, axis)``, as :func:`scipy.special.log_softmax`:
    by default over the whole array (``axis=None``).

    Examples
    --------
    >>> from csoftmax.scipy import log_softmax
    >>> log_softmax([0.0, -40.0])
    array([-4.24835426e-18, -4.00000000e+01])
    """
    return _family(x, axis, True)
