"""Regression tests of the correctness sweep (issue 15): what a hostile
caller found.  Each test fails on the code before the fix.

1. outputs overlapping inputs: one rule for every function that writes
   caller memory (``may_write_directly``), checked against every argument;
2. thread counts the OpenMP runtime cannot honour;
3. temperatures (sharpness, scale, beta) whose reciprocal overflows;
4. input handling: bools as axes, np.matrix, masked arrays, big-endian
   labels, ignore_index overflow, torch's lazy negation / conjugation bits,
   +inf in softmax rows.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import csoftmax as cs


# ---------------------------------------------------------------------------
# 1. overlap

def _writers(dt):
    """(name, fn(args..., dest) -> result, list of input factories) for every
    public function that writes caller memory.  Each input factory takes an
    rng and returns the argument (a (6, 5) array unless said otherwise)."""
    def logits(r):
        return (r.standard_normal((6, 5)) * 3).astype(dt)

    def probs(r):
        return cs.softmax(logits(r))

    def per_row(r):
        return r.standard_normal(6).astype(dt)

    def weights(r):
        return (r.random(5) + 0.5).astype(dt)

    def qtarget(r):
        return cs.softmax(logits(r) / 2)

    return [
        ("softmax", lambda x, o: cs.softmax(x, out=o), [logits]),
        ("log_softmax", lambda x, o: cs.log_softmax(x, out=o), [logits]),
        ("softmax axis 0", lambda x, o: cs.softmax(x, axis=0, out=o), [logits]),
        ("softmax_backward", lambda y, d, o: cs.softmax_backward(y, d, out=o), [probs, logits]),
        ("log_softmax_backward", lambda y, d, o: cs.log_softmax_backward(y, d, out=o),
         [lambda r: cs.log_softmax(logits(r)), logits]),
        ("softmax_backward axis 0",
         lambda y, d, o: cs.softmax_backward(y, d, axis=0, out=o), [probs, logits]),
        ("logsumexp_backward", lambda x, d, o: cs.logsumexp_backward(x, d, out=o),
         [logits, per_row]),
        ("cross_entropy weight",
         lambda x, w, o: cs.cross_entropy(x, np.array([0, 1, 2, 3, 4, 0]), weight=w,
                                          return_grad=True, grad_out=o),
         [logits, weights]),
        ("cross_entropy probabilities",
         lambda x, q, o: cs.cross_entropy(x, q, return_grad=True, grad_out=o,
                                          label_smoothing=0.1),
         [logits, qtarget]),
        ("cross_entropy probabilities axis 0",
         lambda x, q, o: cs.cross_entropy(x, q, axis=0, return_grad=True, grad_out=o),
         [logits, qtarget]),
    ]


def _unpack(res):
    """The part of a result that lands in the destination, and the rest."""
    if isinstance(res, tuple):           # cross_entropy: (loss, grad)
        return res[1], res[0]
    return res, None


@pytest.mark.parametrize("dt", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(10))
def test_output_overlapping_any_input_gives_fresh_bits(case, dt, rng):
    """An output that partially overlaps *any* argument (not only x) gives
    the bits of a fresh output; before the fix softmax_backward,
    log_softmax_backward, logsumexp_backward (dy) and cross_entropy
    (weight) read memory they had already overwritten."""
    name, fn, makers = _writers(dt)[case]
    args = [m(rng) for m in makers]
    want, want_rest = _unpack(fn(*[a.copy() for a in args], None))
    for k in range(len(args)):
        overlaps = 0
        for shift in (1, -1, 5, -5, 3, 0):
            if shift == 0 and args[k].shape != want.shape:
                continue
            size = max(a.size for a in args) + want.size + 64
            buf = np.zeros(size, dtype=dt)
            base = 32
            # input k at `base`, the output at base + shift, the other
            # inputs far away (no overlap)
            placed = []
            for j, a in enumerate(args):
                if j == k:
                    view = buf[base:base + a.size].reshape(a.shape)
                else:
                    view = np.empty_like(a)
                view[...] = a
                placed.append(view)
            o = buf[base + shift:base + shift + want.size].reshape(want.shape)
            if not np.may_share_memory(o, placed[k]):
                continue                # a short input (weight) and a long shift
            overlaps += 1
            res = fn(*placed, o)
            got, rest = _unpack(res)
            assert got is o
            np.testing.assert_array_equal(got, want, err_msg=f"{name}: input {k}, shift {shift}")
            if want_rest is not None:
                np.testing.assert_array_equal(rest, want_rest,
                                              err_msg=f"{name}: loss, input {k}, shift {shift}")
        assert overlaps >= 3


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_issue_examples(dt):
    buf = np.zeros(20, dt)
    buf[:16] = 0.25
    dy = np.arange(16.).reshape(4, 4).astype(dt)
    r = cs.softmax_backward(buf[:16].reshape(4, 4), dy, out=buf[4:].reshape(4, 4))
    np.testing.assert_allclose(r[1], [-0.375, -0.125, 0.125, 0.375], rtol=1e-6)

    x = np.zeros((100, 4), dt)
    o = np.empty((100, 4), dt)
    d = o.reshape(-1)[:100]
    d[:] = 1
    np.testing.assert_array_equal(cs.logsumexp_backward(x, d, out=o)[99], [0.25] * 4)

    g = np.empty((3, 4), dt)
    g[0] = 1
    loss, grad = cs.cross_entropy(np.zeros((3, 4), dt), [0, 1, 2], weight=g[0],
                                  return_grad=True, grad_out=g)
    assert abs(loss - np.log(4)) < 1e-6
    np.testing.assert_allclose(grad[0], [-0.25, 1 / 12, 1 / 12, 1 / 12], rtol=1e-6)


def test_labels_sharing_bytes_with_grad_out():
    """Class indices whose int64 bytes are the gradient's memory."""
    x = np.random.default_rng(1).standard_normal((4, 6))
    t = np.array([1, 2, 3, 0])
    want_loss, want = cs.cross_entropy(x, t, return_grad=True)
    g = np.zeros((4, 6))
    lab = g.view(np.int64)[:, 2]          # labels inside the gradient rows
    lab[:] = t
    loss, got = cs.cross_entropy(x, lab, return_grad=True, grad_out=g)
    np.testing.assert_array_equal(got, want)
    assert loss == want_loss


