"""csoftmax.jax: custom_vjp + pure_callback wrappers against jax.nn / optax.

Tolerances: float64 values and gradients agree with jax.nn (or optax) to
rtol 1e-12 / atol 1e-14; float32 to rtol 2e-6 / atol 1e-6 against jax run in
float64 on the same inputs (csoftmax accumulates float32 in float64).
check_grads runs in float64 (order 1, reverse mode, its default tolerances).
"""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import csoftmax.jax as cj  # noqa: E402

try:
    import optax
except ImportError:  # optax is optional: compare with a jax.nn formula
    optax = None

TOL = {np.float64: dict(rtol=1e-12, atol=1e-14), np.float32: dict(rtol=2e-6, atol=1e-6)}


@pytest.fixture(autouse=True)
def x64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


def _x(shape, dtype=np.float64, seed=0, scale=3.0):
    return jnp.asarray((np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype))


def _close(a, b, dtype):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, np.float64),
                               **TOL[dtype])


def _ce_ref(x, y, axis=-1, weight=None, ignore_index=-100, reduction="mean",
            label_smoothing=0.0, temperature=1.0):
    """torch-semantics cross-entropy in jax.nn (class-index targets)."""
    lp = jax.nn.log_softmax(x / temperature, axis=axis)
    lp = jnp.moveaxis(lp, axis, -1)
    C = lp.shape[-1]
    w = jnp.ones(C, lp.dtype) if weight is None else weight
    keep = y != ignore_index
    ys = jnp.where(keep, y, 0)
    nll = -jnp.take_along_axis(lp, ys[..., None], -1)[..., 0] * w[ys]
    smooth = -(lp * w).sum(-1) / C
    li = jnp.where(keep, (1 - label_smoothing) * nll + label_smoothing * smooth, 0.0)
    if reduction == "none":
        return li
    if reduction == "sum":
        return li.sum()
    return li.sum() / jnp.where(keep, w[ys], 0.0).sum()


def _optax_ce(x, y):
    if optax is not None:
        return optax.softmax_cross_entropy_with_integer_labels(x, y)
    return _ce_ref(x, y, reduction="none")


# ---------------------------------------------------------------------------
# check_grads (float64, order 1, reverse mode)

@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
@pytest.mark.parametrize("f", [cj.softmax, cj.log_softmax], ids=["softmax", "log_softmax"])
def test_check_grads_softmax(f, axis):
    check_grads(lambda t: f(t, axis, temperature=1.3), (_x((3, 4, 5)),), order=1,
                modes=["rev"])


@pytest.mark.parametrize("axis,keepdims", [(None, False), (-1, False), (1, True), ((0, 2), False)])
def test_check_grads_logsumexp(axis, keepdims):
    check_grads(lambda t: cj.logsumexp(t, axis, keepdims=keepdims), (_x((3, 4, 5)),), order=1,
                modes=["rev"])


CE_CASES = [dict(), dict(reduction="sum"), dict(reduction="none"),
            dict(label_smoothing=0.2, temperature=1.5),
            dict(weight="w", ignore_index=2, label_smoothing=0.1),
            dict(weight="w", reduction="none")]


def _kw(case, C):
    kw = dict(case)
    if kw.get("weight") == "w":
        kw["weight"] = jnp.linspace(0.5, 2.0, C)
    return kw


@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_check_grads_cross_entropy(case):
    y = jnp.array([0, 1, 4, 2, 2, 3])
    kw = _kw(case, 5)
    check_grads(lambda t: cj.cross_entropy(t, y, **kw), (_x((6, 5)),), order=1, modes=["rev"])


def test_check_grads_cross_entropy_probability_targets():
    q = jax.nn.softmax(_x((4, 5), seed=1))
    w = jnp.linspace(0.5, 2.0, 5)
    for red in ("mean", "none"):
        check_grads(lambda a, b: cj.cross_entropy(a, b, weight=w, label_smoothing=0.1,
                                                  reduction=red),
                    (_x((4, 5)), q), order=1, modes=["rev"])


