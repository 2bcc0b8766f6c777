# lsnode — see README.md
GO       ?= go
BIN      := bin/lsnode
TESTNET  ?= .testnet
NODES    ?= 5
DOMAINS  ?= a.example,b.example
# Packages with concurrency run under the race detector.
RACE_PKGS := ./overlay/... ./lsp/... ./node/... ./cmd/...

.PHONY: build test test-race test-integration run bench lint fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/lsnode

test: lint test-race test-integration

test-race:
	$(GO) test -race -count=1 -timeout 15m $(RACE_PKGS)

# The multi-node testnet tests (20+ nodes, churn) run without -race: under
# the race detector two cores cannot keep two dozen libp2p hosts responsive.
test-integration:
	$(GO) test -count=1 -timeout 15m ./testnet/...

run: build
	@test -f $(TESTNET)/testnet.json || $(BIN) testnet init --dir $(TESTNET) --nodes $(NODES) --domains $(DOMAINS)
	$(BIN) testnet run --dir $(TESTNET)

bench: build
	$(GO) test -run '^$$' -bench BenchmarkOverlay100 -benchtime 1x -timeout 20m ./testnet/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeMessage -fuzztime $(FUZZTIME) ./lsp/
	$(GO) test -run '^$$' -fuzz FuzzCanonical -fuzztime $(FUZZTIME) ./lsp/
	$(GO) test -run '^$$' -fuzz FuzzDecodeGossip -fuzztime $(FUZZTIME) ./overlay/

clean:
	rm -rf bin $(TESTNET)
