"""cross_entropy (+ fused gradient) and nll_loss.

Reference: the textbook float64 formulas below (log-softmax via max shift;
the loss as -sum_c w_c q'_c log p_c with q' the smoothed one-hot or
probability target; the gradient as (p * sum_c w_c q'_c - w q') * s / T).
They are checked against torch (when installed) and against finite
differences, so the reference itself is not taken on trust.

Bounds: the accuracy contract per element (assert_close -> H.assert_within):
loss and every gradient entry within 4 ULP of the accurate reference
(H.ref_ce) plus kappa x the magnitudes of the terms that cancel.
"""
import itertools
import math

import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax
import _helpers as H
from _helpers import fd_grad


# ---------------------------------------------------------------------------
# float64 reference

def textbook_ce(x, t, *, axis=-1, weight=None, ignore_index=-100, reduction="mean",
           label_smoothing=0.0, temperature=1.0):
    """(loss, grad) in float64."""
    x = np.asarray(x, dtype=np.float64)
    ax = axis % x.ndim
    z = np.moveaxis(x, ax, -1) / temperature
    C = z.shape[-1]
    m = z.max(-1, keepdims=True)
    lp = (z - m) - np.log(np.exp(z - m).sum(-1, keepdims=True))
    p = np.exp(lp)
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    eps = label_smoothing
    t = np.asarray(t)
    if t.shape == x.shape:                      # probabilities
        q = np.moveaxis(t.astype(np.float64), ax, -1) * (1 - eps) + eps / C
        keep = np.ones(z.shape[:-1], dtype=bool)
        denom = keep.size
    else:
        keep = t != ignore_index
        tc = np.where(keep, t, 0)
        q = (1 - eps) * (np.arange(C) == tc[..., None]) + eps / C
        denom = w[tc][keep].sum()
    wq = w * q
    li = np.where(keep, -(wq * lp).sum(-1), 0.0)
    dz = np.where(keep[..., None], p * wq.sum(-1, keepdims=True) - wq, 0.0)
    if reduction == "none":
        loss, s = li, 1.0
    elif reduction == "sum":
        loss, s = li.sum(), 1.0
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            loss, s = li.sum() / denom, 1.0 / denom
    grad = np.moveaxis(dz * (s / temperature), -1, ax)
    return loss, grad


def textbook_nll(lp, t, *, axis=-1, weight=None, ignore_index=-100, reduction="mean"):
    lp = np.moveaxis(np.asarray(lp, dtype=np.float64), axis, -1)
    C = lp.shape[-1]
    w = np.ones(C) if weight is None else np.asarray(weight, dtype=np.float64)
    keep = t != ignore_index
    tc = np.where(keep, t, 0)
    li = np.where(keep, -w[tc] * np.take_along_axis(lp, tc[..., None], -1)[..., 0], 0.0)
    if reduction == "none":
        return li
    if reduction == "sum":
        return li.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return li.sum() / w[tc][keep].sum()


def ref_ce(x, t, **kw):
    """The accurate reference (H.ref_ce: long double for float64 data, the
    argmax's 1 - p kept accurate) with its condition terms; textbook_ce is
    checked against it below."""
    return H.ref_ce(x, t, **kw)


def ref_nll(lp, t, **kw):
    return H.ref_nll(lp, t, **kw)


def test_textbook_agrees_with_reference(rng):
    """The float64 textbook formulas (checked against torch and finite
    differences) agree with the accurate reference on benign inputs."""
    for kind in KINDS:
        x, t = make_case(rng, (9, 6), -1, kind, 6)
        kw = dict(weight=rng.random(6) + 0.2, label_smoothing=0.1, temperature=0.7)
        a, b = textbook_ce(x, t, **kw), ref_ce(x, t, **kw)
        np.testing.assert_allclose(a[0], np.float64(b[0]), rtol=1e-13)
        np.testing.assert_allclose(a[1], np.asarray(b[1], np.float64), rtol=1e-12, atol=1e-15)


def tol(dtype):
    return 1e-13 if np.dtype(dtype) == np.float64 else 2e-6