# ---------------------------------------------------------------------------
# values and gradients against jax.nn / optax, under jit

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_family_matches_jax_nn(dtype, axis):
    x = _x((9, 40), dtype)
    up = _x((9, 40), dtype, seed=5)
    x64_ = x.astype(np.float64)
    for f, ref in ((cj.softmax, jax.nn.softmax), (cj.log_softmax, jax.nn.log_softmax)):
        y = jax.jit(lambda t: f(t, axis, temperature=0.7))(x)
        assert y.dtype == dtype
        _close(y, ref(x64_ / 0.7, axis), dtype)
        g = jax.jit(jax.grad(lambda t: (f(t, axis, temperature=0.7) * up).sum()))(x)
        gr = jax.grad(lambda t: (ref(t / 0.7, axis) * up.astype(np.float64)).sum())(x64_)
        _close(g, gr, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logsumexp_matches_jax(dtype):
    x = _x((5, 64), dtype)
    from jax.scipy.special import logsumexp as ref
    _close(jax.jit(lambda t: cj.logsumexp(t, 1))(x), ref(x.astype(np.float64), 1), dtype)
    _close(cj.logsumexp(x), ref(x.astype(np.float64)), dtype)
    g = jax.jit(jax.grad(lambda t: (cj.logsumexp(t, 1) * jnp.arange(5.0)).sum()))(x)
    gr = jax.grad(lambda t: (ref(t, 1) * jnp.arange(5.0)).sum())(x.astype(np.float64))
    _close(g, gr, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_matches_optax(dtype):
    x = _x((32, 10), dtype)
    y = jnp.arange(32) % 10
    per = jax.jit(lambda t: cj.cross_entropy(t, y, reduction="none"))(x)
    _close(per, _optax_ce(x.astype(np.float64), y), dtype)
    g = jax.jit(jax.grad(lambda t: cj.cross_entropy(t, y)))(x)
    gr = jax.grad(lambda t: _optax_ce(t, y).mean())(x.astype(np.float64))
    _close(g, gr, dtype)


@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_cross_entropy_options_match_jax_nn(case):
    x = _x((12, 6), seed=3)
    y = jnp.arange(12) % 6
    kw = _kw(case, 6)
    loss = jax.jit(lambda t: cj.cross_entropy(t, y, **kw))(x)
    _close(loss, _ce_ref(x, y, **kw), np.float64)
    up = jnp.linspace(0.5, 1.5, 12) if kw.get("reduction") == "none" else 1.0
    g = jax.grad(lambda t: (cj.cross_entropy(t, y, **kw) * up).sum())(x)
    gr = jax.grad(lambda t: (_ce_ref(t, y, **kw) * up).sum())(x)
    _close(g, gr, np.float64)


def test_cross_entropy_probability_targets_match_optax():
    x, q = _x((6, 7)), jax.nn.softmax(_x((6, 7), seed=4))

    def ref(a, b):
        if optax is not None:
            return optax.softmax_cross_entropy(a, b).mean()
        return -(b * jax.nn.log_softmax(a)).sum(-1).mean()

    _close(cj.cross_entropy(x, q), ref(x, q), np.float64)
    ga, gb = jax.grad(lambda a, b: cj.cross_entropy(a, b), (0, 1))(x, q)
    ra, rb = jax.grad(ref, (0, 1))(x, q)
    _close(ga, ra, np.float64)
    _close(gb, rb, np.float64)


def test_class_axis_and_vmap():
    x = _x((4, 6, 3))                    # classes on axis 1
    y = jnp.array([[0, 5, 1], [2, 2, 0], [1, 1, 1], [5, 4, 3]])
    ref = _ce_ref(x, y, axis=1)
    _close(cj.cross_entropy(x, y, axis=1), ref, np.float64)
    # vmap over a leading batch of problems
    xs = jnp.stack([x, 2 * x])
    ys = jnp.stack([y, y])
    v = jax.vmap(lambda a, b: cj.cross_entropy(a, b, axis=1))(xs, ys)
    _close(v, jnp.stack([ref, _ce_ref(2 * x, y, axis=1)]), np.float64)
    s = jax.vmap(lambda a: cj.softmax(a, 0))(xs)
    _close(s, jax.nn.softmax(xs, 1), np.float64)


def test_training_step_under_jit():
    x = _x((64, 8), seed=7)
    y = (x @ _x((8, 4), seed=8)).argmax(1)

    def step(W, ours):
        ce = cj.cross_entropy if ours else (lambda a, b: _ce_ref(a, b))
        loss, g = jax.value_and_grad(lambda W: ce(x @ W, y))(W)
        return W - 0.5 * g, loss

    W1 = W2 = jnp.zeros((8, 4))
    f1 = jax.jit(lambda W: step(W, True))
    f2 = jax.jit(lambda W: step(W, False))
    l1, l2 = [], []
    for _ in range(20):
        W1, a = f1(W1)
        W2, b = f2(W2)
        l1.append(float(a))
        l2.append(float(b))
    assert l1[-1] < 0.5 * l1[0]
    np.testing.assert_allclose(l1, l2, rtol=1e-10)


def test_bad_label_raises():
    with pytest.raises(Exception, match="not a class index"):
        cj.cross_entropy(_x((2, 3)), jnp.array([0, 7])).block_until_ready()


# ---------------------------------------------------------------------------
# batching rules: jacrev, vmap of grad, vmap of a VJP (some callback arguments
# batched, others not), against jax.nn's own results

from jax.scipy.special import logsumexp as _jlse  # noqa: E402

FAMILY = [(cj.softmax, jax.nn.softmax), (cj.log_softmax, jax.nn.log_softmax)]


def _X3():                      # built inside the tests, once x64 is on
    return _x((3, 4, 5), seed=11)


def _XB():
    return _x((2, 3, 4, 5), seed=12)


def _transforms(f, x, xb, up):
    """The batched-callback situations, for a function f of one array."""
    out = {
        "jacrev": jax.jacrev(f)(x),
        "jit(jacrev)": jax.jit(jax.jacrev(f))(x),
        # cotangent unbatched (ones / up), primal batched
        "vmap(grad(sum))": jax.vmap(jax.grad(lambda t: f(t).sum()))(xb),
        "vmap(grad(up))": jax.vmap(jax.grad(lambda t: (f(t) * up).sum()))(xb),
        "vmap(vmap(grad))": jax.vmap(jax.vmap(jax.grad(lambda t: (f(t) * up).sum())))(
            jnp.stack([xb, xb + 1.0])),
    }
    # vmap of a VJP: primal unbatched, cotangent batched
    y, pull = jax.vjp(f, x)
    cts = jnp.stack([jnp.ones_like(y), 2.0 * y + 1.0, -jnp.ones_like(y)])
    out["vmap(vjp) batched cotangent"] = jax.vmap(lambda c: pull(c)[0])(cts)
    return out


def _same_transforms(f, ref, up):
    x, xb = _X3(), _XB()
    ours, theirs = _transforms(f, x, xb, up), _transforms(ref, x, xb, up)
    for k in ours:
        assert ours[k].shape == theirs[k].shape, k
        _close(ours[k], theirs[k], np.float64)


@pytest.mark.parametrize("axis", [-1, 0, 1, (0, 2), None], ids=str)
@pytest.mark.parametrize("f,ref", FAMILY, ids=["softmax", "log_softmax"])
def test_softmax_family_batched_derivatives_match_jax_nn(f, ref, axis):
    _same_transforms(lambda t: f(t, axis, temperature=1.3),
                     lambda t: ref(t / 1.3, axis), _x((3, 4, 5), seed=13))


def test_softmax_reproducers():
    x = jnp.array([1.0, 2.0, 3.0])
    _close(jax.jacrev(cj.softmax)(x), jax.jacrev(jax.nn.softmax)(x), np.float64)
    g = jax.vmap(jax.grad(lambda r: cj.log_softmax(r).sum()))(jnp.ones((4, 5)))
    gr = jax.vmap(jax.grad(lambda r: jax.nn.log_softmax(r).sum()))(jnp.ones((4, 5)))
    _close(g, gr, np.float64)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (None, True), (-1, False),
                                           (0, True), (1, False), ((0, 2), False)], ids=str)
