"""The per-sample coefficient of the gradient kernels (_ce_prepare / _ce_fixup
in _losses.pxi): an upstream gradient dy (logsumexp_backward), a class weight,
the mass of probability targets.  The kernels write alpha * softmax for a
block of samples and rescale per sample; whatever the coefficients are --
NaN, +-inf, zero, far apart, near the float64 maximum -- every sample's
gradient is its own coefficient times its own softmax (dy * p, as torch and
jax compute it), never influenced by the other samples of the block.

Found by a hostile caller's inputs: a NaN dy came out as ~1e-308 (the short-
row write kernels do not carry a NaN log_sum), an infinite dy as NaN, a
weight of inf on a class no target used made every gradient NaN (eps * W with
eps = 0), and in float32 one dy of 1e308 zeroed the other samples."""
import numpy as np
import pytest

import csoftmax


def _softmax64(x, axis):
    x = np.asarray(x, np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _expect_close(got, want, rtol, what):
    """Same NaN positions, same infinities, finite values within rtol."""
    got = np.asarray(got, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: NaN positions")
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin & ~np.isnan(want)], want[~fin & ~np.isnan(want)],
                                  err_msg=f"{what}: infinities")
    np.testing.assert_allclose(got[fin], want[fin], rtol=rtol, atol=0, err_msg=what)


