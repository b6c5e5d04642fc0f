"""csoftmax.linear_cross_entropy: values and gradients against a float64 /
long double reference, errors, the memory bound, the torch and dask adapters.

Bounds (per element, u = unit roundoff of the dtype, K the GEMM's inner
length, gamma_K = K u / (1 - K u), the rigorous GEMM bound):

* logits dz: |z32 - z| <= gamma_D (|h| |W|^T + |b|) + u |z| (GEMM + bias
  add).  The tests with "exact" data use values on a grid fine enough that
  the GEMM is exact (dz = 0): the loss is then within cross_entropy's
  contract of the reference, nothing added.
* loss: cross_entropy's contract (4 ULP + kappa cond) plus sum |G| dz, the
  first-order change of the loss under the logit error (G = dL/dz).
* G (not returned, feeds the GEMMs): |dG| <= 8u |G| + kappa gcond (the
  contract, ulp <= 2u|G|) + coef |sum w q'| p 2 max_c dz / T (the change
  of p under dz).
* dh = G W: |dG| |W| + gamma_V |G| |W| (+ 4 ULP of the result);
  dW = G^T h: |dG|^T |h| + gamma_B |G|^T |h|; db = sum_i G: sum_i |dG|
  (summed in float64).
"""
import tracemalloc

import numpy as np
import pytest

import csoftmax
from _helpers import KAPPA, assert_within, mkref, ref_ce, work_dtype

RNG = np.random.default_rng(20)
DTYPES = [np.float32, np.float64]


def _gamma(k, dt):
    u = np.finfo(dt).eps / 2
    return k * u / (1 - k * u)


def make(B, D, V, dt, *, exact=True, bias=False, rng=RNG):
    """h (B, D), W (V, D), b (V,).  exact: multiples of 1/8 and 1/16 in
    [-1, 1] and [-1/2, 1/2] (D <= 64: |z| <= 32 on a 1/128 grid: the
    float32 GEMM and bias add are exact)."""
    if exact:
        h = rng.integers(-8, 9, (B, D)) / 8.0
        W = rng.integers(-8, 9, (V, D)) / 16.0
        b = rng.integers(-64, 65, V) / 128.0
    else:
        h = rng.standard_normal((B, D))
        W = rng.standard_normal((V, D)) * 0.3
        b = rng.standard_normal(V)
    return h.astype(dt), W.astype(dt), (b.astype(dt) if bias else None)


