# FunctionHost — `make run` starts the emulator, `make test` runs every test.
SWIFT        ?= swift
PORT         ?= 7071
# Debian packages the build, the tests and the benchmark need; installed when missing.
BUILD_PACKAGES := pkg-config python3-venv
# Python tools for the tests (openapi-spec-validator, schemathesis) live in a venv, never the system Python.
VENV         := .build/venv
BENCH_PACKAGES := wrk curl

.PHONY: run watch build release test bench profile package clean deps venv fuzz coverage

deps:
	@scripts/ensure-packages.sh $(BUILD_PACKAGES)

build: deps
	$(SWIFT) build --product fnhost

release: deps
	$(SWIFT) build -c release --product fnhost

## Start the local emulator (like `func start`) on embedded defaults.
run: build
	@[ -f local.settings.json ] || cp local.settings.example local.settings.json
	.build/debug/fnhost start --port $(PORT)

watch: build
	@[ -f local.settings.json ] || cp local.settings.example local.settings.json
	.build/debug/fnhost start --watch --port $(PORT)

## Every test: unit, in-process HTTP, and end-to-end against the real fnhost binary.
## At most TEST_WIDTH tests at once (Swift Testing runs every test in parallel otherwise: on two cores
## 288 tests with their own servers starve each other past the timing bounds the outage tests keep).
TEST_WIDTH ?= 8
test: deps venv
	$(SWIFT) build --build-tests
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" FNHOST_BIN=$(CURDIR)/.build/debug/fnhost \
	  scripts/with-services.sh $(SWIFT) test --experimental-maximum-parallelization-width $(TEST_WIDTH)
	scripts/fuzz.sh 4
	scripts/promtool.sh

venv:
	@[ -x $(VENV)/bin/schemathesis ] && $(VENV)/bin/python -c "import openapi_spec_validator" 2>/dev/null || \
	  { python3 -m venv $(VENV) && $(VENV)/bin/pip install -q --disable-pip-version-check openapi-spec-validator schemathesis; }

## Line coverage of Runtime/ and Functions/ (llvm-cov report; fails below 95 %, COVERAGE_MIN=N to change).
coverage: deps venv
	scripts/coverage.sh

## libFuzzer over every parser of outside input, 60 s per target (FUZZ_SECONDS=N to change).
fuzz:
	scripts/fuzz.sh $(or $(FUZZ_SECONDS),60)

## Throughput and latency on loopback with wrk (release build); see docs/benchmarks.md.
bench: release
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)
	BENCH_JSON=$(CURDIR)/.build/bench.jsonl scripts/with-services.sh scripts/bench.sh .build/release/fnhost
	scripts/json-bench.sh

## perf profile of the authenticated listing under wrk (release build): CPU and context switches per request,
## the report by library and by symbol (PROFILE_OUT=DIR keeps perf.data, PROFILE_URL=PATH profiles another path).
profile: release
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)
	scripts/with-services.sh scripts/profile.sh .build/release/fnhost

## Azure deployment layout in dist/ (host.json, NAME/function.json, fnhost with the Swift stdlib linked
## statically, stripped) and the same as dist.zip, the one package Flex Consumption deploys (fnhost stays executable).
package: deps
	$(SWIFT) build -c release --static-swift-stdlib --product fnhost
	cp .build/release/fnhost .build/release/fnhost-deploy && strip .build/release/fnhost-deploy
	.build/release/fnhost package --out dist --force --binary .build/release/fnhost-deploy --zip dist.zip

clean:
	$(SWIFT) package clean
