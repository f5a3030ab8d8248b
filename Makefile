.PHONY: help run test bench-scale lint fmt-check tidy-check vet staticcheck workflowcheck build worker dev-server migrate bench

GO ?= go
# The Temporal CLI (dev server + operator commands), built from the Go module
# proxy so nothing has to be installed by hand.
TEMPORAL_CLI_VERSION := v1.5.1
TEMPORAL := bin/temporal

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: $(TEMPORAL) build ## the whole system and a demo rollout on a compressed clock (Ctrl-C stops it)
	scripts/run-demo.sh

test: lint $(TEMPORAL) ## the lint gate, then every test with -race
	$(GO) test -race -count=1 ./...

bench-scale: $(TEMPORAL) ## BENCH_INSTANCES (default 10000) through a rollout on a fresh dev server, with the raw start rate beside it (not part of make test)
	$(GO) test -tags benchscale -run '^TestScale$$' -count=1 -timeout 2h -v ./e2e/

lint: fmt-check tidy-check vet staticcheck workflowcheck ## gofmt, go mod tidy, vet, staticcheck and workflowcheck must all be clean

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

tidy-check: ## fail when go.mod or go.sum is not tidy
	$(GO) mod tidy -diff

vet: ## go vet every package
	$(GO) vet ./...

staticcheck: ## staticcheck every package
	$(GO) tool staticcheck ./...

workflowcheck: ## check workflow code for non-determinism
	$(GO) tool workflowcheck ./workflows/...

build: ## build bin/worker and bin/starter
	$(GO) build -o bin/ ./worker ./starter

worker: build ## run a worker with the configuration in the environment
	bin/worker

dev-server: $(TEMPORAL) ## a Temporal dev server (Web UI on :8233, state in .data/)
	@mkdir -p .data
	$(TEMPORAL) server start-dev --ui-port 8233 --db-filename .data/temporal.db

migrate: build ## create the database at DATABASE_URL if missing and apply the migrations
	bin/starter migrate --create-database

bench: $(TEMPORAL) ## run every benchmark
	$(GO) test -run '^$$' -bench . ./...

$(TEMPORAL):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)
