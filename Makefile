# Parachute gateway: build and test. `make test` on a fresh machine installs
# what the tests need (test/deps/*.sh, as root) and runs every check CI runs.
GO       ?= go
OPA      := $(GO) tool opa
BIN      := bin/parachute
COVERAGE := 90
# goolm: mautrix's pure-Go olm, so Matrix end-to-end encryption builds
# without cgo (a build without it refuses encryption: true).
TAGS     := goolm

.PHONY: all build deps lint test test-go test-policies bench bench-load run stop clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -tags $(TAGS) -trimpath -o $(BIN) ./cmd/parachute

deps:
	@for f in test/deps/*.sh; do bash "$$f" || exit 1; done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TAGS) ./...
	$(OPA) fmt --fail -l policies/
	$(OPA) check --strict policies/

test-policies:
	$(OPA) test policies/
	@$(OPA) test policies/ --coverage --threshold $(COVERAGE) > .policy-coverage.json \
	  || { echo "policy coverage below $(COVERAGE)%:"; grep -E '"coverage"' .policy-coverage.json | tail -1; exit 1; }
	@echo "policy coverage: $$(grep -E '"coverage"' .policy-coverage.json | tail -1 | tr -dc '0-9.')% (threshold $(COVERAGE)%)"

test-go:
	$(GO) test -tags $(TAGS) -count=1 -timeout 30m ./...

test: deps lint test-policies test-go

bench:
	$(GO) test -tags $(TAGS) -run '^$$' -bench . -benchmem ./...

# bench-load: the load ladder (test/load): a real gateway on a private
# containerd, N users at once on the local connector, each one /write and
# five /cat, for each N of LADDER. Minutes per rung; needs root.
LADDER        ?= 50,100,200
WARM_POOL     ?= 1
WARM_POOL_MAX ?= 0
RAMP          ?= 0s
bench-load:
	$(GO) test -tags $(TAGS) -run '^$$' -bench LoadLadder -benchtime 1x -timeout 60m ./test/load \
	  -ladder $(LADDER) -warm-pool $(WARM_POOL) -warm-pool-max $(WARM_POOL_MAX) -ramp $(RAMP)

# run: build and serve examples/local.yaml, saying what it is doing (the
# first run fetches and compiles a few minutes); stop: stop that gateway
# and the containerd run started.
run:
	@bash deploy/run-local.sh

stop:
	@bash deploy/run-local.sh stop

clean:
	rm -rf bin test/.state .policy-coverage.json
