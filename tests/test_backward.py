"""softmax_backward, log_softmax_backward, logsumexp_backward.

Reference (float64 NumPy):
    softmax_backward(y, dy)     = y * (dy - sum(y * dy))
    log_softmax_backward(y, dy) = dy - exp(y) * sum(dy)
    logsumexp_backward(x, dy)   = softmax(x) * dy   (dy broadcast along axis)
checked in turn against finite differences of the forward functions and
against torch autograd when torch is installed.

References and bounds: tests/_helpers.py (ref_*_bwd, CONTRACT); every
element within its contract bound, not relative to the largest entry.
"""

import numpy as np
import pytest
from numpy.exceptions import AxisError

import csoftmax
import _helpers as H
from _helpers import fd_grad


def ref_softmax_bwd(y, dy, axis):
    return H.ref_softmax_bwd(y, dy, axis)


def ref_log_softmax_bwd(y, dy, axis):
    return H.ref_log_softmax_bwd(y, dy, axis)


def ref_lse_bwd(x, dy, axis):
    return H.ref_logsumexp_bwd(x, dy, axis)


def check(got, ref, dtype, op=None):
    """The contract (tests/_helpers.py CONTRACT, README "Accuracy"), per
    element: softmax_backward / log_softmax_backward <= 4 ULP + kappa x the
    magnitudes of the cancelling terms (kappa 2^-36 float32, 2^-44 float64);
    logsumexp_backward <= 4 ULP (float32) / 8 ULP (float64), nothing cancels."""
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype)
    if op is None:
        op = "softmax_backward" if ref.cond is not None else "logsumexp_backward"
    H.assert_within(got, ref, op, what="softmax/log_softmax backward" if ref.cond is not None else op)


SHAPES = [((7,), 0), ((5, 9), -1), ((5, 9), 0), ((3, 4, 70), 1), ((3, 4, 5), 2), ((3, 4, 5), 0)]


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_vs_reference(rng, shape, axis, dtype):
    x = (rng.normal(size=shape) * 2).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    y = csoftmax.softmax(x, axis=axis)
    ly = csoftmax.log_softmax(x, axis=axis)
    r = csoftmax.softmax_backward(y, dy, axis=axis)
    assert r.dtype == dtype and r.shape == shape
    check(r, ref_softmax_bwd(y, dy, axis), dtype)
    r = csoftmax.log_softmax_backward(ly, dy, axis=axis)
    assert r.dtype == dtype
    check(r, ref_log_softmax_bwd(ly, dy, axis), dtype)
    dl = rng.normal(size=shape[:axis % len(shape)] + shape[axis % len(shape) + 1:])
    r = csoftmax.logsumexp_backward(x, dl, axis=axis)
    assert r.dtype == dtype and r.shape == shape
    check(r, ref_lse_bwd(x, dl, axis), dtype)
    # keepdims-shaped upstream gradient
    r2 = csoftmax.logsumexp_backward(x, np.expand_dims(dl, axis), axis=axis)
    np.testing.assert_array_equal(r, r2)


