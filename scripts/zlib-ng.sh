#!/usr/bin/env bash
# Builds zlib-ng as a drop-in libz.so.1 (its zlib-compat mode) into DEST, for LD_PRELOAD in `make run`
# and the CPU image. Usage: scripts/zlib-ng.sh DEST [PYTHON].
#
# Why: Pillow's Linux wheels are built against zlib-ng but load the system's libz.so.1 (the manylinux
# policy lets a wheel rely on it): zlib 1.2.13 on Debian 12, which neither Debian 12 nor 13 replaces.
# That zlib inflated an A4 page's PNG in 26 ms, zlib-ng in 1.4, and Pillow's whole decode of the page
# went from 36 to 12 ms (BENCHMARKS.md). zlib-ng's compat build is the system zlib of Fedora 40 on.
# It dispatches on the CPU at run time, so a library built on one x86-64 machine runs on any.
set -euo pipefail
mkdir -p "$1"
dest=$(cd "$1" && pwd)  # absolute: the build runs in a directory of its own
python=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary :all: --require-hashes -r "$here/zlib-ng.txt" -d "$work"
tar xzf "$work"/zlib_ng-*.tar.gz -C "$work"
cd "$work"/zlib_ng-*/src/zlib_ng/zlib-ng
./configure --zlib-compat >/dev/null
make -s -j"$(nproc)" shared >/dev/null
cp -L libz.so.1 "$dest/libz.so.1.tmp"
mv "$dest/libz.so.1.tmp" "$dest/libz.so.1"
echo "built $(grep -m1 -o 'ZLIBNG_VERSION "[^"]*"' zlib.h) (zlib-compat) into $dest" >&2
