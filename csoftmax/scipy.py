"""Drop-in replacements for ``scipy.special.logsumexp``, ``softmax`` and
``log_softmax``.

::

    from csoftmax.scipy import logsumexp, softmax, log_softmax

Same signatures, argument names and defaults as scipy.special (1.15+):
`softmax` and `log_softmax` normalise over the *whole* array by default
(``axis=None``), a 0-d input is one element (with scipy's choice of the
axes it accepts: softmax / log_softmax ``None``, ``()``, 0, -1; logsumexp,
which sees it as a 1-element vector, also ``(0,)``), result dtypes are
scipy's (logsumexp: NumPy's promotion of `a`, `b` and a float, Python
scalars weak -- ``float32 array, b=0.5`` stays float32, integers compute in
float64; softmax / log_softmax: the input's float dtype, for integers the
one ``np.exp`` gives them), and `return_sign`, `keepdims` and the
``b == 0`` rule are scipy's.  The work is done by the
csoftmax kernels (:func:`csoftmax.logsumexp`, :func:`csoftmax.softmax`,
:func:`csoftmax.log_softmax`), so results are within csoftmax's accuracy
contract (float32: <= 4 ULP; scipy itself is off by up to 73 216 ULP in
float32 log_softmax).

Differences: complex input raises TypeError (csoftmax works on real data);
bool input to softmax / log_softmax, which scipy refuses, computes in float64;
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


def _python_scalar(x):
    """A Python bool / int / float (not a NumPy scalar, though np.float64
    subclasses float): "weak" in NumPy 2's promotion (NEP 50)."""
    return isinstance(x, (bool, int, float)) and not isinstance(x, np.generic)


def _lse_inputs(a, b):
    """`a` and `b` as arrays in scipy's logsumexp result dtype
    (``xp_result_type(a, b, force_floating=True)``): NumPy's promotion of
    `a`, `b` and the Python float 1.0, where Python scalars are weak (NEP
    50) -- ``float32 array, b=0.5`` is float32; integers and bools alone
    give float64.  Python scalars are converted only once that dtype is
    known (as scipy, so a Python int too large for int64 is fine)."""
    args = [a] if b is None else [a, b]
    arrs = [None if _python_scalar(v) else _real(v, n) for v, n in zip(args, "ab")]
    dt = np.result_type(*[v if arr is None else arr.dtype.newbyteorder("=")
                          for v, arr in zip(args, arrs)], 1.0)
    arrs = [np.asarray(v, dtype=dt) if arr is None else arr.astype(dt, copy=False)
            for v, arr in zip(args, arrs)]
    return arrs[0], (None if b is None else arrs[1]), dt


def _family_dtype(a):
    """scipy's softmax / log_softmax result dtype: ``np.asarray(x)``'s for
    floats; integers give what ``np.exp`` gives them (int8 / uint8:
    float16, int16 / uint16: float32, wider: float64); bools, which scipy
    refuses (NumPy's boolean subtract), float64."""
    dt = a.dtype.newbyteorder("=")
    if dt.kind == "b":
        return np.dtype(np.float64)
    if dt.kind in "iu":
        return np.exp(np.zeros(0, dt)).dtype
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
        Dtype: NumPy's promotion of `a`, `b` and a float, Python scalars
        weak (float64 for integers alone; ``float32, b=0.5``: float32).
    sgn : ndarray or scalar
        Only with ``return_sign=True``.

    Notes
    -----
    Two edge cases differ from scipy 1.17 on purpose: when every weight of
    a reduction is 0, the sum is empty (-inf, sign 0) even if `a` holds an
    inf or NaN there (scipy: NaN, NaN -- its ``0 * inf``); and an empty
    reduction with ``return_sign=True`` has sign 0 (scipy: -1).

    Examples
    --------
    >>> from csoftmax.scipy import logsumexp
    >>> float(logsumexp([0.0, -40.0]))
    4.248354255291589e-18
    """
    aa, bb, dt = _lse_inputs(a, b)
    if aa.ndim == 0 and (bb is None or bb.ndim == 0):
        # scipy broadcasts a with b, then makes it at least 1-d: a 0-d input
        # is a 1-element vector (axis 0, -1, (0,); keepdims gives shape (1,))
        aa = aa.reshape(1)
        bb = None if bb is None else bb.reshape(1)
    res = _api.logsumexp(aa, axis=axis, b=bb, keepdims=keepdims, return_sign=return_sign)
    if return_sign:
        r, s = res
        return _scalar(r, dt), _scalar(s, dt)
    return _scalar(res, dt)


def _scalar(r, dt):
    r = np.asarray(r, dtype=dt)
    return r[()] if r.ndim == 0 else r


def _family(x, axis, log):
    a = _real(x, "x")
    dt = _family_dtype(a)
    shape = a.shape
    if a.ndim == 0:
        # scipy reduces a 0-d x with NumPy's max(x, axis, keepdims=True): it
        # takes axis None, (), 0 and -1 and raises NumPy's errors otherwise
        np.max(np.zeros((), dt), axis=axis, keepdims=True)
        a, axis = a.reshape(1), None
    f = _api.log_softmax if log else _api.softmax
    r = f(a.astype(dt, copy=False), axis=axis)
    return _scalar(np.reshape(r, shape), dt)


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
