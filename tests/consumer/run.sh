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
"$work/cmake-build/consumer_nodes"

echo "== pkg-config zmesh"
pcdir=$(dirname "$(find "$work/prefix" -name zmesh.pc | head -n1)")
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs zmesh)
echo "pkg-config: $flags"
# shellcheck disable=SC2086
g++ "$src/main.cpp" -o "$work/consumer-pc" $flags
"$work/consumer-pc"

echo "== pkg-config zmesh-nodes"
flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs zmesh-nodes)
echo "pkg-config: $flags"
# shellcheck disable=SC2086
g++ "$src/nodes_main.cpp" -o "$work/consumer-nodes-pc" $flags
"$work/consumer-nodes-pc"

echo "== shell completion installed beside bin/zmesh"
test -x "$work/prefix/bin/zmesh"
test -f "$work/prefix/share/bash-completion/completions/zmesh"
test -f "$work/prefix/share/zsh/site-functions/_zmesh"
# The installed bash completion completes subcommands from the installed binary.
got=$(bash -c 'source "$1/share/bash-completion/completions/zmesh"
               COMP_WORDS=("$1/bin/zmesh" bro); COMP_CWORD=1; _zmesh_bash; echo "${COMPREPLY[*]}"' _ "$work/prefix")
[ "$got" = broker ] || { echo "bash completion of 'zmesh bro' gave '$got'" >&2; exit 1; }