def test_in_place_stays_in_place():
    """out=x / out=y / out=dy / grad_out=logits are still computed in place
    (same bits as a fresh output)."""
    r = np.random.default_rng(2)
    x = r.standard_normal((7, 9))
    want = cs.softmax(x)
    assert cs.softmax(x, out=x) is x and np.array_equal(x, want)
    y = cs.softmax(r.standard_normal((7, 9)))
    dy = r.standard_normal((7, 9))
    want = cs.softmax_backward(y, dy)
    assert np.array_equal(cs.softmax_backward(y, dy, out=dy), want)
    x = r.standard_normal((7, 9))
    want_l, want = cs.cross_entropy(x, np.arange(7), return_grad=True)
    loss, g = cs.cross_entropy(x, np.arange(7), return_grad=True, grad_out=x)
    assert g is x and np.array_equal(x, want) and loss == want_l


def test_may_write_directly_rule():
    from csoftmax._validate import may_write_directly
    a = np.zeros(20)
    x = a[:16].reshape(4, 4)
    assert may_write_directly(x, (x,), in_place=(x,))
    assert not may_write_directly(a[1:17].reshape(4, 4), (x,), in_place=(x,))
    assert not may_write_directly(x.T, (x,), in_place=(x,))          # same bytes, other order
    assert not may_write_directly(x, (x,))                           # in place not allowed
    assert not may_write_directly(x.view(np.int64), (x,), in_place=(x,))  # other dtype
    assert may_write_directly(np.zeros((4, 4)), (x, None))


# ---------------------------------------------------------------------------
# 2. thread counts

def test_thread_cap_is_refused_not_fatal():
    cap = cs.get_config()["max_threads"]
    assert cap >= 1
    for n in (2**31 - 1, 2**24, 100000, cap + 1) if cs.get_config()["openmp"] else ():
        with pytest.raises(ValueError, match="number of threads must be <="):
            cs.set_num_threads(n)
    assert cs.get_num_threads() >= 1


