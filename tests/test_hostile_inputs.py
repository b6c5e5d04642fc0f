"""Inputs of a hostile caller (an audit of the public API, session 7): each
test pins a defect that was found, by its mechanism -- byte order, ndarray
subclasses as outputs, axis=None where a function takes one axis, overlap
of a gradient output with the arrays read after it is written, internally
overlapping in-place arrays, scalar parameters given as strings / bools /
0-d arrays, masked targets."""
import numpy as np
import pytest
import scipy.special as sp
from numpy.lib.stride_tricks import as_strided

import csoftmax

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

X = np.array([[1., 2., 3., 4.], [0., 0., -1., 5.]])


# ---- byte order: dtype= and out= --------------------------------------------

@pytest.mark.parametrize("fn,ref", [(csoftmax.softmax, sp.softmax),
                                    (csoftmax.log_softmax, sp.log_softmax)])
@pytest.mark.parametrize("dt", [">f8", ">f4", "<f8", "<f4", ">f2"])
def test_dtype_byte_order(fn, ref, dt):
    """A byte-swapped dtype= is computed (and returned) in native order --
    it gave 2.6e-319 (softmax) / -6e227 (log_softmax) everywhere."""
    got = fn(X, axis=1, dtype=dt)
    want_dt = np.dtype(dt).newbyteorder("=")
    assert got.dtype == want_dt and got.dtype.isnative
    tol = {8: 1e-15, 4: 1e-6, 2: 1e-3}[want_dt.itemsize]
    np.testing.assert_allclose(got.astype(np.float64), ref(X, axis=1), rtol=tol, atol=tol)


def test_out_byte_swapped_is_refused_untouched():
    out = np.full(X.shape, 7.0, dtype=">f8")
    with pytest.raises(TypeError, match="byte order"):
        csoftmax.softmax(X, out=out)
    assert (out == 7.0).all()
    # byte-swapped input: computed natively
    np.testing.assert_allclose(csoftmax.softmax(X.astype(">f8"), axis=1), sp.softmax(X, axis=1),
                               rtol=1e-15)


# ---- ndarray subclasses as outputs -------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -1])
def test_matrix_out(axis):
    """np.matrix stays 2-D under reshape: the column kernels read its
    strides as a 3-D view's -- wrong values for a non-last axis."""
    for fn, ref in ((csoftmax.softmax, sp.softmax), (csoftmax.log_softmax, sp.log_softmax)):
        out = np.matrix(np.zeros(X.shape))
        r = fn(X, axis=axis, out=out)
        assert r is out
        np.testing.assert_allclose(np.asarray(out), ref(X, axis=axis), rtol=1e-14)
    dy = np.arange(8.).reshape(2, 4)
    y = sp.softmax(X, axis=0)
    out = np.matrix(np.zeros(X.shape))
    csoftmax.softmax_backward(y, dy, axis=0, out=out)
    want = y * (dy - (y * dy).sum(axis=0, keepdims=True))
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-13, atol=1e-15)
    g = np.matrix(np.zeros(X.shape))
    csoftmax.cross_entropy(X, np.array([1, 0, 0, 1]), axis=0, return_grad=True, grad_out=g)
    _, want_g = csoftmax.cross_entropy(X, np.array([1, 0, 0, 1]), axis=0, return_grad=True)
    np.testing.assert_array_equal(np.asarray(g), want_g)


# ---- axis=None and tuples in the backward functions ----------------------------