def test_logsumexp_batched_derivatives_match_jax(axis, keepdims):
    _same_transforms(lambda t: cj.logsumexp(t, axis, keepdims=keepdims),
                     lambda t: _jlse(t, axis, keepdims=keepdims),
                     jnp.ones(_jlse(_X3(), axis, keepdims=keepdims).shape))


def test_where_batched_against_unbatched_input():
    """where= batched while x is not (and the reverse), values and gradients."""
    x, XB = _X3()[0], _XB()
    W = jnp.asarray(np.random.default_rng(3).random((4, 5)) > 0.3).at[:, 0].set(True)
    WB = jnp.asarray(np.random.default_rng(4).random((3, 4, 5)) > 0.3).at[..., 0].set(True)
    for f, ref in [FAMILY[0], (cj.logsumexp, jax.nn.logsumexp)]:
        def sq(h, w):
            return lambda t: (h(t, -1, where=w) ** 2).sum()
        _close(jax.vmap(lambda w: f(x, -1, where=w))(WB),
               jax.vmap(lambda w: ref(x, -1, where=w))(WB), np.float64)
        _close(jax.vmap(lambda w: jax.grad(sq(f, w))(x))(WB),
               jax.vmap(lambda w: jax.grad(sq(ref, w))(x))(WB), np.float64)
        _close(jax.vmap(lambda t: f(t, -1, where=W))(XB[0]),
               jax.vmap(lambda t: ref(t, -1, where=W))(XB[0]), np.float64)
        _close(jax.jacrev(lambda t: f(t, -1, where=W))(x),
               jax.jacrev(lambda t: ref(t, -1, where=W))(x), np.float64)
    _close(jax.jacrev(lambda t: cj.log_softmax(t, -1, where=W)[:, 0])(x),
           jax.jacrev(lambda t: jax.nn.log_softmax(t, -1, where=W)[:, 0])(x), np.float64)


