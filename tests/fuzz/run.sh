#!/bin/sh
# run.sh BUILD_DIR [SECONDS] — builds the libFuzzer targets with clang into
# BUILD_DIR (incrementally) and runs each for SECONDS (default 25), keeping
# its corpus in BUILD_DIR/corpus/TARGET. Prints one line per target with the
# number of inputs tried; on a finding prints the tail of libFuzzer's log
# and the reproducer path, and exits 1. Inputs in regressions/TARGET-* (past
# findings) are replayed first. Needs clang++ and libclang-rt-14-dev.
set -eu
src=$(cd "$(dirname "$0")" && pwd)
build=$1
secs=${2:-25}
cxx=${CLANGXX:-clang++}
cc=${CLANGCC:-clang}
mkdir -p "$build"
cmake -S "$src" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j "${JOBS:-2}" >"$build/build.log" 2>&1 || { tail -40 "$build/build.log"; exit 1; }
status=0
for t in fuzz_schema fuzz_args; do
  corpus="$build/corpus/$t"
  mkdir -p "$corpus"
  log="$build/$t.log"
  # Inputs that once failed stay in the suite.
  for f in "$src/regressions/$t"-*; do
    [ -e "$f" ] || continue
    if ! "$build/$t" "$f" >"$log" 2>&1; then
      echo "$t: regression input $f fails"
      tail -30 "$log"
      status=1
    fi
  done
  # A fixed seed (FUZZ_SEED) makes a short run try the same inputs each time.
  if "$build/$t" -seed="${FUZZ_SEED:-1}" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -len_control=0 -max_len=1024 -print_final_stats=1 \
       -artifact_prefix="$build/$t-" "$corpus" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    size=$(ls "$corpus" | wc -l)
    echo "$t: $runs inputs in ${secs} s, corpus $size, no findings"
  else
    echo "$t: FINDING"
    tail -60 "$log"
    ls "$build/$t-"* 2>/dev/null || true
    status=1
  fi
done
exit $status
