"""csoftmax: fast, accurate softmax, log-softmax and LogSumExp for NumPy.

The core is hand-written C with SIMD (AVX-512, AVX2+FMA or NEON, chosen at
import from CPUID; ``CSOFTMAX_ISA=scalar|avx2|avx512|neon`` forces one), wrapped by Cython, parallel with
OpenMP and the GIL released.
"""
import os as _os
import warnings as _warnings

from ._version import __version__
from ._api import (get_config, get_num_threads, log_softmax, logsumexp,
                   set_num_threads, set_output_cache, smooth_max, softmax)
from ._margin import (distillation_loss, kl_div, margin_cross_entropy, margin_logits,
                      sample, soft_hinge, softplus)
from ._losses import (cross_entropy, log_softmax_backward, logsumexp_backward,
                      nll_loss, softmax_backward)
from ._lce import linear_cross_entropy
from . import _api, _core

if _core.isa_request_error():
    _warnings.warn(
        f"CSOFTMAX_ISA={_os.environ.get('CSOFTMAX_ISA')!r} is not available here; "
        f"using {_core.isa()!r}", RuntimeWarning, stacklevel=2)

_cache_env = _os.environ.get("CSOFTMAX_OUTPUT_CACHE", "")
_cache = _api._output_cache_from_env(_cache_env) if _cache_env.strip() else None
if _cache_env.strip() and _cache is None:
    _warnings.warn(
        f"CSOFTMAX_OUTPUT_CACHE={_cache_env!r} is not a byte count (e.g. 0, 268435456, "
        f"256M); using {_api.DEFAULT_OUTPUT_CACHE >> 20}M", RuntimeWarning, stacklevel=2)
_core.set_output_cache(_api.DEFAULT_OUTPUT_CACHE if _cache is None else _cache)
del _cache_env, _cache


# GNU libgomp cannot start a thread team in a child forked from a process
# that has already run one: the child blocks forever in its first parallel
# region.  So a forked child (multiprocessing's "fork" start method) runs
# csoftmax single-threaded; use "spawn"/"forkserver" for parallel children.
def _serial_after_fork():
    _core.set_num_threads(1)


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_serial_after_fork)


def get_include() -> str:
    """Directory of the public C header ``csoftmax.h``.

    Pass it as ``include_dirs`` when compiling a Cython extension that does
    ``cimport csoftmax`` (the ``.pxd`` files ship inside the package and are
    found on ``sys.path``).  ``csoftmax.h`` declares the kernel table: one
    set of row/column kernels per instruction set (AVX-512, AVX2+FMA, NEON
    and portable scalar), of which the best one the CPU and OS support is
    chosen once from CPUID at first use (``CSOFTMAX_ISA=scalar|avx2|avx512|neon``
    forces one).

    Another extension reaches the kernels through the Cython-level API in
    ``csoftmax/_core.pxd`` -- nogil row functions ``lse_rows_f32/_f64``,
    ``softmax_rows_f32/_f64``, ``log_softmax_rows_f32/_f64`` (and fused
    ``lse_rows``, ``softmax_rows``, ``log_softmax_rows``) and
    ``kernel_table()`` -- which Cython imports at run time from
    ``csoftmax._core`` (no linking against csoftmax's shared object).

    Examples
    --------
    >>> import csoftmax, os
    >>> os.path.isfile(os.path.join(csoftmax.get_include(), "csoftmax.h"))
    True
    """
    return _os.path.join(_os.path.dirname(__file__), "include")


__all__ = ["softmax", "log_softmax", "logsumexp", "smooth_max", "get_config",
           "set_num_threads", "get_num_threads", "set_output_cache", "get_include", "__version__",
           "distillation_loss", "kl_div", "margin_logits", "margin_cross_entropy",
           "softplus", "soft_hinge", "sample",
           "cross_entropy", "nll_loss", "softmax_backward", "log_softmax_backward",
           "logsumexp_backward", "linear_cross_entropy"]