@pytest.mark.parametrize("axis", [None, (0, 2), (2, 0), (1,), (0, 1, 2)])
def test_backward_several_axes(axis):
    """softmax(axis=None) is legal; softmax_backward(axis=None) gave the
    axis-0 VJP.  Now None / tuples are the VJP over those axes."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5))
    dy = rng.standard_normal(x.shape)
    y = csoftmax.softmax(x, axis=axis)
    ax = tuple(range(3)) if axis is None else axis
    s = np.sum(y * dy, axis=ax, keepdims=True)
    np.testing.assert_allclose(csoftmax.softmax_backward(y, dy, axis=axis), y * (dy - s),
                               rtol=1e-12, atol=1e-15)
    ly = csoftmax.log_softmax(x, axis=axis)
    np.testing.assert_allclose(csoftmax.log_softmax_backward(ly, dy, axis=axis),
                               dy - np.exp(ly) * np.sum(dy, axis=ax, keepdims=True),
                               rtol=1e-12, atol=1e-14)
    d = rng.standard_normal(np.sum(x, axis=ax).shape)
    np.testing.assert_allclose(csoftmax.logsumexp_backward(x, d, axis=axis),
                               y * np.expand_dims(d, ax) if d.ndim else y * d,
                               rtol=1e-12, atol=1e-15)
    out = np.empty_like(x)
    assert csoftmax.softmax_backward(y, dy, axis=axis, out=out) is out
    np.testing.assert_allclose(out, y * (dy - s), rtol=1e-12, atol=1e-15)
    # where= with several axes: the masked VJP (zeros where excluded)
    m = rng.random(x.shape) > 0.3
    ym = csoftmax.softmax(x, axis=axis, where=m)
    sm = np.sum(np.where(m, ym * dy, 0), axis=ax, keepdims=True)
    np.testing.assert_allclose(csoftmax.softmax_backward(ym, dy, axis=axis, where=m),
                               np.where(m, ym * (dy - sm), 0), rtol=1e-12, atol=1e-15)


def test_loss_axis_none_refused():
    for call in (lambda: csoftmax.cross_entropy(X, np.array([0, 3]), axis=None),
                 lambda: csoftmax.nll_loss(X, np.array([0, 3]), axis=None)):
        with pytest.raises(TypeError, match="single integer"):
            call()


# ---- grad_out overlapping what the masked cross-entropy reads afterwards ------

def test_masked_ce_grad_out_overlaps_targets_weights_mask():
    xx = np.array([[1., 2., 3., 4.], [0., 0., -1., 5.], [3, 3, 3, 3], [1, -1, 2, 0]])
    t = np.array([0, 3, 1, 2])
    where = np.array([1, 1, 0, 1], bool)
    w = np.array([1., 2., .5, 3.])
    ref_l, ref_g = csoftmax.cross_entropy(xx, t, weight=w, where=where, return_grad=True)
    # grad_out over the int64 targets' buffer
    buf = np.zeros(16, np.int64)
    buf[:4] = t
    l, g = csoftmax.cross_entropy(xx, buf[:4], weight=w, where=where, return_grad=True,
                                  grad_out=buf.view(np.float64).reshape(4, 4))
    assert l == ref_l
    np.testing.assert_array_equal(g, ref_g)
    # grad_out over the weights
    wb = np.zeros(16)
    wb[:4] = w
    l, g = csoftmax.cross_entropy(xx, t, weight=wb[:4], where=where, return_grad=True,
                                  grad_out=wb.reshape(4, 4))
    assert l == ref_l
    np.testing.assert_array_equal(g, ref_g)
    # the same along axis 0 (the facade's masked softmax, not the row driver)
    xT = np.ascontiguousarray(xx.T)
    ref_l, ref_g = csoftmax.cross_entropy(xT, t, weight=w, where=where[:, None], axis=0,
                                          return_grad=True)
    buf = np.zeros(16, np.int64)
    buf[:4] = t
    l, g = csoftmax.cross_entropy(xT, buf[:4], weight=w, where=where[:, None], axis=0,
                                  return_grad=True, grad_out=buf.view(np.float64).reshape(4, 4))
    assert l == ref_l
    np.testing.assert_array_equal(g, ref_g)
    wb = np.zeros(16)
    wb[:4] = w
    l, g = csoftmax.cross_entropy(xT, t, weight=wb[:4], where=where[:, None], axis=0,
                                  return_grad=True, grad_out=wb.reshape(4, 4))
    assert l == ref_l
    np.testing.assert_array_equal(g, ref_g)
    # grad_out over the mask's bytes (all True: bytes 0x01 of 1+ulp's)
    o = np.full((4, 4), np.nextafter(1., 2.))
    m = o.view(np.uint8)[:, ::8]
    assert m.all()
    l, g = csoftmax.cross_entropy(xx, t, where=m, return_grad=True, grad_out=o)
    rl, rg = csoftmax.cross_entropy(xx, t, return_grad=True)
    assert l == pytest.approx(rl, rel=1e-15)
    np.testing.assert_allclose(g, rg, rtol=1e-15)


# ---- in place on an array whose elements overlap ------------------------------

def test_in_place_on_internally_overlapping_array():
    """rows sharing memory: computed from the input as it was (a temporary),
    then written -- as numpy's ufuncs do; the in-place kernels would read
    rows already overwritten."""
    for n in (4, 100, 3000):        # short rows (a group read at once), row kernels
        for fn, ref in ((csoftmax.softmax, sp.softmax), (csoftmax.log_softmax, sp.log_softmax)):
            buf = np.arange(n + 4.) / 7
            xs = as_strided(buf, shape=(5, n), strides=(8, 8), writeable=True)
            want = ref(xs.copy(), axis=1)
            r = fn(xs, out=xs)
            # row k is [k, ..., k+n-1] / 7: every row's result is the same;
            # the last row written is the one left in memory.  (rtol: the
            # exp argument's rounding, |d| u with |d| up to 430, in both the
            # reference and the kernels; a row computed from overwritten
            # input is off by far more)
            np.testing.assert_allclose(buf[4:], want[4], rtol=1e-12, err_msg=f"{n}")
            np.testing.assert_allclose(r[4], want[4], rtol=1e-12)
    from csoftmax._validate import has_internal_overlap
    assert has_internal_overlap(xs)
    assert has_internal_overlap(np.broadcast_to(X[:1], (3, 4)))
    assert not has_internal_overlap(X) and not has_internal_overlap(X[:, ::-1])
    assert not has_internal_overlap(X.T) and not has_internal_overlap(np.zeros((0, 3)))


def _writers(axis):
    """Every call that writes caller memory (out= / grad_out=), as
    (name, f(x, dest) -> None, fresh(x) -> the result f writes)."""
    rng = np.random.default_rng(5)
    dy_cache = {}

    def dy(x):
        return dy_cache.setdefault((x.shape, x.dtype), rng.standard_normal(x.shape).astype(x.dtype))

    def dlse(x):
        s = list(x.shape)
        s[axis] = 1
        return dy_cache.setdefault(("l", x.shape, x.dtype),
                                   rng.standard_normal(s).astype(x.dtype))

    def tgt(x):
        s = x.shape[:axis % x.ndim] + x.shape[axis % x.ndim + 1:]
        return dy_cache.setdefault(("t", x.shape), rng.integers(0, x.shape[axis], s))

    def prob(x):
        return csoftmax.softmax(x * 0.5, axis=axis)

    return [
        ("softmax", lambda x, o: csoftmax.softmax(x, axis=axis, out=o),
         lambda x: csoftmax.softmax(x, axis=axis)),
        ("log_softmax", lambda x, o: csoftmax.log_softmax(x, axis=axis, temperature=2.0, out=o),
         lambda x: csoftmax.log_softmax(x, axis=axis, temperature=2.0)),
        ("softmax_backward", lambda x, o: csoftmax.softmax_backward(x, dy(x), axis=axis, out=o),
         lambda x: csoftmax.softmax_backward(x, dy(x), axis=axis)),
        ("log_softmax_backward",
         lambda x, o: csoftmax.log_softmax_backward(-abs(x), dy(x), axis=axis, out=o),
         lambda x: csoftmax.log_softmax_backward(-abs(x), dy(x), axis=axis)),
        ("logsumexp_backward",
         lambda x, o: csoftmax.logsumexp_backward(x, dlse(x), axis=axis, out=o),
         lambda x: csoftmax.logsumexp_backward(x, dlse(x), axis=axis)),
        ("cross_entropy", lambda x, o: csoftmax.cross_entropy(
            x, tgt(x), axis=axis, return_grad=True, grad_out=o),
         lambda x: csoftmax.cross_entropy(x, tgt(x), axis=axis, return_grad=True)[1]),
        ("cross_entropy_prob", lambda x, o: csoftmax.cross_entropy(
            x, prob(x), axis=axis, return_grad=True, grad_out=o),
         lambda x: csoftmax.cross_entropy(x, prob(x), axis=axis, return_grad=True)[1]),
        ("softmax_where", lambda x, o: csoftmax.softmax(x, axis=axis, where=x > -1, out=o),
         lambda x: csoftmax.softmax(x, axis=axis, where=x > -1)),
    ]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("alias_axis", [0, 1])
def test_out_with_internal_overlap(dtype, axis, alias_axis):
    """An out= / grad_out= whose elements share memory (a writable
    as_strided view, stride 0 along one axis) is never written by the
    kernels directly -- some read back what they wrote: it ends as numpy's
    ``np.copyto(dest, result)`` leaves it (the last aliased element's
    value), for the reduced axis and the other one."""
    rng = np.random.default_rng(0)
    shape = (3, 37)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    for name, f, fresh in _writers(axis):
        want = np.zeros(shape[1 - alias_axis], dtype)
        st = [0, 0]
        st[1 - alias_axis] = want.itemsize
        np.copyto(as_strided(want, shape, st), fresh(x))
        base = np.zeros(shape[1 - alias_axis], dtype)
        dest = as_strided(base, shape, st, writeable=True)
        f(x, dest)
        np.testing.assert_array_equal(base, want, err_msg=f"{name} axis={axis}")
    from csoftmax._validate import has_internal_overlap, may_write_directly
    assert has_internal_overlap(dest)
    assert not may_write_directly(dest, ())


# ---- scalar parameters and targets --------------------------------------------

def _scalar_params():
    """Every real scalar parameter: (name, f(value), a value it accepts)."""
    x = np.array([[0.1, 0.5, 0.7], [0.2, -0.3, 0.9]])
    t = np.array([0, 2])
    return [
        ("temperature", lambda v: csoftmax.softmax(x, temperature=v), 0.5),
        ("temperature", lambda v: csoftmax.cross_entropy(x, t, temperature=v), 0.5),
        ("sharpness", lambda v: csoftmax.smooth_max(x, sharpness=v), 0.5),
        ("label_smoothing", lambda v: csoftmax.cross_entropy(x, t, label_smoothing=v), 0.5),
        ("margin", lambda v: csoftmax.margin_logits(x, t, margin=v, kind="cosface"), 0.5),
        ("scale", lambda v: csoftmax.margin_logits(x, t, scale=v, margin=0.1,
                                                     kind="cosface"), 0.5),
        ("beta", lambda v: csoftmax.softplus(x, beta=v), 0.5),
        ("threshold", lambda v: csoftmax.softplus(x, threshold=v), 0.5),
        ("temperature", lambda v: csoftmax.sample(x, temperature=v, seed=1), 0.5),
    ]


@pytest.mark.parametrize("k", range(9))
def test_scalar_parameters_one_reading(k):
    """One rule for every real scalar parameter: numbers of any kind (0-d
    arrays, fractions, decimals, NumPy scalars) give the float's result;
    strings, bools, complex numbers and arrays with elements are TypeError
    naming the parameter; an int too large for a float is ValueError naming
    it (not a bare OverflowError)."""
    import decimal
    import fractions
    name, f, ok = _scalar_params()[k]
    want = f(ok)
    for same in (np.array(ok), np.float32(ok), fractions.Fraction(ok),
                 decimal.Decimal(ok), np.array(ok, np.float16)):
        np.testing.assert_array_equal(f(same), want, err_msg=f"{name} {same!r}")
    for bad in ("0.5", True, np.bool_(True), 0.5 + 0j, np.complex128(ok + 2j),
                np.complex64(ok), np.array([ok]), [ok], None):
        with pytest.raises(TypeError, match=name):
            f(bad)
    for huge in (10 ** 400, -10 ** 400, 10 ** 5000):
        with pytest.raises(ValueError, match=name) as e:
            f(huge)
        assert len(str(e.value)) < 200



@pytest.mark.parametrize("bad", ["0.1", True, b"0", np.bool_(False)])
def test_label_smoothing_not_a_number(bad):
    with pytest.raises(TypeError, match="label_smoothing"):
        csoftmax.cross_entropy(X, np.array([0, 3]), label_smoothing=bad)


def test_label_smoothing_numbers_accepted():
    a = csoftmax.cross_entropy(X, np.array([0, 3]), label_smoothing=0.1)
    assert csoftmax.cross_entropy(X, np.array([0, 3]), label_smoothing=np.float32(0.1)) == \
        pytest.approx(a, rel=1e-7)
    assert csoftmax.cross_entropy(X, np.array([0, 3]), label_smoothing=np.array(0.1)) == a


def test_masked_array_target_refused():
    t = np.ma.masked_array([0, 3], [0, 1])
    for call in (lambda: csoftmax.cross_entropy(X, t), lambda: csoftmax.nll_loss(X, t),
                 lambda: csoftmax.linear_cross_entropy(X, np.eye(4), t)):
        with pytest.raises(TypeError, match="MaskedArray"):
            call()


def test_sample_temperatures():
    x = np.array([[1., 5., 2.], [3., 0., 1.]])
    # 1/T overflows: refused as by every temperature (the docstring said argmax)
    with pytest.raises(ValueError, match="reciprocal"):
        csoftmax.sample(x, temperature=1e-310)
    assert (csoftmax.sample(x, temperature=0) == [1, 0]).all()
    a = csoftmax.sample(x, temperature=np.array(0.7), seed=3)
    b = csoftmax.sample(x, temperature=0.7, seed=3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError):
        csoftmax.sample(x, temperature="1")
    with pytest.raises(ValueError):
        csoftmax.sample(x, temperature=-1.0)


def test_linear_cross_entropy_bfloat16_probability_targets():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(2)
    h = rng.standard_normal((4, 3)).astype(np.float32)
    W = rng.standard_normal((5, 3)).astype(np.float32)
    p = np.full((4, 5), 0.2, dtype=ml_dtypes.bfloat16)
    got = csoftmax.linear_cross_entropy(h, W, p)
    want = csoftmax.linear_cross_entropy(h, W, p.astype(np.float32))
    assert got == pytest.approx(want, rel=1e-6)


# ---- session 8 audit ------------------------------------------------------

@pytest.mark.parametrize("axis", [None, ()])
@pytest.mark.parametrize("fn", [csoftmax.softmax_backward, csoftmax.log_softmax_backward,
                                csoftmax.logsumexp_backward])
def test_backward_of_0d_keeps_its_shape(fn, axis):
    """axis=None / () on a 0-d input: the result is 0-d like the forward's
    (np.ascontiguousarray made it (1,))."""
    y, dy = np.float64(0.25), np.float64(0.5)
    r = fn(y, dy, axis=axis)
    assert np.shape(r) == () == np.shape(csoftmax.softmax(y, axis=axis))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("fn", [csoftmax.softmax, csoftmax.log_softmax])
def test_out_returned_itself(fn, dtype):
    """numpy's out=: the call returns `out` itself, 0-d included (float16
    returned a scalar copy)."""
    for shape in [(), (1,), (3, 5)]:
        out = np.full(shape, 7, dtype)
        r = fn(np.ones(shape, dtype), axis=None, out=out)
        assert r is out
        np.testing.assert_allclose(out, fn(np.ones(shape, dtype), axis=None), rtol=1e-3)


def test_masked_array_message_fits_the_argument():
    """-inf as the fill value is advice for logits only (probability 0);
    for dy, weights or b it would be wrong."""
    ma = np.ma.masked_array
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match=r"x\.filled\(-np\.inf\)"):
        csoftmax.softmax(ma(x, mask=np.eye(2, 3, dtype=bool)))
    for call in (lambda: csoftmax.softmax_backward(x / 3, ma(x)),
                 lambda: csoftmax.cross_entropy(x, np.array([0, 1]), weight=ma(np.ones(3))),
                 lambda: csoftmax.logsumexp(x, b=ma(np.ones(3)))):
        with pytest.raises(TypeError, match="MaskedArray") as e:
            call()
        assert "-np.inf" not in str(e.value)


def test_masked_array_where_refused():
    """A MaskedArray as where= would have its mask ignored (numpy's ufuncs
    do): refused, as for every other argument, and nothing is written."""
    mm = np.ma.array([[True, True, True]], mask=[[False, False, True]])
    x = np.array([[1.0, 2.0, 3.0]])
    out = np.full_like(x, 7.0)
    for call in (lambda: csoftmax.softmax(x, where=mm, out=out),
                 lambda: csoftmax.log_softmax(x, where=mm, out=out),
                 lambda: csoftmax.logsumexp(x, axis=-1, where=mm),
                 lambda: csoftmax.smooth_max(x, axis=-1, where=mm),
                 lambda: csoftmax.cross_entropy(x, np.array([0]), where=mm),
                 lambda: csoftmax.softmax_backward(x / 6, x, where=mm, out=out)):
        with pytest.raises(TypeError, match=r"where\.filled\(False\)"):
            call()
    assert np.all(out == 7.0)
    # the filled mask is the documented way
    np.testing.assert_allclose(csoftmax.softmax(x, where=mm.filled(False)),
                               [[np.exp(-1) / (1 + np.exp(-1)), 1 / (1 + np.exp(-1)), 0.0]])


@pytest.mark.parametrize("T", [1e-25, 2.0 ** -127, 1e-39, 1e-42])
def test_float32_tiny_temperature(isa, T):
    """1/T past float32's range (T < 2.9e-39) reached the float32 kernels as
    inf (NaN probabilities, sample() always drawing class 0); scales past
    2^64 are computed in float64 now, rounded once to float32."""
    x = np.zeros((6, 80), np.float32)
    x[:, ::7] = np.float32(T)           # entries T apart: p = e / (11 e + 69)
    x64 = x.astype(np.float64)
    for f in (csoftmax.softmax, csoftmax.log_softmax):
        got = f(x, temperature=T)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, f(x64, temperature=T).astype(np.float32),
                                   rtol=2e-7, atol=0)
    y = np.zeros(6, np.int64)
    loss = csoftmax.cross_entropy(x, y, temperature=T)
    np.testing.assert_allclose(loss, csoftmax.cross_entropy(x64, y, temperature=T), rtol=1e-6)
    if 1 / T < 3e38:
        np.testing.assert_allclose(csoftmax.smooth_max(x, sharpness=1 / T),
                                   csoftmax.smooth_max(x64, sharpness=1 / T), rtol=1e-5)
    d = csoftmax.distillation_loss(x, x[::-1].copy(), temperature=T)
    assert np.isfinite(d)
    draws = csoftmax.sample(np.zeros((4000, 80), np.float32), temperature=T, seed=1)
    assert len(np.unique(draws)) == 80


def test_boolean_switches_refuse_other_objects():
    """log_target / easy_margin: bool() would read the string "no" as True."""
    p = np.array([[0.2, 0.8]])
    q = np.array([[0.5, 0.5]])
    c = np.array([[0.1, 0.9]])
    t = np.array([1])
    calls = {"log_target": lambda v: csoftmax.kl_div(np.log(q), p, log_target=v),
             "easy_margin": lambda v: csoftmax.margin_logits(c, t, margin=0.2, kind="arcface",
                                                             easy_margin=v)}
    for name, f in calls.items():
        want = {v: f(v) for v in (False, True)}
        for v, b in ((np.True_, True), (np.False_, False), (1, True), (0, False)):
            np.testing.assert_array_equal(f(v), want[b])
        for bad in ("no", "False", None, 2, 0.0, [True]):
            with pytest.raises(TypeError, match=name):
                f(bad)


def test_sample_error_names_the_row():
    with pytest.raises(ValueError, match=r"logits \(its one row\) contains NaN"):
        csoftmax.sample([0.0, np.nan], seed=0)
    with pytest.raises(ValueError, match=r"logits row \[1\] contains NaN"):
        csoftmax.sample([[0.0, 1.0], [0.0, np.nan]], seed=0)


# ---- session 17 audit -----------------------------------------------------

def _array_calls():
    """A valid call of every public function that takes arrays, as
    (name, function, kwargs): each ndarray among the kwargs is an array
    argument the facade converts."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 3))
    lp = csoftmax.log_softmax(x)
    p = np.exp(lp)
    t = np.array([0, 2])
    cos = np.tanh(x)
    h, W = rng.standard_normal((2, 4)), rng.standard_normal((3, 4))
    c = csoftmax
    return [
        ("softmax", c.softmax, dict(x=x)),
        ("log_softmax", c.log_softmax, dict(x=x)),
        ("logsumexp", c.logsumexp, dict(x=x, b=np.ones(3), axis=-1)),
        ("smooth_max", c.smooth_max, dict(x=x)),
        ("cross_entropy", c.cross_entropy, dict(logits=x, target=t, weight=np.ones(3))),
        ("cross_entropy/prob", c.cross_entropy, dict(logits=x, target=p)),
        ("nll_loss", c.nll_loss, dict(log_probs=lp, target=t, weight=np.ones(3))),
        ("kl_div", c.kl_div, dict(log_q=lp, p_or_log_p=p)),
        ("distillation_loss", c.distillation_loss, dict(student_logits=x, teacher_logits=x)),
        ("margin_logits", c.margin_logits, dict(cos=cos, target=t)),
        ("margin_cross_entropy", c.margin_cross_entropy, dict(cos=cos, target=t)),
        ("softplus", c.softplus, dict(x=x)),
        ("soft_hinge", c.soft_hinge, dict(logits=x, target=t)),
        ("sample", c.sample, dict(logits=x, seed=1)),
        ("softmax_backward", c.softmax_backward, dict(y=p, dy=x)),
        ("log_softmax_backward", c.log_softmax_backward, dict(y=lp, dy=x)),
        ("logsumexp_backward", c.logsumexp_backward, dict(x=x, dy=np.ones(2), axis=-1)),
        ("linear_cross_entropy", c.linear_cross_entropy,
         dict(h=h, weight=W, target=t, bias=np.zeros(3), class_weight=np.ones(3))),
    ]


