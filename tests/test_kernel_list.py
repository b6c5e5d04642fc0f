"""The kernel list (csoftmax/include/csoftmax_kernels.def) is the one
source of the kernel tables: the tables built from it have exactly the
entries its ISA columns promise, in its order."""
import os
import sys

import pytest

from csoftmax import _core

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "csoftmax", "src")


def _def_list():
    sys.path.insert(0, SRC)
    try:
        gen = pytest.importorskip("gen_kernel_list")
        return gen.read_list()
    finally:
        sys.path.remove(SRC)


def test_tables_follow_the_list():
    listed = _def_list()
    built = _core.kernel_list()
    assert [f for f, _, _ in listed] == [name for name, _ in built]
    for (field, _, cols), (_, present) in zip(listed, built):
        assert present, field
        for isa, has in present.items():
            # A: the avx512 table borrows the AVX2 kernel
            want = cols["avx2"] if cols[isa] == "A" else cols[isa]
            assert has == (want != "N"), (field, isa, cols[isa])


def test_only_avx512_borrows_avx2_kernels():
    """'A' (the AVX2 kernel) is a value of the avx512 column only, and only
    where the AVX2 table has its own kernel."""
    for field, _, cols in _def_list():
        for isa, v in cols.items():
            if v == "A":
                assert isa == "avx512", (field, isa)
                assert cols["avx2"] == "Y", field


def test_every_isa_table_has_the_core_kernels():
    """The entries every table must have (callers never test them for NULL)."""
    core = {"lse_rows_f32", "lse_rows_f64", "lse_cols_f32", "lse_cols_f64",
            "softmax_rows_f32", "softmax_rows_f64", "log_softmax_rows_f32",
            "log_softmax_rows_f64", "softmax_cols_f32", "softmax_cols_f64",
            "log_softmax_cols_f32", "log_softmax_cols_f64", "finalize",
            "softmax_bwd_rows_f32", "softmax_bwd_rows_f64",
            "log_softmax_bwd_rows_f32", "log_softmax_bwd_rows_f64"}
    for name, present in _core.kernel_list():
        if name in core:
            assert all(present.values()), (name, present)


def test_generated_cython_declaration_is_current():
    """_kernel_table.pxi (generated at build time) matches the list."""
    sys.path.insert(0, SRC)
    try:
        gen = pytest.importorskip("gen_kernel_list")
        pxi = os.path.join(os.path.dirname(_core.__file__), "_kernel_table.pxi")
        if not os.path.exists(pxi):
            pytest.skip("installed without the generated .pxi")
        with open(pxi) as f:
            assert f.read() == gen.render(gen.read_list())
    finally:
        sys.path.remove(SRC)


@pytest.mark.parametrize("flag", ["-ffast-math", "-Ofast", "-ffinite-math-only", None])
def test_build_refuses_fast_math(flag, tmp_path):
    """src/kernels.h stops a build whose flags drop IEEE semantics (NaN and
    infinity tests, signed zeros) instead of letting the kernels compile
    into silently wrong code; the default flags compile."""
    import shutil
    import subprocess
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not os.path.exists(os.path.join(SRC, "kernels.h")):
        pytest.skip("no C compiler or no source tree")
    c = tmp_path / "t.c"
    c.write_text('#include "kernels.h"\nint main(void) { return 0; }\n')
    cmd = [cc, "-fsyntax-only", "-O3", "-I", SRC,
           "-I", os.path.join(SRC, "..", "include"), str(c)] + ([flag] if flag else [])
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if flag is None:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode != 0 and "IEEE floating point" in r.stderr, r.stderr