def test_cross_entropy_batched_derivatives():
    X3, XB = _X3(), _XB()
    x, y = X3[0], jnp.array([0, 1, 4, 2])
    _close(jax.jacrev(lambda t: cj.cross_entropy(t, y, reduction="none"))(x),
           jax.jacrev(lambda t: _ce_ref(t, y, reduction="none"))(x), np.float64)
    _close(jax.vmap(jax.grad(lambda t: cj.cross_entropy(t, y)))(XB[:, 0]),
           jax.vmap(jax.grad(lambda t: _ce_ref(t, y)))(XB[:, 0]), np.float64)
    ys = jnp.array([[0, 1, 4, 2], [3, 3, 0, 1]])
    _close(jax.vmap(lambda yy: jax.grad(lambda t: cj.cross_entropy(t, yy))(x))(ys),
           jax.vmap(lambda yy: jax.grad(lambda t: _ce_ref(t, yy))(x))(ys), np.float64)
    y1 = jnp.array([[0, 1, 3, 2, 1]] * 3)
    _close(jax.jacrev(lambda t: cj.cross_entropy(t, y1, axis=1, reduction="none"))(X3),
           jax.jacrev(lambda t: _ce_ref(t, y1, axis=1, reduction="none"))(X3), np.float64)


def test_forward_mode_is_jaxs_custom_vjp_error():
    """custom_vjp has no forward mode: jax's own TypeError, not a callback crash."""
    for f in (cj.softmax, cj.log_softmax, cj.logsumexp):
        with pytest.raises(TypeError, match="forward-mode"):
            jax.jacfwd(f)(jnp.array([1.0, 2.0, 3.0]))


def test_logsumexp_signature_is_jax():
    """jax.nn.logsumexp(a, axis, b, keepdims, return_sign, where): a call
    written for jax passes b third (it was read as keepdims: silently wrong)."""
    import inspect
    assert (list(inspect.signature(cj.logsumexp).parameters)[1:]
            == list(inspect.signature(jax.nn.logsumexp).parameters)[1:6])
    x = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    b = jnp.array([2.0, -1.0])
    for args, kw in [((0, 2.0), {}), ((1, b), {}), ((1, b, True), {}),
                     ((None,), {"b": b, "return_sign": True}),
                     ((1,), {"return_sign": True}), ((0, None, False, True), {})]:
        want = jax.nn.logsumexp(x, *args, **kw)
        got = cj.logsumexp(x, *args, **kw)
        for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
            assert g.shape == w.shape and g.dtype == w.dtype, (args, kw)
            np.testing.assert_allclose(g, w, rtol=1e-6)
    gw = jax.grad(lambda a, bb: jax.nn.logsumexp(a, 1, bb).sum(), argnums=(0, 1))(x, b * b)
    gc = jax.grad(lambda a, bb: cj.logsumexp(a, 1, bb).sum(), argnums=(0, 1))(x, b * b)
    for g, w in zip(gc, gw):
        np.testing.assert_allclose(g, w, rtol=1e-6)


