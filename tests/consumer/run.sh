#!/usr/bin/env bash
# run.sh <zmesh-build-dir> <consumer-source-dir> <work-dir>
set -euo pipefail
build=$1 src=$2 work=$3
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null

echo "== find_package(zmesh)"
cmake -S "$src" -B "$work/cmake-build" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
"$work/cmake-build/consumer"

echo "== pkg-config zmesh"
pcdir=$(dirname "$(find "$work/prefix" -name zmesh.pc | head -n1)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs zmesh)
echo "pkg-config: $flags"
# shellcheck disable=SC2086
g++ "$src/main.cpp" -o "$work/consumer-pc" $flags
"$work/consumer-pc"
