"""distillation_loss and kl_div: float64 NumPy reference, torch, finite differences."""
import warnings

import numpy as np
import pytest
from numpy.exceptions import AxisError
from scipy.special import xlogy

import csoftmax
from _helpers import fd_grad


# ---------------------------------------------------------------------------
# float64 reference

def _log_softmax(x, axis):
    x = np.asarray(x, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    return (x - m) - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def ref_distill(s, t, T, axis=-1, reduction="batchmean"):
    lps = _log_softmax(np.asarray(s, np.float64) / T, axis)
    lpt = _log_softmax(np.asarray(t, np.float64) / T, axis)
    pt = np.exp(lpt)
    terms = np.where(pt == 0, 0.0, pt * (lpt - lps))
    per_row = T * T * terms.sum(axis=axis)
    rows = per_row.size
    count = {"batchmean": rows, "mean": np.asarray(s).size}.get(reduction, 1)
    grad = T * (np.exp(lps) - pt) / count
    if reduction == "none":
        return per_row, grad
    return per_row.sum() / count, grad


def ref_kl(a, b, log_target, reduction):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        terms = np.exp(b) * (b - a) if log_target else xlogy(b, b) - b * a
    if reduction == "none":
        return terms
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.mean()
    return terms.sum() / a.shape[0]


TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-6, atol=1e-7)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("T", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_distillation_matches_reference(isa, dtype, reduction, T, axis):
    rng = np.random.default_rng(1)
    s = (rng.normal(size=(5, 9, 7)) * 3).astype(dtype)
    t = (rng.normal(size=(5, 9, 7)) * 3).astype(dtype)
    loss, grad = csoftmax.distillation_loss(s, t, temperature=T, axis=axis,
                                            reduction=reduction, return_grad=True)
    rl, rg = ref_distill(s, t, T, axis, reduction)
    assert grad.dtype == dtype and grad.shape == s.shape
    np.testing.assert_allclose(loss, rl, **TOL[dtype])
    # gradient entries are differences of probabilities: absolute tolerance
    np.testing.assert_allclose(grad, rg, rtol=TOL[dtype]["rtol"],
                               atol=T * (1e-16 if dtype == np.float64 else 1e-7))
    loss_only = csoftmax.distillation_loss(s, t, temperature=T, axis=axis, reduction=reduction)
    np.testing.assert_array_equal(loss_only, loss)


def test_distillation_threads_and_large(isa, threads):
    rng = np.random.default_rng(2)
    s = rng.normal(size=(300, 257)) * 4
    t = rng.normal(size=(300, 257)) * 4
    loss, grad = csoftmax.distillation_loss(s, t, temperature=3.0, return_grad=True)
    rl, rg = ref_distill(s, t, 3.0)
    np.testing.assert_allclose(loss, rl, rtol=1e-12)
    np.testing.assert_allclose(grad, rg, rtol=1e-11, atol=1e-18)


def test_distillation_identical_and_extreme():
    x = np.array([[1.0, 2.0, 3.0], [-1e3, 0.0, 1e3]])
    assert csoftmax.distillation_loss(x, x, temperature=2.0) == 0.0
    # teacher mass underflows to exactly 0 on some classes: those terms are 0
    t = np.array([[0.0, -2000.0, 5.0]])
    s = np.array([[1.0, 3.0, 0.0]])
    rl, rg = ref_distill(s, t, 1.0)
    l, g = csoftmax.distillation_loss(s, t, return_grad=True)
    np.testing.assert_allclose(l, rl, rtol=1e-13)
    np.testing.assert_allclose(g, rg, rtol=1e-13, atol=1e-17)
    # student -inf where the teacher has mass: infinite KL
    assert csoftmax.distillation_loss([[-np.inf, 0.0]], [[0.0, 0.0]]) == np.inf


@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum", "none"])
@pytest.mark.parametrize("T", [0.7, 2.0])
def test_distillation_finite_differences(reduction, T):
    rng = np.random.default_rng(3)
    s = rng.normal(size=(3, 5)) * 2
    t = rng.normal(size=(3, 5)) * 2
    _, g = csoftmax.distillation_loss(s, t, temperature=T, reduction=reduction,
                                      return_grad=True)

    def f(x):
        return np.sum(csoftmax.distillation_loss(x, t, temperature=T, reduction=reduction))

    fd = fd_grad(f, s)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [1.0, 3.0])
def test_distillation_vs_torch(dtype, T):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    s = (rng.normal(size=(6, 11)) * 3).astype(dtype)
    t = (rng.normal(size=(6, 11)) * 3).astype(dtype)
    st = torch.tensor(s, requires_grad=True)
    lt = F.kl_div(F.log_softmax(st / T, -1), F.softmax(torch.tensor(t) / T, -1),
                  reduction="batchmean") * T * T
    lt.backward()
    loss, grad = csoftmax.distillation_loss(s, t, temperature=T, return_grad=True)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(loss, lt.item(), rtol=tol)
    np.testing.assert_allclose(grad, st.grad.numpy(), rtol=tol, atol=tol * 0.1)


def test_distillation_float16_and_ints():
    s = np.array([[1, 2, 3]], dtype=np.int64)
    t = np.array([[3, 2, 1]], dtype=np.int64)
    l = csoftmax.distillation_loss(s, t)
    assert isinstance(l, np.float64)
    np.testing.assert_allclose(l, ref_distill(s, t, 1.0)[0], rtol=1e-14)
    l16, g16 = csoftmax.distillation_loss(s.astype(np.float16), t.astype(np.float16),
                                          return_grad=True)
    assert l16.dtype == np.float16 and g16.dtype == np.float16


