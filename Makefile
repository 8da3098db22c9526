# Thin wrapper over CMake. `make run` builds and starts a single-node server;
# `make test` runs the whole suite (gcc release build with the lint checks,
# clang ASan+UBSan build, clang TSan build of the threaded modules' tests);
# `make format` rewrites the C files with .clang-format.
JOBS ?= $(shell nproc)
BUILD ?= build
GEN := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: all deps build install run test test-release test-asan test-tsan format lint sim-soak wsim-soak \
	nemesis fuzz clean bench bench-reliability bench-redis bench-tls

all: build

deps:
	@scripts/deps.sh

$(BUILD)/.configured: CMakeLists.txt
	cmake -S . -B $(BUILD) $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@touch $@

build: deps $(BUILD)/.configured
	cmake --build $(BUILD) -j $(JOBS)

# Installs libstcache-raft (shared + static), include/stcache/*.h and
# lib/pkgconfig/stcache-raft.pc under $(PREFIX); DESTDIR stages the tree.
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

# The single node, with the Redis protocol on 127.0.0.1:6379 unless that
# port is taken (docs/REDIS.md). --bootstrap is ignored on a restart.
run: build
	@if python3 -c 'import socket; socket.socket().bind(("127.0.0.1", 6379))' 2>/dev/null; then \
	  $(BUILD)/stcache server --bootstrap --redis 127.0.0.1:6379; \
	else \
	  echo "make run: 127.0.0.1:6379 is taken: starting without the Redis protocol"; \
	  $(BUILD)/stcache server; \
	fi

build-asan/.configured: CMakeLists.txt
	CC=clang cmake -S . -B build-asan $(GEN) -DCMAKE_BUILD_TYPE=Debug -DSTCACHE_SANITIZE=ON >/dev/null
	@touch $@

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: deps build-asan/.configured
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ST_SANITIZED=1 ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer: only the tests of the modules that run threads (the WAL
# writer and spare-segment threads, snapshot jobs on the libuv threadpool, and
# the test servers run on a second thread), so only their targets are built.
TSAN_MODULES := storage node http cli
TSAN_TARGETS := $(foreach m,$(TSAN_MODULES),$(patsubst tests/unit/$(m)/%.c,$(m)_%,\
	$(wildcard tests/unit/$(m)/test_*.c)))
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer

build-tsan/.configured: CMakeLists.txt
	CC=clang cmake -S . -B build-tsan $(GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_FLAGS="$(TSAN_FLAGS)" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null
	@touch $@

test-tsan: deps build-tsan/.configured
	cmake --build build-tsan -j $(JOBS) --target $(TSAN_TARGETS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ST_SANITIZED=1 \
	  ctest --output-on-failure -j $(JOBS) -R '^unit/($(subst $() ,|,$(TSAN_MODULES)))/'

test: test-release test-asan test-tsan

# The lint checks alone (they also run in test-release).
lint: build
	cd $(BUILD) && ctest --output-on-failure -R '^lint/'

format:
	scripts/check_format.sh --fix

sim-soak: build
	$(BUILD)/tests/sim/raft_sim --seeds 1000000 --steps 3000

# The whole-server simulator's soak (docs/TESTING.md): WSIM_SEEDS seeds from
# WSIM_SEED, each 20 s of faults and 5 s of quiet in simulated time.
# WSIM_FLAGS=--more-faults adds a full disk, failing syncs, exhausted
# descriptors and double crashes to the fault mix. WSIM_JOBS processes take
# chunks of 1000 seeds in turn (scripts/wsim_soak.sh; logs in
# /tmp/stcache-wsim).
WSIM_SEEDS ?= 10000
WSIM_SEED ?= 1000001
WSIM_FLAGS ?=
WSIM_JOBS ?= $(JOBS)
wsim-soak: build
	scripts/wsim_soak.sh $(BUILD)/tests/wsim/wsim $(WSIM_JOBS) $(WSIM_SEED) $(WSIM_SEEDS) $(WSIM_FLAGS)

# The nemesis soak (tests/nemesis/README.md): RUNS seeded runs of DURATION
# seconds of faults each, from SEED; MIX picks fault kinds; NEMESIS_JOBS runs
# at once (each in its own network; a failure does not stop the others);
# NEMESIS_ARGS adds flags (--tls: the cluster secured with TLS). Needs root.
NEMESIS_JOBS ?= 1
RUNS ?= 10
DURATION ?= 60
SEED ?= 1
MIX ?= all
# More nemesis.py flags: --tls, --power-loss SHIM, --reads lease...
NEMESIS_ARGS ?=
# Every libFuzzer driver for FUZZ_SECONDS each (clang; build-fuzz/), from
# copies of the seed corpora under /tmp/stcache-fuzz; prints executions per
# driver and fails on any finding. CI runs the same targets as smoke tests.
# FUZZ_FLAGS (environment) adds libFuzzer flags; default -entropic=0.
FUZZ_SECONDS ?= 60
FUZZ_ONLY ?= .
fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS) '$(FUZZ_ONLY)'

nemesis: build
	python3 tests/nemesis/nemesis.py $(BUILD)/stcache --seed $(SEED) --runs $(RUNS) \
	    --duration $(DURATION) --mix $(MIX) --jobs $(NEMESIS_JOBS) $(NEMESIS_ARGS)

bench: build
	scripts/deps.sh --bench
	bench/run.sh

# TLS on both ports (issue 16): stcache with and without it, and etcd with
# it, side by side at 128 connections (docs/BENCHMARKS.md).
bench-tls: build
	scripts/deps.sh --bench
	bench/run.sh --systems stcache,stcache+tls,etcd+tls --only '^write c128 leader$$' \
	    --skip-big --rounds 2 --duration 8

# stcache's Redis protocol against redis-server (appendfsync always and
# everysec), both driven by redis-benchmark (docs/BENCHMARKS.md).
bench-redis: build
	python3 bench/redis/bench.py --stcache $(BUILD)/stcache --floor $(BUILD)/bench/cluster/floor

# The cost of --auth: write c128 leader with auth on and off, alternating
# (docs/BENCHMARKS.md, "Authentication").
bench-auth: build
	python3 bench/cluster/auth_cost.py $(BUILD)/stcache

# Issue 14's figures (printed, never asserted): loop stalls around a 1 GiB
# snapshot, restart time against WAL size, throughput with eviction.
bench-reliability: build
	scripts/deps.sh --bench
	python3 bench/reliability/snapshot_stall.py --stcache $(BUILD)/stcache --mib 1024 --value-kib 4
	python3 bench/reliability/restart_time.py --stcache $(BUILD)/stcache
	python3 bench/reliability/big_values_rss.py --stcache $(BUILD)/stcache --gib 10
	bench/cluster/eviction.sh

clean:
	rm -rf $(BUILD) build-asan build-tsan
