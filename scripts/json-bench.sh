#!/usr/bin/env bash
# Hostile JSON shapes through the reader, release build; prints a Markdown table (docs/benchmarks.md).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out="$repo/.build/json-bench"
mkdir -p "$out"
(cd "$repo" && swiftc -swift-version 6 -O -parse-as-library -module-name JSONBench \
  Runtime/Support/JSONReader.swift Runtime/Support/JSONValue.swift Runtime/Support/JSONWriter.swift \
  Tests/Bench/JSONBenchMain.swift -o "$out/json-bench")
"$out/json-bench"
