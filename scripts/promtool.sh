#!/usr/bin/env bash
# Checks and unit-tests the alert rules with promtool (from Debian's prometheus package,
# extracted under .build/prometheus — nothing installed, no service started).
#   scripts/promtool.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  promtool="$repo/.build/prometheus/usr/bin/promtool"
  if [ ! -x "$promtool" ]; then
    mkdir -p "$repo/.build/prometheus"
    (cd "$repo/.build/prometheus" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get download prometheus >/dev/null; }; } \
      && dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb)
  fi
fi
"$promtool" check rules "$repo/ops/prometheus/alerts.yml"
(cd "$repo/ops/prometheus" && "$promtool" test rules alerts_test.yml)
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"], "no panels"' "$repo/ops/grafana/fnhost.json"
