"""csoftmax.torch: autograd Functions against torch's built-ins.

Tolerances: float64 forward/gradients agree with torch to rtol 1e-12 (both
are ~1 ULP from exact, apart from a few ULP of rounding in the sums).  float32
results are compared with torch run in float64 on the same (float32) inputs,
to rtol 2e-6 / atol 1e-7: csoftmax accumulates float32 in float64, while
torch's float32 backward loses up to ~1e-4 relative to cancellation in
``dy - sum(y dy)``, so torch-float32 itself would not be a fair reference.
float32 gradients get atol 2e-6 instead: a VJP formed from the float32
*output* y has an absolute error ~ eps32 * max|dy| (|dy| <= ~10 here);
gradcheck runs in float64 with its defaults (eps 1e-6, atol 1e-5, rtol 1e-3).
"""
import inspect
import re
import types
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import csoftmax  # noqa: E402
import csoftmax.torch as ct  # noqa: E402

TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14),
       torch.float32: dict(rtol=2e-6, atol=1e-7)}


def _x(shape, dtype=torch.float64, seed=0, scale=3.0, grad=True):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    return x.requires_grad_(grad)


def _close(a, b, dtype, grad=False):
    tol = dict(TOL[dtype])
    if grad and dtype == torch.float32:
        tol["atol"] = 2e-6
    torch.testing.assert_close(a, b.to(a.dtype), **tol)


def _ref(x):
    """float64 leaf copy of x (the torch reference runs in float64)."""
    return x.detach().to(torch.float64).requires_grad_()


# ---------------------------------------------------------------------------
# gradcheck (float64)

@pytest.mark.parametrize("dim", [-1, 0, 1])
@pytest.mark.parametrize("log", [False, True])
def test_gradcheck_softmax(dim, log):
    x = _x((3, 5, 4))
    f = ct.log_softmax if log else ct.softmax
    assert torch.autograd.gradcheck(lambda t: f(t, dim, temperature=1.7), (x,))


@pytest.mark.parametrize("dim,keepdim", [(-1, False), (0, True), ((0, 2), False), (None, False)])
def test_gradcheck_logsumexp(dim, keepdim):
    x = _x((3, 5, 4))
    assert torch.autograd.gradcheck(lambda t: ct.logsumexp(t, dim, keepdim), (x,))


CE_CASES = [
    dict(),
    dict(reduction="sum"),
    dict(reduction="none"),
    dict(label_smoothing=0.2),
    dict(weight="w", ignore_index=1, reduction="mean", label_smoothing=0.1),
    dict(weight="w", reduction="none"),
    dict(temperature=2.5),
]


def _ce_args(case, C, dtype=torch.float64):
    kw = dict(case)
    if kw.get("weight") == "w":
        kw["weight"] = torch.linspace(0.5, 2.0, C, dtype=dtype)
    return kw


@pytest.mark.parametrize("case", CE_CASES, ids=str)
def test_gradcheck_cross_entropy(case):
    x = _x((6, 5))
    y = torch.tensor([0, 1, 4, 1, 3, 2])
    kw = _ce_args(case, 5)
    assert torch.autograd.gradcheck(lambda t: ct.cross_entropy(t, y, **kw), (x,))


def test_gradcheck_cross_entropy_probability_targets():
    x = _x((4, 5))
    q = torch.softmax(_x((4, 5), seed=1, grad=False), -1).requires_grad_(True)
    w = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    for red in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda a, b: ct.cross_entropy(a, b, weight=w, label_smoothing=0.1,
                                          reduction=red), (x, q))


def test_gradcheck_cross_entropy_class_dim_1():
    x = _x((2, 4, 3))                      # (N, C, d1), torch layout
    y = torch.tensor([[0, 3, 1], [2, 2, 0]])
    assert torch.autograd.gradcheck(lambda t: ct.cross_entropy(t, y), (x,))


