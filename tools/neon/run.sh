#!/usr/bin/env bash
# Cross-compile the NEON kernels with the scalar reference and dispatch.c for
# aarch64 and run tools/neon/test_kernels.c under qemu-user.
#   needs: aarch64-linux-gnu-gcc (Debian gcc-aarch64-linux-gnu,
#          libc6-dev-arm64-cross) and qemu-aarch64 (Debian qemu-user)
# Exit status: 0 pass, 1 failure, 77 toolchain missing (skipped).
set -euo pipefail
cd "$(dirname "$0")/../.."

CC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
for tool in "$CC" "$QEMU"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "tools/neon/run.sh: $tool not found (apt-get install" \
             "gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
        exit 77
    fi
done

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
t=$SECONDS
# -O2 and gcc's default fp-contract, as the extension is built (setup.py)
"$CC" -O2 -static -Wall -Wextra -Werror -Icsoftmax/include -Icsoftmax/src \
    tools/neon/test_kernels.c csoftmax/src/kernels_neon.c \
    csoftmax/src/kernels_scalar.c csoftmax/src/scalar_masked.c csoftmax/src/dispatch.c \
    -o "$out/test_kernels" -lm
echo "built for aarch64 in $((SECONDS - t)) s"
t=$SECONDS
env -u CSOFTMAX_ISA "$QEMU" "$out/test_kernels"
for req in scalar neon avx2; do
    CSOFTMAX_ISA=$req "$QEMU" "$out/test_kernels" --dispatch-only
done
echo "tools/neon/run.sh: NEON kernels passed under qemu in $((SECONDS - t)) s"
