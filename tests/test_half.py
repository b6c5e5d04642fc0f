"""float16 / bfloat16 input (issue #20 part 2): HALF_BLOCKS -- chunks of the
input converted to float32 scratch, the float32 paths, the result rounded
once back to the input dtype.

Bounds: every element within 1 ULP of the output dtype of the float64
reference of the same (16-bit) input -- plus, for the entries where terms
cancel (backward ops, the cross-entropy gradient), the contract's
kappa * cond term (tests/_helpers.py, README "Accuracy").  The conversion
kernels themselves are tested bit for bit: every 16-bit pattern to float32
and back, and float32 -> 16 bits against NumPy's / ml_dtypes' astype.
"""
import tracemalloc

import numpy as np
import pytest

import csoftmax
from csoftmax import _core

import _helpers as H

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
DTYPES = [F16, BF16]
KIND = {F16: 1, BF16: 2}
KAPPA = 2.0 ** -36          # float64 accumulation of the float32 paths (KAPPA)


def _ids(d):
    return np.dtype(d).name


def ulp_of(want, dt):
    """ULP of each reference value rounded to dt: the subnormal spacing
    below the normal range, and at the largest finite value the spacing
    below it (np.spacing gives inf there)."""
    fi = ml_dtypes.finfo(dt)
    top = float(fi.max) - float(np.nextafter(fi.max, dt.type(0)))
    with np.errstate(all="ignore"):
        w = np.abs(want).astype(dt)
        sp = np.spacing(w).astype(np.float64)
    sp = np.where(np.isfinite(sp), sp, top)
    return np.where(sp > 0, sp, float(fi.smallest_subnormal))


def ulps(got, want, cond=None):
    """Per-element (|got - want| - kappa * cond) / ulp(want) in ULP of got's
    dtype; non-finite references must be matched exactly (inf where not)."""
    g = got.astype(np.float64)
    w = np.asarray(want, dtype=np.float64)
    fin = np.isfinite(w)
    same = (np.isnan(g) & np.isnan(w)) | (g == w)
    with np.errstate(all="ignore"):
        d = np.abs(g - w)
        if cond is not None:
            d = np.maximum(d - KAPPA * np.asarray(cond, dtype=np.float64), 0)
        e = np.where(fin, d / ulp_of(w, got.dtype), np.where(same, 0.0, np.inf))
    return np.where(fin & ~np.isfinite(g), np.inf, e)


def assert_1ulp(got, want, cond=None, what=""):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    with np.errstate(all="ignore"):
        # a finite value beyond the dtype's range: the correctly rounded
        # result is the infinity (log_softmax([max, -max]) in float16)
        r = want.astype(got.dtype).astype(np.float64)
    want = np.where(np.isfinite(want) & np.isinf(r), r, want)
    e = ulps(got, want, cond)
    if e.size:
        i = np.unravel_index(np.argmax(e), e.shape)
        assert e[i] <= 1.0, (f"{what}: {e[i]:.3g} ULP of {got.dtype} at {i}: got "
                             f"{got[i]!r}, want {np.asarray(want)[i]!r}")


def wide(a):
    return np.asarray(a).astype(np.float64)


# ---------------------------------------------------------------------------
# the conversion kernels

@pytest.mark.parametrize("isa_name", _core.available_isas())
@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_cvt_every_pattern(isa_name, dt):
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16).reshape(1, -1)
    f = np.full(bits.shape, 7.0, np.float32)
    _core.half_convert(bits, f, KIND[dt], isa_name)
    want = bits.view(dt).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(f), nan)
    np.testing.assert_array_equal(f.view(np.uint32)[~nan], want.view(np.uint32)[~nan])
    # NaN keeps its sign and payload (quiet bit set)
    back = np.zeros(bits.shape, np.uint16)
    _core.half_convert(f, back, KIND[dt], isa_name)
    np.testing.assert_array_equal(back[~nan], bits[~nan])
    quiet = 0x0200 if dt == F16 else 0x0040
    np.testing.assert_array_equal(back[nan], bits[nan] | quiet)


