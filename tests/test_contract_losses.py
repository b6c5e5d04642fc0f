"""The accuracy contract (README "Accuracy", docs/accuracy.md) for kl_div,
distillation_loss, margin_logits, margin_cross_entropy, softplus,
soft_hinge, smooth_max and logsumexp with weights `b` / `return_sign`.

Every output element (and every gradient element) is checked against an
accurate reference of the same input (tests/_helpers.py ``ref_kl``,
``ref_distill``, ``ref_margin_logits``, ``ref_margin_ce``, ``ref_softplus``,
``ref_soft_hinge``, ``ref_smooth_max``, ``ref_logsumexp_b``):

    |got - ref| <= U ulp(ref) + kappa cond

U from ``_helpers.CONTRACT``, kappa ``_helpers.KAPPA`` (2^-36 float32,
2^-44 float64) except the float32 distillation loss / gradient
(``KAPPA_DISTILL_F32`` = 2^-22, documented as not at the aim), cond the
magnitudes of the terms that cancel (see each reference's docstring).
Inputs: random rows N(0,1)*3 and *30 of V = 10 ... 4000, and the targeted
inputs where each function's cancellation or conditioning peaks.
"""
import numpy as np
import pytest

import csoftmax
import _helpers as H

F = [np.float32, np.float64]
VS = [10, 100, 4000]


