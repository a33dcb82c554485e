# FunctionHost — `make run` starts the emulator, `make test` runs every test.
SWIFT        ?= swift
PORT         ?= 7071
# Debian packages the build, the tests and the benchmark need; installed when missing.
BUILD_PACKAGES := libhiredis-dev pkg-config
BENCH_PACKAGES := wrk curl

.PHONY: run build release test bench package clean deps

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

## Every test: unit, in-process HTTP, and end-to-end against the real fnhost binary.
test: deps
	@python3 -c "import openapi_spec_validator" 2>/dev/null || python3 -m pip install -q openapi-spec-validator
	@command -v schemathesis >/dev/null || python3 -m pip install -q schemathesis
	$(SWIFT) build --build-tests
	FNHOST_BIN=$(CURDIR)/.build/debug/fnhost scripts/with-services.sh $(SWIFT) test

## Throughput and latency on loopback with wrk (release build); see docs/benchmarks.md.
bench: release
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)
	scripts/with-services.sh scripts/bench.sh .build/release/fnhost

## Azure deployment layout in dist/: host.json, NAME/function.json, fnhost (Swift stdlib linked statically).
package: deps
	$(SWIFT) build -c release --static-swift-stdlib --product fnhost
	.build/release/fnhost package --out dist --force
	strip dist/fnhost

clean:
	$(SWIFT) package clean
