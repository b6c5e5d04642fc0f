"""csoftmax.dask on a dask.distributed LocalCluster (2 worker processes).

Every result is compared with the in-memory csoftmax result on the same data.
Bounds.  float32 softmax / log_softmax / logsumexp within 4 ULP of the
in-memory result (the core's bound; the merged (max, log-sum) state differs
from the in-memory one by ~1 float64 rounding, so float32 outputs are almost
always bit-identical).  float64 (and gradients, whose entries
``c (p A - w q')`` cancel): the in-memory result itself is only as good as
the float64 rounding of ``a = (x - max)/T`` and ``a - log-sum`` (ulp(|a|)),
so the bound is 8 ULP plus that conditioning term -- 16 eps (1 + |y| + max|x/T|)
absolute in the log domain, the same relative for softmax, and for
gradients 4 ULP plus 4 eps * max|grad| of the row absolute.  Losses: rtol
4e-7 (float32) / 1e-13 (float64).  Non-finite reference elements must match
exactly.
"""
import numpy as np
import pytest

pytest.importorskip("dask.distributed")
import dask  # noqa: E402
import dask.array as da  # noqa: E402
from dask.distributed import Client, LocalCluster  # noqa: E402

import csoftmax  # noqa: E402
import csoftmax.dask as cd  # noqa: E402

MEMORY_LIMIT = 200e6                         # bytes per worker


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                           memory_limit=int(MEMORY_LIMIT), dashboard_address=None)
    c = Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _nonfinite_match(got, want):
    assert np.array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf])
    return np.isfinite(want)