def reference(h, W, t, b=None, *, exact, dt, class_weight=None, ignore_index=-100,
              reduction="mean", label_smoothing=0.0, temperature=1.0):
    """(loss, dh, dW, db) as Ref values with the bounds of the module doc."""
    wd = work_dtype(dt)
    u = wd(np.finfo(dt).eps / 2)
    hw, Ww = h.astype(wd), W.astype(wd)
    z = hw @ Ww.T + (0 if b is None else b.astype(wd))
    B, D = h.shape
    V = W.shape[0]
    if exact:
        dz = np.zeros_like(z)
    else:
        dz = _gamma(D, dt) * (np.abs(hw) @ np.abs(Ww).T
                              + (0 if b is None else np.abs(b.astype(wd)))) + u * np.abs(z)
    loss, G = ref_ce(z, t, weight=class_weight, ignore_index=ignore_index,
                     reduction=reduction, label_smoothing=label_smoothing,
                     temperature=temperature, dtype=dt)
    G = np.asarray(G).astype(wd)
    gcond = np.asarray(ref_ce(z, t, weight=class_weight, ignore_index=ignore_index,
                              reduction=reduction, label_smoothing=label_smoothing,
                              temperature=temperature, dtype=dt)[1].cond).astype(wd)
    kap = wd(KAPPA[np.dtype(dt)])
    # loss: contract + first-order propagation of dz
    lprop = (np.abs(G) * dz).sum(-1)
    lprop = lprop if reduction == "none" else lprop.sum()
    lossref = mkref(np.asarray(loss), np.asarray(loss.cond) + lprop / kap)
    # |dG|: contract + change of p under dz (p from the reference row state)
    zs = z / wd(temperature)
    p = np.exp(zs - zs.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mz = 2 * dz.max(-1, keepdims=True) / wd(temperature)
    # coef |sum_c w_c q'_c| <= the largest |G| entry of the row + max p-part:
    # bound it by sum_c |G_c| / (1 - max p) ... simpler, and larger: sum |G|
    dG = 8 * u * np.abs(G) + kap * gcond + np.abs(G).sum(-1, keepdims=True) * p * mz
    aW, ah = np.abs(Ww), np.abs(hw)
    dh = mkref(G @ Ww, (dG @ aW + _gamma(V, dt) * (np.abs(G) @ aW)) / kap)
    dW = mkref(G.T @ hw, (dG.T @ ah + _gamma(B, dt) * (np.abs(G).T @ ah)) / kap)
    db = mkref(G.sum(0), (dG.sum(0) + 2 * u * np.abs(G).sum(0)) / kap)
    return lossref, dh, dW, db


def check(h, W, t, b=None, *, exact=True, chunk_size=None, **kw):
    dt = h.dtype.type
    got = csoftmax.linear_cross_entropy(h, W, t, bias=b, return_grad=True,
                                        chunk_size=chunk_size, **kw)
    loss, grads = got
    lr, dh, dW, db = reference(h, W, t, b, exact=exact, dt=dt, **kw)
    what = f"{np.dtype(dt)} chunk={chunk_size} {kw}"
    assert np.asarray(loss).dtype == dt
    assert_within(np.asarray(loss), lr, "cross_entropy", what="loss " + what)
    assert grads[0].shape == h.shape and grads[0].dtype == dt
    assert grads[1].shape == W.shape and grads[1].dtype == dt
    assert_within(grads[0], dh, 4, what="dh " + what)
    assert_within(grads[1], dW, 4, what="dW " + what)
    if b is not None:
        assert len(grads) == 3 and grads[2].shape == b.shape and grads[2].dtype == dt
        assert_within(grads[2], db, 4, what="db " + what)
    else:
        assert len(grads) == 2
    # the loss alone is the same number
    lo2 = csoftmax.linear_cross_entropy(h, W, t, bias=b, chunk_size=chunk_size, **kw)
    np.testing.assert_array_equal(np.asarray(lo2), np.asarray(loss))
    return loss, grads


# ---------------------------------------------------------------------------
# values and gradients

@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("chunk", [1, 7, 16, 1000, None])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_hard_labels(dt, chunk, reduction):
    B, D, V = 37, 24, 53
    h, W, b = make(B, D, V, dt, bias=True)
    y = RNG.integers(0, V, B)
    y[[2, 11]] = -100
    check(h, W, y, b, chunk_size=chunk, reduction=reduction)
    check(h, W, y, None, chunk_size=chunk, reduction=reduction)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_all_options(dt, chunk):
    """class weights, a non-negative ignore_index, smoothing, temperature."""
    B, D, V = 29, 40, 67
    h, W, b = make(B, D, V, dt, bias=True)
    y = RNG.integers(0, V, B)
    y[::5] = 3                         # ignored class
    cw = RNG.random(V) + 0.25
    for reduction in ("mean", "sum", "none"):
        check(h, W, y, b, chunk_size=chunk, class_weight=cw, ignore_index=3,
              label_smoothing=0.15, temperature=0.7, reduction=reduction)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_probability_targets(dt, chunk):
    B, D, V = 23, 16, 41
    h, W, b = make(B, D, V, dt, bias=True)
    q = RNG.random((B, V))
    q /= q.sum(-1, keepdims=True)
    for reduction in ("mean", "none"):
        check(h, W, q.astype(dt), b, chunk_size=chunk, reduction=reduction)
        check(h, W, q.astype(dt), None, chunk_size=chunk, class_weight=RNG.random(V),
              label_smoothing=0.1, temperature=1.9, reduction=reduction)


@pytest.mark.parametrize("dt", DTYPES)
def test_random_data_vs_float64(dt):
    """Inexact GEMMs: the reference is F.cross_entropy(h @ W.T + b) in float64
    / long double; the bound adds the logits' rounding (module doc)."""
    B, D, V = 50, 96, 300
    h, W, b = make(B, D, V, dt, exact=False, bias=True)
    y = RNG.integers(0, V, B)
    for chunk in (7, 64, None):
        check(h, W, y, b, exact=False, chunk_size=chunk, label_smoothing=0.05)
        check(h, W, y, b, exact=False, chunk_size=chunk, reduction="none",
              temperature=2.5)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_chunk_invariance_and_leading_dims(dt):
    """Rows are independent: the loss per row does not depend on the chunk
    (bitwise for 'none' with exact GEMMs); h of shape (..., D)."""
    h, W, b = make(30, 16, 21, dt, bias=True)
    y = RNG.integers(0, 21, 30)
    ref = csoftmax.linear_cross_entropy(h, W, y, bias=b, reduction="none", chunk_size=30)
    for c in (1, 4, 7, 29, 31, 10 ** 9):
        got = csoftmax.linear_cross_entropy(h, W, y, bias=b, reduction="none", chunk_size=c)
        np.testing.assert_array_equal(got, ref)
    l3, g3 = csoftmax.linear_cross_entropy(h.reshape(5, 6, 16), W, y.reshape(5, 6),
                                           bias=b, reduction="none", return_grad=True)
    l2, g2 = csoftmax.linear_cross_entropy(h, W, y, bias=b, reduction="none",
                                           return_grad=True)
    np.testing.assert_array_equal(l3, l2.reshape(5, 6))
    assert g3[0].shape == (5, 6, 16)
    np.testing.assert_array_equal(g3[0].reshape(30, 16), g2[0])
    np.testing.assert_array_equal(g3[1], g2[1])
    # one sample: h 1-D, target 0-d
    l1 = csoftmax.linear_cross_entropy(h[3], W, y[3], bias=b)
    assert np.ndim(l1) == 0 and l1 == ref[3]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_matches_cross_entropy_bitwise_on_exact_data(dt, isa):
    """With exact logits the loss and the logits' gradient are the fused
    cross_entropy's own numbers (the same kernel pass, in place), whatever
    the chunk -- also in float64, where a row's log-sum-exp once depended on
    its place in a group of 4 (a fuzz found 1 ULP between chunk sizes)."""
    h, W, b = make(40, 32, 70, dt, bias=True)
    y = RNG.integers(0, 70, 40)
    z = h @ W.T + b
    for kw in ({}, dict(label_smoothing=0.2), dict(reduction="sum", temperature=3.0)):
        want = csoftmax.cross_entropy(z, y, **kw)
        for c in (1, 3, 9, None):
            got = csoftmax.linear_cross_entropy(h, W, y, bias=b, chunk_size=c, **kw)
            assert got == want, (kw, c)
    want = csoftmax.cross_entropy(z, y, reduction="none")
    for c in (1, 3, 9):
        got = csoftmax.linear_cross_entropy(h, W, y, bias=b, chunk_size=c, reduction="none")
        np.testing.assert_array_equal(got, want)
    if dt == np.float64:
        return
    # dh = G W with G = cross_entropy's gradient, to the GEMM's rounding
    _, G = csoftmax.cross_entropy(z, y, return_grad=True)
    _, (dh, dW, db) = csoftmax.linear_cross_entropy(h, W, y, bias=b, return_grad=True)
    np.testing.assert_allclose(dh, G @ W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dW, G.T @ h, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(db, G.astype(np.float64).sum(0), rtol=1e-6, atol=1e-9)


def test_edge_cases():
    h, W, _ = make(6, 8, 5, np.float64)
    # every sample ignored: mean is NaN, gradients zero
    y = np.full(6, -100)
    loss, (dh, dW) = csoftmax.linear_cross_entropy(h, W, y, return_grad=True)
    assert np.isnan(loss) and not dh.any() and not dW.any()
    assert csoftmax.linear_cross_entropy(h, W, y, reduction="sum") == 0
    # empty batch
    loss, (dh, dW) = csoftmax.linear_cross_entropy(h[:0], W, y[:0], return_grad=True,
                                                   reduction="sum")
    assert loss == 0 and dh.shape == (0, 8) and dW.shape == (5, 8) and not dW.any()
    # D = 0: logits are the bias
    b = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    loss = csoftmax.linear_cross_entropy(np.zeros((3, 0)), np.zeros((5, 0)),
                                         np.array([0, 1, 4]), bias=b)
    assert np.isclose(loss, csoftmax.cross_entropy(np.tile(b, (3, 1)), np.array([0, 1, 4])))
    # huge logits: no overflow (float64 sums)
    loss = csoftmax.linear_cross_entropy(np.array([[1e8]], np.float32),
                                         np.array([[1.0], [0.0]], np.float32), np.array([1]))
    assert loss == np.float32(1e8)


def test_dtypes():
    h, W, b = make(5, 4, 6, np.float64, bias=True)
    y = np.arange(5)
    f = csoftmax.linear_cross_entropy
    assert f(h.astype(np.float32), W.astype(np.float32), y).dtype == np.float32
    assert f(h.astype(np.float32), W, y).dtype == np.float64
    assert f(h, W.astype(np.float32), y).dtype == np.float64
    assert f(h.astype(np.float32), W.astype(np.float32), y, bias=b).dtype == np.float64
    assert f((h * 8).astype(int), W, y).dtype == np.float64
    # non-contiguous inputs: same numbers as contiguous ones
    hn = np.asfortranarray(h)
    Wn = np.ascontiguousarray(W[:, ::-1])[:, ::-1]
    np.testing.assert_array_equal(f(hn, Wn, y, reduction="none"), f(h, W, y, reduction="none"))


# ---------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("args,kw,exc,msg", [
    ((np.zeros(()), np.zeros((3, 1)), 0), {}, ValueError, "at least one dimension"),
    ((np.zeros((2, 4)), np.zeros(4), [0, 1]), {}, ValueError, "weight must be 2-D"),
    ((np.zeros((2, 4)), np.zeros((3, 5)), [0, 1]), {}, ValueError, "expected \\(3, 4\\)"),
    ((np.zeros((2, 4)), np.zeros((0, 4)), [0, 1]), {}, ValueError, "no classes"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 3]), {}, ValueError, r"target\[1\] = 3"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, -1]), {}, ValueError, r"target\[1\] = -1"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1, 2]), {}, ValueError, "target has shape"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0.0, 1.0]), {}, TypeError, "integer dtype"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), np.zeros((2, 3), int)), {}, TypeError,
     "must be floating"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), np.zeros((2, 3))), dict(ignore_index=0),
     ValueError, "not supported with probability"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(bias=np.zeros(4)), ValueError,
     "bias has shape"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(class_weight=np.zeros(2)),
     ValueError, "class_weight has shape"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(chunk_size=0), ValueError,
     "chunk_size must be >= 1"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(chunk_size=2.0), TypeError,
     "chunk_size must be an integer"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(chunk_size=True), TypeError,
     "chunk_size must be an integer"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(reduction="avg"), ValueError,
     "reduction must be"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(label_smoothing=1.5), ValueError,
     "label_smoothing"),
    ((np.zeros((2, 4)), np.zeros((3, 4)), [0, 1]), dict(temperature=0), ValueError,
     "temperature"),
    ((np.zeros((2, 4), complex), np.zeros((3, 4)), [0, 1]), {}, TypeError, "complex"),
    ((np.zeros((2, 4)), np.array([["a"] * 4] * 3), [0, 1]), {}, TypeError, "non-numeric"),
])
def test_errors(args, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        csoftmax.linear_cross_entropy(*args, **kw)


# ---------------------------------------------------------------------------
# memory: never the B x V logits

def test_peak_memory_bound():
    """Peak numpy allocation (tracemalloc) of loss + gradients stays under
    2 x chunk x V x itemsize + the outputs (+ O(B + V) bookkeeping), on a
    shape whose B x V logits alone are 4x that bound."""
    B, D, V, chunk = 2048, 64, 4096, 128
    dt = np.float32
    h = RNG.standard_normal((B, D), dtype=dt)
    W = RNG.standard_normal((V, D), dtype=dt)
    b = RNG.standard_normal(V, dtype=dt)
    y = RNG.integers(0, V, B)
    item = np.dtype(dt).itemsize
    outputs = (B * D + V * D + V) * item
    small = 8 * (B + V) * 2 + (1 << 16)          # int64 labels, float64 losses/bias sums
    bound = 2 * chunk * V * item + outputs + small
    assert B * V * item > 4 * bound
    csoftmax.linear_cross_entropy(h[:chunk], W, y[:chunk], return_grad=True)  # warm-up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        loss, grads = csoftmax.linear_cross_entropy(h, W, y, bias=b, return_grad=True,
                                                    chunk_size=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(loss)
    assert peak <= bound, (peak, bound, B * V * item)
    # the default chunk too, against its own bound
    c = csoftmax._lce.default_chunk_size(B, V, item)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        csoftmax.linear_cross_entropy(h, W, y, return_grad=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 2 * c * V * item + outputs + small, (peak, c)


# ---------------------------------------------------------------------------
# torch adapter

def test_torch_adapter():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    import csoftmax.torch as ct
    B, D, V = 33, 24, 57
    for dt in (torch.float32, torch.float64):
        h, W, b = (torch.from_numpy(a) for a in make(B, D, V, np.float64, bias=True))
        h, W, b = h.to(dt), W.to(dt), b.to(dt)
        y = torch.from_numpy(RNG.integers(0, V, B))
        y[4] = -100
        cw = torch.rand(V, dtype=dt) + 0.5
        for kw in (dict(), dict(weight=cw, label_smoothing=0.1, reduction="sum"),
                   dict(reduction="none"), dict(ignore_index=5)):
            yk = torch.where(y == -100, 5, y) if "ignore_index" in kw else y
            args = [t.clone().requires_grad_() for t in (h, W, b)]
            ref = [t.clone().requires_grad_() for t in (h, W, b)]
            got = ct.linear_cross_entropy(args[0], args[1], yk, linear_bias=args[2],
                                          chunk_size=7, **kw)
            want = F.linear_cross_entropy(ref[0], ref[1], yk, linear_bias=ref[2], **kw)
            tol = dict(rtol=2e-5, atol=1e-6) if dt == torch.float32 else dict(rtol=1e-12,
                                                                               atol=1e-14)
            torch.testing.assert_close(got, want, **tol)
            gout = torch.rand_like(got) + 0.5
            got.backward(gout)
            want.backward(gout)
            for a, r in zip(args, ref):
                torch.testing.assert_close(a.grad, r.grad, **tol)
        # probability targets, and only h requiring grad
        q = torch.softmax(torch.randn(B, V, dtype=dt), -1)
        hh = h.clone().requires_grad_()
        hr = h.clone().requires_grad_()
        got = ct.linear_cross_entropy(hh, W, q)
        want = F.cross_entropy(hr @ W.T, q)
        torch.testing.assert_close(got, want, **tol)
        got.backward()
        want.backward()
        torch.testing.assert_close(hh.grad, hr.grad, **tol)
    # torch's options object is accepted (its batch_chunk_size is the chunk)
    if hasattr(torch.nn, "LinearCrossEntropyOptions"):
        opts = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=5)
        got = ct.linear_cross_entropy(h, W, y, options=opts)
        torch.testing.assert_close(got, F.linear_cross_entropy(h, W, y))
    with pytest.raises(ValueError, match="2-D"):
        ct.linear_cross_entropy(h[None], W, y[None])


# ---------------------------------------------------------------------------
# dask adapter

def test_dask_adapter():
    da = pytest.importorskip("dask.array")
    import dask
    import csoftmax.dask as cd
    B, D, V = 45, 16, 31
    h, W, b = make(B, D, V, np.float64, exact=False, bias=True)
    y = RNG.integers(0, V, B)
    y[[0, 17]] = -100
    hd = da.from_array(h, chunks=(10, D))
    yd = da.from_array(y, chunks=10)
    for kw in (dict(), dict(reduction="sum", class_weight=RNG.random(V), label_smoothing=0.1),
               dict(reduction="none", temperature=2.0)):
        want, wg = csoftmax.linear_cross_entropy(h, W, y, bias=b, return_grad=True, **kw)
        loss, grads = cd.linear_cross_entropy(hd, W, yd, bias=b, return_grad=True, **kw)
        loss, grads = dask.compute(loss, grads, scheduler="sync")
        np.testing.assert_allclose(loss, want, rtol=1e-13, atol=1e-15)
        for g, w in zip(grads, wg):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
        lo = cd.linear_cross_entropy(hd, W, yd, bias=b, **kw).compute(scheduler="sync")
        np.testing.assert_allclose(lo, want, rtol=1e-13, atol=1e-15)
    # probability targets, float32
    q = RNG.random((B, V)).astype(np.float32)
    q /= q.sum(-1, keepdims=True)
    h32, W32 = h.astype(np.float32), W.astype(np.float32)
    want, wg = csoftmax.linear_cross_entropy(h32, W32, q, return_grad=True)
    loss, grads = cd.linear_cross_entropy(da.from_array(h32, chunks=(16, D)), W32,
                                          da.from_array(q, chunks=(16, V)), return_grad=True)
    loss, grads = dask.compute(loss, grads, scheduler="sync")
    assert loss.dtype == np.float32 and grads[0].dtype == np.float32
    np.testing.assert_allclose(loss, want, rtol=2e-6)
    np.testing.assert_allclose(grads[0], wg[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grads[1], wg[1], rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="chunked along the features"):
        cd.linear_cross_entropy(da.from_array(h, chunks=(10, 8)), W, yd)


def test_torch_signature():
    """torch's parameters, order and defaults first; the extras keyword-only."""
    import inspect
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    import csoftmax.torch as ct
    if not hasattr(F, "linear_cross_entropy"):
        pytest.skip("torch without F.linear_cross_entropy")
    sig = inspect.signature(ct.linear_cross_entropy)
    rsig = inspect.signature(F.linear_cross_entropy)
    theirs = [(p.name, p.default, p.kind) for p in rsig.parameters.values()]
    mine = list(sig.parameters.values())
    assert [(p.name, p.default, p.kind) for p in mine[:len(theirs)]] == theirs
    assert all(p.kind is p.KEYWORD_ONLY for p in mine[len(theirs):])
    assert "linear_cross_entropy" in ct.__all__
    del torch


def test_dask_distributed():
    """On a LocalCluster of 2 worker processes: the weight is one graph key
    (sent once per worker), results equal the in-memory function's."""
    pytest.importorskip("dask.distributed")
    import dask.array as da
    from dask.distributed import Client, LocalCluster
    import csoftmax.dask as cd
    B, D, V = 60, 8, 19
    h, W, b = make(B, D, V, np.float64, exact=False, bias=True)
    y = RNG.integers(0, V, B)
    want, wg = csoftmax.linear_cross_entropy(h, W, y, bias=b, return_grad=True)
    loss, grads = cd.linear_cross_entropy(da.from_array(h, chunks=(16, D)), W, y, bias=b,
                                          return_grad=True)
    # the weight: one key of the graph, shared by every block's task
    graph = dict(grads[1].__dask_graph__())
    held = [k for k, v in graph.items()
            if getattr(v, "value", v) is W or (isinstance(getattr(v, "value", v), np.ndarray)
                                               and getattr(v, "value", v).shape == W.shape)]
    assert len(held) == 1, held
    blocks = [v for k, v in graph.items() if str(k).startswith("_lce_block")]
    assert len(blocks) == 4
    if all(hasattr(v, "dependencies") for v in blocks):
        assert all(held[0] in v.dependencies for v in blocks)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        loss, dh, dW, db = client.compute([loss, *grads], sync=True)
    np.testing.assert_allclose(loss, want, rtol=1e-13)
    for g, w in zip((dh, dW, db), wg):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