@pytest.mark.parametrize("name, fn, kw", _array_calls(), ids=[c[0] for c in _array_calls()])
def test_every_array_argument_refuses_masked_arrays(name, fn, kw):
    """The class of defect behind margin_cross_entropy / soft_hinge /
    margin_logits taking a MaskedArray target and ignoring its mask (their
    targets went through np.asarray, not the facade's conversion): every
    array argument of every public function, given as a MaskedArray with an
    entry masked, is refused with a TypeError naming it; the plain call
    works."""
    fn(**kw)
    for arg, v in kw.items():
        if not isinstance(v, np.ndarray):
            continue
        mask = np.zeros(v.shape, bool)
        mask.reshape(-1)[-1] = True
        bad = dict(kw, **{arg: np.ma.masked_array(v, mask=mask)})
        with pytest.raises(TypeError, match=rf"{arg} is a numpy\.ma\.MaskedArray"):
            fn(**bad)


def _torch_rule_zero_denom(x, t, w, eps, ignore=-100):
    """torch's label-smoothed mean over a zero total weight: (1 - eps)
    (A / 0) + (eps / C) (B / 0), A = sum of -w_y log p_y, B = sum of
    -sum_c w_c log p_c over the kept samples (float64, numpy)."""
    lp = x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - x.max(-1, keepdims=True)
    keep = t != ignore
    A = -(w[t[keep]] * lp[keep, t[keep]]).sum()
    B = -(lp[keep] * w).sum()
    den = w[t[keep]].sum()
    assert den == 0
    with np.errstate(all="ignore"):
        return (1 - eps) * (A / den) + (eps / x.shape[-1]) * (B / den)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