def assert_close(got, ref, dtype, what=""):
    """The accuracy contract per element (tests/_helpers.py CONTRACT): the
    loss / gradient within 4 ULP of the accurate reference (H.ref_ce,
    H.ref_nll) plus kappa x the magnitudes of the terms that cancel."""
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype), (what, got.dtype)
    if not isinstance(ref, H.Ref):
        raise TypeError("assert_close needs an H.ref_ce / H.ref_nll reference")
    op = "cross_entropy_grad" if "grad" in what or got.ndim > 1 else "cross_entropy"
    H.assert_within(got, ref, op, what=what)


def make_case(rng, shape, axis, kind, C, ignore_frac=0.25, ignore_index=-100, dtype=np.float64):
    x = (rng.normal(size=shape) * 3).astype(dtype)
    tshape = shape[:axis % len(shape)] + shape[axis % len(shape) + 1:]
    if kind == "prob":
        q = rng.random(shape) ** 3
        q /= q.sum(axis=axis, keepdims=True)
        return x, q.astype(dtype)
    t = rng.integers(0, C, size=tshape)
    if ignore_frac:
        t[rng.random(tshape) < ignore_frac] = ignore_index
    return x, t


# ---------------------------------------------------------------------------
# every option combination against the reference

KINDS = ["int", "prob"]
COMBOS = [c for c in itertools.product(
    KINDS, [False, True], [-100, 2], [0.0, 0.2], ["none", "mean", "sum"], [1.0, 0.5, 3.0])
    if not (c[0] == "prob" and c[2] >= 0)]   # torch forbids ignore_index >= 0 there


