#!/usr/bin/env bash
# Build csoftmax with AddressSanitizer + UndefinedBehaviorSanitizer and run
# tools/exercise.py (every public function; once per ISA) and the test suite
# on it; any sanitizer report fails the run.
#
# The extension is built in place in a temporary copy of the repository,
# with gcc's -fsanitize=address,undefined (CSOFTMAX_EXTRA_CFLAGS/LDFLAGS,
# read by setup.py), into a temporary venv holding only the test
# dependencies.  Python itself is not instrumented, so libasan is
# LD_PRELOADed; leak detection is off (the interpreter keeps its objects
# alive at exit); PYTHONMALLOC=malloc puts Python's own allocations under
# ASan too.  Subprocesses started by the tests (fork tests) inherit it all.
#
#   tools/sanitize.sh                       # the suite minus tests marked slow
#   SANITIZE_PYTEST_ARGS="-q -k softmax" tools/sanitize.sh
#   SANITIZE_OPT=-O3 tools/sanitize.sh      # optimisation level (default -O1)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=_copy_tree.sh
. "$ROOT/tools/_copy_tree.sh"
PY=${PYTHON:-python3}
CC=${CC:-gcc}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/csoftmax-asan.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ -n "${SANITIZE_PYTEST_ARGS:-}" ]; then
    read -r -a PYTEST_ARGS <<< "$SANITIZE_PYTEST_ARGS"
else
    PYTEST_ARGS=(-q -m "not slow and not examples")
fi
say() { echo "sanitize: $*"; }
t0=$SECONDS

LIBASAN=$("$CC" -print-file-name=libasan.so)
[ -e "$LIBASAN" ] || { say "no libasan.so for $CC ($LIBASAN)"; exit 1; }
LIBASAN=$(readlink -f "$LIBASAN")

"$PY" -m venv "$WORK/venv"
pip_in "$WORK/venv" install setuptools Cython numpy pytest hypothesis scipy
SRC="$WORK/src"
copy_tree "$ROOT" "$SRC"

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
(
    cd "$SRC"
    CC="$CC" \
    CSOFTMAX_EXTRA_CFLAGS="$SAN -g ${SANITIZE_OPT:--O1}" \
    CSOFTMAX_EXTRA_LDFLAGS="-fsanitize=address,undefined" \
        "$WORK/venv/bin/python" setup.py -q build_ext --inplace > "$WORK/build.log" 2>&1
) || { tail -30 "$WORK/build.log"; say "build failed"; exit 1; }
SO=$(find "$SRC/csoftmax" -maxdepth 1 -name '_core*.so')
# (ldd's output captured first: with pipefail, `ldd | grep -q` fails at
# random when grep exits before ldd has written everything -- SIGPIPE)
LIBS=$(ldd "$SO")
grep -q libasan <<< "$LIBS" || { say "$SO is not linked to libasan"; exit 1; }
grep -q libubsan <<< "$LIBS" || { say "$SO is not linked to libubsan"; exit 1; }
say "built $(basename "$SO") with $SAN ($((SECONDS - t0)) s)"

run_sanitized() {   # run_sanitized LOGDIR CMD...: CMD under ASan/UBSan, from $SRC
    local logs=$1; shift
    mkdir -p "$logs"
    (
        cd "$SRC"
        export LD_PRELOAD="$LIBASAN"
        export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1:log_path=$logs/asan"
        export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan"
        export PYTHONMALLOC=malloc
        # freed results back to malloc: ASan sees use after free in them
        # (tests/test_output_cache.py sets its own limits)
        export CSOFTMAX_OUTPUT_CACHE=0
        export PYTHONPATH="$SRC"
        export CSOFTMAX_TEST_UNDER_ASAN=1     # tests libasan itself cannot pass
        "$@"
    )
}

# Canary: a deliberate heap overflow through the private _core entry point
# (y has 8 columns, x 64) must be reported, or this set-up detects nothing.
if run_sanitized "$WORK/canary" "$WORK/venv/bin/python" -c "
import numpy as np
from csoftmax import _core
_core.rows_softmax(np.zeros((2, 64)), np.empty((2, 8)), 1.0, 1.0, False)
" > /dev/null 2>&1; then
    say "canary: a heap overflow went unreported"; exit 1
fi
grep -qs "heap-buffer-overflow" "$WORK"/canary/asan.* || {
    say "canary: no heap-buffer-overflow report"; cat "$WORK"/canary/* 2>/dev/null; exit 1; }
say "canary: a deliberate heap overflow in _core is reported"

VPY="$WORK/venv/bin/python"
run_sanitized "$WORK/logs" "$VPY" -c "
import sys, csoftmax
assert csoftmax.__file__.startswith(sys.argv[1]), csoftmax.__file__
print('sanitize: testing', csoftmax.__file__, csoftmax.get_config())" "$SRC"
# the memory-checker driver (every public function, odd shapes) on each ISA
isas=$(run_sanitized "$WORK/logs" "$VPY" -c "import csoftmax; print(*csoftmax._core.available_isas())")
[ -n "$isas" ] || { say "could not list the ISAs"; exit 1; }
for isa in $isas; do
    CSOFTMAX_ISA=$isa run_sanitized "$WORK/logs" "$VPY" "$ROOT/tools/exercise.py"
done
rc=0
run_sanitized "$WORK/logs" "$VPY" -m pytest -p no:cacheprovider "${PYTEST_ARGS[@]}" tests || rc=$?

reports=$(find "$WORK/logs" -type f | sort)
if [ -n "$reports" ]; then
    for f in $reports; do
        echo "===== $(basename "$f")"
        cat "$f"
    done
    say "FAILED: $(echo "$reports" | wc -l) sanitizer report file(s) (above)"
    exit 1
fi
if [ "$rc" -eq 5 ]; then say "pytest collected no tests"; exit 1; fi
[ "$rc" -eq 0 ] || { say "FAILED: the test suite failed under the sanitizers (rc=$rc)"; exit "$rc"; }
say "OK: no ASan/UBSan report, tests passed ($((SECONDS - t0)) s)"
