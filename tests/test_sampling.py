"""sample(): chi-square goodness of fit, argmax at T = 0, top-k, seeds, threads."""
import numpy as np
import pytest
from numpy.exceptions import AxisError
from scipy.stats import chisquare

import csoftmax
from csoftmax import _core

ISAS = _core.available_isas()


def ref_probs(x, T, top_k=None):
    """float64 softmax(x/T) restricted to the top_k largest (ties: lower index)."""
    x = np.asarray(x, np.float64)
    keep = np.ones(x.shape, bool)
    if top_k is not None and top_k < x.size:
        order = np.argsort(-x, kind="stable")
        keep[:] = False
        keep[order[:top_k]] = True
    z = np.where(keep, x / T, -np.inf)
    p = np.exp(z - z.max())
    return p / p.sum()


def counts_of(draws, n):
    return np.bincount(draws.ravel(), minlength=n)


def assert_fits(draws, p, seed_note=""):
    """Chi-square goodness of fit on the classes with nonzero probability;
    classes with probability 0 must never be drawn."""
    n = p.size
    c = counts_of(draws, n)
    assert c[p == 0].sum() == 0, f"drew a class with probability 0 {seed_note}"
    nz = p > 0
    expected = p[nz] * draws.size
    assert expected.min() >= 5, "test design: expected counts too small for chi-square"
    res = chisquare(c[nz], expected)
    assert res.pvalue > 1e-3, (c, expected, res)


N = 60000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T", [1.0, 0.5, 3.0])
def test_chisquare_full_distribution(isa, dtype, T):
    x = np.array([0.3, -1.0, 1.2, 0.0, 2.0, -0.4, 0.9, 1.5])
    rows = np.broadcast_to(x.astype(dtype), (N, x.size))
    draws = csoftmax.sample(rows, temperature=T, seed=12345)
    assert draws.shape == (N,) and draws.dtype == np.int64
    assert_fits(draws, ref_probs(x.astype(dtype), T))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("top_k", [1, 3, 5])
def test_chisquare_top_k(isa, dtype, top_k):
    x = np.array([0.3, -1.0, 1.2, 0.0, 2.0, -0.4, 0.9, 1.5])
    rows = np.broadcast_to(x.astype(dtype), (N, x.size))
    draws = csoftmax.sample(rows, temperature=1.5, top_k=top_k, seed=777)
    p = ref_probs(x, 1.5, top_k)
    if top_k == 1:
        assert (draws == 4).all()
    else:
        assert_fits(draws, p)


def test_chisquare_seed_example(isa):
    # the seeds' worked example: logits [38, 20, 40, 39] at several temperatures
    x = np.array([38.0, 20.0, 40.0, 39.0])
    for T, seed in [(5.0, 1), (10.0, 2), (1.0, 3)]:
        p = ref_probs(x, T)
        draws = csoftmax.sample(np.broadcast_to(x, (N, 4)), temperature=T, seed=seed)
        if T == 1.0:        # class 1 has probability ~1e-9: check the others
            assert counts_of(draws, 4)[1] <= 1
            c = counts_of(draws, 4)[[0, 2, 3]]
            pp = p[[0, 2, 3]] / p[[0, 2, 3]].sum()
            assert chisquare(c, pp * c.sum()).pvalue > 1e-3
        else:
            assert_fits(draws, p)


def test_chisquare_many_classes_and_ties(isa):
    # many classes, threaded (2.4M elements), ties at the k-th value broken
    # towards lower indices
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=40), 1)
    x[[5, 9, 17]] = x.max() + 0.5             # three-way tie at the top
    rows = np.broadcast_to(x, (N, x.size))
    draws = csoftmax.sample(rows, temperature=0.4, top_k=2, seed=99)
    assert set(np.unique(draws)) <= {5, 9}
    assert_fits(draws, ref_probs(x, 0.4, 2))
    draws = csoftmax.sample(rows, temperature=2.0, seed=5)
    p = ref_probs(x, 2.0)
    big = p * N >= 5                           # pool the rare classes
    c = counts_of(draws, x.size)
    obs, exp = c[big], p[big] * N
    if (~big).any():
        obs, exp = np.append(obs, c[~big].sum()), np.append(exp, p[~big].sum() * N)
    assert chisquare(obs, exp).pvalue > 1e-3


def test_temperature_zero_is_argmax(isa):
    rng = np.random.default_rng(4)
    x = np.round(rng.normal(size=(500, 17)), 1)   # many ties
    x[3] = -np.inf
    x[3, 7] = 1.0
    x[4, 2] = np.inf
    for dtype in (np.float32, np.float64):
        xd = x.astype(dtype)
        np.testing.assert_array_equal(csoftmax.sample(xd, temperature=0), np.argmax(xd, axis=1))
        # the smallest temperature accepted (1/T finite; 1e-320 is refused as
        # in every function with a temperature) is the argmax too
        tmin = np.nextafter(1.0 / np.finfo(np.float64).max, 1.0)
        fin = np.where(np.isposinf(xd), 9.0, xd)   # +inf is an error for T > 0
        got = csoftmax.sample(fin, temperature=tmin, seed=1)
        # one of the maximal entries (ties are drawn among, not first-index)
        np.testing.assert_array_equal(fin[np.arange(len(fin)), got], fin.max(axis=1))
        np.testing.assert_array_equal(csoftmax.sample(xd.T, temperature=0, axis=0),
                                      np.argmax(xd, axis=1))
    # low temperature concentrates on the max
    y = np.array([[1.0, 3.0, 2.9]])
    assert int(csoftmax.sample(y, temperature=1e-4, seed=0)[0]) == 1