def test_distillation_bad_input():
    s = np.zeros((2, 3))
    t = np.zeros((2, 3))
    s0, t0 = s.copy(), t.copy()
    with pytest.raises(ValueError, match="shape"):
        csoftmax.distillation_loss(s, np.zeros((2, 4)))
    for T in (0, -1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="temperature"):
            csoftmax.distillation_loss(s, t, temperature=T)
    with pytest.raises(TypeError, match="temperature"):
        csoftmax.distillation_loss(s, t, temperature="hot")
    with pytest.raises(ValueError, match="reduction"):
        csoftmax.distillation_loss(s, t, reduction="avg")
    with pytest.raises(AxisError):
        csoftmax.distillation_loss(s, t, axis=2)
    with pytest.raises(TypeError, match="axis"):
        csoftmax.distillation_loss(s, t, axis=(0, 1))
    with pytest.raises(TypeError, match="complex"):
        csoftmax.distillation_loss(s + 1j, t)
    with pytest.raises(ValueError, match="dimension"):
        csoftmax.distillation_loss(1.0, 2.0)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(t, t0)


# ---------------------------------------------------------------------------
# kl_div

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_reference(threads, dtype, reduction, log_target):
    rng = np.random.default_rng(5)
    logq = _log_softmax(rng.normal(size=(40, 1000)), -1).astype(dtype)
    p = np.exp(_log_softmax(rng.normal(size=(40, 1000)) * 3, -1))
    p[:, ::7] = 0.0                              # xlogy(0, 0) = 0
    with np.errstate(divide="ignore"):
        b = (np.log(p) if log_target else p).astype(dtype)
        res = csoftmax.kl_div(logq, b, log_target=log_target, reduction=reduction)
    ref = ref_kl(logq, b, log_target, reduction)
    if reduction == "none":
        assert res.shape == logq.shape and res.dtype == dtype
        np.testing.assert_allclose(res, ref, rtol=1e-6 if dtype == np.float32 else 1e-14,
                                   atol=1e-30)
    else:
        assert res.dtype == dtype
        np.testing.assert_allclose(res, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_kl_div_broadcast_and_special_values():
    logq = np.log(np.array([0.25, 0.5, 0.25]))
    p = np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    for red in ("mean", "batchmean", "sum", "none"):
        np.testing.assert_allclose(csoftmax.kl_div(logq, p, reduction=red),
                                   ref_kl(logq, np.broadcast_to(p, (2, 3)), False, red)
                                   if red != "batchmean" else
                                   ref_kl(logq, np.broadcast_to(p, (2, 3)), False, "sum") / 3,
                                   rtol=1e-14)
    # target 0 where log q = -inf: 0 * inf is NaN (torch), negative target NaN
    r = csoftmax.kl_div(np.array([-np.inf, 0.0, 0.0]), np.array([0.0, -0.5, 1.0]),
                        reduction="none")
    assert np.isnan(r[0]) and np.isnan(r[1]) and r[2] == 0.0
    assert csoftmax.kl_div(0.0, 1.0) == 0.0
    assert np.isnan(csoftmax.kl_div(np.zeros((0, 3)), np.zeros((0, 3))))
    assert csoftmax.kl_div(np.zeros((0, 3)), np.zeros((0, 3)), reduction="sum") == 0.0


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_vs_torch(reduction, log_target):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    a = np.concatenate([_log_softmax(rng.normal(size=(4, 6)), -1),
                        [[-np.inf, 0.0, -1.0, -2.0, -3.0, -4.0]]])
    p = np.exp(_log_softmax(rng.normal(size=(5, 6)) * 4, -1))
    p[0, 1] = 0.0
    p[4, 0] = 0.0                                  # 0 target at -inf input
    with np.errstate(divide="ignore"):
        b = np.log(p) if log_target else p
    ours = csoftmax.kl_div(a, b, log_target=log_target, reduction=reduction)
    with warnings.catch_warnings():   # torch warns about 'mean'
        warnings.simplefilter("ignore", UserWarning)
        th = torch.nn.functional.kl_div(torch.tensor(a), torch.tensor(b), reduction=reduction,
                                        log_target=log_target).numpy()
    np.testing.assert_allclose(ours, th, rtol=1e-13, atol=1e-300, equal_nan=True)


def test_kl_div_bad_input():
    with pytest.raises(ValueError, match="broadcast"):
        csoftmax.kl_div(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        csoftmax.kl_div(np.zeros(3), np.zeros(3), reduction="elementwise_mean")
    with pytest.raises(TypeError, match="complex"):
        csoftmax.kl_div(np.zeros(3), np.zeros(3) * 1j)
    with pytest.raises(TypeError, match="non-numeric"):
        csoftmax.kl_div(np.array(["a"]), np.zeros(1))


def test_gradient_has_the_students_dtype():
    """The documented dtype: a float32 student distilled from a float64
    teacher gets a float32 gradient (it was the promoted float64)."""
    x = np.random.default_rng(0).random((3, 5))
    for s, t in [(np.float32, np.float64), (np.float64, np.float32), (np.float32, np.float32)]:
        loss, g = csoftmax.distillation_loss(x.astype(s), x[::-1].astype(t), return_grad=True)
        assert g.dtype == s
        assert np.asarray(loss).dtype == np.promote_types(s, t)