def _rows(rng, dtype, V, sc):
    rows = max(3, 8000 // V)
    return (rng.normal(size=(rows, V)) * sc).astype(dtype)


# -- kl_div ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(dtype, V, log_target, rng):
    for sc in (3, 30):
        x = _rows(rng, dtype, V, sc)
        lq = csoftmax.log_softmax(x)
        # near-equal distributions: the two products of each term cancel
        x2 = (x + (rng.normal(size=x.shape) * 1e-3).astype(dtype)).astype(dtype)
        for y in (x2, _rows(rng, dtype, V, sc)[: x.shape[0]]):
            p = csoftmax.log_softmax(y) if log_target else csoftmax.softmax(y)
            if not log_target:
                p[:, ::7] = 0                        # xlogy(0, 0) = 0
            for red in ("none", "sum", "mean", "batchmean"):
                got = csoftmax.kl_div(lq, p, log_target=log_target, reduction=red)
                H.assert_within(np.asarray(got), H.ref_kl(lq, p, log_target=log_target,
                                                          reduction=red),
                                "kl_div", what=f"kl_div {red} sc={sc}")


def test_kl_div_broadcast_and_mixed_dtypes(rng):
    lq = np.log(rng.dirichlet(np.ones(6), size=5)).astype(np.float32)
    p = rng.dirichlet(np.ones(6))                 # float64, broadcast over rows
    got = csoftmax.kl_div(lq, p, reduction="none")
    assert got.dtype == np.float64 and got.shape == (5, 6)
    H.assert_within(got, H.ref_kl(lq, p, reduction="none"), "kl_div")
    H.assert_within(np.asarray(csoftmax.kl_div(lq, p, reduction="batchmean")),
                    H.ref_kl(lq, p, reduction="batchmean"), "kl_div")


# -- distillation_loss ------------------------------------------------------------

@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("V", VS)
def test_distillation(isa, dtype, V, rng):
    for sc in (3, 30):
        s = _rows(rng, dtype, V, sc)
        for t in (s.copy(),                                   # loss 0: full cancellation
                  (s + (rng.normal(size=s.shape) * 0.1).astype(dtype)).astype(dtype),
                  _rows(rng, dtype, V, sc)[: s.shape[0]]):
            for T in (1.0, 2.0, 0.5):
                for red in ("none", "batchmean", "mean", "sum"):
                    loss, g = csoftmax.distillation_loss(s, t, temperature=T, reduction=red,
                                                         return_grad=True)
                    rl, rg = H.ref_distill(s, t, temperature=T, reduction=red)
                    w = f"distillation {red} sc={sc} T={T}"
                    H.assert_within(np.asarray(loss), rl, "distillation_loss", what=w)
                    H.assert_within(g, rg, "distillation_grad", what=w)


def test_distillation_axis0(isa, rng):
    s = (rng.normal(size=(50, 7)) * 5).astype(np.float32)
    t = (rng.normal(size=(50, 7)) * 5).astype(np.float32)
    loss, g = csoftmax.distillation_loss(s, t, axis=0, temperature=3.0, reduction="none",
                                         return_grad=True)
    rl, rg = H.ref_distill(s, t, axis=0, temperature=3.0, reduction="none")
    H.assert_within(loss, rl, "distillation_loss")
    H.assert_within(g, rg, "distillation_grad")


# -- margin_logits / margin_cross_entropy -----------------------------------------

MARGINS = [("normface", 0.0, False), ("cosface", 0.35, False), ("cosface", 0.35, True),
           ("arcface", 0.5, False), ("arcface", 0.5, True), ("arcface", 3.0, False)]


def _cosines(rng, dtype, rows, V):
    c = np.clip(rng.normal(size=(rows, V)) * 0.3, -1, 1)
    lab = rng.integers(0, V, rows)
    k = rows // 6
    one = np.nextafter(dtype(1), dtype(0))
    # the target at +-1 and one ULP inside, at the cosface margin (c - m
    # cancels) and around arcface's branch point cos(pi - m)
    tv = np.array([1, -1, one, -one, 0.35, 0.0, np.cos(np.pi - 0.5), -0.9999], dtype)
    c[np.arange(rows), lab] = np.resize(tv, rows)
    c[:k, :] = np.clip(c[:k, :] * 3, -1, 1)
    c = c.astype(dtype)
    return c, lab


@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("V", [2, 10, 1000])
@pytest.mark.parametrize("kind,m,easy", MARGINS)
def test_margin_family(isa, dtype, V, kind, m, easy, rng):
    c, lab = _cosines(rng, dtype, 48, V)
    for s in (1.0, 64.0):
        kw = dict(scale=s, margin=m, kind=kind, easy_margin=easy)
        H.assert_within(csoftmax.margin_logits(c, lab, **kw),
                        H.ref_margin_logits(c, lab, **kw), "margin_logits", what=f"logits {kw}")
        for red in ("none", "mean", "sum"):
            with np.errstate(all="ignore"):
                loss, g = csoftmax.margin_cross_entropy(c, lab, reduction=red, return_grad=True, **kw)
            rl, rg = H.ref_margin_ce(c, lab, reduction=red, **kw)
            H.assert_within(np.asarray(loss), rl, "margin_cross_entropy", what=f"loss {red} {kw}")
            ok = ~_simd_far_target(isa, c, lab, rl if red == "none" else None, kw)
            H.assert_within(g[ok], _sub(rg, ok), "margin_ce_grad", what=f"grad {red} {kw}")


def _sub(r, ok):
    """Rows `ok` of a gradient Ref (value, cond, floor)."""
    out = H.mkref(np.asarray(r)[ok], r.cond[ok])
    out.floor = {k: v[ok] for k, v in r.floor.items()}
    return out


def _simd_far_target(isa, c, lab, loss, kw):
    """No row is excluded any more (the float32 SIMD defect these rows
    showed is fixed: _state_without recomputes a state whose remaining sum
    is below the kernels' clamp); kept as the one place to exclude rows."""
    return np.zeros(c.shape[0], bool)


def test_margin_ce_grad_far_target_simd():
    """Was 2981x (e^8) too large on AVX2/AVX-512: with the target removed
    from a float32 SIMD reduction state, only the clamped terms were left
    (_state_without now recomputes such rows)."""
    from csoftmax import _core
    c = np.array([[1.0, -1.0]], np.float32)
    kw = dict(scale=64.0, margin=3.0, kind="arcface", reduction="none")
    prev = _core._use_isa("avx2") if "avx2" in _core.available_isas() else None
    try:
        _, g = csoftmax.margin_cross_entropy(c, np.array([0]), return_grad=True, **kw)
    finally:
        if prev is not None:
            _core._use_isa(prev)
    H.assert_within(g, H.ref_margin_ce(c, np.array([0]), **kw)[1], "margin_ce_grad")


def test_margin_axis0(isa, rng):
    c, lab = _cosines(rng, np.float32, 30, 12)
    c = c.T.copy()
    kw = dict(scale=30.0, margin=0.2, kind="arcface")
    H.assert_within(csoftmax.margin_logits(c, lab, axis=0, **kw),
                    H.ref_margin_logits(c, lab, axis=0, **kw), "margin_logits")
    with np.errstate(all="ignore"):
        loss, g = csoftmax.margin_cross_entropy(c, lab, axis=0, reduction="none",
                                                return_grad=True, **kw)
    rl, rg = H.ref_margin_ce(c, lab, axis=0, reduction="none", **kw)
    H.assert_within(loss, rl, "margin_cross_entropy")
    H.assert_within(g, rg, "margin_ce_grad")


# -- softplus -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("beta", [1.0, 0.5, 3.0, 1e-3])
@pytest.mark.parametrize("threshold", [20.0, 5.0, 1e9, -1.0])
def test_softplus(dtype, beta, threshold, rng):
    lim = 100.0 if dtype == np.float32 else 740.0
    x = np.concatenate([np.linspace(-lim / beta, lim / beta, 20001),
                        rng.normal(size=2000) * 3, rng.normal(size=2000) * 30,
                        [0.0, -0.0, 1e-30, -1e-30]])
    x = x.astype(dtype)
    H.assert_within(csoftmax.softplus(x, beta=beta, threshold=threshold),
                    H.ref_softplus(x, beta=beta, threshold=threshold), "softplus",
                    what=f"softplus beta={beta} th={threshold}")


# -- soft_hinge -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("V", [1, 2] + VS)
def test_soft_hinge(isa, dtype, V, rng):
    for sc in (3, 30):
        x = _rows(rng, dtype, V, sc)
        lab = rng.integers(0, V, x.shape[0])
        r = np.arange(x.shape[0])
        if V > 1:
            # the target the unique max far above the rest (exact branch),
            # and tied with the max
            x[: x.shape[0] // 3, :] -= dtype(80)
            x[r[::4], lab[::4]] = x[r[::4]].max(1)
        for m in (0.0, 1.0, -2.0, 30.0):
            for red in ("none", "mean", "sum"):
                loss, g = csoftmax.soft_hinge(x, lab, margin=m, reduction=red, return_grad=True)
                rl, rg = H.ref_soft_hinge(x, lab, margin=m, reduction=red)
                w = f"soft_hinge m={m} {red} sc={sc}"
                H.assert_within(np.asarray(loss), rl, "soft_hinge", what=w)
                H.assert_within(g, rg, "soft_hinge_grad", what=w)


# -- smooth_max -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("V", VS)
@pytest.mark.parametrize("k", [0.01, 0.5, 1.0, 3.0, 16.0, 1e3])
def test_smooth_max(isa, dtype, V, k, rng):
    for sc in (3, 30):
        x = _rows(rng, dtype, V, sc)
        x[0] = x[0] - x[0].max() - dtype(np.log(V) / k)    # result near 0 (m + L/k cancels)
        x[1] = 5                                           # constant row: max + log(n)/k
        H.assert_within(csoftmax.smooth_max(x, sharpness=k),
                        H.ref_smooth_max(x, -1, k), "smooth_max", what=f"k={k} sc={sc}")


def test_smooth_max_axes(isa, rng):
    x = rng.normal(size=(6, 7, 8)) * 3
    for ax in (0, 1, (0, 2), None):
        for keep in (False, True):
            got = csoftmax.smooth_max(x, axis=ax, sharpness=2.5, keepdims=keep)
            want = H.ref_smooth_max(x, ax, 2.5)
            if keep:
                want = H.mkref(np.reshape(want, np.shape(got)), slack=np.reshape(want.slack, np.shape(got)))
            H.assert_within(np.asarray(got), want, "smooth_max", what=f"axis={ax}")


# -- logsumexp with weights b / return_sign --------------------------------------------

@pytest.mark.parametrize("dtype", F)
@pytest.mark.parametrize("V", VS)
def test_logsumexp_weighted(isa, dtype, V, rng):
    for sc in (3, 30):
        x = _rows(rng, dtype, V, sc)
        for b in ((rng.random(x.shape) + 0.1).astype(dtype),
                  rng.normal(size=x.shape).astype(dtype),          # both signs: cancels
                  np.where(rng.random(x.shape) < 0.3, 0, rng.random(x.shape)).astype(dtype)):
            r, sg = csoftmax.logsumexp(x, axis=-1, b=b, return_sign=True)
            want, wsg = H.ref_logsumexp_b(x, b, axis=-1)
            np.testing.assert_array_equal(sg, wsg)
            H.assert_within(r, want, "logsumexp_b", what=f"sc={sc}")
            if (b >= 0).all():
                H.assert_within(csoftmax.logsumexp(x, axis=-1, b=b), want, "logsumexp_b")


def test_logsumexp_weighted_targeted(rng):
    # a tiny weight on the max; weights that cancel to a small remainder
    x = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, np.log(3.0)]])
    b = np.array([[1.5, 1e-202], [1.0, -0.999999], [1.0, -2.0]])
    r, sg = csoftmax.logsumexp(x, axis=-1, b=b, return_sign=True)
    want, wsg = H.ref_logsumexp_b(x, b, axis=-1)
    np.testing.assert_array_equal(sg, wsg)
    H.assert_within(r, want, "logsumexp_b")
    # axis None / tuple, broadcast b, float32 x with float64 b -> float64
    x = (rng.normal(size=(4, 5, 6)) * 3).astype(np.float32)
    b = rng.random(6)
    for ax in (None, (0, 2), 1):
        got = csoftmax.logsumexp(x, axis=ax, b=b)
        want, _ = H.ref_logsumexp_b(x, np.broadcast_to(b, x.shape), axis=ax)
        assert np.asarray(got).dtype == np.float64
        H.assert_within(np.asarray(got), want, "logsumexp_b", what=f"axis={ax}")


