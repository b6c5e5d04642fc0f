# shellcheck shell=bash
# copy_tree SRC DEST: copy the repository's files (tracked and untracked,
# not ignored) without build products; plain cp -r outside a git checkout.
copy_tree() {
    local src=$1 dest=$2
    mkdir -p "$dest"
    if git -C "$src" rev-parse --git-dir > /dev/null 2>&1; then
        (cd "$src" && git ls-files -z --cached --others --exclude-standard \
            | xargs -0 -r cp --parents -t "$dest")
    else
        cp -r "$src/." "$dest"
    fi
    rm -rf "$dest/build" "$dest"/*.egg-info "$dest"/.venv* "$dest"/csoftmax/*.so \
        "$dest/csoftmax/_core.c"
}

# pip_in VENV ARGS...: pip, quiet, without this machine's find-links noise
pip_in() {
    local venv=$1; shift
    "$venv/bin/python" -m pip -q --disable-pip-version-check "$@" 2>&1 \
        | { grep -v "^WARNING: Location" || true; }
    return "${PIPESTATUS[0]}"
}
