"""Cross-entropy of one long row split across threads (fewer samples than
threads, C >= 65536): each thread reduces a segment, the segment states
merge, the loss is computed once, and each thread writes its segment of the
gradient -- in float32 from the terms its reduction kept (rescaled by the
segment's own factor) when a segment is at most 4 MiB, else from x.

Checked against the float64 reference (gradient entries other than the
target within 4 float32 ULP, as in test_ce_store) with 1 and 2 threads and
with the one-exp kernels on and off; special rows (NaN, inf, a segment of
-inf, all -inf) must give what the unsplit path gives.
"""
import numpy as np
import pytest

import csoftmax
import _helpers as H
from csoftmax import _core

from test_ce_store import _check_grad, _ulps
from test_cross_entropy import ref_ce

needs_openmp = pytest.mark.skipif(not _core.have_openmp(), reason="built without OpenMP")

C_KEEP = 70001          # odd: two segments of 35001 / 35000, terms kept
C_NOKEEP = 2 ** 21 + 5  # float32 segments over 4 MiB: written from x


def _row(kind, C, rng, dtype=np.float32):
    x = rng.standard_normal((1, C))
    if kind == "wide":
        x *= 30
    elif kind == "shifted":
        x = x * 3 - 1e4
    elif kind == "dominant_second_half":
        # the first segment's factor underflows: rescale leaves its range
        x[0, C - 10] = 300.0
    elif kind == "neg_inf_first_half":
        x[0, : C // 2 + 3] = -np.inf
    return x.astype(dtype)


def _unsplit(f):
    prev = csoftmax.set_num_threads(1)
    try:
        return f()
    finally:
        csoftmax.set_num_threads(prev)


@pytest.mark.parametrize("kind", ["normal", "wide", "shifted",
                                  "dominant_second_half", "neg_inf_first_half"])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_class_target(kind, temperature, threads, fused):
    rng = np.random.default_rng(1)
    x = _row(kind, C_KEEP, rng)
    t = np.array([C_KEEP - 1 if kind == "neg_inf_first_half" else 123])
    loss, g = csoftmax.cross_entropy(x, t, temperature=temperature,
                                     reduction="sum", return_grad=True)
    # (the reference's 0 * log 0 would be NaN: -inf -> -1e30, same result)
    xr = np.where(np.isneginf(x), -1e30, x)
    rl, rg = ref_ce(xr, t, temperature=temperature, reduction="sum")
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="loss")
    _check_grad(g, rg, t, f"{kind} T={temperature} threads={threads}")
    if kind == "neg_inf_first_half":
        assert np.all(g[0, : C_KEEP // 2 + 3] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_segments_over_the_keep_limit(dtype, threads):
    rng = np.random.default_rng(2)
    x = _row("wide", C_NOKEEP, rng, dtype)
    t = np.array([C_NOKEEP - 2])
    loss, g = csoftmax.cross_entropy(x, t, reduction="sum", return_grad=True)
    rl, rg = ref_ce(x, t, reduction="sum")
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="loss")
    _check_grad(g, rg, t, f"threads={threads}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_smoothing_weights_probabilities(dtype, threads, fused):
    """the O(C) parts of the loss and the fix-up run on the whole row"""
    rng = np.random.default_rng(3)
    C = C_KEEP
    x = _row("normal", C, rng, dtype)
    w = rng.uniform(0.1, 3.0, C)
    t = np.array([77])
    loss, g = csoftmax.cross_entropy(x, t, weight=w, label_smoothing=0.1,
                                     reduction="mean", return_grad=True)
    rl, rg = H.ref_ce(x, t, weight=w, label_smoothing=0.1, reduction="mean")
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="smoothing loss")
    H.assert_within(g, rg, "cross_entropy_grad", what=f"smoothing threads={threads}")
    q = rng.dirichlet(np.ones(C), size=1).astype(dtype)
    loss, g = csoftmax.cross_entropy(x, q, reduction="sum", return_grad=True)
    rl, rg = H.ref_ce(x, q, reduction="sum")
    H.assert_within(np.asarray(loss), rl, "cross_entropy", what="probabilities loss")
    H.assert_within(g, rg, "cross_entropy_grad", what=f"probabilities threads={threads}")


def test_ignored_sample_and_in_place(threads, fused):
    rng = np.random.default_rng(4)
    x = _row("normal", C_KEEP, rng)
    loss, g = csoftmax.cross_entropy(x, np.array([-100]), reduction="none",
                                     return_grad=True)
    assert loss[0] == 0 and np.all(g == 0)
    t = np.array([5])
    _, rg = ref_ce(x, t, reduction="sum")
    xx = x.copy()
    _, g = csoftmax.cross_entropy(xx, t, reduction="sum", return_grad=True,
                                  grad_out=xx)
    assert g is xx
    _check_grad(xx, rg, t, "in place")


@pytest.mark.parametrize("special", ["nan", "inf", "all_neg_inf"])
def test_special_rows_match_unsplit(special, threads, fused):
    rng = np.random.default_rng(5)
    x = _row("normal", C_KEEP, rng)
    if special == "nan":
        x[0, 40000] = np.nan
    elif special == "inf":
        x[0, 10] = np.inf
    else:
        x[:] = -np.inf
    t = np.array([3])
    got = csoftmax.cross_entropy(x, t, reduction="none", return_grad=True)
    want = _unsplit(lambda: csoftmax.cross_entropy(x, t, reduction="none",
                                                   return_grad=True))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


@needs_openmp
def test_two_threads_agree_with_one(fused):
    """a split row rounds differently from an unsplit one, within the bound"""
    rng = np.random.default_rng(6)
    x = np.concatenate([_row("wide", C_KEEP, rng), _row("normal", C_KEEP, rng)])
    t = np.array([9, 70000])
    prev = csoftmax.set_num_threads(2)
    try:
        l2, g2 = csoftmax.cross_entropy(x[:1], t[:1], reduction="none",
                                        return_grad=True)
        lb = csoftmax.logsumexp_backward(x[1:], np.array([-3.0], np.float32))
    finally:
        csoftmax.set_num_threads(prev)
    l1, g1 = _unsplit(lambda: csoftmax.cross_entropy(x[:1], t[:1],
                                                     reduction="none",
                                                     return_grad=True))
    np.testing.assert_allclose(l2, l1, rtol=1e-6)
    assert _ulps(g2, g1).max() <= 4.0
    lb1 = _unsplit(lambda: csoftmax.logsumexp_backward(
        x[1:], np.array([-3.0], np.float32)))
    assert _ulps(lb, lb1).max() <= 4.0
