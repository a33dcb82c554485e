#!/usr/bin/env bash
# libFuzzer over the parsers and writers that read outside input (see Tests/Fuzz/FuzzMain.swift).
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     default: 60 s each, every target
# One binary from the pure source files below (no package dependencies, so it builds in seconds),
# with AddressSanitizer; an input slower than 2 s counts as a failure (-timeout), so does a crash
# or a broken invariant. Corpora and crash files stay under .build/fuzz/.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json csv cursor cron signature token keys resp)
out="$repo/.build/fuzz"
mkdir -p "$out"
sources=(
  Runtime/Support/JSONReader.swift Runtime/Support/JSONValue.swift Runtime/Support/JSONWriter.swift
  Runtime/Support/CacheKey.swift Runtime/Timer/CronSchedule.swift
  Functions/Leads/CSV.swift Functions/Store/CursorText.swift Functions/Webhooks/SignatureHeader.swift
  Functions/Auth/TokenHeader.swift Functions/Auth/Base64URL.swift Functions/Identity/Identifiers.swift
  Functions/Cache/RESP.swift
  Tests/Fuzz/FuzzMain.swift
)
binary="$out/fnhost-fuzz"
newest=$(cd "$repo" && ls -t "${sources[@]}" scripts/fuzz.sh | head -1)
if [ ! -x "$binary" ] || [ "$repo/$newest" -nt "$binary" ]; then
  (cd "$repo" && swiftc -swift-version 6 -O -sanitize=fuzzer,address -parse-as-library -module-name FnhostFuzz \
    "${sources[@]}" -o "$binary" >"$out/build.log" 2>&1) || { grep -v 'ld.gold: warning' "$out/build.log" >&2; exit 1; }
fi
status=0
for target in "${targets[@]}"; do
  corpus="$out/corpus-$target"
  mkdir -p "$corpus" "$out/crashes-$target"
  echo "fuzz: $target for ${seconds}s" >&2
  if ! FNHOST_FUZZ_TARGET="$target" "$binary" "$corpus" -max_total_time="$seconds" -timeout=2 -rss_limit_mb=2048 \
      -max_len=65536 -artifact_prefix="$out/crashes-$target/" -print_final_stats=0 >"$out/$target.log" 2>&1; then
    echo "fuzz: $target FAILED (see $out/$target.log and $out/crashes-$target/)" >&2
    tail -30 "$out/$target.log" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "fuzz: ${#targets[@]} targets, no crash, no slow input" >&2
exit $status
