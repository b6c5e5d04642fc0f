"""One set of defaults (issue 16, section 3): the same function name has
the same default axis in csoftmax, csoftmax.jax, csoftmax.dask and
csoftmax.torch (where torch itself has no default), and the scipy
drop-in has scipy's.  The README's table lists the same facts."""
import inspect

import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax
import csoftmax.scipy as css


def _default(f, name):
    return inspect.signature(f).parameters[name].default


def test_main_api_defaults():
    assert _default(csoftmax.logsumexp, "axis") is None       # scipy-style
    assert _default(csoftmax.softmax, "axis") == -1           # jax.nn / torch style
    assert _default(csoftmax.log_softmax, "axis") == -1
    assert _default(csoftmax.cross_entropy, "axis") == -1
    assert _default(css.softmax, "axis") is None              # scipy.special
    assert _default(css.log_softmax, "axis") is None
    assert _default(css.logsumexp, "axis") is None


def test_logsumexp_reduces_every_axis_in_every_module():
    x = np.random.default_rng(0).standard_normal((3, 4, 5))
    want = csoftmax.logsumexp(x)
    assert np.ndim(want) == 0
    try:
        import csoftmax.jax as cj
        assert _default(cj.logsumexp, "axis") is None
        x32 = x.astype(np.float32)          # jax computes in float32 by default
        np.testing.assert_allclose(np.asarray(cj.logsumexp(x32)), csoftmax.logsumexp(x32),
                                   rtol=3e-7)
    except ImportError:
        pass
    try:
        import dask.array as da

        import csoftmax.dask as cd
        assert _default(cd.logsumexp, "axis") is None
        np.testing.assert_allclose(cd.logsumexp(da.from_array(x, chunks=(2, 3, 5)))
                                   .compute(scheduler="sync"), want, rtol=1e-14)
    except ImportError:
        pass
    try:
        import torch

        import csoftmax.torch as ct
        assert _default(ct.logsumexp, "dim") is None
        np.testing.assert_allclose(ct.logsumexp(torch.from_numpy(x)).numpy(), want,
                                   rtol=1e-14)
    except ImportError:
        pass


def test_zero_d_axis_error_says_how():
    for f in (csoftmax.softmax, csoftmax.log_softmax):
        with pytest.raises(AxisError, match="axis=None .* or use csoftmax.scipy"):
            f(3.0)
    assert csoftmax.softmax(3.0, axis=None) == 1.0
    assert css.softmax(3.0) == 1.0
