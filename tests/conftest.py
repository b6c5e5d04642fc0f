"""Fixtures: every test that takes `isa` runs under each kernel table this
CPU offers, every test that takes `threads` under 1 and 2 OpenMP threads;
both restore the previous global state afterwards."""
import os
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import csoftmax
from csoftmax import _core

settings.register_profile("csoftmax", max_examples=40, deadline=None,
                          derandomize=True, print_blob=True)
settings.register_profile("thorough", max_examples=1000, deadline=None)
# CSOFTMAX_FUZZ=long: the long fuzzing run (tests/test_fuzz.py has 14 hypothesis tests,
# so 7500 examples a test is > 100,000 examples; CSOFTMAX_FUZZ_EXAMPLES
# overrides the per-test figure).
settings.register_profile(
    "long", max_examples=int(os.environ.get("CSOFTMAX_FUZZ_EXAMPLES", "7500")), deadline=None,
    derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
_default = "long" if os.environ.get("CSOFTMAX_FUZZ") == "long" else "csoftmax"
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", _default))

ISAS = _core.available_isas()


@pytest.fixture(params=ISAS)
def isa(request):
    prev = _core._use_isa(request.param)
    try:
        assert csoftmax.get_config()["isa"] == request.param
        yield request.param
    finally:
        _core._use_isa(prev)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    # set_num_threads returns the previous *setting* (None = follow OpenMP),
    # so restoring it does not leave the count pinned for later tests
    prev = csoftmax.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        csoftmax.set_num_threads(prev)


@pytest.fixture(params=[True, False], ids=["fused", "unfused"])
def fused(request):
    """The one-exp AVX2 kernels (fused softmax rows, column tiles,
    cross-entropy store + rescale, ce_small, backward column kernels) on,
    then off (reduction + exp write pass): the planner avoids each op's
    ONE_EXP_PATHS (csoftmax/_plan.pxi)."""
    if request.param:
        yield True
    else:
        with _core.unfused():
            yield False


@pytest.fixture
def rng(request):
    # a fixed seed per test, so failures reproduce
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(autouse=True)
def _state_unchanged():
    """Every test leaves ISA and thread count as it found them."""
    before = (_core.isa(), csoftmax.get_num_threads())
    yield
    assert (_core.isa(), csoftmax.get_num_threads()) == before
