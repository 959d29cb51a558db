# Petrel. `make test` runs the tests, `make bench` the benchmark suite.
GO        ?= go
PKGS      := ./...
FUZZTIME  ?= 3s
LONGFUZZ  ?= 60s
# package:FuzzTarget pairs run by `make test` (briefly) and `make fuzz` (long).
FUZZ      := ./codec:FuzzParse ./codec:FuzzRoundTrip ./internal/reliability:FuzzServerStream

.PHONY: all build test vet race full-size fuzz-short fuzz bench gobench lint soak clean

all: build

build:
	$(GO) build $(PKGS)

vet:
	$(GO) vet $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

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
	$(GO) test -count=1 -run 'TestTLSIdleGoroutines|TestTLSManyHandshakes' ./engine/

test: vet race full-size fuzz-short

fuzz:
	$(MAKE) fuzz-short FUZZTIME=$(LONGFUZZ)

gobench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# The benchmark suite: table on stdout, bench-results/results.json, charts.
bench:
	$(GO) run ./bench/cmd/petrel-bench -out bench-results

lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

clean:
	$(GO) clean -testcache

# About 5 minutes of mixed load with random faults against every engine.
soak:
	$(GO) run ./internal/soak -duration 5m -warmup 30s
