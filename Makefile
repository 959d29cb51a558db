# Petrel. `make test` runs the tests, `make bench` the benchmark suite.
#
# The repository holds several modules: the core (the root: codec, engine,
# client, examples, internal) and nested ones that keep heavy dependencies
# out of it. Every target runs in each module with GOWORK=off, so that each
# builds from its own go.mod and go.sum as it does for a user; the nested
# modules reach the core in this checkout through their replace directive.
# go.work is for working by hand from the root (`go run ./bench/cmd/...`).
GO        ?= go
MODULES   := . bench engine/petrelprom engine/petrelotel
FUZZTIME  ?= 3s
LONGFUZZ  ?= 60s
# Directory:FuzzTarget pairs (directories from the root) run by `make test`
# (briefly) and `make fuzz` (long), each in the module that holds it.
FUZZ      := ./codec:FuzzParse ./codec:FuzzRoundTrip ./codec:FuzzParseV1 ./codec:FuzzRoundTripV1 \
	./codec:FuzzProtoCheck ./internal/reliability:FuzzServerStream
# The interop tests against the classic Petrel: a module of their own whose
# replace directive points at the peer's source beside the repository.
INTEROP      := internal/interop
INTEROP_PEER := ../shared/peers/firepear-petrel-v0.40.0
# Platforms the core's portable packages must build and vet on.
CROSS      := darwin/arm64 freebsd/amd64 windows/amd64
CROSS_PKGS := ./codec/... ./client/... ./engine ./internal/netaddr ./internal/frameio
# Packages known not to build on a platform yet, as PLATFORM=PKG,PKG: their
# failure is reported and tolerated (.ci/cross). The engine's reactor needs
# build tags before it builds on Windows and unix.Writev before FreeBSD;
# client's tests import the engine, so vet of client fails with it.
CROSS_PENDING := freebsd/amd64=./engine,./client,./client/cmd/petrel \
	windows/amd64=./engine,./client,./client/cmd/petrel
# Extra flags for `make bench`, such as BENCHFLAGS=-full.
BENCHFLAGS ?=
ALL_MODULES = $(MODULES) $(if $(and $(wildcard $(INTEROP)/go.mod),$(wildcard $(INTEROP_PEER))),$(INTEROP))
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

# $(call each,ARGS): run `go ARGS` in every module; fail after all of them
# ran if any failed.
each = @rc=0; for m in $(MODULES); do \
		echo "== $$m: go $(1)"; \
		(cd $$m && GOWORK=off $(GO) $(1)) || { rc=1; echo "== $$m: go $(1): FAILED"; }; \
	done; exit $$rc

.PHONY: all build test vet race full-size fuzz-short fuzz cross interop modcheck \
	modules download bench gobench lint soak clean

all: build

build:
	$(call each,build ./...)

vet:
	$(call each,vet ./...)

race:
	$(call each,test -race -count=1 -timeout 8m ./...)

fuzz-short:
	@set -e; for t in $(FUZZ); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		./.ci/fuzz $$pkg $$name $(FUZZTIME); \
	done

# Load tests that the race detector would slow tenfold (and so scale down)
# run again at full size without it: 2,000 idle TLS connections, 500
# concurrent handshakes.
full-size:
	GOWORK=off $(GO) test -count=1 -run 'TestTLSIdleGoroutines|TestTLSManyHandshakes' ./engine/

cross:
	./.ci/cross "$(CROSS)" "$(CROSS_PKGS)" "$(CROSS_PENDING)"

# Runs only where both the interop module and the classic Petrel's source
# are present.
interop:
	@if [ ! -f $(INTEROP)/go.mod ]; then \
		echo "skipping interop: $(INTEROP)/go.mod not present"; \
	elif [ ! -d $(INTEROP_PEER) ]; then \
		echo "skipping interop: $(INTEROP_PEER) not present"; \
	else \
		echo "== $(INTEROP): go test -race"; \
		cd $(INTEROP) && GOWORK=off $(GO) test -race -count=1 ./...; \
	fi

# Every module's go.mod and go.sum are tidy, and the core module depends on
# none of the heavy modules that the nested ones exist to hold.
modcheck:
	$(call each,mod tidy -diff)
	@heavy=$$(GOWORK=off $(GO) mod graph | grep -Ei 'grpc|gonum|hdrhist|progressbar|prometheus|opentelemetry' || true); \
	if [ -n "$$heavy" ]; then \
		echo "the core module's graph holds a heavy dependency:"; echo "$$heavy"; exit 1; \
	fi; echo "core module graph: $$(GOWORK=off $(GO) mod graph | wc -l) edges, no heavy dependency"

test: modcheck vet race full-size fuzz-short cross interop

fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(LONGFUZZ)

# The modules' directories, and the interop module's when it runs (.ci/run).
modules:
	@echo $(ALL_MODULES)

download:
	@set -e; for m in $(ALL_MODULES); do \
		echo "== $$m: go mod download"; (cd $$m && GOWORK=off $(GO) mod download); \
	done

gobench:
	$(call each,test -run '^$$' -bench . -benchmem ./...)

# The benchmark suite: table on stdout, bench-results/results.json, charts.
bench:
	cd bench && GOWORK=off $(GO) run ./cmd/petrel-bench -out $(CURDIR)/bench-results $(BENCHFLAGS)

lint: vet
	$(call each,run $(STATICCHECK) ./...)

clean:
	$(GO) clean -testcache

# About 5 minutes of mixed load with random faults against every engine.
soak:
	GOWORK=off $(GO) run ./internal/soak -duration 5m -warmup 30s