@pytest.mark.parametrize("layout", [((400, 90), -1), ((6, 50, 130), 1)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_isa_and_threads(rng, isa, threads, layout, dtype):
    shape, axis = layout
    x = (rng.normal(size=shape) * 3).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    y = csoftmax.softmax(x, axis=axis)
    check(csoftmax.softmax_backward(y, dy, axis=axis), ref_softmax_bwd(y, dy, axis), dtype)
    ly = csoftmax.log_softmax(x, axis=axis)
    check(csoftmax.log_softmax_backward(ly, dy, axis=axis), ref_log_softmax_bwd(ly, dy, axis),
          dtype)
    dl = rng.normal(size=np.sum(x, axis=axis).shape)
    dl[0] = 0.0
    dl.flat[1] = -2.5                   # zero and negative factors share a block
    check(csoftmax.logsumexp_backward(x, dl, axis=axis), ref_lse_bwd(x, dl, axis), dtype)


def _ref_checked(got, ref, dtype):
    """check() where the reference is finite; elsewhere the same non-finite."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    check(got, ref, dtype)       # non-finite references must match exactly


@pytest.mark.parametrize("n", [1, 7, 8, 9, 15, 16, 17, 31, 33, 1023])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_kernels_tails_and_specials(rng, isa, n, dtype):
    """The SIMD row kernels: every tail length, -inf log-probabilities
    (exp -> 0), rows holding y > 0 or NaN (the scalar fallback of the AVX2
    log_softmax kernel), against the float64 formula; out aliasing y / dy."""
    rows = 6
    x = (rng.normal(size=(rows, n)) * 4).astype(dtype)
    dy = rng.normal(size=(rows, n)).astype(dtype)
    y = csoftmax.softmax(x, axis=-1)
    ly = csoftmax.log_softmax(x, axis=-1)
    ly[1, n // 2] = -np.inf                 # probability 0
    ly[2, -1] = 0.5                         # not a log-probability: still the formula
    ly[3, 0] = np.nan
    ly[4, :] = -800.0 if dtype == np.float64 else -120.0   # exp underflow region
    y[3, n - 1] = np.nan
    check(csoftmax.softmax_backward(y[[0, 1, 2, 4, 5]], dy[[0, 1, 2, 4, 5]]),
          ref_softmax_bwd(y[[0, 1, 2, 4, 5]], dy[[0, 1, 2, 4, 5]], -1), dtype)
    r = csoftmax.softmax_backward(y, dy)
    assert np.isnan(r[3]).all()             # NaN in y spoils its row's sum only
    assert not np.isnan(np.delete(r, 3, axis=0)).any()
    _ref_checked(csoftmax.log_softmax_backward(ly, dy), ref_log_softmax_bwd(ly, dy, -1), dtype)
    # out= aliasing either input gives the same numbers
    for f, a in ((csoftmax.softmax_backward, y), (csoftmax.log_softmax_backward, ly)):
        want = f(a, dy)
        a2, g2 = a.copy(), dy.copy()
        np.testing.assert_array_equal(f(a2, g2, out=a2), want)
        a2, g2 = a.copy(), dy.copy()
        np.testing.assert_array_equal(f(a2, g2, out=g2), want)


# ---------------------------------------------------------------------------
# finite differences (float64): d/dx of sum(v * f(x))

@pytest.mark.parametrize("shape,axis", [((4, 5), -1), ((4, 5), 0), ((2, 3, 4), 1)])
def test_finite_differences(rng, shape, axis):
    x = rng.normal(size=shape)
    v = rng.normal(size=shape)
    g = csoftmax.softmax_backward(csoftmax.softmax(x, axis=axis), v, axis=axis)
    fd = fd_grad(lambda z: float(np.sum(v * csoftmax.softmax(z, axis=axis))), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    g = csoftmax.log_softmax_backward(csoftmax.log_softmax(x, axis=axis), v, axis=axis)
    fd = fd_grad(lambda z: float(np.sum(v * csoftmax.log_softmax(z, axis=axis))), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    u = rng.normal(size=np.sum(x, axis=axis).shape)
    g = csoftmax.logsumexp_backward(x, u, axis=axis)
    fd = fd_grad(lambda z: float(np.sum(u * csoftmax.logsumexp(z, axis=axis))), x)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(size=(4, 6, 3))
    v = rng.normal(size=x.shape)
    for axis in (1, 2):
        xt = torch.tensor(x, requires_grad=True)
        (torch.softmax(xt, axis) * torch.tensor(v)).sum().backward()
        y = csoftmax.softmax(x, axis=axis)
        np.testing.assert_allclose(csoftmax.softmax_backward(y, v, axis=axis), xt.grad.numpy(),
                                   rtol=1e-12, atol=1e-15)
        xt = torch.tensor(x, requires_grad=True)
        (torch.log_softmax(xt, axis) * torch.tensor(v)).sum().backward()
        ly = csoftmax.log_softmax(x, axis=axis)
        np.testing.assert_allclose(csoftmax.log_softmax_backward(ly, v, axis=axis),
                                   xt.grad.numpy(), rtol=1e-12, atol=1e-15)
        u = rng.normal(size=np.sum(x, axis=axis).shape)
        xt = torch.tensor(x, requires_grad=True)
        (torch.logsumexp(xt, axis) * torch.tensor(u)).sum().backward()
        np.testing.assert_allclose(csoftmax.logsumexp_backward(x, u, axis=axis),
                                   xt.grad.numpy(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------
# out=, in place, dtypes

@pytest.mark.parametrize("axis", [0, 1])
def test_logsumexp_backward_far_apart_dy(axis):
    """Regression (long fuzz profile): dy values far apart in one block (2.5
    and 6.7e-21) -- the per-sample factor was folded into the exp argument
    as log(dy / 2.5) = -47, costing ~30 ulps (2.6e-15 relative) in float64.
    Minimal example: zeros (3, 6) along axis 0."""
    dy = np.array([2.5] + [6.72113813e-21] * 5 + [1e-300, -1e300, 3e-320])
    x = np.zeros((3, dy.size))
    if axis == 1:
        x = x.T.copy()
    g = csoftmax.logsumexp_backward(x, dy, axis=axis)
    fi = np.finfo(np.float64)
    want = np.broadcast_to(np.expand_dims(dy / 3, axis), g.shape)
    normal = np.abs(want) >= fi.tiny
    np.testing.assert_allclose(g[normal], want[normal], rtol=2 * fi.eps, atol=0)
    # a subnormal result (3e-320 / 3): within one subnormal unit
    assert np.all(np.abs(g[~normal] - want[~normal]) <= fi.smallest_subnormal)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_and_in_place(rng, dtype):
    x = rng.normal(size=(6, 8)).astype(dtype)
    dy = rng.normal(size=x.shape).astype(dtype)
    y = csoftmax.softmax(x)
    ref = ref_softmax_bwd(y, dy, -1)
    o = np.full_like(x, np.nan)
    assert csoftmax.softmax_backward(y, dy, out=o) is o
    check(o, ref, dtype)
    d2 = dy.copy()
    csoftmax.softmax_backward(y, d2, out=d2)
    check(d2, ref, dtype)
    ly = csoftmax.log_softmax(x)
    y2 = ly.copy()
    csoftmax.log_softmax_backward(y2, dy, out=y2)
    check(y2, ref_log_softmax_bwd(ly, dy, -1), dtype)
    u = rng.normal(size=6)
    x2 = x.copy()
    assert csoftmax.logsumexp_backward(x2, u, out=x2) is x2
    check(x2, ref_lse_bwd(x, u, -1), dtype)
    # non-contiguous out
    big = np.zeros((6, 16), dtype=dtype)
    csoftmax.softmax_backward(y, dy, out=big[:, ::2])
    check(big[:, ::2], ref, dtype)
    assert not big[:, 1::2].any()


def test_dtype_rules(rng):
    y = csoftmax.softmax(rng.normal(size=(3, 4))).astype(np.float32)
    dy = rng.normal(size=(3, 4))
    assert csoftmax.softmax_backward(y, dy).dtype == np.float64
    assert csoftmax.softmax_backward(y, dy.astype(np.float32)).dtype == np.float32
    assert csoftmax.log_softmax_backward(y.astype(np.float16), y.astype(np.float16)).dtype \
        == np.float16
    assert csoftmax.logsumexp_backward(np.arange(4), 1.0).dtype == np.float64


# ---------------------------------------------------------------------------
# bad input: clear exception, out untouched

BWD = [csoftmax.softmax_backward, csoftmax.log_softmax_backward]


@pytest.mark.parametrize("f", BWD, ids=lambda f: f.__name__)
def test_bad_input_softmax_family(rng, f):
    y = rng.random((3, 4))
    out = np.full((3, 4), 7.0)
    cases = [
        (dict(dy=np.ones((3, 5))), ValueError, "dy has shape"),
        (dict(dy=np.ones((3, 4)), axis=2), AxisError, None),
        (dict(dy=np.ones((3, 4)) * 1j), TypeError, "complex"),
        # several axes are taken (as softmax takes them), repeated ones not
        (dict(dy=np.ones((3, 4)), axis=(0, 0)), ValueError, "repeated axis"),
        (dict(dy=np.ones((3, 5)), axis=(0, 1)), ValueError, "dy has shape"),
        (dict(dy=np.ones((3, 4)), axis=None, where=np.ones((2, 4), bool)), ValueError, None),
    ]
    for kw, exc, msg in cases:
        with pytest.raises(exc, match=msg):
            f(y, out=out, **kw)
        assert (out == 7.0).all()
    with pytest.raises(ValueError, match="shape"):
        f(y, np.ones((3, 4)), out=np.empty((4, 3)))
    with pytest.raises(TypeError, match="dtype"):
        f(y, np.ones((3, 4)), out=np.empty((3, 4), np.float32))
    ro = np.full((3, 4), 7.0)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        f(y, np.ones((3, 4)), out=ro)
    with pytest.raises(ValueError, match="at least one dimension"):
        f(np.float64(1.0), np.float64(1.0))


def test_bad_input_logsumexp_backward(rng):
    x = rng.normal(size=(3, 4))
    out = np.full((3, 4), 7.0)
    for dy, axis, exc in [(np.ones(4), -1, ValueError), (np.ones((3, 4)), -1, ValueError),
                          (np.ones(3), 5, AxisError), (np.ones(3) * 1j, -1, TypeError)]:
        with pytest.raises(exc):
            csoftmax.logsumexp_backward(x, dy, axis=axis, out=out)
        assert (out == 7.0).all()
    with pytest.raises(TypeError, match="dtype"):
        csoftmax.logsumexp_backward(x, np.ones(3), out=np.empty((3, 4), np.float32))


# ---------------------------------------------------------------------------
# short rows: the SMALL path (csm_*_bwd_small_*, 4-16 rows a group in the
# lanes; the AVX2 and AVX-512 tables) forced at every row length it takes,
# every partial group, special values in single lanes, in place, 1 vs 2
# threads; float32 and float64.

BWD_OPS = {"softmax_backward": (csoftmax.softmax, csoftmax.softmax_backward, ref_softmax_bwd),
           "log_softmax_backward": (csoftmax.log_softmax, csoftmax.log_softmax_backward,
                                    ref_log_softmax_bwd)}


def _small_bwd(op, y, dy, **kw):
    from csoftmax import _core
    with _core.forced(op, "SMALL"):
        r = BWD_OPS[op][1](y, dy, **kw)
        assert _core._last_plan() == (op, "SMALL")
    return r


def _has_small_bwd(op, dtype):
    from csoftmax import _core
    try:
        with _core.forced(op, "SMALL"):
            return _core.plan(op, (16, 8), dtype)["path"] == "SMALL"
    except ValueError:
        return False


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", list(BWD_OPS))
def test_small_rows_every_length_and_group(rng, isa, op, dtype):
    from csoftmax import _core
    fwd, f, ref = BWD_OPS[op]
    if not _has_small_bwd(op, dtype):
        # tables without the kernels refuse the path, and say so
        with pytest.raises(ValueError, match="SMALL"):
            with _core.forced(op, "SMALL"):
                f(np.zeros((2, 3), dtype), np.zeros((2, 3), dtype))
        return
    for n in list(range(1, 34)) + [47, 48, 63, 64]:
        for rows in (1, 3, 4, 5, 15, 16, 17, 33):
            y = fwd((rng.normal(size=(rows, n)) * 4).astype(dtype))
            dy = rng.normal(size=(rows, n)).astype(dtype)
            if n > 2:
                dy[rows // 2, 1] = 1e30          # one large term in one lane
            check(_small_bwd(op, y, dy), ref(y, dy, -1), dtype, op)
    # longer rows: refused when forced
    with pytest.raises(ValueError, match="SMALL"):
        with _core.forced(op, "SMALL"):
            f(np.zeros((2, 65), dtype), np.zeros((2, 65), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", list(BWD_OPS))
def test_small_rows_lanes_are_independent(rng, isa, op, dtype):
    """A row's result is the same bits whatever rows surround it and
    wherever it falls in a group (staged full groups of n >= 32 or direct
    loads); special values stay in their lane -- a log-probability > 0 or
    NaN sends its row alone to the scalar kernel."""
    fwd, f, ref = BWD_OPS[op]
    if not _has_small_bwd(op, dtype):
        pytest.skip(f"no {op} short-row kernel on the {isa} table")
    for n in (3, 10, 24, 40):
        y = fwd((rng.normal(size=(40, n)) * 3).astype(dtype))
        dy = rng.normal(size=(40, n)).astype(dtype)
        y[5, 0] = np.nan
        dy[7, n - 1] = np.inf
        dy[9, 0] = np.nan
        if op == "log_softmax_backward":
            y[11, n // 2] = 0.75                   # not a log-probability
            y[12, 0] = -np.inf
        else:
            y[11, n // 2] = -np.inf
        whole = _small_bwd(op, y, dy)
        want = ref(y.astype(np.float64), dy.astype(np.float64), -1)
        ok = np.isfinite(want).all(axis=1)
        check(whole[ok], ref(y[ok], dy[ok], -1), dtype, op)
        # the rows with special values: IEEE propagation as float64 gives
        np.testing.assert_array_equal(np.isnan(whole[~ok]), np.isnan(want[~ok]))
        np.testing.assert_array_equal(np.isposinf(whole[~ok]), np.isposinf(want[~ok]))
        for start in (1, 3, 4, 5, 7, 8, 9, 15, 16, 17):
            part = _small_bwd(op, y[start:], dy[start:])
            np.testing.assert_array_equal(part, whole[start:])
            one = _small_bwd(op, y[start:start + 1], dy[start:start + 1])
            np.testing.assert_array_equal(one, whole[start:start + 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", list(BWD_OPS))
def test_small_rows_in_place_and_threads(rng, isa, op, dtype):
    fwd, f, ref = BWD_OPS[op]
    if not _has_small_bwd(op, dtype):
        pytest.skip(f"no {op} short-row kernel on the {isa} table")
    prev = csoftmax.set_num_threads(1)
    try:
        for n in (2, 9, 33):
            rows = 40000 // n + 7                 # enough for two threads, a partial group
            y = fwd((rng.normal(size=(rows, n)) * 3).astype(dtype))
            dy = rng.normal(size=(rows, n)).astype(dtype)
            if op == "log_softmax_backward":
                y[rows // 2, 0] = 1.0            # a row for the scalar kernel
            one = _small_bwd(op, y, dy)
            csoftmax.set_num_threads(2)
            np.testing.assert_array_equal(_small_bwd(op, y, dy), one)
            for which in ("y", "dy"):
                yy, dd = y.copy(), dy.copy()
                out = yy if which == "y" else dd
                r = _small_bwd(op, yy, dd, out=out)
                assert r is out
                np.testing.assert_array_equal(r, one)
            csoftmax.set_num_threads(1)
    finally:
        csoftmax.set_num_threads(prev)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_small_rows_partial_group_first_row_redone_once(rng, isa, dtype):
    """The unused lanes of a partial group repeat its first row and are
    neither stored nor redone: when that row holds y > 0 (the scalar
    kernel's), an in-place call must redo it once -- a second redo would
    read its own output."""
    op = "log_softmax_backward"
    if not _has_small_bwd(op, dtype):
        pytest.skip(f"no {op} short-row kernel on the {isa} table")
    for rows in (5, 6, 7, 9, 17, 18, 33):
        for n in (3, 10):
            y = csoftmax.log_softmax((rng.normal(size=(rows, n)) * 3).astype(dtype))
            dy = rng.normal(size=(rows, n)).astype(dtype)
            for first in {(rows - 1) // 4 * 4, (rows - 1) // 8 * 8, (rows - 1) // 16 * 16}:
                yy = y.copy()
                yy[first, 0] = 0.5
                want = _small_bwd(op, yy, dy)
                for which in ("y", "dy"):
                    a, b = yy.copy(), dy.copy()
                    got = _small_bwd(op, a, b, out=a if which == "y" else b)
                    np.testing.assert_array_equal(got, want, err_msg=f"{rows} {n} {which}")


@pytest.mark.parametrize("n", [3, 17, 40, 1000])
def test_softmax_backward_sum_beyond_float32(n, isa):
    """float32 softmax_backward writes in float32 lanes with s = sum y dy
    split into two floats; a sum beyond 2^100 (here beyond float32's range:
    y is not a probability) takes the float64 form, so an entry whose y is
    tiny stays finite, as the float64 arithmetic gives it."""
    y = np.zeros((2, n), np.float32)
    dy = np.zeros((2, n), np.float32)
    y[:, 0], y[:, 1], dy[:, 1] = 1e-30, 1e10, 1e38     # s = 1e48
    y[1, 2:], dy[1, 2:] = 0.25, 3e29                    # and a row within 2^100
    y[1, :2] = dy[1, :2] = 0.0
    got = csoftmax.softmax_backward(y, dy)
    assert got[0, 0] == np.float32(-1e18) and got[0, 1] == -np.inf
    keep = np.ones_like(got, bool)
    keep[0, 1] = False                       # -1e58: beyond float32, -inf
    H.assert_within(got[keep], H.ref_softmax_bwd(y, dy)[keep], "softmax_backward")


@pytest.mark.parametrize("n", [16, 37, 1000])
def test_log_softmax_backward_float32_lanes(n, isa):
    """float32 log_softmax_backward on AVX-512 and AVX2 writes in float32
    lanes: exp(y) s as 2^k (T_hi + T_lo)(1 + v_hi + v_lo) with a per-row
    table of 2^(j/32) s (avx512/exp.h; 2^(j/16) s, avx2/exp.h).  Against the float64 reference and the contract
    (4 ULP + 2^-36 cond) on the entries where dy_i and exp(y_i) s cancel to
    many bits, for y across [-87, 0], sums from 2^-140 to 2^99, scaled
    terms below the normal range; a vector holding y < -87 or -inf (the
    float64-lane form for that vector only) and sums beyond 2^100 (the
    float64 form for the row), every table."""
    rng = np.random.default_rng(n)
    rows = 64
    y = -rng.uniform(0, 87, size=(rows, n))
    y[:, ::5] = -rng.uniform(0, 1e-3, size=y[:, ::5].shape)   # near-argmax
    y[::4, -1] = -86.999                                         # top of the range
    y = y.astype(np.float32)
    scale = 2.0 ** rng.integers(-140, 99, size=(rows, 1))
    dy = rng.normal(size=(rows, n)) * scale
    dy[::3] *= rng.uniform(0, 1e-3, size=dy[::3].shape)          # a dominant entry
    dy[4] = 0.0                                                  # s = 0
    dy[5, 1:] = 0.0
    dy[5, 0] = -1.0                                              # NLL's row
    y[5, 0] = -1e-6
    y[6, n // 2] = -87.25                                        # one vector in float64
    y[7, 0] = -np.inf
    y[8, n - 1] = -1e30
    dy[9] = rng.normal(size=n) * 1e31                            # |s| > 2^100
    dy = dy.astype(np.float32)
    # make one entry i of each row cancel: dy_i = exp(y_i) (s_rest + dy_i)
    i = rng.integers(0, n, size=rows)
    r = np.arange(rows)
    keep = np.ones((rows, n), bool)
    keep[r, i] = False
    rest = np.where(keep, dy.astype(np.float64), 0).sum(-1)
    e = np.exp(y[r, i].astype(np.float64))
    with np.errstate(all="ignore"):
        cancel = np.where(e < 1, e * rest / (1 - e), 0.0)
    ok = np.isfinite(cancel) & (np.abs(cancel) < 3e38) & (np.arange(rows) != 5)
    dy[r[ok], i[ok]] = cancel[ok].astype(np.float32)
    got = csoftmax.log_softmax_backward(y, dy)
    ref = H.ref_log_softmax_bwd(y, dy)
    H.assert_within(got, ref, "log_softmax_backward")
    # the cancelling entries lose many bits of exp(y) s: they test the 2^-36
    with np.errstate(invalid="ignore"):
        rel = np.abs(np.asarray(ref)[r[ok], i[ok]]) / np.asarray(ref.cond)[r[ok], i[ok]]
    assert (rel[np.isfinite(rel)] < 2.0 ** -16).mean() > 0.5
    assert got[7, 0] == dy[7, 0]                                 # exp(-inf) = 0


@pytest.mark.parametrize("n", [1, 7, 8, 9, 16, 17, 100, 1003])
def test_log_softmax_backward_float32_lanes_bad_y(n, isa):
    """Rows holding y > 0, +inf or NaN (not log-probabilities) beside valid
    rows: the first pass sees them and the row goes to the scalar formula
    dy - exp(y) s (libm exp, IEEE propagation), whatever the float32-lane
    write would do.  Each bad value at the row's start, middle and end (the
    masked tail), out of place and in place (out=dy): against the float64
    reference, non-finite entries exactly."""
    rng = np.random.default_rng(n)
    rows = 12
    y = (-rng.uniform(0, 20, size=(rows, n))).astype(np.float32)
    dy = rng.normal(size=(rows, n)).astype(np.float32)
    bad = [0.5, 3.0, np.inf, np.nan]
    for k in range(rows - 2):
        y[k, [0, n // 2, n - 1][k % 3]] = bad[k % 4]
    dy[3] = 0.0                          # s = 0: +inf * 0 is NaN at y = +inf
    dy[3, 0] = 0.0
    ref = H.ref_log_softmax_bwd(y, dy)
    got = csoftmax.log_softmax_backward(y, dy)
    H.assert_within(got, ref, "log_softmax_backward")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(np.asarray(ref)))
    d2 = dy.copy()
    np.testing.assert_array_equal(csoftmax.log_softmax_backward(y, d2, out=d2), got)


def test_log_softmax_backward_float32_lanes_binade(isa):
    """A review's worst case of the float32-lane write: a result just below
    a power of two where dy and exp(y) s do not cancel, so each of the three
    differences may round into the binade above -- 2.98 ULP beyond 2^-36
    cond on AVX2 (0.28 on the scalar table).  The contract (4) holds; this
    pins the margin: <= 3.5 on every table (three roundings of about the
    result's size; AVX-512's table split differs, not measured here)."""
    y = np.full((1, 32), -np.inf, np.float32)
    y[0, 1:8] = -1.0
    y[0, 0] = float.fromhex("-0x1.18aa5cp+1")
    dy = np.zeros((1, 32), np.float32)
    dy[0, 0] = float.fromhex("-0x1.de7898p+10")
    dy[0, 8] = float.fromhex("-0x1.7aae94p+12")
    got = csoftmax.log_softmax_backward(y, dy)
    ref = H.ref_log_softmax_bwd(y, dy)
    H.assert_within(got, ref, "log_softmax_backward")
    err = H.err_ulps(got, ref, np.float32, 2.0 ** -36, ref.cond)
    assert err.max() <= 3.5, err.max()


def test_log_softmax_backward_float32_lanes_tiny_sum(isa):
    """The float32-lane write of float32 log_softmax_backward (AVX-512)
    leaves the vectors where exp(y) |s| < 2^-100 to the float64-lane form:
    there the scaled terms round below the normal range, and a review's row
    (s near 2^-127, a result near 2^-125) came out 3.2 ULP off (within the
    contract's 4, with no margin).  Every table: within 1 ULP."""
    y = np.zeros((1, 32), np.float32)
    dy = np.zeros((1, 32), np.float32)
    y[0, 0] = float.fromhex("-0x1.259842p-1")
    dy[0, 0] = float.fromhex("0x1.858aa6p-126")
    dy[0, 1] = float.fromhex("-0x1.2f58c8p-125")
    got = csoftmax.log_softmax_backward(y, dy)
    ref = H.ref_log_softmax_bwd(y, dy)
    H.assert_within(got, ref, 1, what="tiny sum")
    assert float(np.asarray(ref)[0, 0]) == float.fromhex("0x1.ffed299793127p-126")