def test_smoothed_mean_over_zero_total_weight(dtype):
    """cross_entropy (and linear_cross_entropy) with reduction='mean', label
    smoothing and class weights whose kept total is 0: torch divides the
    loss's two parts by 0 separately, so the result is +-inf where both
    parts have one sign, NaN where they differ, where a part is 0 or where
    eps = 1 (0 * inf).  The fused per-sample sum cannot tell them apart
    (this returned NaN in every case, a peers' review found torch's +inf);
    the parts come from two loss-only passes, taken before the call's own
    (which may write the gradient into the logits)."""
    rng = np.random.default_rng(7)
    seen = set()
    for k in range(60):
        C = int(rng.integers(2, 7))
        x = rng.standard_normal((3, C)) * 2
        w = rng.choice([-2.0, -1.0, 0.5, 1.0, 3.0], size=C)
        t = rng.integers(0, C, size=3)
        # make the kept total exactly 0 with the last sample's class weight
        t[2] = C - 1
        w[C - 1] = -(w[t[0]] + w[t[1]]) if t[0] != C - 1 and t[1] != C - 1 else 0.0
        if t[0] == C - 1 or t[1] == C - 1:
            t[:2] = -100                          # all but one sample ignored
        eps = [0.15, 0.5, 1.0][k % 3]
        xd = x.astype(dtype).astype(np.float64)
        want = _torch_rule_zero_denom(xd, t, w, eps)
        seen.add("nan" if np.isnan(want) else "inf")
        got = csoftmax.cross_entropy(x.astype(dtype), t, weight=w, label_smoothing=eps)
        np.testing.assert_equal(float(got), want, err_msg=f"{k} {t} {w} {eps}")
        g = x.astype(dtype)                      # the gradient into the logits
        lo, _ = csoftmax.cross_entropy(g, t, weight=w, label_smoothing=eps,
                                       return_grad=True, grad_out=g)
        np.testing.assert_equal(float(lo), want)
        if dtype != "float16":
            lce = csoftmax.linear_cross_entropy(x.astype(dtype), np.eye(C, dtype=dtype), t,
                                                class_weight=w, label_smoothing=eps)
            np.testing.assert_equal(float(lce), want)
    assert seen == {"nan", "inf"}
    torch = pytest.importorskip("torch")
    x = np.array([[0.5, -1.0, 2.0, 0.3], [1.5, 0.2, -0.7, 0.0], [0.1, 0.9, -0.3, 1.2]])
    w, t = np.array([1.0, -2.0, 0.5, 3.0]), np.array([0, 1, 0])
    ref = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t),
                                            weight=torch.tensor(w), label_smoothing=0.15)
    assert float(csoftmax.cross_entropy(x.astype(dtype), t, weight=w,
                                        label_smoothing=0.15)) == float(ref) == np.inf