def _specials(dt):
    """float32 values on and around the rounding boundaries of dt."""
    h = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(dt)
    v = h.astype(np.float32)
    v = v[np.isfinite(v)].astype(np.float64)
    v = np.unique(np.abs(v))
    mids = (v[:-1] + v[1:]) / 2                      # ties (exact in float32)
    out = [v, mids, -mids]
    m32 = mids.astype(np.float32)
    out += [np.nextafter(m32, np.float32(np.inf)), np.nextafter(m32, np.float32(-np.inf))]
    big = float(np.finfo(np.float16).max) if dt == F16 else 3.3895314e38
    out.append(np.array([big, -big, 65519.996, 65520.0, 65520.004, 70000.0, 1e30, 3.4e38,
                         np.inf, -np.inf, 0.0, -0.0, 2.0 ** -25, 2.0 ** -25 * 1.0000001,
                         2.0 ** -24 * 1.5, 2.0 ** -24 * 2.5, 2.0 ** -26, 1e-45, -1e-45,
                         2.0 ** -14 - 2.0 ** -25, 2.0 ** -126, 1.17e-38]))
    return np.concatenate([np.asarray(o, dtype=np.float32).ravel() for o in out])


@pytest.mark.parametrize("isa_name", _core.available_isas())
@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_cvt_rounding(isa_name, dt, rng):
    rnd = rng.integers(0, 2 ** 32, 300_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    x = np.concatenate([_specials(dt), rnd,
                        np.array([np.nan, -np.nan], np.float32),
                        np.array([0x7fa00001, 0xffc00123], np.uint32).view(np.float32)])
    with np.errstate(all="ignore"):
        want = x.astype(dt)
    for n in (len(x), 1, 7, 15, 17, 31, 33):          # SIMD tails
        m = (len(x) // n) * n if n > 1 else 999
        xs = x[:m].reshape(-1, n)
        # rows with a stride (padding between rows)
        src = np.zeros((xs.shape[0], n + 5), np.float32)
        src[:, :n] = xs
        dst = np.zeros((xs.shape[0], n + 3), np.uint16)
        _core.half_convert(src[:, :n], dst[:, :n], KIND[dt], isa_name)
        got = dst[:, :n].ravel().view(dt)
        ref = want[:m]
        nan = np.isnan(x[:m])
        np.testing.assert_array_equal(np.isnan(got.astype(np.float32)), nan)
        np.testing.assert_array_equal(got.view(np.uint16)[~nan], ref.view(np.uint16)[~nan])
        np.testing.assert_array_equal(np.signbit(got.astype(np.float32)), np.signbit(x[:m]))
        assert not dst[:, n:].any()


# ---------------------------------------------------------------------------
# the forward ops

def _data(rng, shape, dt, scale=4.0):
    return (rng.standard_normal(shape) * scale).astype(dt)


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
@pytest.mark.parametrize("op", ["softmax", "log_softmax", "logsumexp"])
def test_forward_axes_layouts(isa, dt, op, rng):
    f = H.OPS[op]
    x = _data(rng, (6, 37, 19), dt)
    for axis in (0, 1, 2, -1, (0, 2), None):
        y = f(x, axis=axis)
        assert np.asarray(y).dtype == dt
        assert_1ulp(y, H.ref(op, wide(x), axis), what=f"{op} axis={axis}")
    # non-contiguous, negative strides, transposed
    for v in (x[::-1, ::2, ::-3], x.transpose(2, 0, 1), x[:, 3, :]):
        for axis in (0, -1):
            assert_1ulp(f(v, axis=axis), H.ref(op, wide(v), axis), what=f"{op} view")


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
@pytest.mark.parametrize("n", [1, 2, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 1000, 2049])
def test_forward_row_lengths(isa, dt, n, rng):
    x = _data(rng, (9, n), dt, 6.0)
    for op in ("softmax", "log_softmax", "logsumexp"):
        y = H.OPS[op](x, axis=-1)
        assert_1ulp(y, H.ref(op, wide(x), -1), what=f"{op} n={n}")
        if op != "logsumexp":
            assert_1ulp(H.OPS[op](x, axis=-1, temperature=0.3),
                        H.ref(op, wide(x), -1, temperature=0.3), what=f"{op} T n={n}")


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_forward_chunks_and_threads(dt, threads, rng):
    # several chunks (HALF_CHUNK x threads elements), a long row split over
    # threads, a column slice wider than a chunk
    for shape, axis in (((3000, 50), -1), ((2, 150_000), -1), ((2, 3000, 40), 1),
                        ((5, 70, 300), 0), ((40, 5000), 0)):
        x = _data(rng, shape, dt)
        for op in ("softmax", "log_softmax", "logsumexp"):
            assert_1ulp(H.OPS[op](x, axis=axis), H.ref(op, wide(x), axis),
                        what=f"{op} {shape} axis {axis}")


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_forward_extremes(isa, dt):
    big = 65504.0 if dt == F16 else 3.3895314e38
    rows = [
        [big, big, -big, 0.0, 1.0],
        [big, big * 0.999, big * 0.998, big * 0.5, -big],
        [-big, -big, -big * 0.999, -big, -big],
        [np.inf, 1.0, 2.0, -np.inf, 0.0],
        [np.inf, np.inf, 1.0, 2.0, 3.0],
        [-np.inf] * 5,
        [np.nan, 1.0, 2.0, 3.0, 4.0],
        [0.0, -10.0, -12.0, -15.0, -17.0],   # float16 subnormal softmax entries
        [0.0, -16.5, -16.6, -17.3, -18.0],   # around 2^-24 (the float16 ULP there)
        [0.0, -1e4, -3e4, -big, -np.inf],
    ]
    x = np.array(rows, dtype=np.float64).astype(dt)
    for op in ("softmax", "log_softmax", "logsumexp"):
        with np.errstate(all="ignore"):
            want = H.ref(op, wide(x), -1)
        got = H.OPS[op](x, axis=-1)
        assert_1ulp(got, want, what=op)
    # a subnormal float16 output is within 2^-24 absolute
    if dt == F16:
        y = csoftmax.softmax(x[7])
        sub = wide(y) < np.finfo(np.float16).tiny
        assert sub.sum() == 4
        assert np.all(np.abs(wide(y) - H.ref("softmax", wide(x[7])))[sub] <= 2.0 ** -24)
        assert 0 < y[2] < np.finfo(np.float16).tiny


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_forward_out(isa, dt, rng):
    x = _data(rng, (50, 33), dt)
    want = H.ref("softmax", wide(x), -1)
    out = np.empty_like(x)
    assert csoftmax.softmax(x, out=out) is out
    assert_1ulp(out, want)
    # non-contiguous out, out along a non-last axis
    big = np.zeros((100, 66), dt)
    o = big[::2, ::2]
    assert csoftmax.log_softmax(x, out=o) is o
    assert_1ulp(o, H.ref("log_softmax", wide(x), -1))
    assert not big[1::2].view(np.uint16).any()
    o2 = np.empty_like(x)
    csoftmax.softmax(x, axis=0, out=o2)
    assert_1ulp(o2, H.ref("softmax", wide(x), 0))
    # in place
    xi = x.copy()
    assert csoftmax.softmax(xi, out=xi) is xi
    assert_1ulp(xi, want)
    # out of another dtype is an error; dtype= chooses float32
    with pytest.raises(TypeError):
        csoftmax.softmax(x, out=np.empty(x.shape, np.float32))
    y32 = csoftmax.softmax(x, dtype=np.float32)
    assert y32.dtype == np.float32
    H.assert_ulp(y32, want.astype(np.float64))


def test_float16_results_unchanged_for_float32_rounding(rng):
    # the float16 path rounds the float32 path's result once: the same bits
    # as computing in float32 and rounding with NumPy
    x = _data(rng, (40, 300), F16)
    for op in ("softmax", "log_softmax"):
        np.testing.assert_array_equal(
            H.OPS[op](x).view(np.uint16),
            H.OPS[op](x.astype(np.float32)).astype(np.float16).view(np.uint16))


# ---------------------------------------------------------------------------
# cross-entropy and the backward ops

@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", ["class", "weights", "smooth", "prob", "none", "cols",
                                  "long", "chunks"])
