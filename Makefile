# Interlock: `make test` installs what the tests need (when missing and
# running as root) and runs every test, integration tests included.

GO       ?= go
PKGS     ?= ./...
# Debian packages the test suite and benchmarks use: command:package.
# nginx's stream module (SNI passthrough) is a package of its own.
TEST_DEPS  := chromium:chromium nginx:nginx haproxy:haproxy docker-compose:docker-compose pebble:pebble \
	/usr/lib/nginx/modules/ngx_stream_module.so:libnginx-mod-stream
BENCH_DEPS := wrk:wrk

.PHONY: all build image test deps lint bench bench-go bench-convergence bench-dataplane fuzz clean

all: build

build:
	$(GO) build -o bin/interlock ./cmd/interlock

deps:
	./scripts/deps.sh $(TEST_DEPS)
	./scripts/check-docker.sh
	$(GO) mod download

lint:
	@out=$$(gofmt -l . | grep -v '^testdata/' || true); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

test: deps lint
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# bench runs the parts below one after the other, each even if one before it
# failed, and ends with one table of all their figures (scripts/benchsummary):
# the RUN_BENCH=1 tests append theirs to the file BENCH_SUMMARY (JSON lines), the Go
# benchmarks are read from the saved output. Records, the output of each part
# and the table stay in BENCH_DIR (a new temporary directory unless given).
# It fails when a part failed, after the table. About 10 minutes.
BENCH_PARTS := bench-go bench-convergence bench-dataplane
BENCH_DIR   ?=

bench: deps
	./scripts/deps.sh $(BENCH_DEPS)
	@dir="$(BENCH_DIR)"; [ -n "$$dir" ] || dir=$$(mktemp -d "$${TMPDIR:-/tmp}/interlock-bench.XXXXXX") || exit 1; \
	mkdir -p "$$dir" && dir=$$(cd "$$dir" && pwd) || exit 1; started=$$(date +%s); \
	$(GO) build -o "$$dir/benchsummary" ./scripts/benchsummary || exit 1; \
	BENCH_SUMMARY="$$dir/records.jsonl"; export BENCH_SUMMARY; : > "$$BENCH_SUMMARY"; \
	rc=0; parts=; \
	for p in $(BENCH_PARTS); do \
		{ $(MAKE) --no-print-directory $$p; echo $$? > "$$dir/$$p.rc"; } 2>&1 | tee "$$dir/$$p.log"; \
		s=$$(cat "$$dir/$$p.rc"); [ "$$s" = 0 ] || rc=1; parts="$$parts$${parts:+,}$$p=$$s"; \
	done; \
	echo; "$$dir/benchsummary" -records "$$BENCH_SUMMARY" -started $$started -parts "$$parts" \
		$(foreach p,$(BENCH_PARTS),"$$dir/$(p).log") | tee "$$dir/summary.txt"; \
	echo "(records, each part's output and this table: $$dir)"; \
	exit $$rc

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

bench-convergence:
	RUN_BENCH=1 $(GO) test -count=1 -run 'TestConvergenceBenchmark|TestIdleBenchmark|TestSwarmBenchmark|TestNginxConvergenceBenchmark|TestNginxBurstBenchmark' -v -timeout 20m ./cmd/interlock/

# The data plane of the three drivers under wrk (HTTP, HTTPS, handshakes),
# DATAPLANE_BENCH_DURATION per run (default 4s) in DATAPLANE_BENCH_ROUNDS
# alternating rounds (default 3): about 3 minutes with the defaults, so that
# make bench stays near 10 minutes (bench-go and bench-convergence: 6.5).
bench-dataplane:
	RUN_BENCH=1 $(GO) test -count=1 -run 'TestDataPlaneBenchmark' -v -timeout 30m ./cmd/interlock/

fuzz:
	./scripts/fuzz.sh 20s

# image builds the FROM scratch image "interlock" from a static binary and
# the host's CA bundle: no registry, no build stage.
image:
	mkdir -p build/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o build/image/interlock ./cmd/interlock
	cp /etc/ssl/certs/ca-certificates.crt build/image/
	mkdir -p build/image/state
	printf '%s\n' "Interlock's state directory (--state-dir): the last good table, proxy configurations, ACME files." > build/image/state/README
	docker build -t interlock -f Dockerfile build/image

clean:
	rm -rf bin build