def _ce_prob_ref(x, q, axis, weight, reduction, label_smoothing, temperature=1.0):
    lp = jnp.moveaxis(jax.nn.log_softmax(x / temperature, axis=axis), axis, -1)
    qs = (1 - label_smoothing) * jnp.moveaxis(q, axis, -1) + label_smoothing / lp.shape[-1]
    li = -(qs * lp * weight).sum(-1)
    return li if reduction == "none" else (li.mean() if reduction == "mean" else li.sum())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_class_weight_gradient(kind, reduction):
    """weight is differentiated (it had a zero cotangent): against jax.grad
    of the jax.nn reference, class indices (ignored samples, smoothing,
    temperature; 'mean' divides by the kept weight) and probabilities,
    eagerly, under jit and under vmap; check_grads numerically."""
    x = _x((5, 4, 3))
    w = jnp.linspace(0.5, 2.0, 4)
    if kind == "index":
        t = jnp.asarray(np.random.default_rng(2).integers(0, 4, (5, 3))).at[0, 1].set(-100)
    else:
        t = jax.nn.softmax(_x((5, 4, 3), seed=3), axis=1)
    for kw in (dict(), dict(label_smoothing=0.2, temperature=1.5)):
        def ours(w_, x_=x, t_=t):
            return cj.cross_entropy(x_, t_, axis=1, weight=w_, reduction=reduction, **kw)

        def ref(w_, x_=x, t_=t):
            if kind == "index":
                return _ce_ref(x_, t_, axis=1, weight=w_, reduction=reduction, **kw)
            return _ce_prob_ref(x_, t_, 1, w_, reduction, kw.get("label_smoothing", 0.0),
                                kw.get("temperature", 1.0))

        def weighted(f):
            def g(w_, *a):
                r = f(w_, *a)
                return (r * jnp.arange(1.0, r.size + 1).reshape(r.shape)).sum()
            return g

        want = jax.grad(weighted(ref))(w)
        _close(jax.grad(weighted(ours))(w), want, np.float64)
        _close(jax.jit(jax.grad(weighted(ours)))(w), want, np.float64)
        xs, ts = jnp.stack([x, x * 0.5]), jnp.stack([t, t])
        got = jax.vmap(jax.grad(weighted(ours)), in_axes=(None, 0, 0))(w, xs, ts)
        _close(got, jax.vmap(jax.grad(weighted(ref)), in_axes=(None, 0, 0))(w, xs, ts),
               np.float64)
        check_grads(ours, (w,), order=1, modes=["rev"])