def test_cross_entropy(isa, dt, case, rng):
    shape, axis, kw = (64, 37), -1, {}
    if case == "cols":
        shape, axis = (4, 37, 45), 1
    elif case == "long":
        shape = (2, 70_000)
    elif case == "chunks":
        shape = (2000, 100)
    x = _data(rng, shape, dt, 3.0)
    C = shape[axis]
    tshape = shape[:1] + shape[2:] if axis == 1 else shape[:-1]
    t = rng.integers(0, C, tshape)
    if case == "weights":
        kw["weight"] = rng.random(C) + 0.1
        t.ravel()[::7] = -100
    if case == "smooth":
        kw["label_smoothing"] = 0.1
    if case == "none":
        kw["reduction"] = "none"
    if case == "prob":
        t = csoftmax.softmax(rng.standard_normal(shape)).astype(dt)
    loss, g = csoftmax.cross_entropy(x, t, axis=axis, return_grad=True, **kw)
    assert g.dtype == dt and np.asarray(loss).dtype == dt
    rl, rg = H.ref_ce(x.astype(np.float32), t.astype(np.float32) if case == "prob" else t,
                      axis=axis, **kw)
    assert_1ulp(np.asarray(loss), np.asarray(rl), getattr(rl, "cond", None), what="loss")
    assert_1ulp(g, np.asarray(rg), rg.cond, what="grad")
    # loss alone, grad_out, in place
    l2 = csoftmax.cross_entropy(x, t, axis=axis, **kw)
    np.testing.assert_array_equal(np.asarray(l2).view(np.uint16),
                                  np.asarray(loss).view(np.uint16))
    go = np.empty_like(x)
    csoftmax.cross_entropy(x, t, axis=axis, return_grad=True, grad_out=go, **kw)
    np.testing.assert_array_equal(go.view(np.uint16), g.view(np.uint16))
    xi = x.copy()
    csoftmax.cross_entropy(xi, t, axis=axis, return_grad=True, grad_out=xi, **kw)
    np.testing.assert_array_equal(xi.view(np.uint16), g.view(np.uint16))


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_cross_entropy_extremes(isa, dt):
    big = 65504.0 if dt == F16 else 3.0e38
    x = np.array([[big, -big, 0.0, 1.0], [0.0, -20.0, -30.0, -40.0],
                  [5.0, 5.0, 5.0, 5.0], [-big, -big, -big, big]]).astype(dt)
    t = np.array([0, 1, 2, 3])
    loss, g = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
    rl, rg = H.ref_ce(x.astype(np.float32), t, reduction="none")
    assert_1ulp(loss, np.asarray(rl), what="loss")
    assert_1ulp(g, np.asarray(rg), rg.cond, what="grad")


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
@pytest.mark.parametrize("shape,axis", [((64, 37), -1), ((5, 37, 45), 1), ((3, 9), 0),
                                        ((2000, 60), -1), ((3, 4000, 30), 1), ((2, 70_000), -1)])