@pytest.mark.parametrize("kind,use_w,ignore,eps,reduction,T", COMBOS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_all_options_vs_reference(rng, kind, use_w, ignore, eps, reduction, T, dtype):
    C = 6
    x, t = make_case(rng, (9, C), -1, kind, C, ignore_index=ignore, dtype=dtype)
    w = rng.random(C) + 0.2 if use_w else None
    kw = dict(weight=w, ignore_index=ignore, reduction=reduction,
              label_smoothing=eps, temperature=T)
    rl, rg = ref_ce(x, t, **kw)
    loss = csoftmax.cross_entropy(x, t, **kw)
    l2, g = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
    assert_close(loss, rl, dtype, "loss")
    assert_close(l2, rl, dtype, "loss (return_grad)")
    assert_close(g, rg, dtype, "grad")
    assert g.dtype == dtype and g.shape == x.shape
    if reduction == "none":
        assert loss.dtype == dtype and loss.shape == t.shape[: t.ndim if kind == "int" else 1]
    else:
        assert np.ndim(loss) == 0 and np.asarray(loss).dtype == dtype


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_any_class_axis(rng, kind, axis, dtype):
    shape = (3, 5, 4)
    C = shape[axis]
    x, t = make_case(rng, shape, axis, kind, C, dtype=dtype)
    w = rng.random(C) + 0.5
    for red in ["none", "mean"]:
        kw = dict(axis=axis, weight=w, reduction=red, label_smoothing=0.1, temperature=2.0)
        rl, rg = ref_ce(x, t, **kw)
        loss, g = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
        assert_close(loss, rl, dtype, f"loss axis={axis}")
        assert_close(g, rg, dtype, f"grad axis={axis}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["rows", "cols"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_isa_and_threads(rng, isa, threads, kind, layout, dtype):
    # large enough (> 32768 elements) for the threaded path, several blocks
    if layout == "rows":
        shape, axis = (300, 130), -1
    else:
        shape, axis = (4, 37, 300), 1
    C = shape[axis]
    x, t = make_case(rng, shape, axis, kind, C, ignore_frac=0.1, dtype=dtype)
    w = rng.random(C) + 0.5
    for eps, red in [(0.0, "mean"), (0.15, "none")]:
        kw = dict(axis=axis, weight=w, reduction=red, label_smoothing=eps, temperature=0.7)
        rl, rg = ref_ce(x, t, **kw)
        loss, g = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
        assert_close(loss, rl, dtype, "loss")
        assert_close(g, rg, dtype, "grad")


@pytest.mark.parametrize("kind", KINDS)
def test_zero_and_negative_weights(rng, kind):
    # per-sample gradient factors of mixed sign and zero inside one block
    C = 5
    x, t = make_case(rng, (40, C), -1, kind, C, ignore_frac=0.1)
    w = np.array([1.0, 0.0, -0.5, 2.0, 0.3])
    for eps, red in [(0.0, "sum"), (0.2, "none"), (0.1, "mean")]:
        kw = dict(weight=w, label_smoothing=eps, reduction=red)
        rl, rg = ref_ce(x, t, **kw)
        loss, g = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
        assert_close(loss, rl, np.float64)
        assert_close(g, rg, np.float64)


def test_float16_and_int_logits(rng):
    x = rng.normal(size=(5, 4))
    t = rng.integers(0, 4, 5)
    l16, g16 = csoftmax.cross_entropy(x.astype(np.float16), t, return_grad=True)
    assert np.asarray(l16).dtype == np.float16 and g16.dtype == np.float16
    rl, rg = ref_ce(x.astype(np.float16), t)
    H.assert_within(np.asarray(l16), rl, "cross_entropy", what="float16 loss")
    H.assert_within(g16, rg, "cross_entropy_grad", what="float16 grad")
    xi = rng.integers(-3, 3, (5, 4))
    li = csoftmax.cross_entropy(xi, t)
    assert np.asarray(li).dtype == np.float64
    assert_close(li, ref_ce(xi, t)[0], np.float64)


# ---------------------------------------------------------------------------
# torch (optional)

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_torch(rng, kind, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    C = 5
    shape = (6, C, 3)             # torch's class axis is 1
    for use_w, ignore, eps, red, T in itertools.product(
            [False, True], [-100, 1], [0.0, 0.3], ["none", "mean", "sum"], [1.0, 2.0]):
        if kind == "prob" and ignore >= 0:
            continue
        x, t = make_case(rng, shape, 1, kind, C, ignore_index=ignore, dtype=dtype)
        w = (rng.random(C) + 0.2).astype(dtype) if use_w else None
        xt = torch.tensor(x, requires_grad=True)
        lt = F.cross_entropy(xt / T, torch.tensor(t), weight=None if w is None else torch.tensor(w),
                             ignore_index=ignore, reduction=red, label_smoothing=eps)
        lt.sum().backward()
        loss, g = csoftmax.cross_entropy(x, t, axis=1, weight=w, ignore_index=ignore,
                                         reduction=red, label_smoothing=eps,
                                         temperature=T, return_grad=True)
        what = f"w={use_w} ignore={ignore} eps={eps} {red} T={T}"
        t_tol = 1e-12 if dtype == np.float64 else 3e-5   # torch float32 sums in float32
        np.testing.assert_allclose(np.asarray(loss, np.float64), lt.detach().double().numpy(),
                                   rtol=t_tol, atol=t_tol, err_msg=what)
        np.testing.assert_allclose(g.astype(np.float64), xt.grad.double().numpy(),
                                   rtol=t_tol, atol=t_tol, err_msg=what)


def test_all_ignored_matches_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.arange(8.0).reshape(2, 4)
    t = np.array([-100, -100])
    for eps in (0.0, 0.2):
        xt = torch.tensor(x, requires_grad=True)
        lt = F.cross_entropy(xt, torch.tensor(t), label_smoothing=eps)
        lt.backward()
        loss, g = csoftmax.cross_entropy(x, t, label_smoothing=eps, return_grad=True)
        assert math.isnan(float(loss)) and math.isnan(float(lt.detach()))
        np.testing.assert_array_equal(g, xt.grad.numpy())
        assert not g.any()
    assert csoftmax.cross_entropy(x, t, reduction="sum") == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_zero_total_weight_mean_is_nan(dtype, eps):
    """Regression (long fuzz profile): every kept sample has weight 0, so the
    'mean' divides by 0.  With label smoothing the sum is positive and the
    loss was +inf; torch gives NaN (0/0 of the NLL part), and so do we --
    loss and gradient alike."""
    x = np.zeros((2, 4), dtype)
    t = np.array([1, 1])
    w = np.array([1.0, 0.0, 0.0, 0.0])
    loss, g = csoftmax.cross_entropy(x, t, weight=w, label_smoothing=eps, return_grad=True)
    assert np.asarray(loss).dtype == dtype and np.isnan(loss)
    assert np.isnan(csoftmax.cross_entropy(x, t, weight=w, label_smoothing=eps))
    assert np.all(np.isnan(g))
    # an ignored sample keeps its exact zero gradient
    loss, g = csoftmax.cross_entropy(x, np.array([1, -100]), weight=w, label_smoothing=eps,
                                     return_grad=True)
    assert np.isnan(loss) and np.all(np.isnan(g[0])) and not g[1].any()
    assert csoftmax.cross_entropy(x, t, weight=w, label_smoothing=eps, reduction="sum") \
        == pytest.approx(2 * eps / 4 * np.log(4))
    torch = pytest.importorskip("torch")
    lt = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t),
                                           weight=torch.tensor(w, dtype=torch.tensor(x).dtype),
                                           label_smoothing=eps)
    assert math.isnan(float(lt))


def test_grad_far_apart_class_weights():
    """Regression: rows whose gradient coefficients (here the class weights
    1 and 1e-300) are far apart share a block; the ratio was folded into the
    exp argument as log(1e-300) = -691, costing ~700 ulps (3e-14 relative)
    in float64.  Now only the ratio's mantissa is folded in and its power of
    two applied exactly."""
    x = np.zeros((2, 3))
    w = np.array([1.0, 1e-300, 1.0])
    _, g = csoftmax.cross_entropy(x, np.array([0, 1]), weight=w, reduction="sum",
                                  return_grad=True)
    want = np.array([[-2 / 3, 1 / 3, 1 / 3], [1e-300 / 3, -2e-300 / 3, 1e-300 / 3]])
    np.testing.assert_allclose(g, want, rtol=4 * np.finfo(np.float64).eps, atol=0)
    # a subnormal weight: the ratio's power of two is below 2^-1022
    w = np.array([4.0, 5e-320, 1.0])
    _, g = csoftmax.cross_entropy(x, np.array([0, 1]), weight=w, reduction="sum",
                                  return_grad=True)
    np.testing.assert_allclose(g[1], np.array([1, -2, 1]) * 5e-320 / 3, rtol=1e-3, atol=0)
    assert np.all(np.isfinite(g))


def test_nll_loss_matches_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    lp = csoftmax.log_softmax(rng.normal(size=(7, 4, 3)), axis=1)
    t = rng.integers(0, 4, (7, 3))
    t[0, 0] = -100
    w = rng.random(4) + 0.1
    for red in ["none", "mean", "sum"]:
        for ww in (None, w):
            got = csoftmax.nll_loss(lp, t, axis=1, weight=ww, reduction=red)
            exp = F.nll_loss(torch.tensor(lp), torch.tensor(t), reduction=red,
                             weight=None if ww is None else torch.tensor(ww))
            np.testing.assert_allclose(got, exp.numpy(), rtol=1e-13, atol=1e-15)


# ---------------------------------------------------------------------------
# finite differences (float64) for every return_grad path

@pytest.mark.parametrize("kind,use_w,eps,reduction,axis", list(itertools.product(
    KINDS, [False, True], [0.0, 0.25], ["none", "mean", "sum"], [-1, 0])))
def test_grad_finite_differences(rng, kind, use_w, eps, reduction, axis):
    shape = (5, 4)
    C = shape[axis]
    x, t = make_case(rng, shape, axis, kind, C, ignore_frac=0.2)
    if kind == "int":
        t.flat[0] = -100                       # at least one ignored sample
        t.flat[1] = 1
    w = rng.random(C) + 0.3 if use_w else None
    kw = dict(axis=axis, weight=w, reduction=reduction, label_smoothing=eps, temperature=1.7)
    _, g = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
    fd = fd_grad(lambda v: float(np.sum(csoftmax.cross_entropy(v, t, **kw))), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------
# the seeds' worked example

@pytest.mark.parametrize("T", [1.0, 5.0, 10.0, 0.5])
def test_worked_example(T):
    x = [38.0, 20.0, 40.0, 39.0]
    # by hand: p_i = exp((x_i - 40)/T) / sum_j exp((x_j - 40)/T)
    e = [math.exp((v - 40.0) / T) for v in x]
    s = math.fsum(e)
    p = [v / s for v in e]
    # (the hand formula itself carries a few ULP: exp, fsum, division)
    np.testing.assert_allclose(csoftmax.softmax(np.array(x), temperature=T), p, rtol=4e-15)
    xa = np.array([x])
    for y in range(4):
        ce = -((x[y] - 40.0) / T - math.log(s))
        loss, g = csoftmax.cross_entropy(xa, np.array([y]), temperature=T, return_grad=True)
        assert abs(float(loss) - ce) <= 1e-15 * max(1.0, ce)
        exp_g = [(p[j] - (j == y)) / T for j in range(4)]
        np.testing.assert_allclose(g[0], exp_g, rtol=1e-14, atol=1e-17)


# ---------------------------------------------------------------------------
# huge logits (torch issue 11752): the loss must not collapse to 0

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits(isa, dtype):
    x = np.array([[1e8, 1e8 - 8, -1e8], [1e8, -1e8, 0.0]], dtype=dtype)
    d = float(np.float64(x[0, 0]) - np.float64(x[0, 1]))      # exact: 8
    # row 0, target 1: LSE - x1 = d + log1p(e^-d + ...); row 1, target 1: 2e8
    expect = [d + math.log1p(math.exp(-d)), 2e8]
    loss, g = csoftmax.cross_entropy(x, np.array([1, 1]), reduction="none", return_grad=True)
    assert loss[0] > 0 and loss[1] > 0
    rl, rg = ref_ce(x, np.array([1, 1]), reduction="none")
    H.assert_within(loss, rl, "cross_entropy", what="huge logits loss")
    H.assert_within(g, rg, "cross_entropy_grad", what="huge logits grad")
    assert abs(float(rl[0]) - expect[0]) <= 1e-15 and float(rl[1]) == expect[1]
    # correct class far ahead: loss 0 (not NaN), gradient 0
    l0 = csoftmax.cross_entropy(x[1:], np.array([0]))
    assert float(l0) == 0.0


# ---------------------------------------------------------------------------
# grad_out, in place, layouts

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_grad_out_and_in_place(rng, kind, axis, dtype):
    shape = (70, 33)
    C = shape[axis]
    x, t = make_case(rng, shape, axis, kind, C, dtype=dtype)
    kw = dict(axis=axis, label_smoothing=0.1, weight=rng.random(C) + 0.5)
    rl, rg = ref_ce(x, t, **kw)
    out = np.full_like(x, np.nan)
    loss, g = csoftmax.cross_entropy(x, t, return_grad=True, grad_out=out, **kw)
    assert g is out
    assert_close(g, rg, dtype)
    xi = x.copy()
    loss, g = csoftmax.cross_entropy(xi, t, return_grad=True, grad_out=xi, **kw)
    assert g is xi
    assert_close(loss, rl, dtype)
    assert_close(xi, rg, dtype)
    # non-contiguous logits and grad_out
    big = np.zeros((shape[0] * 2, shape[1] * 3), dtype=dtype)
    xs = big[::2, ::3]
    xs[...] = x
    loss, g = csoftmax.cross_entropy(xs, t, return_grad=True, grad_out=xs, **kw)
    assert_close(xs, rg, dtype)
    assert not big[1::2].any()
    # grad_out of another dtype is an error; float16 logits write a float16 grad_out
    x16 = x.astype(np.float16)
    o16 = np.empty_like(x16)
    t16 = t.astype(np.float16) if kind == "prob" else t
    csoftmax.cross_entropy(x16, t16, return_grad=True, grad_out=o16, **kw)
    # the float16 bound against the reference of the same (float16) logits
    # and targets (the 3.77 ULP once measured here compared with float32
    # targets: not the same input)
    H.assert_within(o16, ref_ce(x16, t16, **kw)[1], "cross_entropy_grad",
                    what="float16 grad_out")


def test_scalar_sample():
    # 1-D logits: one sample, 0-d target
    loss, g = csoftmax.cross_entropy(np.array([1.0, 2.0, 3.0]), 2, reduction="none",
                                     return_grad=True)
    rl, rg = ref_ce(np.array([1.0, 2.0, 3.0]), np.array(2), reduction="none")
    assert np.ndim(loss) == 0
    assert_close(loss, rl, np.float64)
    assert_close(g, rg, np.float64)


def test_empty_batch():
    x = np.empty((0, 4))
    t = np.empty(0, dtype=np.int64)
    assert math.isnan(float(csoftmax.cross_entropy(x, t)))
    assert float(csoftmax.cross_entropy(x, t, reduction="sum")) == 0.0
    loss, g = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
    assert loss.shape == (0,) and g.shape == (0, 4)


def test_nonfinite_rows():
    x = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 1.0], [-np.inf, -np.inf, -np.inf]])
    loss, g = csoftmax.cross_entropy(x, np.array([0, 0, 0]), reduction="none",
                                     return_grad=True)
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isnan(loss[2])
    assert g[0, 1] == 0.0 and np.isnan(g[1]).all()
    # -inf logit of the target class: infinite loss
    assert csoftmax.cross_entropy(x[:1], np.array([1])) == np.inf


