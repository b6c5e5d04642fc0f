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
    y = ct.softmax(x)
    # from_numpy result: writable, contiguous, a NumPy view of the same memory
    assert y.numpy().__array_interface__["data"][0] == y.data_ptr()
    np.testing.assert_array_equal(y.numpy(), csoftmax.softmax(x.numpy()))


def test_strided_input_and_half_types():
    x = torch.randn(6, 10, dtype=torch.float64)[:, ::2]
    _close(ct.softmax(x), torch.softmax(x, -1), torch.float64)
    for dt in (torch.float16, torch.bfloat16):
        h = torch.randn(3, 9).to(dt)
        r = ct.log_softmax(h)
        assert r.dtype == dt
        torch.testing.assert_close(r.float(), torch.log_softmax(h.float(), -1).to(dt).float(),
                                   rtol=1e-2, atol=1e-2)


def test_no_grad_path_and_errors():
    x = torch.randn(3, 4)
    with torch.no_grad():
        loss = ct.cross_entropy(x, torch.tensor([0, 1, 2]))
    assert loss.shape == ()
    with pytest.raises(ValueError, match="not a class index"):
        ct.cross_entropy(x, torch.tensor([0, 1, 9]))
    with pytest.raises(TypeError, match="complex"):
        ct.softmax(torch.randn(2, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ct.cross_entropy(np.zeros((2, 2)), torch.tensor([0, 1]))


def test_meta_device_rejected():
    x = torch.empty(2, 3, device="meta")
    with pytest.raises(ValueError, match="CPU"):
        ct.softmax(x)


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
