# `cimport csoftmax` / `from csoftmax cimport ...`: the C-level API of
# csoftmax._core (row functions, fused wrappers, the kernel table and the
# csoftmax.h declarations).  See csoftmax/_core.pxd for the contract.
from csoftmax._core cimport *
