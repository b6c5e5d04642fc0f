"""csoftmax.torch on torch's own OpInfo / ModuleInfo sample inputs.

For each torch op the adapter mirrors, every sample input torch's test suite
uses (``op.sample_inputs('cpu', dtype, requires_grad=True)``; for modules,
``module_info.module_inputs_func``) goes through the torch op and through the
csoftmax.torch equivalent with the same positional arguments and keywords.
Outputs (value, shape, dtype) and gradients (``torch.autograd.grad`` with a
random ``grad_output``, with respect to every input tensor that requires
grad) must agree:

* float64: rtol 1e-12, atol 1e-13 (both sides are ~1 ULP from exact);
* float32: rtol 1e-5 against torch's float32 results, and atol 2e-6 times
  the largest |value| of the result (at least 1): torch accumulates float32
  in float32, csoftmax in float64, so the difference is torch's rounding,
  and float32 gradients that cancel (``dy - sum(y dy)``, weighted losses
  with |w| ~ 9) carry an absolute error of a few eps32 times their scale.

Each (op, dtype) asserts that it checked at least one sample.  Samples that
are deliberately not compared are listed in ``REFUSED`` with a reason, and
each entry must still match a sample (so the list cannot go stale).

torch.testing._internal is torch's private test package: it needs the
`expecttest` package and may move between releases, so the module skips
(saying why) when it cannot be imported.  Importing it also loads a
hypothesis profile and freezes ``torch.backends`` flags for the whole process;
the fixture imports it only when these tests run and restores both, so the
rest of the suite keeps csoftmax's hypothesis profile (tests/conftest.py).
"""
import pytest

torch = pytest.importorskip("torch")
import csoftmax.torch as ct  # noqa: E402

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-13),
       torch.float32: dict(rtol=1e-5, atol=2e-6)}


def _tol(ref):
    """TOL for ref's dtype, atol scaled by the largest finite |ref| (>= 1)."""
    tol = dict(TOL[ref.dtype])
    fin = ref.detach()[torch.isfinite(ref.detach())]
    if fin.numel():
        tol["atol"] *= max(1.0, fin.abs().max().item())
    return tol

# OpInfo name -> name of the csoftmax.torch function called with the sample's args.
# nn.functional.softmax / log_softmax are aliases of torch's `softmax` /
# `log_softmax` OpInfos: their samples are run through the alias callable.
OPS = {
    "softmax": "softmax",
    "nn.functional.softmax": "softmax",
    "log_softmax": "log_softmax",
    "nn.functional.log_softmax": "log_softmax",
    "nn.functional.softmin": "softmin",
    "logsumexp": "logsumexp",
    "nn.functional.cross_entropy": "cross_entropy",
    "nn.functional.nll_loss": "nll_loss",
}

# OpInfos with these names are not checked, on purpose.
NOT_COVERED = {
    "masked.softmax": "csoftmax.torch has no mask argument",
    "masked.log_softmax": "csoftmax.torch has no mask argument",
    "masked.softmin": "csoftmax.torch has no mask argument",
    "masked.logsumexp": "csoftmax.torch has no mask argument",
}

# ModuleInfo module class name -> csoftmax.torch module with the same constructor.
MODULES = {
    "CrossEntropyLoss": "CrossEntropyLoss",
    "NLLLoss": "NLLLoss",
    "Softmax": "Softmax",
    "LogSoftmax": "LogSoftmax",
    "Softmin": "Softmin",
    "Softmax2d": "Softmax2d",
}

# (op or module name, predicate on the sample, reason): samples not compared.
# Only float32 / float64 inputs are run at all: float16 / bfloat16 are
# computed by csoftmax in float32 and rounded once, torch CPU rounds
# intermediates, so they are compared with loose tolerances in
# test_torch_adapter.py instead.
REFUSED = []        # none today: every float32 / float64 sample is compared


# ---------------------------------------------------------------------------
# torch's test databases, imported only when these tests run

def _profile_name():
    import hypothesis
    get = getattr(hypothesis.settings, "get_current_profile_name", None)
    return get() if get else hypothesis.settings._current_profile


