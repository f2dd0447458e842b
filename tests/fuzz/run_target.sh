#!/usr/bin/env bash
# run_target.sh <fuzzer> <seed-corpus-dir> <work-dir> — runs one libFuzzer target (the ctest
# entry fuzz.<name>) for $ZMESH_FUZZ_SECONDS (default 10) on a fresh copy of its seed corpus,
# so the committed seeds are never changed. Exit 0 if nothing was found; otherwise non-zero,
# with the path of each input that crashed, leaked, timed out or made a sanitizer report.
set -uo pipefail
fuzzer=$1 seeds=$2 work=$3
seconds=${ZMESH_FUZZ_SECONDS:-10}
name=$(basename "$fuzzer")

rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
[ -d "$seeds" ] && cp -R "$seeds/." "$work/corpus/"
dict=$(dirname "$seeds")/../dict/${name#fuzz_}.dict
dict_arg=()
[ -f "$dict" ] && dict_arg=(-dict="$dict")

# libFuzzer reports leaks (ASan's LeakSanitizer) per input; libzmq's own rare leak is
# suppressed as in scripts/test --sanitize.
root=$(cd "$(dirname "$0")/../.." && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/scripts/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# -timeout: one input running 10 s is a hang; -rss_limit_mb: the decoders bound their memory,
# so 2 GB is a finding. The outer timeout only guards against libFuzzer itself hanging.
timeout --signal=KILL $((seconds + 120)) \
    "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "${dict_arg[@]}" "$work/corpus" >"$work/log" 2>&1
status=$?
tail -n 12 "$work/log"
if [ $status -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
    echo "$name: FAILED (exit $status); full log: $work/log"
    for f in "$work"/artifacts/*; do
        [ -e "$f" ] && echo "$name: finding: $f  (reproduce: $fuzzer $f)"
    done
    exit 1
fi
echo "$name: ok, ${seconds} s, $(ls "$work/corpus" | wc -l) inputs in the corpus"
