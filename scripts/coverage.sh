#!/usr/bin/env bash
# Line coverage of Runtime/ and Functions/ by the whole test suite (make coverage).
# Builds with coverage into its own scratch folder (.build-coverage, so the normal build stays warm),
# runs every test against throwaway Postgres and Redis, then prints llvm-cov's report for our
# sources and fails below the bar (COVERAGE_MIN, default 95).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scratch="$repo/.build-coverage"
minimum=${COVERAGE_MIN:-95}
swift build --build-tests --enable-code-coverage --scratch-path "$scratch"
bin=$(swift build --show-bin-path --scratch-path "$scratch")
rm -rf "$bin/codecov"
PATH="$repo/.build/venv/bin:$PATH" FNHOST_BIN="$bin/fnhost" \
  scripts/with-services.sh swift test --skip-build --enable-code-coverage --scratch-path "$scratch" || true
# The toolchain's own LLVM tools: the profile format is the compiler's (Debian's llvm-cov is older).
toolchain=$(dirname "$(readlink -f "$(command -v swift)")")
llvm_cov="$toolchain/llvm-cov"; [ -x "$llvm_cov" ] || llvm_cov=$(command -v llvm-cov)
llvm_profdata="$toolchain/llvm-profdata"; [ -x "$llvm_profdata" ] || llvm_profdata=$(command -v llvm-profdata)
mapfile -d '' profiles < <(find "$bin/codecov" -name '*.profraw' -print0 2>/dev/null)
[ ${#profiles[@]} -gt 0 ] || { echo "coverage: no profiles written" >&2; exit 1; }
"$llvm_profdata" merge -sparse "${profiles[@]}" -o "$bin/codecov/merged.profdata"
sources=$(git ls-files 'Runtime/*.swift' 'Functions/*.swift')
# shellcheck disable=SC2086
"$llvm_cov" report "$bin/FunctionHostPackageTests.xctest" -object "$bin/fnhost" \
  -instr-profile="$bin/codecov/merged.profdata" $sources | tee "$scratch/coverage.txt" | tail -40
percent=$(awk '/^TOTAL/ { print $(NF-3) }' "$scratch/coverage.txt" | tr -d '%')
echo "coverage: line coverage of Runtime/ and Functions/ is ${percent}% (bar: ${minimum}%)"
awk -v p="$percent" -v m="$minimum" 'BEGIN { exit (p + 0 >= m + 0) ? 0 : 1 }'