@pytest.fixture(scope="module")
def dbs():
    import hypothesis
    import torch.backends as tb

    profile, was_frozen = _profile_name(), tb.flags_frozen()
    # torch.backends is a wrapper module: the flag lives in its functions' globals
    flags, flag = tb.flags_frozen.__globals__, "__allow_nonbracketed_mutation_flag"
    frozen = flags.get(flag)
    try:
        from torch.testing._internal.common_methods_invocations import op_db
        from torch.testing._internal.common_modules import module_db
    except Exception as e:  # ImportError (expecttest missing, module moved) or worse
        pytest.skip(f"torch's OpInfo/ModuleInfo databases are not importable "
                    f"({type(e).__name__}: {e})")
    finally:
        # common_utils loads its own hypothesis profile ('dev': 10 examples, not
        # derandomised) and freezes torch.backends flags: undo both
        hypothesis.settings.load_profile(profile)
        if frozen is not None:
            flags[flag] = frozen
    return op_db, module_db, profile, was_frozen


# ---------------------------------------------------------------------------
# comparison

def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _compare(ref_fn, our_fn, grad_inputs, where):
    ref = ref_fn()
    ours = our_fn()
    assert ours.dtype == ref.dtype, f"{where}: dtype {ours.dtype} != torch's {ref.dtype}"
    assert ours.shape == ref.shape, f"{where}: shape {ours.shape} != torch's {ref.shape}"
    torch.testing.assert_close(ours, ref, equal_nan=True, **_tol(ref),
                               msg=lambda m: f"{where}: output\n{m}")
    if not grad_inputs or not ref.requires_grad:
        assert not ours.requires_grad or not grad_inputs, where
        return False
    g = torch.Generator().manual_seed(0)
    go = torch.randn(ref.shape, generator=g, dtype=torch.float64).to(ref.dtype)
    gr = torch.autograd.grad(ref, grad_inputs, go, allow_unused=True)
    gc = torch.autograd.grad(ours, grad_inputs, go, allow_unused=True)
    for i, (a, b) in enumerate(zip(gc, gr)):
        if b is None:
            assert a is None or not a.any(), f"{where}: gradient {i} should be None"
            continue
        assert a is not None, f"{where}: no gradient for input {i}"
        assert a.dtype == b.dtype, f"{where}: gradient {i} dtype {a.dtype} != {b.dtype}"
        torch.testing.assert_close(a, b, equal_nan=True, **_tol(b),
                                   msg=lambda m, i=i: f"{where}: gradient {i}\n{m}")
    return True


def _describe(x, args, kwargs):
    def d(v):
        return f"T{tuple(v.shape)}" if isinstance(v, torch.Tensor) else repr(v)
    return (f"input {d(x)}, args ({', '.join(d(a) for a in args)}), "
            f"kwargs {{{', '.join(f'{k}={d(v)}' for k, v in kwargs.items())}}}")


def _refused(name, x, args, kwargs, used):
    for i, (n, pred, reason) in enumerate(REFUSED):
        if n == name and pred(x, args, kwargs):
            used.add(i)
            return reason
    return None


# ---------------------------------------------------------------------------
# OpInfo

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(OPS))
def test_opinfo_samples(dbs, name, dtype, record_property):
    op_db = dbs[0]
    ours = getattr(ct, OPS[name])
    checked, with_grad, used = 0, 0, set()
    infos = [(op, op.op) for op in op_db if op.name == name]
    infos += [(op, a.op) for op in op_db for a in op.aliases if a.name == name]
    assert infos, f"no OpInfo named {name!r} in this torch ({torch.__version__})"
    for op, ref in infos:
        for s in op.sample_inputs("cpu", dtype, requires_grad=True):
            where = f"{name}[{op.variant_test_name}] {dtype}: " + _describe(
                s.input, s.args, s.kwargs)
            if _refused(name, s.input, s.args, s.kwargs, used):
                continue
            post = s.output_process_fn_grad
            grads = [t for t in _tensors([s.input, s.args, s.kwargs]) if t.requires_grad]
            with_grad += _compare(lambda: post(ref(s.input, *s.args, **s.kwargs)),
                                  lambda: post(ours(s.input, *s.args, **s.kwargs)),
                                  grads, where)
            checked += 1
    record_property("samples_checked", checked)
    print(f"{name} {dtype}: {checked} samples checked, {with_grad} with gradients")
    assert checked > 0 and with_grad > 0, f"{name} {dtype}: no sample (gradient) checked"
    stale = [REFUSED[i][2] for i, r in enumerate(REFUSED) if r[0] == name and i not in used]
    assert not stale, f"REFUSED entries matching no sample: {stale}"