def test_class_weight_gradient_edges():
    """bfloat16 probability targets with a weight (the host took them for
    class indices), and 'mean' over samples that are all ignored or none
    (no kept weight: zeros, as the logits' gradient, not NaN)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = _x((4, 5))
    w = jnp.linspace(0.5, 2.0, 5)
    q = jax.nn.softmax(_x((4, 5), seed=1)).astype(jnp.bfloat16)
    gx, gw = jax.grad(lambda a, b: cj.cross_entropy(a.astype(jnp.bfloat16), q, weight=b)
                      .astype(jnp.float32), argnums=(0, 1))(x, w)
    want = jax.grad(lambda b: _ce_prob_ref(x.astype(jnp.bfloat16).astype(jnp.float64),
                                           q.astype(jnp.float64), -1, b, "mean", 0.0))(w)
    np.testing.assert_allclose(np.asarray(gw, np.float64), np.asarray(want), rtol=2e-2, atol=1e-3)
    assert np.all(np.isfinite(np.asarray(gx, np.float64)))
    assert q.dtype == ml_dtypes.bfloat16
    for t in (jnp.full((4,), -100), jnp.zeros((0,), jnp.int32)):
        xs = x[: t.shape[0]]
        gx, gw = jax.grad(lambda a, b: cj.cross_entropy(a, t, weight=b), argnums=(0, 1))(xs, w)
        assert np.all(np.asarray(gw) == 0) and np.all(np.asarray(gx) == 0)


@pytest.mark.parametrize("bad,exc", [("2", TypeError), (10 ** 400, ValueError),
                                     (np.complex128(2 + 1j), TypeError)])
def test_scalars_read_as_the_core_does(bad, exc):
    x = _x((3, 4))
    for name, f in (("temperature", lambda v: cj.softmax(x, temperature=v)),
                    ("temperature", lambda v: cj.log_softmax(x, temperature=v)),
                    ("temperature", lambda v: cj.cross_entropy(x, jnp.array([0, 1, 3]),
                                                               temperature=v)),
                    ("label_smoothing", lambda v: cj.cross_entropy(x, jnp.array([0, 1, 3]),
                                                                   label_smoothing=v))):
        with pytest.raises(exc, match=name):
            f(bad)


def test_arguments_checked_at_the_call():
    """Argument and shape mistakes raise csoftmax's exceptions when the
    function is called (eagerly and under jit), not a JaxRuntimeError from
    the host callback; ignore_index must be an integer (int(1.5) silently
    ignored class 1)."""
    x = _x((3, 4))
    t = jnp.array([0, 1, 2])
    bad = [(TypeError, "ignore_index", lambda: cj.cross_entropy(x, t, ignore_index=1.5)),
           (TypeError, "ignore_index", lambda: cj.cross_entropy(x, t, ignore_index=True)),
           (TypeError, "ignore_index", lambda: cj.cross_entropy(x, t, ignore_index="1")),
           (ValueError, "temperature", lambda: cj.softmax(x, temperature=0)),
           (ValueError, "temperature", lambda: cj.log_softmax(x, temperature=-1.0)),
           (ValueError, "does not broadcast", lambda: cj.softmax(x, where=jnp.ones((2, 4), bool))),
           (ValueError, "weight has shape", lambda: cj.cross_entropy(x, t, weight=jnp.ones(3))),
           (ValueError, "target has shape", lambda: cj.cross_entropy(x, jnp.array([0, 1]))),
           (ValueError, "at least one dimension",
            lambda: cj.cross_entropy(jnp.array(1.0), jnp.array(0))),
           # the core's own rules (an adapter fuzz: these surfaced as
           # JaxRuntimeError from the callback)
           (ValueError, "label_smoothing", lambda: cj.cross_entropy(x, t, label_smoothing=1.5)),
           (ValueError, "label_smoothing",
            lambda: cj.cross_entropy(x, t, label_smoothing=float("nan"))),
           (ValueError, "temperature", lambda: cj.cross_entropy(x, t, temperature=0.0)),
           (ValueError, "ignore_index",
            lambda: cj.cross_entropy(x, jnp.full((3, 4), 0.25), ignore_index=1)),
           (ValueError, "where=", lambda: cj.cross_entropy(x, jnp.full((3, 4), 0.25),
                                                           where=jnp.ones((3, 4), bool))),
           (ValueError, "where=", lambda: cj.cross_entropy(x, t, label_smoothing=0.1,
                                                           where=jnp.ones((3, 4), bool))),
           (TypeError, "integer dtype", lambda: cj.cross_entropy(x, jnp.array([0.0, 1, 2]))),
           (TypeError, "integer dtype",
            lambda: cj.cross_entropy(x, jnp.array([True, False, True]))),
           (TypeError, "must be floating",
            lambda: cj.cross_entropy(x, jnp.ones((3, 4), jnp.int32))),
           # complex input: refused, as by the core (a cast dropped the
           # imaginary part; jax.nn computes a complex softmax)
           (TypeError, "complex", lambda: cj.softmax(x.astype(jnp.complex64))),
           (TypeError, "complex", lambda: cj.log_softmax(x.astype(jnp.complex64))),
           (TypeError, "complex", lambda: cj.logsumexp(x.astype(jnp.complex64))),
           (TypeError, "complex", lambda: cj.cross_entropy(x.astype(jnp.complex64), t))]
    for exc, msg, f in bad:
        with pytest.raises(exc, match=msg):
            f()
        with pytest.raises(exc, match=msg):
            jax.jit(f)()
    _close(cj.cross_entropy(x, t, ignore_index=np.int64(1)),
           _ce_ref(x, t, ignore_index=1), np.float64)
