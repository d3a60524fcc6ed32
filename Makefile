# infermesh: `make` builds, `make dev` runs a one-node mesh, `make test` runs every test, `make bench` measures.
MAKEFLAGS += --no-print-directory
JOBS ?= 2
PY ?= /usr/bin/python3
FUZZ_SECONDS ?= 10

.PHONY: all build asan fuzz-build bootstrap dev test format-check layers-check unit fuzz integration test-netns browser compat bench format clean

all: build

bootstrap:
	@scripts/bootstrap

build: bootstrap
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j$(JOBS)

asan: bootstrap
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DIM_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j$(JOBS)

fuzz-build: bootstrap
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DIM_FUZZ=ON -DIM_SANITIZE=ON >/dev/null
	@cmake --build build-fuzz -j$(JOBS)

dev: build
	./build/infermesh dev

# Everything CI checks: formatting of the files in .clang-format-checked, unit tests (cmocka, ASan+UBSan), fuzz
# smoke runs, integration tests (pytest, real processes on 127.0.0.1), the dashboard in Chromium, and the
# official openai client against the dev mesh.
test: format-check layers-check unit fuzz integration test-netns browser

format-check:
	@scripts/check-format

# No file includes a header of a layer above its own (DESIGN §2).
layers-check:
	@scripts/check-layers

unit: asan
	@cd build-asan && ctest --output-on-failure --timeout 120

fuzz: fuzz-build
	@scripts/run-fuzzers build-fuzz $(FUZZ_SECONDS)

integration: asan
	@INFERMESH_BIN=$(CURDIR)/build-asan/infermesh $(PY) -m pytest -q -p no:cacheprovider tests/integration

# Multi-host membership tests: agents in network namespaces on a bridge (needs root; skips otherwise).
test-netns: asan
	@INFERMESH_BIN=$(CURDIR)/build-asan/infermesh $(PY) -m pytest -q -s -rs -p no:cacheprovider tests/netns

# The dashboard in Debian's Chromium (playwright-core) against `infermesh dev --nodes 3`; screenshots go to a
# temporary folder the run prints (or INFERMESH_ARTIFACTS).
browser: asan
	@INFERMESH_BIN=$(CURDIR)/build-asan/infermesh node --test tests/browser/

bench: build
	@bench/proxy.sh

# Formats the files listed in .clang-format-checked (the whole tree is not formatted: see that file).
format:
	@clang-format -i $$(grep -v '^\(#\|$$\)' .clang-format-checked)

clean:
	rm -rf build build-asan build-fuzz
