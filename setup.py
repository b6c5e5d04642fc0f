"""Build script: one extension, csoftmax._core (Cython + C kernels).

OpenMP is used when the compiler supports it (probed by compiling a tiny
program); otherwise the extension is built serial.  ISA-specific code is
switched on per function inside the kernel files (target pragmas), so the
whole extension is compiled with baseline flags -- never -march=native.
Set CSOFTMAX_NO_OPENMP=1 to force a serial build, CSOFTMAX_EXTRA_CFLAGS /
CSOFTMAX_EXTRA_LDFLAGS to add flags (e.g. sanitizers).
"""
import os
import shlex
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

import glob as _glob

SOURCES = [
    "csoftmax/_core.pyx",
    "csoftmax/src/dispatch.c",
    "csoftmax/src/kernels_scalar.c",
    "csoftmax/src/scalar_masked.c",
    "csoftmax/src/kernels_neon.c",
    "csoftmax/src/outcache.c",
] + sorted(_glob.glob("csoftmax/src/avx2/*.c")) \
  + sorted(_glob.glob("csoftmax/src/avx512/*.c"))  # one file per kernel family


def _openmp_flags(compiler):
    """(compile, link) flags for OpenMP, or ([], []) if the compiler lacks it."""
    if os.environ.get("CSOFTMAX_NO_OPENMP"):
        return [], []
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    src = "#include <omp.h>\nint main(void){return omp_get_max_threads() > 0 ? 0 : 1;}\n"
    for cflags, lflags in candidates:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "omp_probe.c")
            with open(path, "w") as f:
                f.write(src)
            try:
                objs = compiler.compile([path], output_dir=tmp, extra_postargs=cflags)
                compiler.link_executable(objs, os.path.join(tmp, "omp_probe"),
                                         extra_postargs=lflags)
                return cflags, lflags
            except Exception:
                continue
    return [], []


class BuildExt(build_ext):
    def build_extensions(self):
        cflags, lflags = _openmp_flags(self.compiler)
        if self.compiler.compiler_type == "msvc":
            base = ["/O2"]
        else:
            base = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
        base += shlex.split(os.environ.get("CSOFTMAX_EXTRA_CFLAGS", ""))
        extra_link = shlex.split(os.environ.get("CSOFTMAX_EXTRA_LDFLAGS", ""))
        self.announce(f"csoftmax: OpenMP flags {cflags or 'none (serial build)'}", 2)
        for ext in self.extensions:
            ext.extra_compile_args = base + cflags
            ext.extra_link_args = lflags + extra_link
        super().build_extensions()


# The Cython declaration of the kernel table is generated from the kernel
# list (csoftmax/include/csoftmax_kernels.def) before cythonize reads it.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "csoftmax", "src"))
import gen_kernel_list  # noqa: E402

gen_kernel_list.main()

extensions = [
    Extension(
        "csoftmax._core",
        sources=SOURCES,
        include_dirs=[numpy.get_include(), "csoftmax/include", "csoftmax/src"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    )
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    cmdclass={"build_ext": BuildExt},
)