# ---------------------------------------------------------------------------
# float64 sums whose error must not grow with the count (kappa = 2^-44): the
# class sums of probability targets / label smoothing over long rows, and the
# 'mean' divisor over many weighted samples.

@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_float64_long_row_class_sums(rng, layout):
    """sum_c w q' (x - m) and sum_c w q' over C = 20 000 / 200 000 classes:
    plain float64 sums were 12x beyond the bound at 200 000 (probability
    targets) and 24 ULP beyond with label smoothing at 19 084; compensated
    now, the same in the row and the column code."""
    for C in (19_084, 200_000):
        x = rng.normal(size=(2, C))
        x[1] = 0.0
        q = np.full((2, C), 1.0 / C)
        w = rng.uniform(0.5, 2.0, size=C)
        t = np.array([3, C - 1])
        cases = [(q, {}), (q, {"weight": w}), (t, {"label_smoothing": 0.1}),
                 (t, {"label_smoothing": 0.3, "weight": w})]
        for target, kw in cases:
            if layout == "cols":
                xa, ta, ax = x.T.copy(), (target.T.copy() if target.ndim == 2 else target), 0
            else:
                xa, ta, ax = x, target, -1
            loss, g = csoftmax.cross_entropy(xa, ta, axis=ax, reduction="none",
                                             return_grad=True, **kw)
            rl, rg = H.ref_ce(x, target, reduction="none", **kw)
            H.assert_within(loss, rl, "cross_entropy", what=f"loss C={C} {kw}")
            H.assert_within(g.T if layout == "cols" else g, rg, "cross_entropy_grad",
                            what=f"grad C={C} {kw}")
            s = csoftmax.cross_entropy(xa, ta, axis=ax, reduction="sum", **kw)
            H.assert_within(np.asarray(s), H.ref_ce(x, target, reduction="sum", **kw)[0],
                            "cross_entropy", what=f"sum C={C} {kw}")