# ---------------------------------------------------------------------------
# nll_loss

@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nll_loss(rng, axis, dtype):
    lp = csoftmax.log_softmax(rng.normal(size=(8, 5)), axis=axis).astype(dtype)
    C = lp.shape[axis]
    t = rng.integers(0, C, lp.shape[1 - (axis % 2)] if axis == 0 else lp.shape[0])
    t[1] = -100
    w = rng.random(C) + 0.1
    for red in ["none", "mean", "sum"]:
        for ww in (None, w):
            got = csoftmax.nll_loss(lp, t, axis=axis, weight=ww, reduction=red)
            assert_close(got, ref_nll(lp, t, axis=axis, weight=ww, reduction=red), dtype)
            assert np.asarray(got).dtype == dtype
    # nll_loss(log_softmax(x)) == cross_entropy(x)
    x = rng.normal(size=(6, 4))
    t = rng.integers(0, 4, 6)
    lp = csoftmax.log_softmax(x)
    assert_close(csoftmax.nll_loss(lp, t), ref_nll(lp, t), np.float64)
    assert_close(csoftmax.cross_entropy(x, t), ref_ce(x, t)[0], np.float64)


# ---------------------------------------------------------------------------
# bad input: clear exception, nothing written

def _sentinel(shape, dtype=np.float64):
    return np.full(shape, 12345.0, dtype=dtype)


