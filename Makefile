# Thin wrapper over CMake. `make` builds build/cdc.so.
BUILD ?= build
comma := ,
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all test demo bench clean sanitize tsan

all: $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

demo: all
	@sql/demo.sh $(BUILD)/cdc

# Benchmarks: a separate Release build (build-bench), then one markdown table
# of capture-overhead ratios. CDC_BENCH_QUICK=1 for a smoke run.
BENCH_BUILD ?= build-bench
bench:
	@cmake -S . -B $(BENCH_BUILD) -DCMAKE_BUILD_TYPE=Release -DCDC_BUILD_BENCH=ON -DCDC_BUILD_TESTS=OFF >/dev/null
	@cmake --build $(BENCH_BUILD) -j $(JOBS) >&2
	@python3 bench/report.py $(BENCH_BUILD)/bench/cdc_bench

clean:
	rm -rf $(BUILD) build-*

# Sanitizer runs of the whole suite (separate build dirs; the test binaries,
# helper programs and cdc.so are all instrumented). Tests that load cdc.so
# into uninstrumented programs (the sqlite3 shell, python) get the sanitizer
# runtime by LD_PRELOAD; their own leaks (python, bash) are not ours, so the
# sql./docs./demo. tests run without leak detection, the GoogleTest suite with
# it. The soak (label soak) is left out: it has its own target.
SAN_PRELOAD_address,undefined = $(shell $(CXX) -print-file-name=libasan.so)
SAN_PRELOAD_thread = $(shell $(CXX) -print-file-name=libtsan.so)
define run_sanitized
	@cmake -S . -B $(1) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCDC_SANITIZE=$(2) >/dev/null
	@cmake --build $(1) -j $(JOBS)
	cd $(1) && LD_PRELOAD=$(SAN_PRELOAD_$(2)) ASAN_OPTIONS=detect_leaks=1 TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
	  ctest --output-on-failure -j $(JOBS) -LE soak -E '^(sql|docs|demo)\.'
	cd $(1) && LD_PRELOAD=$(SAN_PRELOAD_$(2)) ASAN_OPTIONS=detect_leaks=0 TSAN_OPTIONS="report_bugs=0" \
	  ctest --output-on-failure -j $(JOBS) -R '^(sql|docs|demo)\.'
endef

sanitize:
	$(call run_sanitized,build-asan,address$(comma)undefined)

tsan:
	$(call run_sanitized,build-tsan,thread)

# Multi-process soak with SIGKILLs and a full audit (tests/soak/soak.cc).
DURATION ?= 600
soak: all
	$(BUILD)/tests/cdc_soak --ext $(BUILD)/cdc --seconds $(DURATION)