def test_float64_weighted_mean_divisor():
    """'mean' divides by sum_i w_{y_i}: N = 10^6 weights of 0.1 summed one by
    one were 6e4 ULP off; the mean of equal losses is that loss."""
    N = 1_000_000
    t = np.ones(N, np.int64)
    w = np.array([1.0, 0.1])
    got = csoftmax.nll_loss(np.full((N, 2), -0.5), t, weight=w, reduction="mean")
    assert abs(got - 0.5) <= 4 * np.spacing(0.5), got
    got = csoftmax.cross_entropy(np.zeros((N, 2)), t, weight=w, reduction="mean")
    assert abs(got - np.log(2.0)) <= 4 * np.spacing(np.log(2.0)), got
    # ignored samples and a mix of weights: against the exact rational mean
    from fractions import Fraction
    t = np.random.default_rng(5).integers(-1, 3, size=200_001)
    w = np.array([0.1, 0.3, 0.7])
    lp = np.full((t.size, 3), -2.0)
    got = csoftmax.nll_loss(lp, t, weight=w, ignore_index=-1, reduction="mean")
    kept = t[t >= 0]
    num = sum(Fraction(float(w[k])) * 2 for k in kept)
    den = sum(Fraction(float(w[k])) for k in kept)
    assert got == float(num / den) or abs(got - float(num / den)) <= 4 * np.spacing(2.0)