SHAPES = [(4, 3), (37, 10), (9, 100), (3, 3000)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("axis", [-1, 0])
def test_logsumexp_backward_special_dy(isa, dtype, shape, axis):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    x.flat[0] = -np.inf               # a zero probability: inf * 0 = NaN
    n_s = shape[0] if axis != 0 else shape[1]
    specials = [np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-300, 0.0, 5e-324, 2.5]
    for rep in range(3):
        dy = rng.standard_normal(n_s) * 3
        pos = rng.choice(n_s, size=min(n_s, 4), replace=False)
        dy[pos] = rng.choice(specials, size=len(pos))
        p = _softmax64(x, axis)
        with np.errstate(invalid="ignore", over="ignore"):
            want = np.expand_dims(dy, axis) * p
        if dtype == np.float32:
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                want = want.astype(np.float32).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            got = csoftmax.logsumexp_backward(x, dy, axis=axis)
        # float32: the softmax and the product rounded; float64: the exp
        # argument's conditioning (|x| < 10 here) and a few roundings
        rtol = 4e-6 if dtype == np.float32 else 1e-13
        # results below float32's normal range are absolute 2^-126 (contract)
        if dtype == np.float32:
            small = np.abs(want) < 2.0 ** -126
            want = np.where(small & np.isfinite(want), np.asarray(got, np.float64), want)
        _expect_close(got, want, rtol, f"dy={dy}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("axis", [-1, 0])
def test_cross_entropy_weights_nonfinite_on_unused_classes(isa, dtype, shape, axis):
    """A NaN or inf weight on a class no target uses, or weights whose sum
    overflows, leave the loss and the gradient of the others finite (torch)."""
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(shape)).astype(dtype)
    C = shape[1] if axis == -1 else shape[0]
    N = shape[0] if axis == -1 else shape[1]
    t = rng.integers(0, max(1, C - 1), N)      # class C-1 never a target
    for bad in (np.inf, np.nan, "overflow"):
        w = rng.uniform(0.5, 2.0, C)
        if bad == "overflow":
            w[:] = 1.0
            w[0] = w[-1] = 1e308           # sum overflows; class 0 is a target
        else:
            w[-1] = bad
        loss, g = csoftmax.cross_entropy(x, t, weight=w, axis=axis, return_grad=True,
                                         reduction="sum")
        xs = np.moveaxis(np.asarray(x, np.float64), axis, -1)
        p = _softmax64(xs, -1)
        onehot = np.eye(C)[t]
        wt = w[t][:, None]
        with np.errstate(invalid="ignore", over="ignore"):
            want_g = np.moveaxis(wt * (p - onehot), -1, axis)
            want_l = np.sum(-w[t] * np.log(p[np.arange(N), t]))
        if dtype == np.float32:
            with np.errstate(over="ignore"):
                want_g = want_g.astype(np.float32).astype(np.float64)
        rtol = 2e-5 if dtype == np.float32 else 1e-12
        _expect_close(g, want_g, rtol, f"weight {bad}")
        assert np.isfinite(loss) or bad == "overflow", (bad, loss)
        if np.isfinite(want_l):
            np.testing.assert_allclose(loss, want_l, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("axis", [-1, 0])
def test_cross_entropy_nan_in_probability_targets(isa, dtype, shape, axis):
    """A NaN target probability makes that sample's loss and whole gradient
    NaN (as torch), on every path; the other samples are untouched."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    q = _softmax64(rng.standard_normal(shape), axis).astype(dtype)
    C = shape[1] if axis == -1 else shape[0]
    qs = np.moveaxis(q, axis, -1)                     # a view
    qs[0, C // 2] = np.nan
    loss, g = csoftmax.cross_entropy(x, q, axis=axis, return_grad=True, reduction="none")
    ref_l, ref_g = csoftmax.cross_entropy(np.moveaxis(x, axis, -1)[1:],
                                          np.ascontiguousarray(qs[1:]), return_grad=True,
                                          reduction="none")
    gs = np.moveaxis(np.asarray(g), axis, -1)
    assert np.isnan(loss[0])
    assert np.isnan(gs[0]).all(), gs[0]
    assert np.isfinite(gs[1:]).all()
    np.testing.assert_allclose(gs[1:], ref_g, rtol=1e-5 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(loss[1:], ref_l, rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_sample_does_not_rescale_the_others(isa, dtype):
    """float32: coefficients far apart in one block (a dy of 1e308 beside
    7.5) or all beyond float32's range -- each sample computed alone gives
    the same result as in the block."""
    rng = np.random.default_rng(8)
    for shape, axis in (((3, 2), 0), ((2, 3), -1), ((40, 10), -1), ((10, 40), 0),
                        ((5, 300), -1)):
        x = rng.standard_normal(shape).astype(dtype)
        n_s = shape[1] if axis == 0 else shape[0]
        for big in (1e308, 1e40, 1e-40, 3e38, 1e-300):
            dy = rng.uniform(1, 10, n_s)
            dy[-1] = big
            for all_big in (False, True):
                d = np.full(n_s, big) if all_big else dy
                got = csoftmax.logsumexp_backward(x, d, axis=axis)
                for k in range(n_s):
                    sl = (slice(None), slice(k, k + 1)) if axis == 0 else (slice(k, k + 1),)
                    alone = csoftmax.logsumexp_backward(x[sl], d[k:k + 1], axis=axis)
                    with np.errstate(over="ignore", under="ignore"):
                        want = np.expand_dims(d[k:k + 1], axis) * _softmax64(x[sl], axis)
                    if dtype == np.float32:
                        with np.errstate(over="ignore", under="ignore"):
                            want = want.astype(np.float32).astype(np.float64)
                    # alone and in the block: both the product (to rounding;
                    # float32 below the normal range: absolute 2^-126)
                    for res in (got[sl], alone):
                        res = np.asarray(res, np.float64)
                        fin = np.isfinite(want)
                        np.testing.assert_array_equal(res[~fin], want[~fin])
                        tol = 4e-6 if dtype == np.float32 else 1e-13
                        atol = 2.0 ** -126 if dtype == np.float32 else 0
                        np.testing.assert_allclose(res[fin], want[fin], rtol=tol, atol=atol,
                                                   err_msg=f"{shape} {axis} {big} {all_big} {k}")


PATHS = ("SMALL", "SMALL_TWO_PASS", "FUSED", "TWO_PASS", "TWO_PASS_PREFETCH",
         "LONG_ROW_SPLIT", "LONG_ROW_STORE", "COLS_BLOCKS", "COLS_TILED")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["logsumexp_backward", "cross_entropy"])
def test_special_coefficients_on_every_path(isa, dtype, op):
    """Far-apart, huge and non-finite coefficients through every path that
    can serve the call (forced), rows and columns: each sample's gradient is
    its coefficient times its softmax (minus its target's weight)."""
    from csoftmax import _core
    rng = np.random.default_rng(9)
    served = set()
    for shape, axis in (((48, 10), -1), ((20, 300), -1), ((1, 5000), -1),
                        ((10, 64), 0), ((100, 256), 0)):
        x = rng.standard_normal(shape).astype(dtype)
        C = shape[axis]
        N = x.size // C
        xs = np.moveaxis(np.asarray(x, np.float64), axis, -1)
        p = _softmax64(xs, -1)
        if op == "logsumexp_backward":
            coef = rng.uniform(1, 10, N) * rng.choice([1, -1], N)
            coef[::5] = rng.choice([1e308, 1e-300, 1e40, np.inf, np.nan, -np.inf], len(coef[::5]))
            with np.errstate(invalid="ignore", over="ignore"):
                want = coef[:, None] * p
            call = lambda: csoftmax.logsumexp_backward(x, coef, axis=axis)  # noqa: E731
        else:
            w = 10.0 ** rng.uniform(-40, 60, C)
            w[-1] = np.inf                     # never a target
            t = rng.integers(0, C - 1, N)
            with np.errstate(invalid="ignore", over="ignore"):
                want = w[t][:, None] * (p - np.eye(C)[t])
            call = lambda: csoftmax.cross_entropy(x, t, weight=w, axis=axis,  # noqa: E731
                                                  reduction="sum", return_grad=True)[1]
        if dtype == np.float32:
            with np.errstate(over="ignore", under="ignore"):
                want = want.astype(np.float32).astype(np.float64)
        for path in PATHS:
            try:
                with _core.forced(op, path):
                    with np.errstate(invalid="ignore", over="ignore"):
                        g = call()
            except ValueError:
                continue
            served.add(path)
            gs = np.moveaxis(np.asarray(g, np.float64), axis, -1)
            np.testing.assert_array_equal(np.isnan(gs), np.isnan(want), err_msg=path)
            fin = np.isfinite(want)
            np.testing.assert_array_equal(gs[~fin & ~np.isnan(want)],
                                          want[~fin & ~np.isnan(want)], err_msg=path)
            # float32: rounding of p and of the product, and the kernels'
            # clamp (p under ~2^-150 relative is 0); absolute 2^-126 below
            # the normal range
            rtol = 2e-5 if dtype == np.float32 else 1e-12
            atol = 2.0 ** -126 if dtype == np.float32 else 0
            np.testing.assert_allclose(gs[fin], want[fin], rtol=rtol, atol=atol,
                                       err_msg=f"{op} {shape} {axis} {path}")
    assert {"TWO_PASS", "COLS_BLOCKS"} <= served, served
