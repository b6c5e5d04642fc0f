"""Measure what csoftmax achieves against the accuracy contract.

    python tools/accuracy_report.py [--quick] [--torch]

For each op and dtype: the max error in ULP of the accurate reference
(tests/_helpers.py: float64 for float32 data, long double for float64), after
the contract's condition term kappa x |cancelling terms| where one applies,
over rows N(0,1)*3 and N(0,1)*30, V = 10 ... 32000, random and one-hot
upstream gradients, plus the targeted inputs of tests/test_contract.py.
--torch adds torch's figure (plain ULP, same reference) when it is installed.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import _helpers as H  # noqa: E402
import csoftmax  # noqa: E402
from csoftmax import _core  # noqa: E402


def cases(dt, quick):
    rng = np.random.default_rng(0)
    Vs = (10, 100, 1000) if quick else (10, 100, 1000, 32000)
    for V in Vs:
        for sc in (3, 30):
            rows = max(4, 20000 // V)
            x = (rng.normal(size=(rows, V)) * sc).astype(dt)
            dy = rng.normal(size=x.shape).astype(dt)
            oh = np.zeros_like(x)
            lab = np.argmax(x, 1)
            oh[np.arange(rows), lab] = -1
            yield x, lab, dy, oh


def worst(got, ref, dt, op):
    ulps, kappa = H.bound(op, dt)
    k = getattr(ref, "kappa", None)
    if k is not None:
        kappa = k.get(np.dtype(dt), kappa)
    sl = getattr(ref, "slack", None) if np.dtype(dt) == np.float64 else None
    fl = getattr(ref, "floor", None)
    if isinstance(fl, dict):
        fl = fl.get(np.dtype(dt).type)
    if fl is not None:
        sl = fl if sl is None else sl + fl
    return (float(H.err_ulps(got, ref, dt, kappa, getattr(ref, "cond", None), sl).max()),
            float(H.err_ulps(got, ref, dt).max()))


def measure(dt, quick):
    res = {}

    def put(k, v):
        a, b = res.get(k, (0.0, 0.0))
        res[k] = (max(a, v[0]), max(b, v[1]))
    for x, lab, dy, oh in cases(dt, quick):
        for op in ("softmax", "log_softmax", "logsumexp"):
            want = H.ref(op, x)
            got = H.run(op, x)
            if np.dtype(dt) == np.float64:
                want = H.mkref(want, slack=H.f64_slack(op, x))
            put(op, worst(got, want, dt, op))
        for kw in ({}, dict(label_smoothing=0.1)):
            rl, rg = H.ref_ce(x, lab, reduction="none", **kw)
            l, g = csoftmax.cross_entropy(x, lab, reduction="none", return_grad=True, **kw)
            tag = " (smoothing 0.1)" if kw else ""
            put("cross_entropy" + tag, worst(l, rl, dt, "cross_entropy"))
            put("cross_entropy_grad" + tag, worst(g, rg, dt, "cross_entropy_grad"))
        lp = csoftmax.log_softmax(x)
        put("nll_loss", worst(csoftmax.nll_loss(lp, lab, reduction="none"),
                              H.ref_nll(lp, lab, reduction="none"), dt, "nll_loss"))
        y = csoftmax.softmax(x)
        for d in (dy, oh):
            put("softmax_backward", worst(csoftmax.softmax_backward(y, d),
                                          H.ref_softmax_bwd(y, d), dt, "softmax_backward"))
            put("log_softmax_backward", worst(csoftmax.log_softmax_backward(lp, d),
                                              H.ref_log_softmax_bwd(lp, d), dt,
                                              "log_softmax_backward"))
        u = dy[:, 0].copy()
        put("logsumexp_backward", worst(csoftmax.logsumexp_backward(x, u),
                                        H.ref_logsumexp_bwd(x, u), dt, "logsumexp_backward"))
        measure_more(x, lab, dt, put)
    return res


def measure_more(x, lab, dt, put):
    """kl_div, distillation, margin family, softplus, soft_hinge, smooth_max,
    weighted logsumexp (references: tests/_helpers.py ref_*)."""
    rng = np.random.default_rng(1)
    x2 = (x + rng.normal(size=x.shape).astype(dt) * dt(0.1)).astype(dt)
    for T in (1.0, 2.0):
        l, g = csoftmax.distillation_loss(x, x2, temperature=T, reduction="none", return_grad=True)
        rl, rg = H.ref_distill(x, x2, temperature=T, reduction="none")
        put("distillation_loss", worst(l, rl, dt, "distillation_loss"))
        put("distillation_grad", worst(g, rg, dt, "distillation_grad"))
    lq = csoftmax.log_softmax(x)
    for lt in (False, True):
        pp = csoftmax.log_softmax(x2) if lt else csoftmax.softmax(x2)
        for red in ("none", "batchmean"):
            got = np.asarray(csoftmax.kl_div(lq, pp, log_target=lt, reduction=red))
            put("kl_div", worst(got, H.ref_kl(lq, pp, log_target=lt, reduction=red), dt, "kl_div"))
    cs = np.clip(x / (3 * np.abs(x).max()), -1, 1).astype(dt)
    for kind, m in (("normface", 0.0), ("cosface", 0.35), ("arcface", 0.5)):
        for easy in (False, True):
            kw = dict(scale=64.0, margin=m, kind=kind, easy_margin=easy)
            put("margin_logits", worst(csoftmax.margin_logits(cs, lab, **kw),
                                       H.ref_margin_logits(cs, lab, **kw), dt, "margin_logits"))
            l, g = csoftmax.margin_cross_entropy(cs, lab, reduction="none", return_grad=True, **kw)
            rl, rg = H.ref_margin_ce(cs, lab, reduction="none", **kw)
            put("margin_cross_entropy", worst(l, rl, dt, "margin_cross_entropy"))
            put("margin_ce_grad", worst(g, rg, dt, "margin_ce_grad"))
    for beta in (1.0, 0.5, 3.0):
        put("softplus", worst(csoftmax.softplus(x, beta=beta), H.ref_softplus(x, beta=beta),
                              dt, "softplus"))
    for m in (0.0, 1.0, -2.0):
        l, g = csoftmax.soft_hinge(x, lab, margin=m, reduction="none", return_grad=True)
        rl, rg = H.ref_soft_hinge(x, lab, margin=m, reduction="none")
        put("soft_hinge", worst(l, rl, dt, "soft_hinge"))
        put("soft_hinge_grad", worst(g, rg, dt, "soft_hinge_grad"))
    for k in (0.1, 1.0, 7.3):
        put("smooth_max", worst(csoftmax.smooth_max(x, sharpness=k), H.ref_smooth_max(x, -1, k),
                                dt, "smooth_max"))
    for b in ((rng.random(x.shape) + 0.1).astype(dt), rng.normal(size=x.shape).astype(dt)):
        r, _ = csoftmax.logsumexp(x, axis=-1, b=b, return_sign=True)
        put("logsumexp_b", worst(r, H.ref_logsumexp_b(x, b, axis=-1)[0], dt, "logsumexp_b"))


def torch_measure(dt, quick):
    try:
        import torch
    except ImportError:
        return {}
    res = {}
    for x, lab, dy, oh in cases(dt, quick):
        xt = torch.tensor(x, requires_grad=True)
        loss = torch.nn.functional.cross_entropy(xt, torch.tensor(lab), reduction="sum")
        loss.backward()
        rl, rg = H.ref_ce(x, lab, reduction="sum")
        res["cross_entropy"] = max(res.get("cross_entropy", 0),
                                   float(H.err_ulps(loss.detach().numpy(), rl, dt).max()))
        res["cross_entropy_grad"] = max(res.get("cross_entropy_grad", 0),
                                        float(H.err_ulps(xt.grad.numpy(), rg, dt).max()))
        for op, f in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
            xt = torch.tensor(x, requires_grad=True)
            y = f(xt, -1)
            y.backward(torch.tensor(dy))
            yn = y.detach().numpy()
            refb = (H.ref_softmax_bwd if op == "softmax" else H.ref_log_softmax_bwd)(yn, dy)
            k = op + "_backward"
            res[k] = max(res.get(k, 0), float(H.err_ulps(xt.grad.numpy(), refb, dt).max()))
    return res


def main():
    quick = "--quick" in sys.argv
    print(f"csoftmax {csoftmax.__version__}; max error in ULP: beyond the contract's condition term, and plain")
    for isa in _core.available_isas():
        prev = _core._use_isa(isa)
        try:
            for dt in (np.float32, np.float64):
                m = measure(dt, quick)
                t = torch_measure(dt, quick) if "--torch" in sys.argv and isa == "avx2" else {}
                for k, v in m.items():
                    op = k.split(" ")[0]
                    ulps, kappa = H.bound(op, dt)
                    if op.startswith("distillation") and np.dtype(dt) == np.float32:
                        kappa = H.KAPPA_DISTILL_F32
                    tv = f"  torch {t[k]:.3g}" if k in t else ""
                    print(f"{isa:7s} {np.dtype(dt).name:8s} {k:36s} beyond-cond {v[0]:6.3g}"
                          f"  plain {v[1]:9.3g}"
                          f"   bound {ulps} ULP + 2^{np.log2(kappa):.0f} cond{tv}")
        finally:
            _core._use_isa(prev)


if __name__ == "__main__":
    main()