def test_seed_reproducibility_threads_and_blocking(isa):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3000, 50)).astype(np.float32) * 2
    prev = csoftmax.set_num_threads(1)
    try:
        a1 = csoftmax.sample(x, temperature=0.8, seed=2024)
        k1 = csoftmax.sample(x, temperature=0.8, top_k=7, seed=2024)
        csoftmax.set_num_threads(2)
        a2 = csoftmax.sample(x, temperature=0.8, seed=2024)
        k2 = csoftmax.sample(x, temperature=0.8, top_k=7, seed=2024)
    finally:
        csoftmax.set_num_threads(prev)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(a1, csoftmax.sample(x, temperature=0.8, seed=2024))
    # a row's draw depends only on (seed, row index), not on the rest of the batch
    np.testing.assert_array_equal(a1[:100], csoftmax.sample(x[:100], temperature=0.8, seed=2024))
    # other seeds differ; the class axis can be anywhere; both ISAs give the same
    assert (a1 != csoftmax.sample(x, temperature=0.8, seed=2025)).any()
    np.testing.assert_array_equal(
        a1.reshape(30, 100), csoftmax.sample(x.reshape(30, 100, 50).transpose(0, 2, 1),
                                             temperature=0.8, axis=1, seed=2024))
    for name in ISAS:
        prev_isa = _core._use_isa(name)
        try:
            b = csoftmax.sample(x.astype(np.float64), temperature=0.8, seed=2024)
        finally:
            _core._use_isa(prev_isa)
        # probabilities differ by rounding only: at most a handful of rows flip
        assert (b != a1).sum() <= 3
    # seed=None: fresh entropy (two 3000-row draws virtually never coincide)
    assert (csoftmax.sample(x, seed=None) != csoftmax.sample(x, seed=None)).any()


def test_neg_inf_never_drawn_and_shapes():
    x = np.array([[0.0, -np.inf, 0.0, -np.inf]] * 2000)
    d = csoftmax.sample(x, seed=1)
    assert set(np.unique(d)) == {0, 2}
    assert csoftmax.sample([1.0, 2.0], seed=3).ndim == 0
    assert csoftmax.sample(np.zeros((2, 3, 4)), axis=1, seed=3).shape == (2, 4)
    assert csoftmax.sample(np.zeros((0, 4)), seed=3).shape == (0,)
    assert int(csoftmax.sample([[5.0]], seed=1)[0]) == 0
    assert csoftmax.sample(np.array([[1, 2, 3]], dtype=np.int32), top_k=10, seed=1).shape == (1,)


def test_bad_input():
    x = np.zeros((3, 4))
    x0 = x.copy()
    with pytest.raises(ValueError, match=r"row \[1\] contains NaN"):
        csoftmax.sample(np.array([[0.0, 1.0], [np.nan, 0.0]]), seed=0)
    with pytest.raises(ValueError, match="NaN"):
        csoftmax.sample(np.array([[0.0, np.nan]]), temperature=0)
    with pytest.raises(ValueError, match=r"\+inf"):
        csoftmax.sample(np.array([[0.0, np.inf]]), seed=0)
    with pytest.raises(ValueError, match="-inf"):
        csoftmax.sample(np.array([[-np.inf, -np.inf]]), seed=0)
    with pytest.raises(ValueError, match="-inf"):
        csoftmax.sample(np.array([[-np.inf, -np.inf]]), temperature=0)
    for T in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="temperature"):
            csoftmax.sample(x, temperature=T)
    with pytest.raises(TypeError, match="temperature"):
        csoftmax.sample(x, temperature=None)
    for k in (0, -2):
        with pytest.raises(ValueError, match="top_k"):
            csoftmax.sample(x, top_k=k)
    for k in (1.5, True, "3"):
        with pytest.raises(TypeError, match="top_k"):
            csoftmax.sample(x, top_k=k)
    with pytest.raises(ValueError, match="seed"):
        csoftmax.sample(x, seed=-1)
    for s in (1.5, "a", True):
        with pytest.raises(TypeError, match="seed"):
            csoftmax.sample(x, seed=s)
    with pytest.raises(ValueError, match="no classes"):
        csoftmax.sample(np.zeros((3, 0)))
    with pytest.raises(AxisError):
        csoftmax.sample(x, axis=2)
    with pytest.raises(TypeError, match="complex"):
        csoftmax.sample(x + 0j)
    with pytest.raises(ValueError, match="dimension"):
        csoftmax.sample(1.0)
    np.testing.assert_array_equal(x, x0)
