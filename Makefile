# Thin wrapper over CMake. `make` builds build/cdc.so.
BUILD ?= build
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

# Multi-process soak with SIGKILLs and a full audit (tests/soak/soak.cc).
.PHONY: soak fuzz fuzz-smoke
DURATION ?= 600
soak: all
	$(BUILD)/tests/cdc_soak --ext $(BUILD)/cdc --seconds $(DURATION)

# libFuzzer targets (tests/fuzz/, clang + libclang-rt-14-dev): long runs,
# and the short run CI uses (also ctest: fuzz.smoke).
FUZZ_SECONDS ?= 600
fuzz:
	tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS)
fuzz-smoke:
	tests/fuzz/run.sh $(BUILD)/fuzz 25