def test_not_covered_ops_exist(dbs):
    """The masked.* OpInfos are skipped on purpose (no mask argument in the
    adapter); they must still exist, or the note is stale."""
    op_db = dbs[0]
    names = {op.name for op in op_db}
    missing = [n for n in NOT_COVERED if n not in names]
    assert not missing, f"NOT_COVERED lists ops torch no longer has: {missing}"


# ---------------------------------------------------------------------------
# ModuleInfo

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", sorted(MODULES))
def test_moduleinfo_samples(dbs, name, dtype, record_property):
    module_db = dbs[1]
    infos = [m for m in module_db if m.module_cls.__name__ == name]
    assert infos, f"no ModuleInfo for nn.{name} in this torch ({torch.__version__})"
    checked, with_grad, used = 0, 0, set()
    for m in infos:
        for mi in m.module_inputs_func(m, device="cpu", dtype=dtype, requires_grad=True,
                                       training=True):
            if mi.forward_input is None:
                continue
            ci, fi = mi.constructor_input, mi.forward_input
            where = (f"nn.{name}(*{ci.args}, **{ci.kwargs}) {dtype} "
                     f"{getattr(mi, 'desc', '')}: " + _describe(None, fi.args, fi.kwargs))
            if _refused(name, None, fi.args, fi.kwargs, used):
                continue
            ref_mod = m.module_cls(*ci.args, **ci.kwargs)
            our_mod = getattr(ct, MODULES[name])(*ci.args, **ci.kwargs)
            grads = [t for t in _tensors([fi.args, fi.kwargs]) if t.requires_grad]
            with_grad += _compare(lambda: ref_mod(*fi.args, **fi.kwargs),
                                  lambda: our_mod(*fi.args, **fi.kwargs), grads, where)
            checked += 1
    record_property("samples_checked", checked)
    print(f"nn.{name} {dtype}: {checked} samples checked, {with_grad} with gradients")
    assert checked > 0 and with_grad > 0, f"nn.{name} {dtype}: no sample (gradient) checked"
    stale = [REFUSED[i][2] for i, r in enumerate(REFUSED) if r[0] == name and i not in used]
    assert not stale, f"REFUSED entries matching no sample: {stale}"


@pytest.mark.parametrize("name", ["CrossEntropyLoss", "NLLLoss"])
def test_moduleinfo_error_inputs(dbs, name):
    """torch's own error inputs of the loss modules (test_modules.py
    test_errors): csoftmax.torch raises the same exception type with a
    message the same regex matches (they all failed before session 8)."""
    import re
    import warnings
    module_db = dbs[1]
    infos = [m for m in module_db if m.module_cls.__name__ == name]
    assert infos and infos[0].module_error_inputs_func is not None
    checked = 0
    for m in infos:
        for ei in m.module_error_inputs_func(m, device="cpu", dtype=torch.float32,
                                             requires_grad=False, training=True):
            mi = ei.module_error_input
            ci, fi = mi.constructor_input, mi.forward_input
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with pytest.raises(ei.error_type) as e:
                    getattr(ct, name)(*ci.args, **ci.kwargs)(*fi.args, **fi.kwargs)
            assert re.search(ei.error_regex, str(e.value)), (ci.kwargs, str(e.value))
            checked += 1
    assert checked > 0


def test_import_side_effects_undone(dbs):
    """Importing torch.testing._internal must not leave its hypothesis profile
    on, nor torch.backends frozen, for the rest of the suite."""
    assert _profile_name() == dbs[2]
    assert torch.backends.flags_frozen() == dbs[3]