CE_BAD = [
    # (description, kwargs, target, exception, message fragment)
    ("label >= C", {}, np.array([[0, 1, 2], [3, 4, 1]]), ValueError, "target[1, 1] = 4"),
    ("negative label", {}, np.array([[0, -1, 2], [3, 0, 1]]), ValueError, "target[0, 1] = -1"),
    ("label == ignore_index in range ok, other bad", {"ignore_index": 3},
     np.array([[3, 3, 7], [0, 0, 0]]), ValueError, "target[0, 2] = 7"),
    ("target shape", {}, np.zeros((2, 4), dtype=int), ValueError, "target has shape"),
    ("float class target", {}, np.zeros((2, 3)), TypeError, "integer dtype"),
    ("int prob target", {}, np.zeros((2, 3, 4), dtype=int), TypeError, "must be floating"),
    ("prob + ignore_index>=0", {"ignore_index": 0}, np.full((2, 3, 4), 0.25), ValueError,
     "ignore_index"),
    ("weight shape", {"weight": np.ones(3)}, np.zeros((2, 3), dtype=int), ValueError, "weight"),
    ("complex weight", {"weight": np.ones(4) * 1j}, np.zeros((2, 3), dtype=int), TypeError,
     "complex"),
    ("reduction", {"reduction": "avg"}, np.zeros((2, 3), dtype=int), ValueError, "reduction"),
    ("label_smoothing", {"label_smoothing": 1.5}, np.zeros((2, 3), dtype=int), ValueError,
     "label_smoothing"),
    ("temperature", {"temperature": 0.0}, np.zeros((2, 3), dtype=int), ValueError, "temperature"),
    ("temperature nan", {"temperature": np.nan}, np.zeros((2, 3), dtype=int), ValueError,
     "temperature"),
    ("ignore_index type", {"ignore_index": 1.5}, np.zeros((2, 3), dtype=int), TypeError,
     "ignore_index"),
    ("axis", {"axis": 3}, np.zeros((2, 3), dtype=int), AxisError, ""),
    ("axis tuple", {"axis": (1, 2)}, np.zeros((2, 3), dtype=int), TypeError, "axis"),
]