@pytest.mark.skipif(not cs.get_config()["openmp"], reason="serial build")
def test_thread_cap_itself_runs():
    cap = cs.get_config()["max_threads"]
    prev = cs.set_num_threads(cap)
    try:
        x = np.random.default_rng(3).standard_normal((64, 1024)).astype(np.float32)
        y = cs.softmax(x)
    finally:
        cs.set_num_threads(prev)
    np.testing.assert_array_equal(y, cs.softmax(x))


@pytest.mark.skipif(not cs.get_config()["openmp"], reason="serial build")
def test_huge_omp_num_threads_is_clamped():
    """OMP_NUM_THREADS above the cap is clamped (the process used to die)."""
    code = ("import numpy as np, csoftmax as cs; "
            "x = np.ones((64, 1024), np.float32); y = cs.softmax(x); "
            "print(cs.get_num_threads(), cs.get_config()['max_threads'], float(y.sum()))")
    env = dict(os.environ, OMP_NUM_THREADS="100000")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, cwd=tempfile.gettempdir(),   # not the source tree
                       timeout=120)
    assert r.returncode == 0, r.stderr
    n, cap, s = r.stdout.split()
    assert int(n) == int(cap) and float(s) == 64.0


# ---------------------------------------------------------------------------
# 3. tiny temperatures

TINY = [1e-310, 5e-324, 5.5e-309]


@pytest.mark.parametrize("T", TINY)
@pytest.mark.parametrize("call", [
    lambda x, T: cs.softmax(x, temperature=T),
    lambda x, T: cs.log_softmax(x, temperature=T),
    lambda x, T: cs.cross_entropy(x[None], [2], temperature=T, return_grad=True),
    lambda x, T: cs.distillation_loss(x[None], x[None], temperature=T),
    lambda x, T: cs.sample(x, temperature=T),
    lambda x, T: cs.smooth_max(x, sharpness=T),
    lambda x, T: cs.softplus(x, beta=T),
    lambda x, T: cs.margin_logits(x[None] / 4, [2], scale=T),
    lambda x, T: cs.margin_cross_entropy(x[None] / 4, [2], scale=T),
], ids=["softmax", "log_softmax", "cross_entropy", "distillation", "sample", "smooth_max",
        "softplus", "margin_logits", "margin_ce"])
def test_parameter_whose_reciprocal_overflows_is_refused(call, T):
    with pytest.raises(ValueError, match=">= 5.56268"):
        call(np.array([1.0, 2.0, 3.0]), T)


@pytest.mark.parametrize("dt", [np.float64, np.float32])
def test_smallest_temperature_gives_the_limit(dt):
    T = np.nextafter(1.0 / np.finfo(np.float64).max, 1.0)   # the smallest accepted
    with np.errstate(over="ignore"):
        assert np.isfinite(1.0 / T) and not np.isfinite(1.0 / np.nextafter(T, 0))
    x = np.array([1.0, 2.0, 3.0, 2.5], dt)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(cs.softmax(x, temperature=T), [0, 0, 1, 0])
        ls = cs.log_softmax(x, temperature=T)
        assert ls[2] == 0 and np.all(ls[[0, 1, 3]].astype(np.float64) < -1e30)
        assert not np.isnan(ls).any()
        loss, g = cs.cross_entropy(x[None], [2], temperature=T, return_grad=True)
        assert loss == 0 and np.all(g == 0)
        assert cs.distillation_loss(x[None], x[None], temperature=T) == 0
        ties = np.array([3.0, 1.0, 3.0], dt)
        np.testing.assert_array_equal(cs.softmax(ties, temperature=T), [0.5, 0, 0.5])
        lt = cs.log_softmax(ties, temperature=T)
        assert lt[0] == lt[2] and abs(lt[0] + np.log(2)) < 1e-6 and lt[1] < -1e30
    assert int(cs.sample(x, temperature=T, seed=0)) == 2


# ---------------------------------------------------------------------------
# 4. input handling

@pytest.mark.parametrize("f", [cs.logsumexp, cs.softmax, cs.log_softmax, cs.smooth_max])
def test_bool_axis_is_refused(f):
    x = np.arange(6.0).reshape(2, 3)
    for ax in (True, False, np.True_, (0, True)):
        with pytest.raises(TypeError, match="axis must be an integer"):
            f(x, ax)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
