"""Generate the Cython declaration of the kernel table from the kernel list.

    python csoftmax/src/gen_kernel_list.py      # (setup.py runs it)

Reads csoftmax/include/csoftmax_kernels.def -- the one list of kernels, an
X-macro that csoftmax.h, kernels.h and dispatch.c expand with the C
preprocessor -- and writes csoftmax/_kernel_table.pxi (included by
_core.pxd): the members of csm_kernel_table, in list order.  The output is
a build product (not in git); it is rewritten only when it changes.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
DEF = os.path.join(PKG, "include", "csoftmax_kernels.def")
OUT = os.path.join(PKG, "_kernel_table.pxi")
ISAS = ("scalar", "avx2", "neon", "avx512")

# the ISA columns: scalar, avx2, neon take Y/S/N; avx512 also A (the AVX2
# kernel)
_LINE = re.compile(r"^CSM_KERNEL\(\s*(\w+)\s*,\s*(\w+)\s*,\s*([YSN])\s*,\s*([YSN])\s*,"
                   r"\s*([YSN])\s*,\s*([YSAN])\s*\)\s*$")


def read_list(path=DEF):
    """[(field, signature, {isa: 'Y'|'S'|'A'|'N'})] in list order."""
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("CSM_KERNEL("):
                continue
            m = _LINE.match(line)
            if not m:
                raise SystemExit(f"{path}: cannot parse {line!r}")
            field, sig = m.group(1), m.group(2)
            out.append((field, sig, dict(zip(ISAS, m.group(3, 4, 5, 6)))))
    if not out:
        raise SystemExit(f"{path}: no CSM_KERNEL lines")
    return out


def pointer_type(signature):
    """The pointer typedef of a function type (csoftmax.h / _core.pxd)."""
    if signature == "csm_finalize_rows_fn":
        return "csm_finalize_fn"
    assert signature.endswith("_fn"), signature
    return signature[:-3]


def render(kernels):
    lines = ["# Generated from csoftmax/include/csoftmax_kernels.def by",
             "# csoftmax/src/gen_kernel_list.py (setup.py runs it).  Do not edit.",
             'cdef extern from "csoftmax.h" nogil:',
             "    ctypedef struct csm_kernel_table:",
             "        csm_isa isa",
             "        const char *name"]
    for field, sig, _ in kernels:
        lines.append(f"        {pointer_type(sig)} {field}")
    return "\n".join(lines) + "\n"


def main():
    text = render(read_list())
    old = None
    if os.path.exists(OUT):
        with open(OUT) as f:
            old = f.read()
    if old != text:
        with open(OUT, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