@pytest.mark.parametrize("kind,margin", [("normface", 0.0), ("cosface", 0.2), ("arcface", 0.3)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_margin_cross_entropy(kind, margin, reduction):
    g = torch.Generator().manual_seed(3)
    cos = (torch.rand((5, 6), generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    y = torch.tensor([0, 5, 2, 2, 1])
    assert torch.autograd.gradcheck(
        lambda c: ct.margin_cross_entropy(c, y, scale=8.0, margin=margin, kind=kind,
                                          reduction=reduction), (cos,))


# ---------------------------------------------------------------------------
# forward and gradient against torch.nn.functional

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dim", [-1, 0])
def test_softmax_family_matches_torch(dtype, dim):
    for f, ref in ((ct.softmax, torch.softmax), (ct.log_softmax, torch.log_softmax)):
        x = _x((7, 33), dtype)
        xr = _ref(x)
        y, yr = f(x, dim, temperature=0.5), ref(xr / 0.5, dim)
        assert y.dtype == dtype
        _close(y, yr, dtype)
        up = _x((7, 33), dtype, seed=9, grad=False)
        (y * up).sum().backward()
        (yr * up.double()).sum().backward()
        _close(x.grad, xr.grad, dtype, grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsumexp_matches_torch(dtype):
    x = _x((4, 50), dtype)
    xr = _ref(x)
    r, rr = ct.logsumexp(x, 1), torch.logsumexp(xr, 1)
    _close(r, rr, dtype)
    up = torch.arange(1, 5, dtype=dtype)
    (r * up).sum().backward()
    (rr * up.double()).sum().backward()
    _close(x.grad, xr.grad, dtype, grad=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CE_CASES + [dict(ignore_index=2, reduction="sum")], ids=str)
def test_cross_entropy_matches_torch(dtype, case):
    x = _x((16, 7), dtype)
    xr = _ref(x)
    y = torch.arange(16) % 7
    kw = _ce_args(case, 7, dtype)
    T = kw.pop("temperature", 1.0)
    loss = ct.cross_entropy(x, y, temperature=T, **kw)
    if "weight" in kw:
        kw["weight"] = kw["weight"].double()
    ref = F.cross_entropy(xr / T, y, **kw)
    assert loss.dtype == dtype and loss.shape == ref.shape
    _close(loss, ref, dtype)
    up = torch.linspace(0.5, 1.5, 16, dtype=dtype) if kw.get("reduction") == "none" else 1.0
    (loss * up).sum().backward()
    (ref * (up.double() if torch.is_tensor(up) else up)).sum().backward()
    _close(x.grad, xr.grad, dtype, grad=True)


def test_cross_entropy_probability_target_grads_match_torch():
    x, q = _x((5, 4)), torch.softmax(_x((5, 4), seed=2, grad=False), 1).requires_grad_()
    xr, qr = x.detach().clone().requires_grad_(), q.detach().clone().requires_grad_()
    w = torch.tensor([1.0, 0.5, 2.0, 1.5], dtype=torch.float64)
    loss = ct.cross_entropy(x, q, weight=w, label_smoothing=0.3)
    ref = F.cross_entropy(xr, qr, weight=w, label_smoothing=0.3)
    _close(loss, ref, torch.float64)
    loss.backward()
    ref.backward()
    _close(x.grad, xr.grad, torch.float64)
    _close(q.grad, qr.grad, torch.float64)


def test_cross_entropy_torch_layout_nd():
    x = _x((3, 5, 2, 4))
    xr = x.detach().clone().requires_grad_()
    y = torch.randint(0, 5, (3, 2, 4), generator=torch.Generator().manual_seed(1))
    loss, ref = ct.cross_entropy(x, y), F.cross_entropy(xr, y)
    _close(loss, ref, torch.float64)
    loss.backward()
    ref.backward()
    _close(x.grad, xr.grad, torch.float64)


def test_margin_cross_entropy_matches_autograd_reference():
    g = torch.Generator().manual_seed(4)
    cos = (torch.rand((8, 10), generator=g, dtype=torch.float64) * 1.8 - 0.9).requires_grad_()
    cr = cos.detach().clone().requires_grad_()
    y = torch.arange(8)
    s, m = 16.0, 0.3
    loss = ct.margin_cross_entropy(cos, y, scale=s, margin=m, kind="arcface")
    theta = torch.acos(cr.gather(1, y[:, None]))
    z = cr.scatter(1, y[:, None], torch.cos(theta + m)) * s
    ref = F.cross_entropy(z, y)
    _close(loss, ref, torch.float64)
    loss.backward()
    ref.backward()
    _close(cos.grad, cr.grad, torch.float64)


# ---------------------------------------------------------------------------
# zero-copy, dtypes, errors

def test_results_share_memory_with_numpy_output():
    x = torch.randn(4, 8, dtype=torch.float32)
    y = ct.softmax(x, -1)
    # from_numpy result: writable, contiguous, a NumPy view of the same memory
    assert y.numpy().__array_interface__["data"][0] == y.data_ptr()
    np.testing.assert_array_equal(y.numpy(), csoftmax.softmax(x.numpy()))


def test_strided_input_and_half_types():
    x = torch.randn(6, 10, dtype=torch.float64)[:, ::2]
    _close(ct.softmax(x, -1), torch.softmax(x, -1), torch.float64)
    for dt in (torch.float16, torch.bfloat16):
        h = torch.randn(3, 9).to(dt)
        r = ct.log_softmax(h, -1)
        assert r.dtype == dt
        torch.testing.assert_close(r.float(), torch.log_softmax(h.float(), -1).to(dt).float(),
                                   rtol=1e-2, atol=1e-2)


def test_no_grad_path_and_errors():
    x = torch.randn(3, 4)
    with torch.no_grad():
        loss = ct.cross_entropy(x, torch.tensor([0, 1, 2]))
    assert loss.shape == ()
    # torch's IndexError, still a ValueError for csoftmax code
    with pytest.raises(ValueError, match="Target 9 is out of bounds"):
        ct.cross_entropy(x, torch.tensor([0, 1, 9]))
    with pytest.raises(TypeError, match="complex"):
        ct.softmax(torch.randn(2, 2, dtype=torch.complex64), -1)
    with pytest.raises(TypeError, match="torch.Tensor"):
        ct.cross_entropy(np.zeros((2, 2)), torch.tensor([0, 1]))


def test_meta_device_rejected():
    x = torch.empty(2, 3, device="meta")
    with pytest.raises(ValueError, match="CPU"):
        ct.softmax(x, -1)


# ---------------------------------------------------------------------------
# a training loop

@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_training_loop_matches_torch(dtype, rtol):
    g = torch.Generator().manual_seed(0)
    N, D, C = 64, 10, 5
    X = torch.randn(N, D, generator=g, dtype=dtype)
    Wt = torch.randn(D, C, generator=g, dtype=dtype)
    Y = (X @ Wt + 0.5 * torch.randn(N, C, generator=g, dtype=dtype)).argmax(1)

    def run(loss_fn):
        torch.manual_seed(123)
        model = torch.nn.Linear(D, C).to(dtype)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = loss_fn(model(X), Y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return np.array(losses), model.weight.detach().clone()

    ours, w_ours = run(ct.CrossEntropyLoss(label_smoothing=0.05))
    ref, w_ref = run(torch.nn.CrossEntropyLoss(label_smoothing=0.05))
    assert ours[-1] < 0.5 * ours[0]                  # it does train
    np.testing.assert_allclose(ours, ref, rtol=rtol)
    torch.testing.assert_close(w_ours, w_ref, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------------------
# torch.nn.functional's signatures and input domain (0-d, dtype=, dim=None,
# nll_loss, size_average / reduce, the module forms)

# (getattr: an adapter without softmin fails these tests one by one instead of
# failing the whole module at import)
SOFTMAX_FAMILY = [(ct.softmax, F.softmax), (ct.log_softmax, F.log_softmax),
                  (getattr(ct, "softmin", None), F.softmin)]


@pytest.mark.parametrize("ours,ref", [
    ("softmax", F.softmax), ("log_softmax", F.log_softmax), ("softmin", F.softmin),
    ("cross_entropy", F.cross_entropy), ("nll_loss", F.nll_loss),
    ("CrossEntropyLoss", torch.nn.CrossEntropyLoss), ("NLLLoss", torch.nn.NLLLoss),
    ("Softmax", torch.nn.Softmax), ("LogSoftmax", torch.nn.LogSoftmax),
    ("Softmin", torch.nn.Softmin), ("Softmax2d", torch.nn.Softmax2d)], ids=str)
def test_signature_is_torchs(ours, ref):
    """torch's parameters, in torch's order with torch's defaults, come first;
    csoftmax's extras (temperature, dim of the losses) are keyword-only."""
    f = getattr(ct, ours)
    sig, rsig = inspect.signature(f), inspect.signature(ref)
    theirs = [(p.name, p.default) for p in rsig.parameters.values()]
    mine = list(sig.parameters.values())
    assert [(p.name, p.default) for p in mine[:len(theirs)]] == theirs
    assert all(p.kind is p.KEYWORD_ONLY for p in mine[len(theirs):])
    assert ours in ct.__all__


def test_positional_arguments_follow_torch():
    # F.cross_entropy(input, target, weight, size_average, ignore_index, ...)
    x, y = _x((6, 4)), torch.tensor([0, 1, 2, 3, 1, 1])
    w = torch.linspace(0.5, 2.0, 4, dtype=torch.float64)
    for f, ref in ((ct.cross_entropy, F.cross_entropy), (ct.nll_loss, F.nll_loss)):
        _close(f(x, y, w, None, 1, None, "sum"), ref(x, y, w, None, 1, None, "sum"),
               torch.float64)


@pytest.mark.parametrize("value", [2.5, -1e300, float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("dim", [0, -1, (0,)], ids=str)
def test_zero_dim_input_is_one_element(value, dim):
    for f, ref in SOFTMAX_FAMILY + [(ct.logsumexp, torch.logsumexp)]:
        if ref is not torch.logsumexp and isinstance(dim, tuple):
            ref_dim = dim[0]
        else:
            ref_dim = dim
        for dtype in (torch.float32, torch.float64):
            x = torch.tensor(value, dtype=dtype, requires_grad=True)
            xr = x.detach().clone().requires_grad_()
            y, yr = f(x, dim), ref(xr, ref_dim)
            assert y.shape == () and y.dtype == dtype
            torch.testing.assert_close(y, yr, equal_nan=True, rtol=0, atol=0)
            g, = torch.autograd.grad(y, x, torch.tensor(1.7, dtype=dtype))
            gr, = torch.autograd.grad(yr, xr, torch.tensor(1.7, dtype=dtype))
            torch.testing.assert_close(g, gr, equal_nan=True, rtol=0, atol=0)


def test_zero_dim_keepdim_module_and_bad_dims():
    x = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert ct.logsumexp(x, (0,), True).shape == ()
    assert ct.logsumexp(x, None).item() == pytest.approx(0.3)
    assert torch.autograd.gradcheck(lambda t: ct.logsumexp(t, 0, True), (x,))
    assert torch.autograd.gradcheck(lambda t: ct.log_softmax(t, 0, temperature=2.0), (x,))
    for mod in (ct.Softmax(0), ct.LogSoftmax(-1), ct.Softmin(0)):
        assert mod(x).shape == ()
    for f in (ct.softmax, ct.log_softmax, ct.softmin, ct.logsumexp):
        with pytest.raises(IndexError, match=r"range of \[-1, 0\], but got 1"):
            f(x, 1)
        with pytest.raises(IndexError, match="got -2"):
            f(x, (-2,))
    with pytest.raises(RuntimeError, match="multiple times"):
        ct.logsumexp(x, (0, -1))


@pytest.mark.parametrize("in_dtype,dtype", [(torch.float32, torch.float64),
                                            (torch.float64, torch.float32),
                                            (torch.float16, torch.float64),
                                            (torch.float32, torch.float32)], ids=str)
def test_dtype_argument_casts_first(in_dtype, dtype):
    """dtype= casts the input before the op (as torch); the gradient comes
    back in the input's dtype."""
    for f, ref in SOFTMAX_FAMILY:
        x = _x((5, 9), in_dtype)
        xr = x.detach().clone().requires_grad_()
        y, yr = f(x, 1, dtype=dtype), ref(xr, 1, dtype=dtype)
        assert y.dtype == dtype
        _close(y, yr, dtype)
        up = _x((5, 9), dtype, seed=4, grad=False)
        g, = torch.autograd.grad(y, x, up)
        gr, = torch.autograd.grad(yr, xr, up)
        assert g.dtype == in_dtype
        tol = dict(rtol=1e-2, atol=1e-3) if in_dtype == torch.float16 else \
            dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g, gr, **tol)
    with pytest.raises(NotImplementedError, match="integer"):    # as torch
        ct.softmax(_x((2, 3)), 1, dtype=torch.int64)


@pytest.mark.parametrize("ndim", [0, 1, 2, 3, 4])
def test_implicit_dim_is_torchs_legacy_rule(ndim):
    shape = (2, 3, 4, 5)[:ndim]
    x = _x(shape)
    for f, ref in SOFTMAX_FAMILY:
        name = ref.__name__
        with pytest.warns(UserWarning, match=f"Implicit dimension choice for {name} ") as rec:
            y = f(x)
        # the warning points at the caller, as torch's does
        assert rec[0].filename == __file__
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _close(y, ref(x), torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ct.softmax(x, -1 if ndim else 0)      # an explicit dim does not warn


NLL_CASES = [dict(), dict(reduction="sum"), dict(reduction="none"),
             dict(weight="w"), dict(weight="w", reduction="none"),
             dict(ignore_index=1), dict(ignore_index=0, weight="w", reduction="sum"),
             dict(ignore_index=2, weight="w")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 3), (2, 3, 4, 2), (3,)], ids=str)
@pytest.mark.parametrize("case", NLL_CASES, ids=str)
def test_nll_loss_matches_torch(case, shape, dtype):
    g = torch.Generator().manual_seed(5)
    lp = torch.log_softmax(torch.randn(shape, generator=g, dtype=torch.float64),
                           1 if len(shape) > 1 else 0).to(dtype).requires_grad_()
    lpr = _ref(lp)
    tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
    y = torch.randint(0, 3, tshape, generator=g)
    if y.dim():
        y.view(-1)[0] = 1                         # so ignore_index=1 has something to skip
    kw = _ce_args(case, 3, dtype)
    loss = ct.nll_loss(lp, y, **kw)
    if "weight" in kw:
        kw["weight"] = kw["weight"].double()
    ref = F.nll_loss(lpr, y, **kw)
    assert loss.dtype == dtype and loss.shape == ref.shape
    _close(loss, ref, dtype)
    up = torch.linspace(0.5, 1.5, max(ref.numel(), 1), dtype=torch.float64).reshape(ref.shape)
    g1, = torch.autograd.grad(loss, lp, up.to(dtype))
    g2, = torch.autograd.grad(ref, lpr, up)
    _close(g1, g2, dtype, grad=True)


def test_nll_loss_gradcheck_and_edge_cases():
    lp = _x((5, 4, 3))
    y = torch.tensor([[0, 3, 1], [2, 2, 0], [1, 1, 1], [3, 0, 2], [0, 0, 0]])
    w = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    for red in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda t: ct.nll_loss(t, y, w, ignore_index=1, reduction=red), (lp,))
    # every sample ignored: NaN loss and a zero gradient (torch's result)
    x = _x((2, 3))
    loss = ct.nll_loss(x, torch.tensor([1, 1]), ignore_index=1)
    assert torch.isnan(loss)
    assert torch.equal(torch.autograd.grad(loss, x)[0], torch.zeros(2, 3, dtype=torch.float64))
    # kept samples of total weight 0: -0/0 = NaN at the targets, as torch
    wz = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    g1, = torch.autograd.grad(ct.nll_loss(x, torch.tensor([1, 1]), wz), x)
    g2, = torch.autograd.grad(F.nll_loss(x, torch.tensor([1, 1]), wz), x)
    torch.testing.assert_close(g1, g2, equal_nan=True)
    # no grad wanted: no backward graph
    with torch.no_grad():
        assert ct.nll_loss(x, torch.tensor([0, 2])).grad_fn is None
    with pytest.raises(ValueError, match="Target 3 is out of bounds"):
        ct.nll_loss(x, torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ct.nll_loss(np.zeros((2, 3)), torch.tensor([0, 1]))


@pytest.mark.parametrize("size_average", [None, True, False])
@pytest.mark.parametrize("reduce", [None, True, False])
def test_size_average_and_reduce_follow_torchs_legacy_mapping(size_average, reduce):
    x, y = _x((6, 4)), torch.tensor([0, 1, 2, 3, 1, 1])
    legacy = size_average is not None or reduce is not None
    for f, ref, mod, rmod in ((ct.cross_entropy, F.cross_entropy, ct.CrossEntropyLoss,
                               torch.nn.CrossEntropyLoss),
                              (ct.nll_loss, F.nll_loss, ct.NLLLoss, torch.nn.NLLLoss)):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            a = f(x, y, size_average=size_average, reduce=reduce, reduction="sum")
            m = mod(size_average=size_average, reduce=reduce, reduction="sum")
        with warnings.catch_warnings(record=True) as want:
            warnings.simplefilter("always")
            b = ref(x, y, size_average=size_average, reduce=reduce, reduction="sum")
            r = rmod(size_average=size_average, reduce=reduce, reduction="sum")
        assert m.reduction == r.reduction
        _close(a, b, torch.float64)
        _close(m(x, y), r(x, y), torch.float64)
        assert [str(w.message) for w in got] == [str(w.message) for w in want]
        assert bool(got) == legacy


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_modules_match_torch(dtype):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 5, 3, generator=g, dtype=dtype).requires_grad_()
    xr = _ref(x)
    y = torch.randint(0, 5, (4, 3), generator=g)
    w = torch.linspace(0.5, 2.0, 5, dtype=dtype)
    for mod, rmod in ((ct.NLLLoss(w, ignore_index=4, reduction="sum"),
                       torch.nn.NLLLoss(w.double(), ignore_index=4, reduction="sum")),
                      (ct.CrossEntropyLoss(w, ignore_index=2, label_smoothing=0.1),
                       torch.nn.CrossEntropyLoss(w.double(), ignore_index=2,
                                                 label_smoothing=0.1))):
        assert torch.equal(mod.weight, w) and "weight" in dict(mod.named_buffers())
        loss, ref = mod(x, y), rmod(xr, y)
        _close(loss, ref, dtype)
        g1, = torch.autograd.grad(loss, x)
        g2, = torch.autograd.grad(ref, xr)
        _close(g1, g2, dtype, grad=True)


def test_softmax_modules_match_torch():
    x = _x((2, 3, 4, 5))
    for mod, rmod in ((ct.Softmax(1), torch.nn.Softmax(1)),
                      (ct.LogSoftmax(-1), torch.nn.LogSoftmax(-1)),
                      (ct.Softmin(2), torch.nn.Softmin(2)),
                      (ct.Softmax(1, temperature=2.0), None),
                      (ct.Softmax2d(), torch.nn.Softmax2d())):
        y = mod(x)
        yr = rmod(x) if rmod is not None else torch.softmax(x / 2.0, 1)
        _close(y, yr, torch.float64)
        up = _x(x.shape, seed=2, grad=False)
        _close(torch.autograd.grad(y, x, up)[0], torch.autograd.grad(yr, x, up)[0],
               torch.float64)
    assert repr(ct.Softmax(1)) == "Softmax(dim=1)"
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        ct.Softmax()(x)
    with pytest.raises(ValueError, match="3D or 4D"):
        ct.Softmax2d()(x[0, 0])


# ---------------------------------------------------------------------------
# integer and bool input: torch's result dtype (logsumexp) or torch's refusal

INT_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.bool]


def _int_input(dtype, shape=(3, 4)):
    v = torch.arange(12).reshape(3, 4) % 5 - 2
    if dtype == torch.bool:
        return (v > 0).reshape(shape) if shape else torch.tensor(True)
    if dtype == torch.uint8:
        v = v + 2
    return v.to(dtype).reshape(shape) if shape else v.flatten()[-1].to(dtype)


@pytest.mark.parametrize("default", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
def test_logsumexp_integer_input_is_torchs(dtype, default):
    """torch.logsumexp computes integer / bool input in (and returns)
    torch.get_default_dtype()."""
    prev = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        for shape, dim, keepdim in [((3, 4), 0, False), ((3, 4), -1, True),
                                    ((3, 4), (0, 1), False), ((), 0, False), ((), -1, True)]:
            x = _int_input(dtype, shape)
            r, rr = ct.logsumexp(x, dim, keepdim), torch.logsumexp(x, dim, keepdim)
            assert r.dtype == rr.dtype == default and r.shape == rr.shape
            torch.testing.assert_close(r, rr, rtol=2e-7 if default == torch.float32 else 1e-15,
                                       atol=0)
        assert ct.logsumexp(torch.tensor([1, 2, 3]), 0).dtype == default
    finally:
        torch.set_default_dtype(prev)


def _raises_like_torch(ours, ref):
    with pytest.raises(RuntimeError) as e_ref:       # NotImplementedError is one
        ref()
    with pytest.raises(type(e_ref.value)) as e:
        ours()
    assert "integer or bool" in str(e.value)


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
def test_softmax_family_integer_input_is_torchs(dtype):
    """Without dtype= torch refuses integer / bool input (NotImplementedError;
    softmin of a bool tensor: the negation's RuntimeError); with a floating
    dtype= it casts first."""
    x = _int_input(dtype)
    fams = SOFTMAX_FAMILY + [(ct.Softmax2d(), torch.nn.Softmax2d())]
    for f, ref in fams:
        if isinstance(f, torch.nn.Module):
            call, rcall = (lambda: f(x[None])), (lambda: ref(x[None]))
        else:
            call, rcall = (lambda: f(x, 1)), (lambda: ref(x, 1))
        if dtype == torch.bool and ref is F.softmin:
            with pytest.raises(RuntimeError, match="Negation"):
                rcall()
            with pytest.raises(RuntimeError, match="Negation"):
                call()
        else:
            _raises_like_torch(call, rcall)
            if not isinstance(f, torch.nn.Module):
                # torch checks the dim first: an out-of-range dim is its
                # IndexError, also for integer input
                for xx, d in ((x, 5), (x, -3), (x[0, 0], 3)):
                    with pytest.raises(IndexError):
                        ref(xx, d)
                    with pytest.raises(IndexError, match="Dimension out of range"):
                        f(xx, d)
        if isinstance(f, torch.nn.Module) or (dtype == torch.bool and ref is F.softmin):
            continue
        for dt in (torch.float32, torch.float64):
            y, yr = f(x, 1, dtype=dt), ref(x, 1, dtype=dt)
            assert y.dtype == yr.dtype == dt
            torch.testing.assert_close(y, yr, rtol=2e-6 if dt == torch.float32 else 1e-13,
                                       atol=1e-7 if dt == torch.float32 else 1e-15)


@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
def test_losses_integer_input_are_refused_as_torch(dtype):
    x = _int_input(dtype)
    y = torch.tensor([0, 3, 1])
    _raises_like_torch(lambda: ct.cross_entropy(x, y), lambda: F.cross_entropy(x, y))
    _raises_like_torch(lambda: ct.nll_loss(x, y), lambda: F.nll_loss(x, y))
    _raises_like_torch(lambda: ct.CrossEntropyLoss()(x, y),
                       lambda: torch.nn.CrossEntropyLoss()(x, y))
    h, W = torch.randn(3, 4), torch.randn(5, 4)
    if hasattr(F, "linear_cross_entropy"):
        for args in ((x, W, y), (h, _int_input(dtype).repeat(2, 1)[:5], y)):
            _raises_like_torch(lambda: ct.linear_cross_entropy(*args),
                               lambda: F.linear_cross_entropy(*args))


def test_class_dim_out_of_range_raises():
    """dim was taken modulo ndim: dim=2 on a 2-D input silently meant 0."""
    x = torch.randn(4, 4)
    y = torch.arange(4)
    for call in (lambda: ct.cross_entropy(x, y, dim=2), lambda: ct.cross_entropy(x, y, dim=-3),
                 lambda: ct.nll_loss(x, y, dim=5),
                 lambda: ct.margin_cross_entropy(x.clamp(-1, 1) * 0.5, y, dim=3)):
        with pytest.raises(IndexError, match="out of range"):
            call()
    assert torch.equal(ct.cross_entropy(x, y, dim=-2), ct.cross_entropy(x, y, dim=0))


def test_second_derivative_raises_instead_of_dropping_terms():
    """With create_graph=True torch's once_differentiable left the gradient a
    constant: a gradient penalty lost csoftmax's second-order term silently."""
    a = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    for f in (lambda a: ct.cross_entropy(a, y), lambda a: ct.softmax(a, 1).pow(2).sum(),
              lambda a: ct.log_softmax(a, 1).sum(), lambda a: ct.logsumexp(a, 1).sum(),
              lambda a: ct.nll_loss(ct.log_softmax(a, 1), y)):
        with pytest.raises(RuntimeError, match="first-order"):
            torch.autograd.grad(f(a) + (a ** 3).sum(), a, create_graph=True)
        g, = torch.autograd.grad(f(a), a)          # first order: fine
        assert g.shape == a.shape


# ---------------------------------------------------------------------------
# torch's exceptions (test_nn's error tests, ModuleInfo module_error_inputs)

def _ref_error(ref):
    """The exception torch raises for `ref()`."""
    with pytest.raises(Exception) as e:
        ref()
    return e.value


def _raises_torchs(ours, ref, also=None):
    """ours() raises torch's exception type with torch's message (regexes in
    torch's tests match it) -- and, for csoftmax code, `also` (the type
    csoftmax raised before)."""
    e_ref = _ref_error(ref)
    with pytest.raises(type(e_ref), match=f"^{re.escape(str(e_ref))}$") as e:
        ours()
    if also is not None:
        assert isinstance(e.value, also)


# torch's functions and modules under csoftmax.torch's names
_TORCH = types.SimpleNamespace(cross_entropy=F.cross_entropy, nll_loss=F.nll_loss,
                               CrossEntropyLoss=torch.nn.CrossEntropyLoss,
                               NLLLoss=torch.nn.NLLLoss)
_X, _Y = torch.randn(2, 3), torch.tensor([0, 1])
_LONG = torch.long
# (label, call(f) with f = F / ct, csoftmax's earlier exception type or None)
LOSS_ERRORS = [
    ("label_smoothing > 1", lambda f: f.cross_entropy(_X, _Y, label_smoothing=1.5), ValueError),
    ("label_smoothing > 1, probabilities",
     lambda f: f.cross_entropy(_X, torch.rand(2, 3), label_smoothing=2), ValueError),
    ("weight of 2 for 3 classes", lambda f: f.cross_entropy(_X, _Y, torch.rand(2)), ValueError),
    ("weight of 2 for 3 classes, nll", lambda f: f.nll_loss(_X, _Y, torch.rand(2)), ValueError),
    ("weight of 2, probabilities",
     lambda f: f.cross_entropy(_X, torch.rand(2, 3), torch.rand(2)), ValueError),
    ("weight of 2, K-dim",
     lambda f: f.nll_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=_LONG), torch.rand(2)),
     ValueError),
    ("weight (3, 1)", lambda f: f.nll_loss(_X, _Y, torch.rand(3, 1)), ValueError),
    ("batch mismatch", lambda f: f.cross_entropy(_X, torch.tensor([0, 1, 2])), ValueError),
    ("batch mismatch, nll", lambda f: f.nll_loss(_X, torch.tensor([0, 1, 2])), ValueError),
    ("batch mismatch, K-dim",
     lambda f: f.cross_entropy(torch.randn(2, 3, 4), torch.zeros(3, 4, dtype=_LONG)),
     ValueError),
    ("float class-index target", lambda f: f.cross_entropy(_X, torch.tensor([0.0, 1.0])),
     TypeError),
    ("float class-index target, nll", lambda f: f.nll_loss(_X, torch.tensor([0.0, 1.0])),
     TypeError),
    ("bool class-index target", lambda f: f.nll_loss(_X, _Y.bool()), TypeError),
    ("int32 target", lambda f: f.nll_loss(_X, _Y.int()), None),
    ("int16 target", lambda f: f.cross_entropy(_X, _Y.short()), None),
    ("int8 target", lambda f: f.cross_entropy(_X, _Y.char(), label_smoothing=0.1), None),
    ("int32 K-dim target",
     lambda f: f.nll_loss(torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.int32)), None),
    ("integer probability target",
     lambda f: f.cross_entropy(_X, torch.zeros(2, 3, dtype=_LONG)), TypeError),
    ("ignore_index with probabilities",
     lambda f: f.cross_entropy(_X, torch.rand(2, 3), ignore_index=1), ValueError),
    ("K-dim target size",
     lambda f: f.cross_entropy(torch.randn(2, 3, 5), torch.zeros(2, 4, dtype=_LONG)),
     ValueError),
    ("K-dim target size, 5-d",
     lambda f: f.nll_loss(torch.randn(2, 3, 5, 2, 2), torch.zeros(2, 5, 2, dtype=_LONG)),
     ValueError),
    ("4-d input, 2-d target",
     lambda f: f.nll_loss(torch.randn(2, 3, 5, 6), torch.zeros(2, 5, dtype=_LONG)), ValueError),
    ("4-d input, target size",
     lambda f: f.nll_loss(torch.randn(2, 3, 5, 6), torch.zeros(2, 4, 6, dtype=_LONG)),
     ValueError),
    ("2-D target, nll",
     lambda f: f.nll_loss(torch.randn(10, 3), torch.zeros(10, 2, dtype=_LONG)), ValueError),
    ("2-D target, cross_entropy",
     lambda f: f.cross_entropy(torch.randn(10, 3), torch.zeros(10, 2, dtype=_LONG)),
     ValueError),
    ("1-D input, target of 2", lambda f: f.nll_loss(torch.randn(3), _Y), ValueError),
    ("0-d input, nll", lambda f: f.nll_loss(torch.tensor(1.0), torch.tensor(0)), ValueError),
    ("class index out of range", lambda f: f.nll_loss(_X, torch.tensor([0, 5])), ValueError),
    ("negative class index", lambda f: f.cross_entropy(_X, torch.tensor([-1, 0])), ValueError),
    ("first bad index, K-dim",
     lambda f: f.nll_loss(torch.randn(2, 3, 4), torch.tensor([[0, 1, 6, 5], [7, 0, 0, 0]])),
     ValueError),
    ("out of range, smoothing",
     lambda f: f.cross_entropy(_X, torch.tensor([0, 5]), label_smoothing=0.1), ValueError),
    ("weight dtype", lambda f: f.nll_loss(_X.double(), _Y, torch.rand(3)), None),
    ("weight dtype, cross_entropy", lambda f: f.cross_entropy(_X, _Y, torch.rand(3).half()),
     None),
    ("weight dtype before out of range",
     lambda f: f.nll_loss(_X.double(), torch.tensor([0, 5]), torch.rand(3)), None),
    ("target dtype before weight length",
     lambda f: f.nll_loss(_X, torch.tensor([0.0, 1.0]), torch.rand(2)), TypeError),
    ("module: NLLLoss float16 weight, empty input",
     lambda f: f.NLLLoss(weight=torch.tensor([], dtype=torch.float16))(
         torch.empty(0, 0), torch.empty(0, dtype=_LONG)), None),
    ("module: CrossEntropyLoss label_smoothing",
     lambda f: f.CrossEntropyLoss(label_smoothing=1.5)(_X, _Y), ValueError),
    ("module: CrossEntropyLoss ignore_index with probabilities",
     lambda f: f.CrossEntropyLoss(ignore_index=1)(_X, torch.rand(2, 3)), ValueError),
]


@pytest.mark.parametrize("label,call,old", LOSS_ERRORS, ids=[c[0] for c in LOSS_ERRORS])
def test_loss_errors_are_torchs(label, call, old):
    """torch's own error tests (test_nn, ModuleInfo error inputs) assert the
    exception type and message: RuntimeError / IndexError where csoftmax
    raised ValueError / TypeError (or computed, for int32 targets and a
    weight of another dtype).  The adapter raises torch's type and text; the
    type also derives from csoftmax's earlier one."""
    _raises_torchs(lambda: call(ct), lambda: call(_TORCH), old)


def test_loss_errors_with_a_csoftmax_class_dim():
    """With the keyword `dim` the class axis is elsewhere: torch's checks
    run on the input as torch would see it (class axis moved to 1)."""
    x = torch.randn(2, 5, 3)                      # classes last
    with pytest.raises(RuntimeError, match=re.escape("Expected target size [2, 5], got [2, 4]")):
        ct.cross_entropy(x, torch.zeros(2, 4, dtype=torch.long), dim=-1)
    with pytest.raises(RuntimeError, match="but got Int"):
        ct.nll_loss(x, torch.zeros(2, 5, dtype=torch.int32), dim=2)
    with pytest.raises(RuntimeError, match="got Long"):       # probabilities: input's shape
        ct.cross_entropy(x, torch.zeros(2, 5, 3, dtype=torch.long), dim=-1)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        ct.cross_entropy(x, torch.full((2, 5), 3), dim=-1)
    y = torch.randint(0, 3, (2, 5))
    _close(ct.cross_entropy(x.double(), y, dim=-1),
           F.cross_entropy(x.double().movedim(-1, 1), y), torch.float64)


def test_complex_input_raises_not_implemented_as_torch():
    c = torch.randn(2, 3, dtype=torch.complex64)
    for ours, ref in ((lambda: ct.cross_entropy(c, _Y), lambda: F.cross_entropy(c, _Y)),
                      (lambda: ct.nll_loss(c, _Y), lambda: F.nll_loss(c, _Y)),
                      (lambda: ct.softmax(c, 1), lambda: F.softmax(c, 1)),
                      (lambda: ct.log_softmax(c, 1), lambda: F.log_softmax(c, 1))):
        assert type(_ref_error(ref)) is NotImplementedError
        with pytest.raises(NotImplementedError, match="not implemented for 'ComplexFloat'") as e:
            ours()
        assert isinstance(e.value, TypeError)          # csoftmax's type, as before


@pytest.mark.parametrize("f", [ct.nll_loss, ct.cross_entropy], ids=lambda f: f.__name__)
def test_byte_targets_accepted_as_torch(f):
    """torch's class-index kernels take int64 and uint8 ('Byte') targets."""
    ref = getattr(F, f.__name__)
    x, y = _x((4, 3)), torch.tensor([0, 2, 1, 2])
    _close(f(x, y.byte(), reduction="none"), ref(_ref(x), y.byte(), reduction="none"),
           torch.float64)
    # (torch's K-dim kernels refuse uint8; csoftmax takes it there too)
    x3, y3 = _x((2, 3, 4)), torch.randint(0, 3, (2, 4))
    _close(f(x3, y3.byte()), ref(_ref(x3), y3), torch.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape,dim", [((5, 0), None), ((5, 0, 2), None), ((0,), None),
                                       ((5, 2, 0), -1)], ids=str)
def test_cross_entropy_zero_classes_probability_targets(shape, dim, reduction):
    """torch's test_cross_entropy_loss_zero_div (#73165): no classes and
    probability targets give a value (-0. per sample, NaN for 'mean'), not
    an error; the gradient is empty."""
    x, t = torch.rand(shape, requires_grad=True), torch.rand(shape)
    xr, tr = (x, t) if dim is None else (x.movedim(dim, 1), t.movedim(dim, 1))
    loss = ct.cross_entropy(x, t, reduction=reduction, dim=dim)
    ref = F.cross_entropy(xr, tr, reduction=reduction)
    assert loss.shape == ref.shape and loss.dtype == ref.dtype
    torch.testing.assert_close(loss, ref, equal_nan=True, rtol=0, atol=0)
    assert torch.equal(torch.signbit(loss), torch.signbit(ref))
    g, = torch.autograd.grad(loss.sum(), x)
    assert g.shape == x.shape
    assert ct.CrossEntropyLoss(reduction=reduction)(torch.rand(5, 0), torch.rand(5, 0)).shape \
        == F.cross_entropy(torch.rand(5, 0), torch.rand(5, 0), reduction=reduction).shape


def test_zero_classes_class_index_targets_are_torchs():
    """Zero classes with class indices: every kept target is out of range
    (torch's IndexError); all ignored or no sample: torch's value."""
    for f in (ct.cross_entropy, ct.nll_loss):
        ref = getattr(F, f.__name__)
        for x, y in ((torch.rand(5, 0), torch.full((5,), -100)),
                     (torch.rand(0, 0), torch.zeros(0, dtype=torch.long))):
            for red in ("mean", "sum", "none"):
                torch.testing.assert_close(f(x, y, reduction=red), ref(x, y, reduction=red),
                                           equal_nan=True)
        _raises_torchs(lambda: f(torch.rand(5, 0), torch.zeros(5, dtype=torch.long)),
                       lambda: ref(torch.rand(5, 0), torch.zeros(5, dtype=torch.long)))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unbatched_input_with_one_element_target(reduction):
    """torch takes a (1,) target for a 1-D (C,) input as a 0-d one (a
    0-d loss for every reduction).  (torch's own backward then fails on the
    shapes; csoftmax's gradient is the 0-d target's.)"""
    x, y = _x((4,)), torch.tensor([2])
    for f in (ct.nll_loss, ct.cross_entropy):
        ref = getattr(F, f.__name__)
        loss = f(x, y, reduction=reduction)
        want = ref(_ref(x), y, reduction=reduction)
        assert loss.shape == want.shape == ()
        _close(loss, want, torch.float64)
        g, = torch.autograd.grad(loss, x)
        xr = _ref(x)
        g0, = torch.autograd.grad(ref(xr, y[0], reduction=reduction), xr)
        _close(g, g0, torch.float64, grad=True)
    _raises_torchs(lambda: ct.nll_loss(x, torch.tensor([5])),
                   lambda: F.nll_loss(x, torch.tensor([5])), ValueError)


# ---------------------------------------------------------------------------
# logsumexp(out=)

def _lse_out(f, *args, out, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        r = f(*args, out=out, **kw)
    return r, [str(m.message).split(" (Triggered internally")[0] for m in w]


@pytest.mark.parametrize("out_dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("out_shape,keepdim", [((2,), False), ((3,), False), ((0,), False),
                                                ((2, 1), False), ((2, 1), True)], ids=str)
def test_logsumexp_out_is_torchs(out_shape, keepdim, out_dtype):
    """torch.logsumexp(input, dim, keepdim, out=): the result written into
    `out` (cast to its dtype), `out` returned; another shape is resized, with
    torch's warning when `out` had elements."""
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(3))
    o1, o2 = torch.full(out_shape, 7.0, dtype=out_dtype), torch.full(out_shape, 7.0,
                                                                       dtype=out_dtype)
    r1, w1 = _lse_out(ct.logsumexp, x, 1, keepdim, out=o1)
    r2, w2 = _lse_out(torch.logsumexp, x, 1, keepdim, out=o2)
    assert r1 is o1 and r2 is o2
    assert o1.shape == o2.shape and o1.dtype == o2.dtype
    assert w1 == w2
    tol = dict(rtol=1e-3, atol=0) if out_dtype == torch.float16 else dict(rtol=1e-6, atol=0)
    torch.testing.assert_close(o1, o2, **tol)


def test_logsumexp_out_in_place_and_errors():
    # torch's test_reductions test_logsumexp: `out` a column view, written in place
    a = torch.randn(5, 4)
    a[0, 0], a[1, :] = float("inf"), float("-inf")
    b, ref = torch.zeros(5, 2), torch.zeros(5, 2)
    ct.logsumexp(a, 1, out=b[:, 0])
    torch.logsumexp(a, 1, out=ref[:, 0])
    torch.testing.assert_close(b, ref)
    assert torch.equal(b[:, 1], torch.zeros(5))
    # integer input into a float64 out; 0-d; all dims
    e = torch.randint(-100, 100, (5, 4))
    o = ct.logsumexp(e, 1, out=torch.empty(5, dtype=torch.float64))
    torch.testing.assert_close(o, torch.logsumexp(e.double(), 1), rtol=1e-15, atol=0)
    assert ct.logsumexp(torch.tensor(2.0), 0, out=torch.empty(())).item() == 2.0
    torch.testing.assert_close(ct.logsumexp(a[2:], (0, 1), out=torch.empty(())),
                               torch.logsumexp(a[2:], (0, 1)))
    # torch's errors: an integer out; an input or out that requires grad
    x = torch.randn(2, 3)
    for args, kw in (((x, 1), dict(out=torch.empty(2, dtype=torch.long))),
                     ((x.clone().requires_grad_(), 1), dict(out=torch.empty(2))),
                     ((x, 1), dict(out=torch.empty(2, requires_grad=True)))):
        _raises_torchs(lambda: ct.logsumexp(*args, **kw), lambda: torch.logsumexp(*args, **kw))
    with torch.no_grad():                          # no autograd: allowed, as torch
        o = ct.logsumexp(x.clone().requires_grad_(), 1, out=torch.empty(2))
    torch.testing.assert_close(o, torch.logsumexp(x, 1))


@pytest.mark.parametrize("name", ["nll_loss", "cross_entropy"])
def test_ignore_index_and_reduction_checked_as_torch(name):
    """ignore_index=1.5 became int(1.5) = 1 (sample 0 silently dropped);
    torch refuses non-int ignore_index and unknown reductions."""
    import re
    x = torch.randn(4, 5).log_softmax(1)
    t = torch.tensor([1, 0, 4, 2])
    ours, theirs = getattr(ct, name), getattr(F, name)
    for kw in ({"ignore_index": 1.5}, {"ignore_index": True}, {"reduction": "avg"}):
        with pytest.raises(Exception) as want:
            theirs(x, t, **kw)
        with pytest.raises(type(want.value), match=re.escape(str(want.value))):
            ours(x, t, **kw)
    torch.testing.assert_close(ours(x, t, ignore_index=np.int64(1)),
                               theirs(x, t, ignore_index=np.int64(1)))


# -- inputs read again in backward -------------------------------------------
# A Function that reads a mask or a class weight in backward keeps it as a
# saved tensor: changed in place after the forward, torch refuses the
# backward (as for its own saved inputs) instead of a silently different
# gradient; a NumPy mask is copied at the forward.

_INPLACE = "modified by an inplace operation"


def _mask_fns():
    return {
        "softmax": lambda x, m: ct.softmax(x, dim=1, where=m),
        "log_softmax": lambda x, m: ct.log_softmax(x, dim=1, where=m),
        "softmax_dims": lambda x, m: ct.softmax(x, dim=(0, 1), where=m),
        "logsumexp": lambda x, m: ct.logsumexp(x, dim=1, where=m),
        "logsumexp_dims": lambda x, m: ct.logsumexp(x, dim=(0, 1), where=m),
    }


_MASKED_REF = {
    "softmax": lambda x: torch.softmax(x, 1),
    "log_softmax": lambda x: torch.log_softmax(x, 1),
    "softmax_dims": lambda x: torch.softmax(x.reshape(-1), 0).reshape(x.shape),
    "logsumexp": lambda x: torch.logsumexp(x, 1),
    "logsumexp_dims": lambda x: torch.logsumexp(x, (0, 1)),
}


def _finite_sum(y):
    w = torch.arange(1.0, y.numel() + 1, dtype=y.dtype).reshape(y.shape)
    return (torch.where(torch.isfinite(y), y, 0) * w).sum()


@pytest.mark.parametrize("name", list(_mask_fns()))
def test_mask_changed_after_forward_tensor(name):
    f = _mask_fns()[name]
    x = _x((3, 5))
    m = torch.ones(3, 5, dtype=torch.bool)
    m[:, 3:] = False
    y = f(x, m)
    m[:, 0] = False
    with pytest.raises(RuntimeError, match=_INPLACE):
        _finite_sum(y).backward()
    # unchanged: the saved mask serves the backward -- torch's gradient of
    # the same masked op (masked_fill, -inf out of the max and the sum)
    m2 = torch.ones(3, 5, dtype=torch.bool)
    m2[:, 3:] = False
    g = torch.autograd.grad(_finite_sum(f(x, m2)), x)[0]
    xr = x.detach().clone().requires_grad_()
    ref = torch.autograd.grad(_finite_sum(_MASKED_REF[name](xr.masked_fill(~m2, -np.inf))),
                              xr)[0]
    torch.testing.assert_close(g, ref, rtol=1e-12, atol=1e-14)
    assert g[:, 3:].abs().sum() == 0 and g[:, 0].abs().sum() > 0


@pytest.mark.parametrize("name", list(_mask_fns()))
def test_mask_changed_after_forward_numpy(name):
    f = _mask_fns()[name]
    x = _x((3, 5))
    m = np.ones((3, 5), bool)
    m[:, 3:] = False
    y = f(x, m)
    m[:, 0] = False                        # the caller reuses its buffer
    g = torch.autograd.grad(_finite_sum(y), x)[0]
    fresh = np.ones((3, 5), bool)
    fresh[:, 3:] = False
    ref = torch.autograd.grad(_finite_sum(f(x, fresh)), x)[0]
    assert torch.equal(g, ref)
    # any other buffer the kernels could read in place is copied too
    import array
    for make in (lambda: bytearray([1, 1, 0, 1, 1]), lambda: array.array("b", [1, 1, 0, 1, 1]),
                 lambda: memoryview(bytearray([1, 1, 0, 1, 1]))):
        buf = make()
        y = f(x, buf)
        buf[0] = 0
        g = torch.autograd.grad(_finite_sum(y), x)[0]
        ref = torch.autograd.grad(_finite_sum(f(x, np.array([1, 1, 0, 1, 1], bool))), x)[0]
        assert torch.equal(g, ref), type(buf).__name__
    with pytest.raises(TypeError, match="MaskedArray"):
        f(x, np.ma.array(np.ones((3, 5), bool), mask=np.eye(3, 5, dtype=bool)))
    # a broadcast mask is copied at its own shape
    row = np.array([True, True, False, True, True])
    y = f(x, row)
    row[:] = False
    g = torch.autograd.grad(_finite_sum(y), x)[0]
    ref = torch.autograd.grad(_finite_sum(f(x, np.array([True, True, False, True, True]))), x)[0]
    assert torch.equal(g, ref)


@pytest.mark.parametrize("what", ["weight", "linear_bias"])
def test_linear_cross_entropy_none_inputs_changed_after_forward(what):
    g = torch.Generator().manual_seed(3)
    h = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, generator=g)
    t = torch.tensor([0, 4, 2, 1])
    kw = {"weight": torch.arange(1.0, 6.0, dtype=torch.float64),
          "linear_bias": torch.randn(5, dtype=torch.float64, generator=g)}
    loss = ct.linear_cross_entropy(h, W, t, reduction="none", **kw)
    kw[what].mul_(10)
    with pytest.raises(RuntimeError, match=_INPLACE):
        loss.sum().backward()
    # unchanged inputs: torch's gradient, each row scaled by its grad_output
    kw[what].div_(10)
    loss = ct.linear_cross_entropy(h, W, t, reduction="none", **kw)
    s = torch.arange(1.0, 5.0, dtype=torch.float64)
    got = torch.autograd.grad((loss * s).sum(), h)[0]
    ref = F.cross_entropy(h @ W.T + kw["linear_bias"], t, weight=kw["weight"], reduction="none")
    want = torch.autograd.grad((ref * s).sum(), h)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_repeated_dims_and_integer_dtype_raise_as_torch():
    """torch's exception types: a dim named twice is RuntimeError (also
    written as d and d - ndim); dtype= an integer, bool or complex dtype is
    NotImplementedError; a dtype= that is no torch.dtype stays TypeError."""
    x = _x((2, 3))
    for dims in ((0, 0), (1, -1), (-2, 0)):
        for f in (ct.logsumexp, ct.softmax, ct.log_softmax):
            with pytest.raises(RuntimeError, match="appears multiple times"):
                f(x, dims)
        with pytest.raises(RuntimeError):
            torch.logsumexp(x, dims)
    for dt in (torch.int64, torch.int32, torch.bool, torch.complex64):
        for f in (ct.softmax, ct.log_softmax, ct.softmin):
            with pytest.raises(NotImplementedError, match="dtype"):
                f(x, 1, dtype=dt)
        if dt != torch.complex64:
            with pytest.raises((NotImplementedError, RuntimeError)):
                torch.softmax(x, 1, dtype=dt)
    with pytest.raises(TypeError, match="torch.dtype"):
        ct.softmax(x, 1, dtype="float32")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_probability_target_loss_dtype_is_torchs(reduction):
    """Probability targets: the loss has torch's dtype, the promotion of
    input, target and weight; the input's gradient keeps the input's dtype.
    Values: the float64 computation from the same (float32) logits, rounded
    once (torch's float32 log-probabilities are within rtol 1e-6 of it)."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 6, generator=g).requires_grad_()
    p64 = torch.rand(5, 6, generator=g, dtype=torch.float64).softmax(1)
    w64 = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    for tg, kw in ((p64, {}), (p64.float(), {"weight": w64}), (p64, {"weight": w64.float()}),
                   (p64.float(), {}), (p64.float(), {"weight": w64.float()})):
        kw = dict(kw, reduction=reduction, label_smoothing=0.1)
        tg = tg.detach().requires_grad_()
        got = ct.cross_entropy(x, tg, **kw)
        ref = F.cross_entropy(x, tg, **kw)
        assert got.dtype == ref.dtype, (tg.dtype, kw)
        x64 = x.detach().double().requires_grad_()
        kw64 = dict(kw, weight=kw["weight"].double()) if "weight" in kw else kw
        exact = F.cross_entropy(x64, tg.detach().double(), **kw64)
        torch.testing.assert_close(got, exact.to(got.dtype), rtol=1e-12 if got.dtype ==
                                   torch.float64 else 2e-7, atol=0)
        gx, gt = torch.autograd.grad(got.sum(), (x, tg))
        rx, rt = torch.autograd.grad(ref.sum(), (x, tg))
        assert gx.dtype == x.dtype and gt.dtype == tg.dtype
        torch.testing.assert_close(gx, rx, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gt, rt, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
def test_class_weight_gradient_as_torch(reduction, eps):
    """A class weight that requires grad: with probability targets its
    gradient is torch's (-sum_i q'_ic log p_ic, each sample times its
    grad_output, / N for 'mean'; gradcheck in float64); with class indices
    torch raises (nll_loss has no derivative for weight), and so does the
    adapter -- not a silent None."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 4, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(4, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    p = torch.rand(3, 4, 2, generator=g, dtype=torch.float64).softmax(1).requires_grad_()
    got, ref = (f(x, p, weight=w, reduction=reduction, label_smoothing=eps)
                for f in (ct.cross_entropy, F.cross_entropy))
    s = torch.arange(1.0, got.numel() + 1, dtype=got.dtype).reshape(got.shape)
    for a, b in zip(torch.autograd.grad((got * s).sum(), (x, p, w)),
                    torch.autograd.grad((ref * s).sum(), (x, p, w))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(
        lambda w_: ct.cross_entropy(x.detach(), p.detach(), weight=w_, reduction=reduction,
                                    label_smoothing=eps), (w,))
    t = torch.tensor([[0, 1], [3, 3], [2, 0]])
    for f in (ct.cross_entropy, ct.nll_loss, F.cross_entropy, F.nll_loss):
        with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
            f(x, t, weight=w)
    with torch.no_grad():
        torch.testing.assert_close(ct.cross_entropy(x, t, weight=w), F.cross_entropy(x, t, weight=w))
    x4, t4 = _x((2, 4, 3, 2)), torch.zeros(2, 3, 2, dtype=torch.long)
    for f in (ct.cross_entropy, F.cross_entropy):       # torch's 2-d kernel names itself
        with pytest.raises(RuntimeError, match="'nll_loss2d_forward' is not differentiable"):
            f(x4, t4, weight=w)


def test_linear_cross_entropy_undifferentiated_inputs_raise():
    """A class weight or probability target that requires grad is not
    silently left without a gradient: class indices with such a weight are
    torch's RuntimeError; with probabilities (torch differentiates them) a
    NotImplementedError says so.  Without grad mode, or detached, the call
    runs."""
    g = torch.Generator().manual_seed(5)
    h = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    W = torch.randn(5, 3, dtype=torch.float64, generator=g)
    t = torch.tensor([0, 4, 2, 1])
    p = torch.rand(4, 5, dtype=torch.float64, generator=g).softmax(1)
    w = torch.rand(5, dtype=torch.float64, generator=g).requires_grad_()
    with pytest.raises(RuntimeError, match="not differentiable with respect to argument 'weight'"):
        ct.linear_cross_entropy(h, W, t, weight=w)
    with pytest.raises(NotImplementedError, match="weight"):
        ct.linear_cross_entropy(h, W, p, weight=w)
    with pytest.raises(NotImplementedError, match="target"):
        ct.linear_cross_entropy(h, W, p.clone().requires_grad_())
    with torch.no_grad():
        a = ct.linear_cross_entropy(h, W, t, weight=w)
    torch.testing.assert_close(a, ct.linear_cross_entropy(h, W, t, weight=w.detach()))


@pytest.mark.parametrize("bad,exc", [("2", TypeError), (10 ** 400, ValueError),
                                     (np.complex128(2 + 1j), TypeError)])
def test_adapter_scalars_read_as_the_core_does(bad, exc):
    """The adapters read temperature / label_smoothing / scale / margin with
    the core's real_scalar: a string or complex is TypeError, an int too
    large for a float ValueError, each naming the parameter."""
    x = _x((3, 4))
    t = torch.tensor([0, 1, 3])
    h, W = _x((3, 2)), _x((4, 2), seed=2, grad=False)
    calls = {"temperature": [lambda v: ct.softmax(x, 1, temperature=v),
                             lambda v: ct.cross_entropy(x, t, temperature=v),
                             lambda v: ct.linear_cross_entropy(h, W, t, temperature=v)],
             "label_smoothing": [lambda v: ct.cross_entropy(x, t, label_smoothing=v),
                                 lambda v: ct.linear_cross_entropy(h, W, t, label_smoothing=v)],
             "scale": [lambda v: ct.margin_cross_entropy(x.detach() / 9, t, scale=v)],
             "margin": [lambda v: ct.margin_cross_entropy(x.detach() / 9, t, margin=v)]}
    for name, fs in calls.items():
        for f in fs:
            with pytest.raises(exc, match=name):
                f(bad)


def test_linear_cross_entropy_ignore_index_is_an_int():
    """int(1.5) would silently ignore class 1: torch's TypeError instead."""
    h, W = _x((3, 2)), _x((4, 2), seed=2, grad=False)
    t = torch.tensor([0, 1, 3])
    for bad in (1.5, True, "1"):
        with pytest.raises(TypeError, match="ignore_index"):
            ct.linear_cross_entropy(h, W, t, ignore_index=bad)
    torch.testing.assert_close(ct.linear_cross_entropy(h, W, t, ignore_index=np.int64(1)),
                               F.cross_entropy(h @ W.T, t, ignore_index=1))


@pytest.mark.parametrize("bad", [1.7, True, "1", 1.0, (1.5, 0), [0, False]])
def test_dim_must_be_an_integer(bad):
    """torch refuses a float, bool or string dim (TypeError); int() here
    made dim=1.7 mean dim 1.  NumPy and 0-d tensor integers are ints."""
    x = torch.randn(2, 3, 4)
    for f in (ct.softmax, ct.log_softmax, ct.softmin, ct.logsumexp):
        with pytest.raises(TypeError, match="dim"):
            f(x, bad)
    assert torch.equal(ct.softmax(x, np.int64(1)), ct.softmax(x, 1))
    assert torch.equal(ct.logsumexp(x, (torch.tensor(2), 0)), ct.logsumexp(x, (2, 0)))


@pytest.mark.parametrize("bad", [1, 0, np.bool_(True), "no", None])
def test_logsumexp_keepdim_must_be_bool(bad):
    """torch.logsumexp's keepdim takes a Python bool only (TypeError for 1,
    np.bool_, str, None, as torch says); bool() took "no" as True."""
    x = torch.randn(2, 3)
    with pytest.raises(TypeError, match="argument 'keepdim' must be bool, not "):
        torch.logsumexp(x, 0, keepdim=bad)
    with pytest.raises(TypeError, match="argument 'keepdim' must be bool, not "):
        ct.logsumexp(x, 0, keepdim=bad)
    with pytest.raises(TypeError, match="argument 'keepdim' must be bool, not "):
        ct.logsumexp(x, 0, keepdim=bad, out=torch.empty(3))
