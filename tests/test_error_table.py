"""Every row of docs/errors.md: bad input -> exception type and message
fragment, and nothing written to `out` / `grad_out` (sentinel-filled) or to
the inputs.  The table below is the single source; docs/errors.md lists the
same rows."""
import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax as cs

S = 7.25        # sentinel


def X(shape=(3, 4), dt=np.float64):
    return np.arange(np.prod(shape), dtype=dt).reshape(shape) / 7


def O(shape=(3, 4), dt=np.float64):
    return np.full(shape, S, dt)


def ro(a):
    a.flags.writeable = False
    return a


# (id, function of (x, out) -> call, exception, message fragment, x, out)
T = [
    ("softmax complex", lambda x, o: cs.softmax(x, out=o), TypeError, "complex dtype",
     X().astype(complex), O()),
    ("softmax object", lambda x, o: cs.softmax(x, out=o), TypeError, "non-numeric dtype object",
     X().astype(object), O()),
    ("softmax str", lambda x, o: cs.softmax(x, out=o), TypeError, "non-numeric dtype",
     np.array([["a", "b"]]), O((1, 2))),
    ("softmax longdouble", lambda x, o: cs.softmax(x, out=o), TypeError, "supported floating dtypes",
     X().astype(np.longdouble), O()),
    ("softmax bad axis", lambda x, o: cs.softmax(x, axis=2, out=o), AxisError, "out of bounds",
     X(), O()),
    ("softmax float axis", lambda x, o: cs.softmax(x, axis=1.0, out=o), TypeError,
     "axis must be an integer", X(), O()),
    ("softmax repeated axis", lambda x, o: cs.softmax(x, axis=(1, -1), out=o), ValueError,
     "repeated axis", X(), O()),
    ("softmax out shape", lambda x, o: cs.softmax(x, out=o), ValueError,
     "out has shape (4, 3), expected (3, 4)", X(), O((4, 3))),
    ("softmax out dtype", lambda x, o: cs.softmax(x, out=o), TypeError,
     "out has dtype float32, expected float64", X(), O(dt=np.float32)),
    ("softmax out not ndarray", lambda x, o: cs.softmax(x, out=[0.0] * 12), TypeError,
     "out must be a numpy.ndarray", X(), O()),
    ("softmax out read-only", lambda x, o: cs.softmax(x, out=ro(o)), ValueError,
     "out is read-only", X(), O()),
    ("softmax temperature 0", lambda x, o: cs.softmax(x, temperature=0, out=o), ValueError,
     "temperature must be a finite number > 0", X(), O()),
    ("softmax temperature nan", lambda x, o: cs.softmax(x, temperature=np.nan, out=o),
     ValueError, "temperature must be a finite number > 0", X(), O()),
    ("softmax temperature str", lambda x, o: cs.softmax(x, temperature="hot", out=o), TypeError,
     "temperature must be a real number", X(), O()),
    ("softmax temperature numeric str",
     lambda x, o: cs.softmax(x, temperature="1", out=o), TypeError,
     "temperature must be a real number, got '1'", X(), O()),
    ("log_softmax temperature bool",
     lambda x, o: cs.log_softmax(x, temperature=True, out=o), TypeError,
     "temperature must be a real number, got True", X(), O()),
    ("cross_entropy temperature bytes",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), temperature=b"2",
                                   return_grad=True, grad_out=o), TypeError,
     "temperature must be a real number", X(), O()),
    ("smooth_max sharpness str", lambda x, o: cs.smooth_max(x, sharpness="10"), TypeError,
     "sharpness must be a real number", X(), None),
    ("softmax bad dtype=", lambda x, o: cs.softmax(x, dtype=np.int32, out=o), TypeError,
     "dtype=int32 is not supported", X(), O()),
    ("log_softmax complex", lambda x, o: cs.log_softmax(x, out=o), TypeError, "complex dtype",
     X().astype(complex), O()),
    ("log_softmax out read-only", lambda x, o: cs.log_softmax(x, out=ro(o)), ValueError,
     "out is read-only", X(), O()),
    ("logsumexp complex", lambda x, o: cs.logsumexp(x), TypeError, "complex dtype",
     X().astype(complex), None),
    ("logsumexp bad axis", lambda x, o: cs.logsumexp(x, axis=-3), AxisError, "out of bounds",
     X(), None),
    ("logsumexp b shape", lambda x, o: cs.logsumexp(x, b=np.ones(5)), ValueError,
     "does not broadcast", X(), None),
    ("logsumexp b complex", lambda x, o: cs.logsumexp(x, b=np.ones(4, complex)), TypeError,
     "b has complex dtype", X(), None),
    ("smooth_max sharpness", lambda x, o: cs.smooth_max(x, sharpness=-1), ValueError,
     "sharpness must be a finite number > 0", X(), None),
    # losses
    ("cross_entropy label out of range",
     lambda x, o: cs.cross_entropy(x, np.array([0, 4, 1]), return_grad=True, grad_out=o),
     ValueError, "target[1] = 4 is not a class index in [0, 4)", X(), O()),
    ("cross_entropy negative label",
     lambda x, o: cs.cross_entropy(x, np.array([0, -1, 1]), return_grad=True, grad_out=o),
     ValueError, "target[1] = -1 is not a class index", X(), O()),
    ("cross_entropy float labels",
     lambda x, o: cs.cross_entropy(x, np.array([0.0, 1.0, 1.0]), return_grad=True, grad_out=o),
     TypeError, "must have an integer dtype", X(), O()),
    ("cross_entropy integer probabilities",
     lambda x, o: cs.cross_entropy(x, np.zeros((3, 4), int), return_grad=True, grad_out=o),
     TypeError, "must be floating", X(), O()),
    ("cross_entropy target shape",
     lambda x, o: cs.cross_entropy(x, np.zeros(4, int), return_grad=True, grad_out=o),
     ValueError, "target has shape (4,)", X(), O()),
    ("cross_entropy grad_out read-only",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), return_grad=True, grad_out=ro(o)),
     ValueError, "grad_out is read-only", X(), O()),
    ("cross_entropy grad_out shape",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), return_grad=True, grad_out=o),
     ValueError, "grad_out has shape (4, 3)", X(), O((4, 3))),
    ("cross_entropy grad_out dtype",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), return_grad=True, grad_out=o),
     TypeError, "grad_out has dtype float32", X(), O(dt=np.float32)),
    ("cross_entropy grad_out without return_grad",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), grad_out=o),
     ValueError, "grad_out= needs return_grad=True", X(), O()),
    ("cross_entropy weight shape",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), weight=np.ones(3), return_grad=True,
                                   grad_out=o),
     ValueError, "weight has shape (3,), expected (4,)", X(), O()),
    ("cross_entropy reduction",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), reduction="avg", return_grad=True,
                                   grad_out=o),
     ValueError, "reduction must be 'none', 'mean' or 'sum'", X(), O()),
    ("cross_entropy label_smoothing",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5,
                                   return_grad=True, grad_out=o),
     ValueError, "label_smoothing must be in [0, 1]", X(), O()),
    ("cross_entropy temperature",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), temperature=-1, return_grad=True,
                                   grad_out=o),
     ValueError, "temperature must be a finite number > 0", X(), O()),
    ("cross_entropy no classes",
     lambda x, o: cs.cross_entropy(x, np.zeros(3, int), return_grad=True, grad_out=o),
     ValueError, "no classes", X((3, 0)), O((3, 0))),
    ("cross_entropy ignore_index with probabilities",
     lambda x, o: cs.cross_entropy(x, np.full((3, 4), 0.25), ignore_index=0, return_grad=True,
                                   grad_out=o),
     ValueError, "ignore_index is not supported with probability targets", X(), O()),
    ("cross_entropy axis tuple",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), axis=(0, 1)), TypeError,
     "axis must be a single integer", X(), None),
    ("nll_loss label out of range", lambda x, o: cs.nll_loss(x, np.array([0, 1, 9])),
     ValueError, "target[2] = 9 is not a class index", X(), None),
    ("nll_loss float labels", lambda x, o: cs.nll_loss(x, np.array([0.0, 1, 2])),
     TypeError, "integer dtype", X(), None),
    ("softmax_backward shapes", lambda x, o: cs.softmax_backward(x, np.ones((3, 3)), out=o),
     ValueError, "dy has shape (3, 3), expected (3, 4)", X(), O()),
    ("softmax_backward out read-only",
     lambda x, o: cs.softmax_backward(x, np.ones((3, 4)), out=ro(o)),
     ValueError, "out is read-only", X(), O()),
    ("log_softmax_backward complex",
     lambda x, o: cs.log_softmax_backward(x, np.ones((3, 4)), out=o),
     TypeError, "complex dtype", X().astype(complex), O()),
    ("logsumexp_backward dy shape",
     lambda x, o: cs.logsumexp_backward(x, np.ones(4), out=o),
     ValueError, "dy has shape (4,), expected (3,)", X(), O()),
    ("logsumexp_backward out dtype",
     lambda x, o: cs.logsumexp_backward(x, np.ones(3), out=o),
     TypeError, "out has dtype float32", X(), O(dt=np.float32)),
    # distillation, kl, margins, softplus, hinge, sample
    ("distillation_loss shapes", lambda x, o: cs.distillation_loss(x, np.ones((3, 5))),
     ValueError, "they must match", X(), None),
    ("distillation_loss temperature", lambda x, o: cs.distillation_loss(x, x, temperature=0),
     ValueError, "temperature must be a finite number > 0", X(), None),
    ("kl_div shapes", lambda x, o: cs.kl_div(x, np.ones((2, 4))), ValueError,
     "do not broadcast", X(), None),
    ("kl_div reduction", lambda x, o: cs.kl_div(x, x, reduction="avg"), ValueError,
     "reduction must be one of", X(), None),
    ("margin_logits cos out of [-1, 1]",
     lambda x, o: cs.margin_logits(x, np.array([0, 1, 2])), ValueError,
     "cos must hold cosines in [-1, 1]", X() * 3, None),
    ("margin_logits kind", lambda x, o: cs.margin_logits(x, np.array([0, 1, 2]), kind="sphere"),
     ValueError, "kind must be 'normface', 'cosface' or 'arcface'", X() / 3, None),
    ("margin_logits normface margin",
     lambda x, o: cs.margin_logits(x, np.array([0, 1, 2]), margin=0.2), ValueError,
     "kind='normface' has no margin", X() / 3, None),
    ("margin_logits negative margin",
     lambda x, o: cs.margin_logits(x, np.array([0, 1, 2]), kind="cosface", margin=-0.1),
     ValueError, "margin must be >= 0", X() / 3, None),
    ("margin_cross_entropy arcface margin >= pi",
     lambda x, o: cs.margin_cross_entropy(x, np.array([0, 1, 2]), kind="arcface", margin=4.0),
     ValueError, "arcface margin must be an angle in [0, pi)", X() / 3, None),
    ("margin_cross_entropy scale",
     lambda x, o: cs.margin_cross_entropy(x, np.array([0, 1, 2]), scale=0), ValueError,
     "scale must be a finite number > 0", X() / 3, None),
    ("margin_cross_entropy label out of range",
     lambda x, o: cs.margin_cross_entropy(x, np.array([0, 1, 4])), ValueError,
     "target[2] = 4 is not a class index in [0, 4)", X() / 3, None),
    ("margin_logits margin nan",
     lambda x, o: cs.margin_logits(x, np.array([0, 1, 2]), kind="cosface", margin=np.nan),
     ValueError, "margin must be finite", X() / 3, None),
    ("softplus beta", lambda x, o: cs.softplus(x, beta=0), ValueError,
     "beta must be a finite number > 0", X(), None),
    ("softplus threshold nan", lambda x, o: cs.softplus(x, threshold=np.nan), ValueError,
     "threshold must not be NaN", X(), None),
    ("softplus complex", lambda x, o: cs.softplus(x), TypeError, "complex dtype",
     X().astype(complex), None),
    ("soft_hinge label out of range", lambda x, o: cs.soft_hinge(x, np.array([0, 1, 7])),
     ValueError, "target[2] = 7 is not a class index", X(), None),
    ("soft_hinge float labels", lambda x, o: cs.soft_hinge(x, np.array([0.0, 1, 2])),
     TypeError, "integer class indices", X(), None),
    ("soft_hinge margin inf", lambda x, o: cs.soft_hinge(x, np.array([0, 1, 2]), margin=np.inf),
     ValueError, "margin must be finite", X(), None),
    ("sample NaN logits", lambda x, o: cs.sample(np.where(x > 1, np.nan, x), seed=0),
     ValueError, "logits row [2] contains NaN", X(), None),
    ("sample +inf logits", lambda x, o: cs.sample(np.where(x > 1, np.inf, x), seed=0),
     ValueError, "contains +inf", X(), None),
    ("sample all -inf row", lambda x, o: cs.sample(np.full((2, 3), -np.inf), seed=0),
     ValueError, "has no class with nonzero probability", X(), None),
    ("sample negative temperature", lambda x, o: cs.sample(x, temperature=-1), ValueError,
     "temperature must be a finite number >= 0", X(), None),
    ("sample top_k 0", lambda x, o: cs.sample(x, top_k=0), ValueError, "top_k must be >= 1",
     X(), None),
    ("sample negative seed", lambda x, o: cs.sample(x, seed=-1), ValueError,
     "seed must be >= 0", X(), None),
    ("sample no classes", lambda x, o: cs.sample(x), ValueError, "no classes", X((3, 0)), None),
    ("set_num_threads 0", lambda x, o: cs.set_num_threads(0), ValueError, "", X(), None),
    ("set_num_threads above the cap", lambda x, o: cs.set_num_threads(2**31 - 1), ValueError,
     "number of threads must be <=", X(), None),
    ("set_num_threads bool", lambda x, o: cs.set_num_threads(True), TypeError,
     "number of threads must be an integer or None", X(), None),
    ("set_output_cache negative", lambda x, o: cs.set_output_cache(-1), ValueError,
     "nbytes must be >= 0, got -1", X(), None),
    ("set_output_cache float", lambda x, o: cs.set_output_cache(1e6), TypeError,
     "nbytes must be an integer, not float", X(), None),
    ("log_softmax temperature whose reciprocal overflows",
     lambda x, o: cs.log_softmax(x, temperature=1e-310, out=o), ValueError,
     "temperature must be >= 5.56", X(), O()),
    ("softmax temperature whose reciprocal overflows",
     lambda x, o: cs.softmax(x, temperature=5e-309, out=o), ValueError,
     "temperature must be >= 5.56", X(), O()),
    ("cross_entropy temperature whose reciprocal overflows",
     lambda x, o: cs.cross_entropy(x, np.array([3, 3, 3]), temperature=1e-310,
                                   return_grad=True, grad_out=o), ValueError,
     "temperature must be >= 5.56", X(), O()),
    ("distillation_loss temperature whose reciprocal overflows",
     lambda x, o: cs.distillation_loss(x, x, temperature=1e-310), ValueError,
     "temperature must be >= 5.56", X(), None),
    ("sample temperature whose reciprocal overflows",
     lambda x, o: cs.sample(x, temperature=1e-310), ValueError,
     "temperature must be >= 5.56", X(), None),
    ("smooth_max sharpness whose reciprocal overflows",
     lambda x, o: cs.smooth_max(x, sharpness=1e-320), ValueError,
     "sharpness must be >= 5.56", X(), None),
    ("margin_logits scale whose reciprocal overflows",
     lambda x, o: cs.margin_logits(x, np.array([0, 1, 2]), scale=1e-320), ValueError,
     "scale must be >= 5.56", X() / 3, None),
    ("softplus beta whose reciprocal overflows",
     lambda x, o: cs.softplus(x, beta=1e-320), ValueError, "beta must be >= 5.56", X(), None),
    ("logsumexp axis True", lambda x, o: cs.logsumexp(x, True), TypeError,
     "axis must be an integer, a tuple of integers or None, got True", X(), None),
    ("softmax axis False", lambda x, o: cs.softmax(x, axis=False, out=o), TypeError,
     "got False", X(), O()),
    ("softmax axis tuple with a bool", lambda x, o: cs.softmax(x, axis=(0, True), out=o),
     TypeError, "got True", X(), O()),
    ("cross_entropy axis True", lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), axis=True),
     TypeError, "got True", X(), None),
    ("softmax masked array", lambda x, o: cs.softmax(np.ma.masked_less(x, 0.5), out=o),
     TypeError, "numpy.ma.MaskedArray", X(), O()),
    ("cross_entropy big-endian uint64 label",
     lambda x, o: cs.cross_entropy(x, np.array([1, 2**64 - 100, 3], np.uint64).astype(">u8"),
                                   return_grad=True, grad_out=o), ValueError,
     "target[1] = 18446744073709551516 is not a class index", X(), O()),
    ("nll_loss big-endian uint64 label",
     lambda x, o: cs.nll_loss(x, np.array([1, 2**64 - 100, 3], np.uint64).astype(">u8")),
     ValueError, "target[1] = 18446744073709551516 is not a class index", X(), None),
    ("linear_cross_entropy weight shape",
     lambda x, o: cs.linear_cross_entropy(x, np.ones((5, 3)), np.array([0, 1, 2])),
     ValueError, "weight has shape (5, 3), expected (5, 4)", X(), None),
    ("linear_cross_entropy label out of range",
     lambda x, o: cs.linear_cross_entropy(x, np.ones((5, 4)), np.array([0, 5, 1])),
     ValueError, "target[1] = 5 is not a class index in [0, 5)", X(), None),
    ("linear_cross_entropy bias shape",
     lambda x, o: cs.linear_cross_entropy(x, np.ones((5, 4)), np.array([0, 1, 2]),
                                          bias=np.ones(4)),
     ValueError, "bias has shape (4,), expected (5,)", X(), None),
    ("linear_cross_entropy chunk_size 0",
     lambda x, o: cs.linear_cross_entropy(x, np.ones((5, 4)), np.array([0, 1, 2]),
                                          chunk_size=0),
     ValueError, "chunk_size must be >= 1, got 0", X(), None),
    ("cross_entropy ignore_index overflow",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), ignore_index=2**63), OverflowError,
     "ignore_index=9223372036854775808 does not fit", X(), None),
    ("softmax where complex", lambda x, o: cs.softmax(x, out=o, where=np.ones(4, complex)),
     TypeError, "where must be a boolean array", X(), O()),
    ("log_softmax where shape", lambda x, o: cs.log_softmax(x, out=o, where=np.ones(3, bool)),
     ValueError, "where with shape (3,) does not broadcast to the input's shape (3, 4)",
     X(), O()),
    ("logsumexp where str", lambda x, o: cs.logsumexp(x, where=np.array(["a"] * 4)),
     TypeError, "where must be a boolean array", X(), None),
    ("softmax_backward where shape",
     lambda x, o: cs.softmax_backward(x, x, out=o, where=np.ones((2, 4), bool)),
     ValueError, "where with shape (2, 4) does not broadcast", X(), O()),
    ("cross_entropy where with label smoothing",
     lambda x, o: cs.cross_entropy(x, np.array([0, 1, 2]), where=np.ones(4, bool),
                                   label_smoothing=0.1, return_grad=True, grad_out=o),
     ValueError, "where= is supported with class-index targets without label smoothing",
     X(), O()),
    ("nll_loss ignore_index overflow",
     lambda x, o: cs.nll_loss(x, np.array([0, 1, 2]), ignore_index=-2**63 - 1), OverflowError,
     "ignore_index=-9223372036854775809 does not fit", X(), None),
]


