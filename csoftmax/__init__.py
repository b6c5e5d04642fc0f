"""csoftmax: fast, accurate softmax, log-softmax and LogSumExp for NumPy.

The core is hand-written C with SIMD (AVX2+FMA, chosen at import from CPUID;
``CSOFTMAX_ISA=scalar|avx2`` forces one), wrapped by Cython, parallel with
OpenMP and the GIL released.
"""
import os as _os
import warnings as _warnings

from ._version import __version__
from ._api import (get_config, get_num_threads, log_softmax, logsumexp,
                   set_num_threads, smooth_max, softmax)
from . import _core

if _core.isa_request_error():
    _warnings.warn(
        f"CSOFTMAX_ISA={_os.environ.get('CSOFTMAX_ISA')!r} is not available here; "
        f"using {_core.isa()!r}", RuntimeWarning, stacklevel=2)


# GNU libgomp cannot start a thread team in a child forked from a process
# that has already run one: the child blocks forever in its first parallel
# region.  So a forked child (multiprocessing's "fork" start method) runs
# csoftmax single-threaded; use "spawn"/"forkserver" for parallel children.
def _serial_after_fork():
    _core.set_num_threads(1)


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_serial_after_fork)


def get_include():
    """Directory holding the public C header ``csoftmax.h`` (and the ``.pxd``
    files are importable as ``csoftmax._core``)."""
    return _os.path.join(_os.path.dirname(__file__), "include")


__all__ = ["softmax", "log_softmax", "logsumexp", "smooth_max", "get_config",
           "set_num_threads", "get_num_threads", "get_include", "__version__"]