def test_backward_ops(isa, dt, shape, axis, rng):
    x = _data(rng, shape, dt)
    dy = rng.standard_normal(shape).astype(dt)
    y = csoftmax.softmax(x, axis=axis)
    o = csoftmax.softmax_backward(y, dy, axis=axis)
    assert o.dtype == dt
    r = H.ref_softmax_bwd(y.astype(np.float32), dy.astype(np.float32), axis)
    assert_1ulp(o, np.asarray(r), r.cond, what="softmax_backward")
    ly = csoftmax.log_softmax(x, axis=axis)
    o = csoftmax.log_softmax_backward(ly, dy, axis=axis)
    r = H.ref_log_softmax_bwd(ly.astype(np.float32), dy.astype(np.float32), axis)
    assert_1ulp(o, np.asarray(r), r.cond, what="log_softmax_backward")
    g = rng.standard_normal(np.delete(shape, axis % len(shape)))
    o = csoftmax.logsumexp_backward(x, g, axis=axis)
    assert o.dtype == dt
    assert_1ulp(o, np.asarray(H.ref_logsumexp_bwd(x.astype(np.float32), g, axis)),
                what="logsumexp_backward")
    # out=, in place on dy
    out = np.empty_like(y)
    assert csoftmax.softmax_backward(y, dy, axis=axis, out=out) is out
    d2 = dy.copy()
    csoftmax.softmax_backward(y, d2, axis=axis, out=d2)
    np.testing.assert_array_equal(d2.view(np.uint16), out.view(np.uint16))


# ---------------------------------------------------------------------------
# the plan, memory, adapters

