#!/usr/bin/env bash
# valgrind memcheck over a representative subset: tools/exercise.py (every
# public function on small odd-sized arrays, all layouts and dtypes, the
# threaded paths) once per ISA (CSOFTMAX_ISA=scalar, then avx2 where the CPU
# has it), Python with PYTHONMALLOC=malloc so that memcheck sees every
# allocation.  The extension is built with -g in a temporary copy of the
# repository.  tools/valgrind_report.py fails the run on any error whose
# stack (or allocation stack) has a csoftmax frame, including definite
# leaks; errors of the interpreter itself are only counted.
#
#   tools/valgrind.sh            # the full driver
#   VALGRIND_QUICK=1 tools/valgrind.sh   # fewer shapes (exercise.py --quick)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=_copy_tree.sh
. "$ROOT/tools/_copy_tree.sh"
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/csoftmax-valgrind.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
say() { echo "valgrind: $*"; }
command -v valgrind > /dev/null || { say "valgrind is not installed"; exit 1; }
t0=$SECONDS

"$PY" -m venv "$WORK/venv"
pip_in "$WORK/venv" install setuptools Cython numpy
SRC="$WORK/src"
copy_tree "$ROOT" "$SRC"
(cd "$SRC" && CSOFTMAX_EXTRA_CFLAGS="-g" "$WORK/venv/bin/python" setup.py -q build_ext --inplace \
    > "$WORK/build.log" 2>&1) || { tail -30 "$WORK/build.log"; say "build failed"; exit 1; }
VPY="$WORK/venv/bin/python"   # a symlink to the interpreter binary (not a shim), venv honoured
say "built with -g ($((SECONDS - t0)) s); $(valgrind --version); python $VPY"

vg() {   # vg NAME ARGS...: memcheck run of python ARGS, XML log NAME.xml
    local name=$1; shift
    # CSOFTMAX_OUTPUT_CACHE=0: freed results go back to malloc, so memcheck
    # sees writes into them and reads of elements never written
    (cd "$SRC" && PYTHONPATH="$SRC" PYTHONMALLOC=malloc CSOFTMAX_OUTPUT_CACHE=0 \
        valgrind --tool=memcheck --xml=yes --xml-file="$WORK/$name.xml" \
            --track-origins=yes --num-callers=40 --error-limit=no \
            --leak-check=full --show-leak-kinds=definite \
            --errors-for-leak-kinds=definite \
            "$VPY" "$@")
}

# Canary: an out-of-bounds write through the private _core entry point must
# be reported as csoftmax's, or the filter below would hide real errors
# (y is one element short: the last row ends 8 bytes past the buffer).
vg canary -c "
import numpy as np
from csoftmax import _core
y = np.empty((2, 63))
_core.rows_softmax(np.zeros((2, 64)), y, 1.0, 1.0, False)
" > "$WORK/canary.out" 2>&1 || true
if "$WORK/venv/bin/python" "$ROOT/tools/valgrind_report.py" "$WORK/canary.xml" > "$WORK/canary.report"; then
    cat "$WORK/canary.report"; say "canary: an out-of-bounds write was not attributed to csoftmax"; exit 1
fi
grep -q "Invalid write" "$WORK/canary.report" || { cat "$WORK/canary.report"; say "canary: no invalid write"; exit 1; }
say "canary: a deliberate out-of-bounds write in _core is reported ($((SECONDS - t0)) s)"

args=()
[ -n "${VALGRIND_QUICK:-}" ] && args+=(--quick)
isas=$(cd "$SRC" && PYTHONPATH="$SRC" "$VPY" -c "import csoftmax; print(' '.join(csoftmax._core.available_isas()))")
logs=()
for isa in $isas; do
    CSOFTMAX_ISA=$isa vg "exercise-$isa" "$ROOT/tools/exercise.py" "${args[@]}"
    logs+=("$WORK/exercise-$isa.xml")
    say "exercise.py under memcheck, CSOFTMAX_ISA=$isa done ($((SECONDS - t0)) s)"
done
"$WORK/venv/bin/python" "$ROOT/tools/valgrind_report.py" "${logs[@]}"
say "OK ($((SECONDS - t0)) s)"