@pytest.mark.parametrize("desc,kw,t,exc,msg", CE_BAD, ids=[c[0] for c in CE_BAD])
def test_cross_entropy_bad_input(rng, desc, kw, t, exc, msg):
    x = rng.normal(size=(2, 3, 4))
    x0 = x.copy()
    out = _sentinel(x.shape)
    with pytest.raises(exc) as ei:
        csoftmax.cross_entropy(x, t, return_grad=True, grad_out=out, **kw)
    assert msg in str(ei.value)
    assert (out == 12345.0).all()
    np.testing.assert_array_equal(x, x0)
    # in place: the logits are left alone too
    with pytest.raises(exc):
        csoftmax.cross_entropy(x, t, return_grad=True, grad_out=x, **kw)
    np.testing.assert_array_equal(x, x0)


def test_cross_entropy_bad_grad_out(rng):
    x = rng.normal(size=(3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="return_grad"):
        csoftmax.cross_entropy(x, t, grad_out=np.empty_like(x))
    with pytest.raises(ValueError, match="shape"):
        csoftmax.cross_entropy(x, t, return_grad=True, grad_out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.cross_entropy(x, t, return_grad=True, grad_out=np.empty((3, 4), np.float32))
    ro = _sentinel((3, 4))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        csoftmax.cross_entropy(x, t, return_grad=True, grad_out=ro)
    with pytest.raises(TypeError, match="complex"):
        csoftmax.cross_entropy(x * 1j, t)
    with pytest.raises(ValueError, match="at least one dimension"):
        csoftmax.cross_entropy(np.float64(1.0), np.array(0))
    with pytest.raises(ValueError, match="no classes"):
        csoftmax.cross_entropy(np.empty((2, 0)), np.zeros(2, dtype=int))


def test_nll_loss_bad_input(rng):
    lp = rng.normal(size=(3, 4))
    with pytest.raises(ValueError, match=r"target\[2\] = 4"):
        csoftmax.nll_loss(lp, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"target\[0\] = -2"):
        csoftmax.nll_loss(lp, np.array([-2, 1, 4]))
    with pytest.raises(ValueError, match="target has shape"):
        csoftmax.nll_loss(lp, np.array([0, 1]))
    with pytest.raises(TypeError, match="integer"):
        csoftmax.nll_loss(lp, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="weight"):
        csoftmax.nll_loss(lp, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        csoftmax.nll_loss(lp, np.array([0, 1, 2]), reduction="batchmean")
    with pytest.raises(AxisError):
        csoftmax.nll_loss(lp, np.array([0, 1, 2]), axis=2)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_mean_over_zero_total_weight(sign):
    """'mean' divides by the kept samples' total weight as torch does: a
    nonzero sum over weights summing to 0 is +-inf (weights of both signs),
    0 / 0 is NaN; with label smoothing torch's two terms each over 0 (here
    the smoothing term's sum is exactly 0: NaN; the signs of the terms,
    tests/test_hostile_inputs.py test_smoothed_mean_over_zero_total_weight)."""
    x = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    t = np.array([0, 1])
    w = sign * np.array([1.0, -1.0, 0.0])
    lp = x - np.log(np.sum(np.exp(x), axis=1, keepdims=True))
    total = -(w[0] * lp[0, 0] + w[1] * lp[1, 1])
    assert total != 0
    for f in (csoftmax.cross_entropy, lambda a, b, **k: csoftmax.nll_loss(lp, b, **k)):
        got = f(x, t, weight=w)
        assert got == np.copysign(np.inf, total), got
        assert np.isfinite(f(x, t, weight=w, reduction="sum"))
    assert np.isnan(csoftmax.cross_entropy(x, t, weight=np.array([0.0, 0.0, 1.0])))
    # b_i = -sum_c w_c log p_ic = -(x_i0 - x_i1) = 0 on both rows, A != 0
    xs = np.array([[0.5, 0.5, 3.0], [1.0, 1.0, -2.0]])
    assert np.isnan(csoftmax.cross_entropy(xs, t, weight=w, label_smoothing=0.1))
    assert csoftmax.cross_entropy(xs, t, weight=w) == np.copysign(
        np.inf, -(w[0] * (xs[0, 0] - np.log(np.exp(xs[0]).sum())) +
                  w[1] * (xs[1, 1] - np.log(np.exp(xs[1]).sum()))))
    assert np.isnan(csoftmax.cross_entropy(x, np.array([-100, -100])))


def test_mean_division_is_numpys():
    """'mean' divides by the total weight with _losses._div (no errstate
    context manager a call): the bits of numpy's float64 division, the
    signs of zeros, infinities and NaN included."""
    from csoftmax._losses import _div
    vals = [1.0, -1.0, 0.0, -0.0, np.nan, np.inf, -np.inf, 1e308, 5e-324, -3.5]
    with np.errstate(all="ignore"):
        for a in vals:
            for b in vals:
                want = np.float64(a) / np.float64(b)
                got = _div(a, b)
                assert type(got) is float
                if np.isnan(want):
                    assert np.isnan(got), (a, b, got)
                else:
                    assert got == want and np.signbit(got) == np.signbit(want), (a, b, got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_result_does_not_depend_on_its_place(rng, isa, dtype):
    """A row's loss, log-probabilities and LSE are the same bits alone, at
    any place in a batch of 1-9 rows and beside rows with a NaN, an inf or
    nothing finite: the finalize kernels take 4 / 8 rows a step, and a step
    with fewer rows or a non-finite neighbour once sent its finite rows
    through the scalar formula (log1p), 1 ULP away in float64."""
    C = 48
    row = rng.normal(size=C) * 6
    others = rng.normal(size=(9, C)) * 6
    others[2, 5] = np.nan
    others[4, :] = -np.inf
    others[6, 7] = np.inf
    t_row = 17
    lone_loss = csoftmax.cross_entropy(row[None].astype(dtype), np.array([t_row]),
                                       reduction="none")[0]
    lone_lsm = csoftmax.log_softmax(row[None].astype(dtype))[0]
    lone_lse = csoftmax.logsumexp(row[None].astype(dtype), axis=-1)[0]
    for size in range(1, 10):
        for at in range(size):
            x = others[:size].copy()
            x[at] = row
            x = x.astype(dtype)
            t = np.full(size, t_row)
            with np.errstate(invalid="ignore"):
                loss = csoftmax.cross_entropy(x, t, reduction="none")
                lsm = csoftmax.log_softmax(x)
                lse = csoftmax.logsumexp(x, axis=-1)
            assert loss[at] == lone_loss, (size, at)
            np.testing.assert_array_equal(lsm[at], lone_lsm, err_msg=f"{size} {at}")
            assert lse[at] == lone_lse, (size, at)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_loss_is_positive_zero_with_and_without_gradient(isa, dtype):
    """One class: log p = 0 and the loss is +0, the same bits with and
    without the gradient, in every reduction (the AVX2 kernels gave -0 with
    the gradient and +0 without; the scalar ones -0 both ways)."""
    x = np.array([[0.3], [-2.0], [7.0]], dtype)
    t = np.zeros(3, np.int64)
    for red in ("none", "sum", "mean"):
        a = np.asarray(csoftmax.cross_entropy(x, t, reduction=red))
        b = np.asarray(csoftmax.cross_entropy(x, t, reduction=red, return_grad=True)[0])
        assert not np.signbit(a).any() and not np.signbit(b).any(), (red, a, b)
        np.testing.assert_array_equal(a, b)
    lp = np.zeros((3, 2), dtype)
    got = csoftmax.nll_loss(lp, np.array([0, 1, 1]), reduction="none")
    assert (got == 0).all() and not np.signbit(got).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_minus_inf_logit_with_target_mass_is_an_infinite_loss(dtype, layout, isa):
    """A -inf logit on a class with target mass (label smoothing, or a
    probability) makes the loss +inf, as in torch; the float64 class sums,
    compensated with TwoSum, turned the infinite term's inf - inf error
    into a NaN loss.  Rows without such a class keep finite losses."""
    x = np.array([[0.0, -np.inf, 1.0], [0.5, 0.25, -1.0]], dtype)
    q = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]], dtype)
    t = np.array([0, 2])
    xa, ax = (x, -1) if layout == "rows" else (x.T.copy(), 0)
    qa = q if layout == "rows" else q.T.copy()
    for target, kw in ((t, {"label_smoothing": 0.1}), (qa, {}),
                       (t, {"label_smoothing": 0.1, "weight": np.array([1.0, 2.0, 0.5])})):
        lo = csoftmax.cross_entropy(xa, target, axis=ax, reduction="none", **kw)
        assert lo[0] == np.inf and np.isfinite(lo[1]), (kw, lo)
        lo2, g = csoftmax.cross_entropy(xa, target, axis=ax, reduction="none",
                                        return_grad=True, **kw)
        np.testing.assert_array_equal(lo2, lo)
        assert csoftmax.cross_entropy(xa, target, axis=ax, reduction="sum", **kw) == np.inf
