"""margin_logits / margin_cross_entropy, softplus, soft_hinge: float64 NumPy
reference, torch, finite differences, bad input."""
import math

import numpy as np
import pytest
from numpy.exceptions import AxisError
from scipy.special import logsumexp

import csoftmax
from _helpers import fd_grad


# ---------------------------------------------------------------------------
# float64 reference

def ref_f(c, kind, m, easy):
    """(f(c), f'(c)) of the margin on the target cosine."""
    c = float(c)
    if kind == "normface" or (easy and not c > 0):
        return c, 1.0
    if kind == "cosface":
        return c - m, 1.0
    if easy or c >= -math.cos(m):
        st = math.sqrt(1 - c * c)
        return c * math.cos(m) - st * math.sin(m), math.cos(m) + math.sin(m) * c / st
    return c - m * math.sin(m), 1.0


def ref_margin(cos, y, s, m, kind, easy, reduction="mean"):
    cos = np.asarray(cos, np.float64)
    z = s * cos.copy()
    dfs = np.empty(len(y))
    for r, t in enumerate(y):
        f, df = ref_f(cos[r, t], kind, m, easy)
        z[r, t] = s * f
        dfs[r] = df
    lse = logsumexp(z, axis=1)
    losses = lse - z[np.arange(len(y)), y]
    p = np.exp(z - lse[:, None])
    g = s * p
    g[np.arange(len(y)), y] = s * (p[np.arange(len(y)), y] - 1) * dfs
    count = len(y) if reduction == "mean" else 1
    loss = losses if reduction == "none" else losses.sum() / count
    return z, loss, g / count


def rand_cos(rng, shape, lim=0.95):
    return rng.uniform(-lim, lim, size=shape)


KINDS = [("normface", 0.0, False), ("cosface", 0.35, False), ("cosface", 0.35, True),
         ("arcface", 0.5, False), ("arcface", 0.5, True), ("arcface", 0.0, False)]