@pytest.mark.parametrize("name,call,exc,frag,x,out", T, ids=[r[0] for r in T])
def test_error_row(name, call, exc, frag, x, out):
    x0 = x.copy()
    out0 = None if out is None else out.copy()
    with pytest.raises(exc) as ei:
        call(x, out)
    assert frag in str(ei.value), str(ei.value)
    if x.dtype != object:
        np.testing.assert_array_equal(x, x0)
    if out is not None:
        np.testing.assert_array_equal(out, out0)       # sentinel untouched


def test_aliased_and_noncontiguous_out_are_accepted():
    """Not errors: an `out` that overlaps the input without being it, or
    that is not contiguous, gets the same bits as a fresh result (the
    kernels write a temporary and copy)."""
    x = X((4, 6))
    want = cs.softmax(x[:, :3])
    buf = x.copy()
    r = cs.softmax(buf[:, :3], out=buf[:, 1:4])             # partial overlap
    np.testing.assert_array_equal(r, want)
    o = np.full((4, 6), S)[:, ::2]                          # non-contiguous
    np.testing.assert_array_equal(cs.softmax(x[:, :3], out=o), want)
    np.testing.assert_array_equal(cs.log_softmax(x[:, :3], out=O((8, 3))[::2]),
                                  cs.log_softmax(x[:, :3]))


def test_nan_targets_propagate():
    """NaN probability targets are not rejected: the loss is NaN (as torch)."""
    q = np.full((3, 4), 0.25)
    q[1, 2] = np.nan
    lo = cs.cross_entropy(X(), q, reduction="none")
    assert np.isnan(lo[1]) and np.all(np.isfinite(lo[[0, 2]]))


def test_real_scalar_forms_are_accepted():
    """temperature as int, NumPy scalar or 0-d array gives the same bits as
    the float (only strings and booleans are rejected, rows above)."""
    x = X()
    ref = cs.softmax(x, temperature=2.0)
    for T in (2, np.int64(2), np.float32(2.0), np.array(2.0)):
        np.testing.assert_array_equal(cs.softmax(x, temperature=T), ref)