@pytest.mark.parametrize("axis", [0, 1, -1, None])
def test_matrix_input(axis):
    m = np.matrix([[1.0, 2.0, 0.5], [3.0, 4.0, -1.0]])
    a = np.asarray(m)
    for f in (cs.softmax, cs.log_softmax, cs.logsumexp):
        if axis is None and f is not cs.logsumexp:
            want = f(a, axis=(0, 1))
            got = f(m, axis=(0, 1))
        else:
            want, got = f(a, axis=axis), f(m, axis=axis)
        assert type(got) in (np.ndarray, np.float64)
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(cs.cross_entropy(m, [0, 2]), cs.cross_entropy(a, [0, 2]))


def test_masked_array_is_refused():
    with pytest.raises(TypeError, match="MaskedArray"):
        cs.logsumexp(np.ma.masked_less(np.arange(4.0), 2))


@pytest.mark.parametrize("order", ["<", ">"])
def test_uint64_labels_checked_by_value(order):
    t = np.array([1, 2**64 - 100, 3], np.uint64).astype(order + "u8")
    x = np.zeros((3, 4))
    for call in (lambda: cs.cross_entropy(x, t), lambda: cs.nll_loss(x, t),
                 lambda: cs.cross_entropy(x, t, ignore_index=-100)):
        with pytest.raises(ValueError, match=r"target\[1\] = 18446744073709551516"):
            call()
    ok = np.array([1, 2, 3], np.uint64).astype(order + "u8")
    assert cs.cross_entropy(x, ok) == cs.cross_entropy(x, np.array([1, 2, 3]))
    big = np.array([1, 2, 3], ">i8")
    assert cs.nll_loss(-x - 1, big) == 1.0


def test_ignore_index_out_of_int64_names_the_argument():
    for v in (2**63, -2**63 - 1, 10**30):
        for f in (cs.cross_entropy, cs.nll_loss):
            with pytest.raises(OverflowError, match="ignore_index="):
                f(np.zeros((3, 4)), [0, 1, 2], ignore_index=v)
    # the int64 extremes themselves are fine
    assert cs.nll_loss(np.zeros((3, 4)) - 1, [0, 1, 2], ignore_index=2**63 - 1) == 1.0


def test_torch_lazy_negation_and_conjugation_bits():
    torch = pytest.importorskip("torch")
    v = torch.tensor([1 + 2j, 3 - 1j]).conj().imag          # neg bit, values [-2, 1]
    assert v.is_neg()
    want = cs.softmax(np.array([-2.0, 1.0]))
    np.testing.assert_allclose(cs.softmax(v), want, rtol=1e-6)
    n = torch._neg_view(torch.tensor([[1.0, 2.0, 5.0]]))     # values [-1, -2, -5]
    np.testing.assert_array_equal(cs.log_softmax(n), cs.log_softmax(np.array([[-1.0, -2, -5]],
                                                                            np.float32)))
    np.testing.assert_array_equal(cs.logsumexp(n), cs.logsumexp(np.float32([-1, -2, -5])))
    assert cs.cross_entropy(n, [0]) == cs.cross_entropy(np.float32([[-1, -2, -5]]), [0])


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("n", [3, 9, 40, 65, 200, 5000, 70000])
def test_plus_inf_rows_every_path(isa, dt, n):
    """+inf entries give NaN, finite entries exactly 0 (log: -inf), on every
    path (short rows, fused, two-pass, long-row split, columns) and ISA:
    what the docstring and docs/errors.md state."""
    r = np.random.default_rng(n)
    rows = 3 if n > 1000 else 37
    x = r.standard_normal((rows, n)).astype(dt)
    x[:, 1] = np.inf
    x[1, n // 2] = np.inf
    for axis, xx in ((-1, x), (0, np.ascontiguousarray(x.T))):
        for f, fin in ((cs.softmax, 0.0), (cs.log_softmax, -np.inf)):
            with np.errstate(invalid="ignore"):
                y = f(xx, axis=axis)
            yr = y if axis == -1 else y.T
            inf = np.isposinf(x)
            assert np.isnan(yr[inf]).all()
            assert (yr[~inf] == fin).all(), (f.__name__, axis)