@pytest.mark.parametrize("kind,m,easy", KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_margin_ce_matches_reference(isa, kind, m, easy, dtype, reduction):
    rng = np.random.default_rng(10)
    cos = rand_cos(rng, (37, 11)).astype(dtype)
    cos[:5, 0] = -0.99                         # arcface fallback branch
    y = rng.integers(0, 11, 37)
    y[:5] = 0
    y[5] = 10
    s = 30.0
    zr, lr, gr = ref_margin(cos, y, s, m, kind, easy, reduction)
    z = csoftmax.margin_logits(cos, y, scale=s, margin=m, kind=kind, easy_margin=easy)
    loss, g = csoftmax.margin_cross_entropy(cos, y, scale=s, margin=m, kind=kind,
                                            easy_margin=easy, reduction=reduction,
                                            return_grad=True)
    tol = 1e-12 if dtype == np.float64 else 3e-6
    assert z.dtype == dtype and g.dtype == dtype
    np.testing.assert_allclose(z, zr, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss, lr, rtol=tol)
    np.testing.assert_allclose(g, gr, rtol=tol, atol=tol * s * 1e-2)
    np.testing.assert_array_equal(
        csoftmax.margin_cross_entropy(cos, y, scale=s, margin=m, kind=kind,
                                      easy_margin=easy, reduction=reduction), loss)


def test_margin_ce_axis_and_threads(isa, threads):
    rng = np.random.default_rng(11)
    cos = rand_cos(rng, (40, 1000))
    y = rng.integers(0, 1000, 40)
    zr, lr, gr = ref_margin(cos, y, 64.0, 0.5, "arcface", False)
    loss, g = csoftmax.margin_cross_entropy(cos, y, scale=64.0, margin=0.5, kind="arcface",
                                            return_grad=True)
    np.testing.assert_allclose(loss, lr, rtol=1e-12)
    np.testing.assert_allclose(g, gr, rtol=1e-11, atol=1e-25)
    # class axis 0: same numbers transposed
    l0, g0 = csoftmax.margin_cross_entropy(cos.T, y, scale=64.0, margin=0.5,
                                           kind="arcface", axis=0, return_grad=True)
    np.testing.assert_allclose(l0, lr, rtol=1e-12)
    np.testing.assert_allclose(g0, gr.T, rtol=1e-11, atol=1e-25)
    z0 = csoftmax.margin_logits(cos.T, y, scale=64.0, margin=0.5, kind="arcface", axis=0)
    np.testing.assert_allclose(z0, zr.T, rtol=1e-14)


def test_margin_ce_small_loss_relative_accuracy(isa):
    # target dominates: loss ~ 1e-37, a naive LSE - z_y would give 0
    cos = np.full((2, 6), -0.5)
    cos[:, 2] = 0.9
    y = np.array([2, 2])
    loss = csoftmax.margin_cross_entropy(cos, y, scale=64.0, margin=0.1, kind="cosface",
                                         reduction="none")
    ref = np.log1p(5 * np.exp(64.0 * (-0.5 - 0.8)))
    np.testing.assert_allclose(loss, ref, rtol=1e-13)
    # huge scale: the rest of the row underflows relative to the target and
    # must be re-summed without it
    cos = np.zeros((1, 4))
    cos[0, 1] = 0.9
    loss = csoftmax.margin_cross_entropy(cos, [1], scale=1000.0, margin=0.85, kind="cosface")
    np.testing.assert_allclose(loss, np.log1p(3 * np.exp(-50.0)), rtol=1e-13)


def test_margin_single_class_and_edges():
    loss, g = csoftmax.margin_cross_entropy([[0.3]], [0], scale=10.0, margin=0.2,
                                            kind="arcface", return_grad=True)
    assert loss == 0.0 and g[0, 0] == 0.0
    # cos = +-1 accepted; arcface derivative at cos = 1 is +inf (documented)
    z = csoftmax.margin_logits([[1.0, -1.0]], [0], scale=2.0, margin=0.5, kind="arcface")
    np.testing.assert_allclose(z, [[2 * math.cos(0.5), -2.0]], rtol=1e-15)
    # empty batch
    assert csoftmax.margin_cross_entropy(np.zeros((0, 3)), np.zeros(0, int),
                                         reduction="sum") == 0.0


@pytest.mark.parametrize("kind,m,easy", KINDS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_margin_ce_finite_differences(kind, m, easy, reduction):
    rng = np.random.default_rng(12)
    cos = rand_cos(rng, (4, 5), 0.9)
    y = np.array([0, 1, 2, 3])
    cos[0, 0] = -0.95                           # arcface fallback (cos <= cos(pi - m))
    cos[1, 1] = 0.4
    kw = dict(scale=8.0, margin=m, kind=kind, easy_margin=easy, reduction=reduction)
    _, g = csoftmax.margin_cross_entropy(cos, y, return_grad=True, **kw)
    fd = fd_grad(lambda c: np.sum(csoftmax.margin_cross_entropy(c, y, **kw)), cos)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind,m,easy", KINDS)
def test_margin_vs_torch(kind, m, easy):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(13)
    cos = rand_cos(rng, (9, 7))
    y = rng.integers(0, 7, 9)
    cos[0, y[0]] = -0.97
    ct = torch.tensor(cos, requires_grad=True)
    yt = torch.tensor(y)
    onehot = F.one_hot(yt, 7).bool()
    # reference implementation (insightface / ArcFace paper code)
    if kind == "arcface":
        sine = torch.sqrt((1.0 - ct ** 2).clamp(0, 1))
        phi = ct * math.cos(m) - sine * math.sin(m)
        if easy:
            phi = torch.where(ct > 0, phi, ct)
        else:
            phi = torch.where(ct >= -math.cos(m), phi, ct - math.sin(math.pi - m) * m)
    elif kind == "cosface":
        phi = torch.where(ct > 0, ct - m, ct) if easy else ct - m
    else:
        phi = ct
    z = 30.0 * torch.where(onehot, phi, ct)
    lt = F.cross_entropy(z, yt)
    lt.backward()
    loss, g = csoftmax.margin_cross_entropy(cos, y, scale=30.0, margin=m, kind=kind,
                                            easy_margin=easy, return_grad=True)
    zz = csoftmax.margin_logits(cos, y, scale=30.0, margin=m, kind=kind, easy_margin=easy)
    np.testing.assert_allclose(zz, z.detach().numpy(), rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(g, ct.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_margin_bad_input():
    cos = np.array([[0.5, 0.1, -0.2], [0.3, 0.2, 0.1]])
    y = np.array([0, 2])
    c0 = cos.copy()
    f = csoftmax.margin_cross_entropy
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        f(np.array([[0.5, 1.0000001, 0.0], [0, 0, 0]]), y, scale=10.0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        csoftmax.margin_logits(np.array([[0.5, -np.inf, 0.0]]), [0])
    with pytest.raises(ValueError, match=r"target\[1\] = 3"):
        f(cos, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target\[0\] = -1"):
        f(cos, np.array([-1, 0]))
    with pytest.raises(TypeError, match="integer"):
        f(cos, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        f(cos, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="kind"):
        f(cos, y, kind="sphereface")
    with pytest.raises(ValueError, match="normface"):
        f(cos, y, kind="normface", margin=0.2)
    with pytest.raises(ValueError, match="margin"):
        f(cos, y, kind="cosface", margin=-0.1)
    with pytest.raises(ValueError, match="arcface"):
        f(cos, y, kind="arcface", margin=4.0)
    with pytest.raises(TypeError, match="margin"):
        f(cos, y, kind="cosface", margin="0.1")
    with pytest.raises(ValueError, match="scale"):
        f(cos, y, scale=0.0)
    with pytest.raises(ValueError, match="reduction"):
        f(cos, y, reduction="batchmean")
    with pytest.raises(AxisError):
        f(cos, y, axis=3)
    with pytest.raises(TypeError, match="complex"):
        csoftmax.margin_logits(cos * 1j, y)
    np.testing.assert_array_equal(cos, c0)


# ---------------------------------------------------------------------------
# softplus

def ref_softplus(x, beta, th):
    x = np.asarray(x, np.float64)
    with np.errstate(over="ignore"):
        return np.where(beta * x > th, x, np.logaddexp(0.0, beta * x) / beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta,th", [(1.0, 20.0), (2.5, 20.0), (0.5, 5.0), (1.0, 1e6)])
def test_softplus_reference(threads, dtype, beta, th):
    rng = np.random.default_rng(14)
    x = np.concatenate([rng.normal(size=49992) * 30,
                        [-1e4, -800.0, -40.0, 0.0, 40.0, 800.0, 1e4, np.inf, -np.inf]])
    x = x.astype(dtype).reshape(-1, 7)
    y = csoftmax.softplus(x, beta=beta, threshold=th)
    assert y.dtype == dtype and y.shape == x.shape
    tol = 1e-14 if dtype == np.float64 else 6e-8
    np.testing.assert_allclose(y, ref_softplus(x, beta, th).astype(dtype), rtol=tol, atol=0)
    assert np.isnan(csoftmax.softplus(np.nan))
    assert csoftmax.softplus(-1000.0) == np.exp(-1000.0)        # no flush to 0 early
    assert csoftmax.softplus(-30.0) == np.log1p(np.exp(-30.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta,th", [(1.0, 20.0), (3.0, 10.0), (0.25, 20.0)])
def test_softplus_vs_torch(dtype, beta, th):
    torch = pytest.importorskip("torch")
    x = np.linspace(-60, 60, 2001).astype(dtype)
    ours = csoftmax.softplus(x, beta=beta, threshold=th)
    theirs = torch.nn.functional.softplus(torch.tensor(x), beta=beta, threshold=th).numpy()
    if dtype == np.float64:
        np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=0)
    else:
        # torch evaluates log1p(exp(beta x)) / beta in float32 (and flushes
        # into subnormals); ours is the float64 value rounded once
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-37)
        exact = ref_softplus(x, beta, th)
        assert np.all(np.abs(ours - exact) <= np.abs(theirs - exact) + 1e-45)


def test_softplus_bad_input():
    with pytest.raises(ValueError, match="beta"):
        csoftmax.softplus([1.0], beta=0)
    with pytest.raises(ValueError, match="beta"):
        csoftmax.softplus([1.0], beta=-1.0)
    with pytest.raises(ValueError, match="threshold"):
        csoftmax.softplus([1.0], threshold=np.nan)
    with pytest.raises(TypeError, match="threshold"):
        csoftmax.softplus([1.0], threshold="20")
    with pytest.raises(TypeError, match="complex"):
        csoftmax.softplus([1j])
    assert csoftmax.softplus(np.zeros((0, 3))).shape == (0, 3)
    assert csoftmax.softplus(np.float16(1.0)).dtype == np.float16


# ---------------------------------------------------------------------------
# soft hinge

def ref_hinge(x, y, m, reduction="mean"):
    x = np.asarray(x, np.float64)
    rows, n = x.shape
    losses = np.empty(rows)
    g = np.zeros_like(x)
    for r in range(rows):
        others = np.delete(x[r], y[r])
        lo = logsumexp(others) if n > 1 else -np.inf
        u = lo - x[r, y[r]] + m
        losses[r] = np.logaddexp(0.0, u)
        sig = 1.0 / (1.0 + np.exp(-u))
        if n > 1:
            q = np.exp(x[r] - lo)
            g[r] = sig * q
        g[r, y[r]] = -sig
    count = rows if reduction == "mean" else 1
    return (losses if reduction == "none" else losses.sum() / count), g / count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("m", [0.0, 1.0, -0.5])
def test_soft_hinge_reference(isa, dtype, reduction, m):
    rng = np.random.default_rng(15)
    x = (rng.normal(size=(33, 13)) * 4).astype(dtype)
    y = rng.integers(0, 13, 33)
    x[0, y[0]] = 60.0                           # target far above the rest
    lr, gr = ref_hinge(x, y, m, reduction)
    loss, g = csoftmax.soft_hinge(x, y, margin=m, reduction=reduction, return_grad=True)
    tol = 1e-12 if dtype == np.float64 else 3e-6
    np.testing.assert_allclose(loss, lr, rtol=tol, atol=1e-300)
    np.testing.assert_allclose(g, gr, rtol=tol, atol=1e-300 if dtype == np.float64 else 1e-37)
    np.testing.assert_array_equal(csoftmax.soft_hinge(x, y, margin=m, reduction=reduction),
                                  loss)


def test_soft_hinge_axis_threads_and_ce(isa, threads):
    rng = np.random.default_rng(16)
    x = rng.normal(size=(64, 700)) * 3
    y = rng.integers(0, 700, 64)
    lr, gr = ref_hinge(x, y, 0.0)
    loss, g = csoftmax.soft_hinge(x.T, y, axis=0, return_grad=True)
    np.testing.assert_allclose(loss, lr, rtol=1e-12)
    np.testing.assert_allclose(g, gr.T, rtol=1e-11, atol=1e-300)
    # margin 0: exactly the cross-entropy LSE(x) - x_y
    ce = np.mean(logsumexp(x, axis=1) - x[np.arange(64), y])
    np.testing.assert_allclose(loss, ce, rtol=1e-12)


def test_soft_hinge_tiny_loss_and_edges(isa):
    # other classes 700 below the target: the rest underflows in the full-row
    # sum and is re-summed without the target; loss ~ e^-700 keeps its digits
    x = np.array([[0.0, -700.0, -701.0]])
    loss, g = csoftmax.soft_hinge(x, [0], return_grad=True)
    u = -700.0 + np.log1p(np.exp(-1.0))
    np.testing.assert_allclose(loss, np.exp(u), rtol=1e-13)
    np.testing.assert_allclose(g[0, 1:], np.exp(u) * np.exp(x[0, 1:] - u), rtol=1e-12)
    # single class and all other classes -inf: loss 0, gradient 0
    loss, g = csoftmax.soft_hinge([[3.0]], [0], return_grad=True)
    assert loss == 0.0 and g[0, 0] == 0.0
    loss, g = csoftmax.soft_hinge([[3.0, -np.inf, -np.inf]], [0], return_grad=True)
    assert loss == 0.0 and not g.any()


@pytest.mark.parametrize("m", [0.0, 1.5])
def test_soft_hinge_target_far_above(isa, m):
    """Regression (long fuzz profile): the target the only maximum, far above
    the others.  u = log R + m went through log R = -67.6 (R = sum over the
    others of exp(x_j - x_y)), whose rounding cost 7e-15 relative in the loss
    and in sigma(u) = -grad_y but not in the other entries, so the gradient
    row no longer summed to 0.  Now e^u = R e^m is used directly."""
    x = np.array([[-38.06830978393555, -46.74892807006836, 29.5],
                  [-80.0, -88.0, 80.0]])
    t = np.array([2, 2])
    loss, g = csoftmax.soft_hinge(x, t, margin=m, reduction="none", return_grad=True)
    # reference in longdouble: in float64 u = lse - x_y + m has the same
    # 7e-15 rounding error
    if np.finfo(np.longdouble).nmant < 63:
        pytest.skip("needs an 80-bit long double reference")
    xl = x.astype(np.longdouble)
    o = xl[:, :2]
    mo = o.max(1, keepdims=True)
    lse = mo + np.log(np.exp(o - mo).sum(1, keepdims=True))
    eu = np.exp(lse[:, 0] - xl[:, 2] + np.longdouble(m))
    want = np.log1p(eu)
    sig = eu / (1 + eu)
    gw = np.concatenate([sig[:, None] * np.exp(o - lse), -sig[:, None]], axis=1)
    e = np.finfo(np.float64).eps
    np.testing.assert_allclose(loss, want.astype(np.float64), rtol=4 * e, atol=0)
    np.testing.assert_allclose(g, gw.astype(np.float64), rtol=4 * e, atol=0)
    assert np.all(np.abs(g.sum(1)) <= 4 * e * np.abs(g).sum(1))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("m", [0.0, 2.0])
def test_soft_hinge_finite_differences(reduction, m):
    rng = np.random.default_rng(17)
    x = rng.normal(size=(3, 6)) * 2
    y = np.array([0, 5, 2])
    _, g = csoftmax.soft_hinge(x, y, margin=m, reduction=reduction, return_grad=True)
    fd = fd_grad(lambda v: np.sum(csoftmax.soft_hinge(v, y, margin=m, reduction=reduction)), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_soft_hinge_vs_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(18)
    x = rng.normal(size=(8, 5)) * 3
    y = rng.integers(0, 5, 8)
    xt = torch.tensor(x, requires_grad=True)
    mask = torch.nn.functional.one_hot(torch.tensor(y), 5).bool()
    others = torch.logsumexp(xt.masked_fill(mask, -math.inf), dim=1)
    u = others - xt[torch.arange(8), torch.tensor(y)] + 0.7
    lt = torch.nn.functional.softplus(u).mean()
    lt.backward()
    loss, g = csoftmax.soft_hinge(x, y, margin=0.7, return_grad=True)
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-13)
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-12, atol=1e-16)


def test_soft_hinge_bad_input():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"target\[1\] = 3"):
        csoftmax.soft_hinge(x, [0, 3])
    with pytest.raises(TypeError, match="integer"):
        csoftmax.soft_hinge(x, [0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        csoftmax.soft_hinge(x, [[0, 1]])
    with pytest.raises(ValueError, match="margin"):
        csoftmax.soft_hinge(x, [0, 1], margin=np.inf)
    with pytest.raises(ValueError, match="reduction"):
        csoftmax.soft_hinge(x, [0, 1], reduction="avg")
    with pytest.raises(AxisError):
        csoftmax.soft_hinge(x, [0, 1], axis=-3)
    with pytest.raises(ValueError, match="dimension"):
        csoftmax.soft_hinge(1.0, 0)


@pytest.mark.parametrize("m", [0.5, 1.0, 1.5, np.pi / 2, 3.0])
def test_arcface_threshold_is_minus_cos_m(m):
    """The margin applies for theta + m <= pi, i.e. c >= cos(pi - m) = -cos m.
    The threshold was cos(fl(pi) - m): the doubles between it and -cos m
    took the fallback c - m sin m (c = cos(pi - 0.5): -1.117 for -1.0; with
    m = pi / 2 even c = 0 gave -1.571)."""
    import math
    th = -math.cos(m)
    cs = [th, np.nextafter(th, 1.0), np.nextafter(th, 1.0) + 1e-15, math.cos(math.pi - m)]
    if m == np.pi / 2:
        cs += [0.0, 5e-17, -5e-17]
    for c in cs:
        if c < th:
            continue
        got = csoftmax.margin_logits(np.array([[c, 0.0]]), [0], scale=1.0, margin=m,
                                     kind="arcface")[0, 0]
        want = math.cos(math.acos(c) + m)
        assert abs(got - want) <= 1e-12, (m, c, got, want)