def test_plan_names_half_blocks():
    p = _core.plan("softmax", (8192, 1000), np.float16)
    assert p["half"] == "HALF_BLOCKS"
    assert p["kernels"][0] == "cvt_f16_to_f32" and p["kernels"][-1] == "cvt_f32_to_f16"
    t = _core.thresholds()["HALF_CHUNK"]
    assert p["scratch_floats"] <= max(t * p["threads"], 1000)
    p = _core.plan("cross_entropy", (4, 100_000), BF16, threads=1)
    assert p["kernels"][0] == "cvt_bf16_to_f32"
    assert p["scratch_floats"] == 2 * 100_000          # x and gradient: one row each
    p = _core.plan("cross_entropy", (4, 100_000), BF16, threads=2)
    assert p["chunk_threads"] == "per-thread"          # a row per thread at a time
    assert p["scratch_floats"] == 2 * 2 * 100_000
    # the chunk's float32 path: that of one such row on one thread
    assert p["path"] == _core.plan("cross_entropy", (1, 100_000), np.float32,
                                   threads=1)["path"]
    p = _core.plan("softmax", (1, 300_000), F16, threads=2)
    assert p["chunk_threads"] == "team" and p["path"] == "LONG_ROW_SPLIT"
    assert p["scratch_floats"] == 300_000
    p = _core.plan("logsumexp", (64, 100, 1000), np.float16, axis=1)
    assert "cvt_f32_to_f16" not in p["kernels"]
    assert "half" not in _core.plan("softmax", (10, 10), np.float32)


@pytest.mark.parametrize("dt", DTYPES, ids=_ids)
def test_no_full_size_float32_copy(dt):
    # NumPy reports its allocations to tracemalloc: a float32 copy of the
    # input (4 bytes a element) would show; the float32 scratch is one chunk
    x = np.ones((2048, 1024), dt)
    for f, res_bytes in ((lambda: csoftmax.softmax(x), x.nbytes),
                         (lambda: csoftmax.logsumexp(x, axis=1), 2048 * 8 * 3),
                         (lambda: csoftmax.cross_entropy(x, np.zeros(2048, np.int64),
                                                         return_grad=True), x.nbytes),
                         (lambda: csoftmax.softmax_backward(x, x), x.nbytes)):
        f()
        tracemalloc.start()
        try:
            f()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < res_bytes + x.nbytes // 4 + 200_000, peak


def test_torch_half_dtypes(rng):
    torch = pytest.importorskip("torch")
    import csoftmax.torch as ct
    for tdt, ndt in ((torch.float16, F16), (torch.bfloat16, BF16)):
        x = torch.randn(33, 70, dtype=tdt) * 3
        y = ct.softmax(x, dim=-1)
        assert y.dtype == tdt
        xn = x.float().numpy().astype(np.float64)
        assert_1ulp(y.view(torch.int16).numpy().view(ndt), H.ref("softmax", xn, -1))
        # NumPy functions on tensors: DLPack / int16 view, non-contiguous too
        v = x.t()
        r = csoftmax.log_softmax(v, axis=0)
        assert r.dtype == ndt
        assert_1ulp(r, H.ref("log_softmax", v.float().numpy().astype(np.float64), 0))
        xg = x.clone().requires_grad_()
        t = torch.randint(0, 70, (33,))
        loss = ct.cross_entropy(xg, t)
        loss.backward()
        assert loss.dtype == tdt and xg.grad.dtype == tdt
        rl, rg = H.ref_ce(x.float().numpy(), t.numpy())
        assert_1ulp(xg.grad.view(torch.int16).numpy().view(ndt), np.asarray(rg), rg.cond)


def test_jax_bfloat16():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    import csoftmax.jax as cj
    x = jnp.asarray(np.random.default_rng(3).standard_normal((20, 50)) * 3, dtype=jnp.bfloat16)
    y = cj.softmax(x)
    assert y.dtype == jnp.bfloat16
    assert_1ulp(np.asarray(y), H.ref("softmax", np.asarray(x).astype(np.float64), -1))
    r = csoftmax.softmax(x)
    assert r.dtype == BF16


def test_bfloat16_dtype_argument(rng):
    x = _data(rng, (10, 20), np.float32)
    y = csoftmax.softmax(x, dtype=BF16)
    assert y.dtype == BF16
    assert_1ulp(y, H.ref("softmax", wide(x), -1))
