"""Type aliases of the public signatures (PEP 484; the package ships
``py.typed``, PEP 561).  Run-time behaviour does not depend on them."""
from typing import Any, Literal, Optional, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

__all__ = ["Any", "ArrayLike", "DTypeLike", "FloatArray", "FloatResult", "IntResult", "Axis",
           "Axes", "Reduction", "KLReduction", "MarginKind", "Result"]

#: an ndarray of float16, float32 or float64
FloatArray = NDArray[np.floating[Any]]
#: an array, or a NumPy scalar where a reduction leaves no axes (both have
#: ``float()``, ``.round()``, arithmetic)
FloatResult = Union[NDArray[np.floating[Any]], np.floating[Any]]
IntResult = Union[NDArray[np.int64], np.int64]
#: one axis
Axis = int
#: one axis, several, or ``None`` for all
Axes = Optional[Union[int, Tuple[int, ...]]]
Reduction = Literal["none", "mean", "sum"]
KLReduction = Literal["batchmean", "mean", "sum", "none"]
MarginKind = Literal["normface", "cosface", "arcface"]
#: a result whose form depends on a flag: ``loss`` or ``(loss, grad)`` with
#: ``return_grad=True``; ``lse`` or ``(lse, sign)`` with ``return_sign=True``
Result = Any