def ulp(got, want, dtype, slack=0.0):
    """max |got - want| in ULP of `dtype` after subtracting `slack` (abs)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    fin = _nonfinite_match(got, want)
    sp = np.spacing(np.abs(want[fin]).astype(dtype)).astype(np.float64)
    sp = np.maximum(sp, np.spacing(np.zeros((), dtype)).astype(np.float64))
    d = np.abs(got[fin] - want[fin]) - np.broadcast_to(slack, got.shape)[fin]
    e = np.maximum(d, 0.0) / sp
    return float(e.max()) if e.size else 0.0


def check(op, got, want, x, T=1.0):
    """Bounds of the module docstring for softmax-family results."""
    dtype = want.dtype.type
    if dtype == np.float32:
        assert ulp(got, want, dtype) <= 4
        return
    with np.errstate(all="ignore"):
        xs = np.nanmax(np.abs(x[np.isfinite(x)])) / T if np.isfinite(x).any() else 0.0
        lg = np.abs(np.log(np.abs(want))) if op == "softmax" else np.abs(want)
        cond = 16 * np.finfo(np.float64).eps * (1 + np.where(np.isfinite(lg), lg, 0) + xs)
    slack = cond * np.abs(want) if op == "softmax" else cond
    assert ulp(got, want, dtype, np.where(np.isfinite(slack), slack, 0)) <= 8


def check_grad(got, want):
    dtype = want.dtype.type
    rowmax = np.max(np.abs(want), axis=-1, keepdims=True)
    assert ulp(got, want, dtype, 4 * np.finfo(dtype).eps * rowmax) <= 4


def _data(shape, dtype, seed=0, scale=6.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


CHUNKS = [(7, 101), (40, 13), (9, 25)]       # rows only / classes only / both


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks", CHUNKS, ids=str)
def test_softmax_family(client, dtype, chunks):
    x = _data((40, 101), dtype)
    X = da.from_array(x, chunks=chunks)
    combos = [(axis, T) for axis in (-1, 0) for T in (1.0, 0.3)]
    lazy = [(cd.softmax(X, a, temperature=T), cd.log_softmax(X, a, temperature=T),
             cd.logsumexp(X, a)) for a, T in combos]
    for (axis, T), (sm, lsm, r) in zip(combos, dask.compute(*lazy)):   # one round trip
        assert sm.dtype == dtype and sm.shape == x.shape and r.dtype == dtype
        check("softmax", sm, csoftmax.softmax(x, axis, temperature=T), x, T)
        check("log_softmax", lsm, csoftmax.log_softmax(x, axis, temperature=T), x, T)
        check("logsumexp", r, csoftmax.logsumexp(x, axis), x)
    r = cd.logsumexp(X, 0, keepdims=True, split_every=2).compute()
    assert r.shape == (1, 101)
    check("logsumexp", r, csoftmax.logsumexp(x, 0, keepdims=True), x)


def test_three_d_middle_axis(client):
    x = _data((6, 50, 4), np.float32, seed=1)
    X = da.from_array(x, chunks=(3, 11, 2))
    assert ulp(cd.softmax(X, 1).compute(), csoftmax.softmax(x, 1), np.float32) <= 4
    assert ulp(cd.logsumexp(X, 1).compute(), csoftmax.logsumexp(x, 1), np.float32) <= 4


def test_special_values_across_chunks(client):
    x = np.zeros((6, 8))
    x[0] = [0, -40, -40, -40, -40, -40, -40, -40]     # tiny sum: log1p path
    x[1] = -np.inf
    x[2, 5] = np.inf
    x[3, 6] = np.nan
    x[4] = [1e300, -1e300, 5, 1e300, 0, 0, 0, 1]
    x[5, :] = -1e8
    X = da.from_array(x, chunks=(2, 3))
    check("logsumexp", cd.logsumexp(X, -1).compute(), csoftmax.logsumexp(x, axis=-1), x)
    assert cd.logsumexp(X, -1).compute()[0] == pytest.approx(7 * np.exp(-40), rel=1e-14)
    with np.errstate(all="ignore"):
        got = cd.softmax(X).compute()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(csoftmax.softmax(x)))
    ok = ~np.isnan(got)
    check("softmax", got[ok], csoftmax.softmax(x)[ok], x)


CE_CASES = [dict(), dict(reduction="sum"), dict(reduction="none"),
            dict(weight="w", label_smoothing=0.15, temperature=1.7),
            dict(weight="w", reduction="none", ignore_index=3)]


CE_PARAMS = ([(c, CE_CASES[0]) for c in CHUNKS]
             + [(CHUNKS[-1], case) for case in CE_CASES[1:]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunks,case", CE_PARAMS, ids=str)
def test_cross_entropy(client, dtype, chunks, case):
    x = _data((40, 101), dtype, seed=2)
    rng = np.random.default_rng(3)
    t = rng.integers(0, 101, 40)
    t[[1, 17]] = case.get("ignore_index", -100)
    kw = dict(case)
    if kw.get("weight") == "w":
        kw["weight"] = rng.random(101) + 0.5
    X = da.from_array(x, chunks=chunks)
    loss, grad = dask.compute(*cd.cross_entropy(X, t, return_grad=True, **kw))
    L, G = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
    assert np.asarray(loss).dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(loss, L, rtol=4e-7 if dtype == np.float32 else 1e-13)
    check_grad(grad, G)
    assert np.all(grad[[1, 17]] == 0) or kw.get("ignore_index") is None


def test_cross_entropy_class_axis_0_and_dask_target(client):
    x = _data((30, 12), np.float64, seed=4)           # classes on axis 0
    t = np.arange(12) % 30
    X = da.from_array(x, chunks=(7, 5))
    T = da.from_array(t, chunks=4)                      # rechunked to match
    loss, grad = dask.compute(*cd.cross_entropy(X, T, axis=0, return_grad=True,
                                                label_smoothing=0.1))
    L, G = csoftmax.cross_entropy(x, t, axis=0, return_grad=True, label_smoothing=0.1)
    np.testing.assert_allclose(loss, L, rtol=1e-13)
    check_grad(grad.T, G.T)


def test_cross_entropy_zero_total_weight(client):
    """'mean' over kept samples of total weight 0: NaN loss and NaN gradient
    rows, as in memory (was +inf with label smoothing)."""
    x = np.zeros((6, 4))
    t = np.array([1, 1, -100, 1, 1, 1])
    w = np.array([1.0, 0.0, 0.0, 0.0])
    X = da.from_array(x, chunks=(2, 4))
    loss, grad = dask.compute(*cd.cross_entropy(X, t, weight=w, label_smoothing=0.1,
                                                return_grad=True))
    L, G = csoftmax.cross_entropy(x, t, weight=w, label_smoothing=0.1, return_grad=True)
    assert np.isnan(loss) and np.isnan(L)
    np.testing.assert_array_equal(grad, G)


def test_errors(client):
    X = da.ones((4, 6), chunks=(2, 3))
    with pytest.raises(ValueError, match="not a class index"):
        cd.cross_entropy(X, np.array([0, 1, 2, 6])).compute()
    with pytest.raises(TypeError, match="integer class indices"):
        cd.cross_entropy(X, np.ones((4, 6)))
    with pytest.raises(ValueError, match="expected"):
        cd.cross_entropy(X, np.zeros(5, int))
    with pytest.raises(TypeError, match="single integer"):
        cd.softmax(X, axis=(0, 1))
    with pytest.raises(TypeError, match="complex"):
        cd.logsumexp(da.ones((2, 2), dtype=complex))
    with pytest.raises(ValueError, match="temperature"):
        cd.softmax(X, temperature=0)


def test_larger_than_a_worker(client):
    """~268 MB of float32 logits, generated chunk by chunk on the workers
    (never whole anywhere), sharded along rows and the vocabulary (8 MB
    chunks), against workers limited to 200 MB each."""
    B, V = 2048, 32768
    assert B * V * 4 > 1.3 * MEMORY_LIMIT
    X = da.random.default_rng(42).standard_normal((B, V), chunks=(256, 8192),
                                                  dtype=np.float32) * 4
    tv = np.random.default_rng(5).integers(0, V, B)
    t = da.from_array(tv, chunks=256)
    head = slice(0, 128)

    # one graph at a time: each streams X through the workers chunk by chunk
    lse_v = cd.logsumexp(X, -1).compute()
    rs = cd.softmax(X).sum(axis=1, dtype=np.float64).compute()
    x_head = X[head].compute()
    assert ulp(lse_v[head], csoftmax.logsumexp(x_head, axis=1), np.float32) <= 4
    np.testing.assert_allclose(rs, 1.0, rtol=1e-5)

    loss, grad = cd.cross_entropy(X, t, return_grad=True, label_smoothing=0.1)
    loss_v, per = dask.compute(loss, cd.cross_entropy(X, t, label_smoothing=0.1,
                                                      reduction="none"))
    g_head = grad[head].compute()
    g_rowsum = grad.sum(axis=1, dtype=np.float64).compute()
    L, G = csoftmax.cross_entropy(x_head, tv[head], return_grad=True, label_smoothing=0.1,
                                  reduction="none")
    np.testing.assert_allclose(per[head], L, rtol=4e-7)
    np.testing.assert_allclose(loss_v, per.astype(np.float64).mean(), rtol=4e-7)
    check_grad(g_head, G / B)                    # 'mean' = sum / 2**11 (exact scaling)
    np.testing.assert_allclose(g_rowsum, 0.0, atol=1e-9)


@pytest.mark.parametrize("axis", [None, (0, 1), (1, 2), (0, 2)])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_logsumexp_default_and_several_axes(client, axis, dt):
    """The default reduces every axis, as csoftmax.logsumexp and
    csoftmax.jax.logsumexp; several axes are merged in float64 and rounded
    once (float32: within the 4 ULP contract)."""
    x = (np.random.default_rng(9).standard_normal((6, 10, 7)) * 5).astype(dt)
    X = da.from_array(x, chunks=(4, 3, 5))
    got = (cd.logsumexp(X) if axis is None else cd.logsumexp(X, axis)).compute()
    want = csoftmax.logsumexp(x, axis=axis)
    assert got.dtype == want.dtype and np.shape(got) == np.shape(want)
    assert np.all(ulp(got, want, dt) <= (4 if dt == np.float32 else 16))
    kd = cd.logsumexp(X, axis, keepdims=True).compute()
    assert kd.shape == csoftmax.logsumexp(x, axis=axis, keepdims=True).shape


@pytest.mark.parametrize("chunks", [((3,), (2, 0, 2)), ((3,), (0, 4)), ((1, 0, 2), (4, 0))])
def test_zero_width_chunks(chunks):
    """Chunks of width 0 along the class axis (slicing, fancy indexing):
    reshape(-1, 0) of the row view failed in softmax, log_softmax and
    cross_entropy (logsumexp took them)."""
    x = np.arange(12.).reshape(3, 4) / 3
    xd = da.from_array(x, chunks=chunks)
    t = np.array([0, 3, 1])
    np.testing.assert_allclose(cd.softmax(xd, 1).compute(), csoftmax.softmax(x, 1), rtol=1e-15)
    np.testing.assert_allclose(cd.log_softmax(xd, 1).compute(), csoftmax.log_softmax(x, 1),
                               rtol=1e-15)
    np.testing.assert_allclose(cd.logsumexp(xd, 1).compute(), csoftmax.logsumexp(x, 1),
                               rtol=1e-15)
    for kw in ({}, {"label_smoothing": 0.1, "weight": np.arange(1., 5.)}):
        l, g = cd.cross_entropy(xd, t, return_grad=True, **kw)
        l2, g2 = csoftmax.cross_entropy(x, t, return_grad=True, **kw)
        np.testing.assert_allclose(l.compute(), l2, rtol=1e-14)
        np.testing.assert_allclose(g.compute(), g2, rtol=1e-13, atol=1e-16)


def test_bfloat16_as_in_memory():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.random.default_rng(0).standard_normal((6, 8)).astype(ml_dtypes.bfloat16)
    xd = da.from_array(x, chunks=(3, 4))
    for f in ("softmax", "log_softmax"):
        a, b = getattr(cd, f)(xd, 1).compute(), getattr(csoftmax, f)(x, 1)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.astype(np.float32), b.astype(np.float32))
    t = np.arange(6) % 8
    lo, g = cd.cross_entropy(xd, t, return_grad=True)
    lo2, g2 = csoftmax.cross_entropy(x, t, return_grad=True)
    assert g.dtype == g2.dtype
    np.testing.assert_array_equal(g.compute().astype(np.float32), g2.astype(np.float32))
    assert float(lo.compute()) == float(lo2)
    # a bfloat16 where= is a number mask, as in memory (it was refused)
    m = np.array([1, 0, 1, 1, 1, 0, 1, 1], ml_dtypes.bfloat16)
    np.testing.assert_array_equal(cd.softmax(xd, 1, where=m).compute(),
                                  csoftmax.softmax(x, 1, where=m))


def test_bad_label_with_weights_is_a_value_error():
    """w[t] in the mean's denominator ran before the label check: IndexError
    (or a silently wrapped w[-5]) depending on task order."""
    xd = da.from_array(np.ones((3, 4)), chunks=2)
    for bad in (-100, -5, 9):
        with pytest.raises(ValueError, match="not a class index"):
            cd.cross_entropy(xd, np.array([0, bad, 1]), weight=np.ones(4),
                             ignore_index=-1).compute()


@pytest.mark.parametrize("chunks", [(2, 20000), (2, 5000), (1, 1250)])
def test_logsumexp_cancelling_across_chunks(client, chunks):
    """log-probabilities whose mass is 0.9 in one chunk and 0.1 spread over
    the others: no chunk's own LSE cancels, the merged one does (float32
    chunk states carried the rest to 2^-28.5: 1e7 ULP).  Against the
    in-memory result, which redoes the cancelling row in float64."""
    rng = np.random.default_rng(5)
    n = 20000
    q = rng.random(n - 1) + 0.05
    p = np.insert(q / q.sum() * 0.1, 123, 0.9)
    x = np.stack([np.log(p), np.log(p[::-1])]).astype(np.float32)
    want = csoftmax.logsumexp(x, axis=1)
    assert np.all(np.abs(want) < 1e-6)
    got = cd.logsumexp(da.from_array(x, chunks=chunks), axis=1).compute()
    assert got.dtype == np.float32
    # the in-memory value is within 4 ULP (plus the float64 redo's own
    # rounding, ~1e-17 here) of the exact one: allow 8 ULP between the two
    np.testing.assert_array_less(np.abs(got.astype(np.float64) - want),
                                 8 * np.spacing(np.abs(want)).astype(np.float64) + 1e-16)


def test_session8_audit_cases():
    """The dask audit of session 8: (1) float32 CE gradient with label
    smoothing from float32 states (2.9e4 ULP; cancels even with one chunk);
    (2) float64 CE with smoothing summed sum_c w_c x_c - W m (NaN near
    1e308, 2e4 ULP near 1e6); (3) lse_state merging float32 chunk states
    (8e6 ULP); (4) merge_states(axis=-1) failed; (5) logsumexp of 0-d
    raised; (6) 'mean' over weights summing to 0: sum / 0 as in memory."""
    with dask.config.set(scheduler="synchronous"):
        rng = np.random.default_rng(0)
        x = (1e-3 * rng.standard_normal((4, 1000))).astype(np.float32)
        t = rng.integers(0, 1000, 4)
        _, gm = csoftmax.cross_entropy(x, t, label_smoothing=1.0, reduction="sum",
                                       return_grad=True)
        for ch in [(4, 1000), (4, 250)]:
            _, gd = cd.cross_entropy(da.from_array(x, chunks=ch), t, label_smoothing=1.0,
                                     reduction="sum", return_grad=True)
            gd = gd.compute()
            assert gd.dtype == np.float32
            assert np.max(np.abs(gd.astype(np.float64) - gm) / np.spacing(np.abs(gm))) <= 4
        x = np.array([[1e308, 1e308, 1e308, 0.0]])
        want = csoftmax.cross_entropy(x, np.array([0]), label_smoothing=0.1, reduction="none")
        got = cd.cross_entropy(da.from_array(x), np.array([0]), label_smoothing=0.1,
                               reduction="none").compute()
        np.testing.assert_allclose(got, want, rtol=1e-14)
        x = rng.standard_normal((4, 1000)) + 1e6
        t = rng.integers(0, 1000, 4)
        want = csoftmax.cross_entropy(x, t, label_smoothing=0.1, reduction="none")
        got = cd.cross_entropy(da.from_array(x, chunks=(2, 300)), t, label_smoothing=0.1,
                               reduction="none").compute()
        assert np.max(np.abs(got - want) / np.spacing(want)) <= 16
        n = 20000
        q = np.random.default_rng(5).random(n - 1) + 0.05
        x = np.log(np.insert(q / q.sum() * 0.1, 123, 0.9))[None].astype(np.float32)
        st = cd.lse_state(da.from_array(x, chunks=(1, 5000)), -1).compute()
        ref = csoftmax.logsumexp(x, axis=-1)
        assert np.all(np.abs(st["m"] + st["l"] - ref) <= 4 * np.spacing(np.abs(ref)))
        s = np.zeros((2, 3), cd.STATE)
        s["l"] = np.log([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
        np.testing.assert_array_equal(cd.merge_states(s, axis=-1, keepdims=False),
                                      cd.merge_states(s, axis=1, keepdims=False))
        assert cd.logsumexp(da.from_array(np.float32(2.0))).compute() == np.float32(2.0)
        xw = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
        tw, w = np.array([0, 1]), np.array([1.0, -1.0, 0.0])
        assert (cd.cross_entropy(da.from_array(xw), tw, weight=w).compute()
                == csoftmax.cross_entropy(xw, tw, weight=w) == np.inf)


def test_label_smoothing_read_as_the_core_does():
    """label_smoothing goes through the core's real_scalar (it took float():
    strings were numbers, 10**400 a bare OverflowError)."""
    x = da.from_array(np.ones((4, 3)), chunks=2)
    t = da.from_array(np.array([0, 1, 2, 0]), chunks=2)
    for bad, exc in (("0.1", TypeError), (10 ** 400, ValueError), (np.complex128(0.1), TypeError)):
        with pytest.raises(exc, match="label_smoothing"):
            cd.cross_entropy(x, t, label_smoothing=bad)


@pytest.mark.parametrize("reduction", ["sum", "none", "mean"])
def test_cross_entropy_zero_weight_row_with_inf_logit(client, reduction):
    """A row whose class weight is 0 has a zero gradient, also where it
    holds a +inf logit (dask formed 0 * p: NaN there), as in memory."""
    x = np.array([[np.inf, 0.0, 1.0], [0.0, 1.0, 2.0], [1.0, np.inf, 0.0]])
    t = np.array([1, 0, 2])
    w = np.array([1.0, 0.0, 1.0])
    L, G = csoftmax.cross_entropy(x, t, weight=w, reduction=reduction, return_grad=True)
    for chunks in ((3, 3), (3, 1), (3, 2)):
        loss, grad = dask.compute(*cd.cross_entropy(da.from_array(x, chunks=chunks), t,
                                                    weight=w, reduction=reduction,
                                                    return_grad=True))
        np.testing.assert_array_equal(grad[0], G[0])
        assert np.all(grad[0] == 0)
        np.testing.assert_array_equal(np.isnan(grad), np.isnan(G))
        np.testing.assert_array_equal(np.isnan(loss), np.isnan(L))


def test_masked_arrays_refused_at_the_call():
    """A numpy MaskedArray for any array argument (x, where=, target,
    weights, W, bias) would reach the workers through np.asarray with its
    mask dropped: refused at the call with the core API's TypeError (no
    client needed: nothing is computed)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    ma = np.ma.masked_array
    one = np.eye(1, 3, dtype=bool)[0]
    calls = {
        "x": lambda: cd.softmax(ma(x, mask=np.eye(4, 3, dtype=bool))),
        "logits": lambda: cd.cross_entropy(ma(x, mask=np.eye(4, 3, dtype=bool)), t),
        "where": lambda: cd.logsumexp(da.from_array(x), axis=-1,
                                      where=ma(np.ones(3, bool), mask=one)),
        "target": lambda: cd.cross_entropy(da.from_array(x), ma(t, mask=[0, 1, 0, 0])),
        "weight": lambda: cd.cross_entropy(da.from_array(x), t, weight=ma(np.ones(3), mask=one)),
    }
    h, W = rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    calls["weight "] = lambda: cd.linear_cross_entropy(
        da.from_array(h), ma(W, mask=np.eye(3, 2, dtype=bool)), t)
    calls["bias"] = lambda: cd.linear_cross_entropy(da.from_array(h), W, t,
                                                    bias=ma(np.zeros(3), mask=one))
    calls["class_weight"] = lambda: cd.linear_cross_entropy(
        da.from_array(h), W, t, class_weight=ma(np.ones(3), mask=one))
    calls["target "] = lambda: cd.linear_cross_entropy(da.from_array(h), W,
                                                       ma(t, mask=[0, 1, 0, 0]))
    for name, call in calls.items():
        with pytest.raises(TypeError, match=rf"{name.strip()} is a numpy\.ma\.MaskedArray"):
            call()
