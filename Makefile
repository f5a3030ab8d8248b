.PHONY: help run test bench-scale lint fmt-check tidy-check vet staticcheck workflowcheck build worker dev-server migrate bench cluster cluster-stop test-cluster

GO ?= go
# The Temporal CLI (dev server + operator commands), built from the Go module
# proxy so nothing has to be installed by hand.
TEMPORAL_CLI_VERSION := v1.5.1
TEMPORAL := bin/temporal
# The Temporal server of `make cluster`: the newest that builds with our Go.
# docker-compose.yml runs the same version (a test checks that).
TEMPORAL_SERVER_VERSION := v1.30.4
TEMPORAL_UI_SERVER_VERSION := v2.42.1
CLUSTER_BIN := bin/cluster-$(TEMPORAL_SERVER_VERSION)
CLUSTER_ADDRESS := 127.0.0.1:7633

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

run: $(TEMPORAL) build ## the whole system and a demo rollout on a compressed clock (Ctrl-C stops it)
	scripts/run-demo.sh

test: lint $(TEMPORAL) ## the lint gate, then every test with -race
	$(GO) test -race -count=1 ./...

# The bench's dev servers write a database file, as make dev-server runs one
# (SVCUPDATE_TEST_DEV_SERVER_DB=memory measures in-memory servers instead).
bench-scale: $(TEMPORAL) ## BENCH_INSTANCES (default 10000) through a rollout on a fresh dev server, with the raw start rate beside it (not part of make test)
	SVCUPDATE_TEST_DEV_SERVER_DB=$${SVCUPDATE_TEST_DEV_SERVER_DB:-file} $(GO) test -tags benchscale -run '^TestScale$$' -count=1 -timeout 2h -v ./e2e/

lint: fmt-check tidy-check vet staticcheck workflowcheck ## gofmt, go mod tidy, vet, staticcheck and workflowcheck must all be clean

fmt-check: ## fail when gofmt would change a file
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

tidy-check: ## fail when go.mod or go.sum is not tidy
	$(GO) mod tidy -diff

vet: ## go vet every package (with the tests of make test-cluster)
	$(GO) vet -tags cluster ./...

staticcheck: ## staticcheck every package
	$(GO) tool staticcheck -tags cluster ./...

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

cluster: $(TEMPORAL) build $(CLUSTER_BIN)/server $(CLUSTER_BIN)/ui/server ## a Temporal cluster on the local Postgres: frontend, matching, worker, two history hosts, Web UI on :8633
	CLUSTER_BIN=$(CLUSTER_BIN) scripts/cluster.sh start

cluster-stop: ## stop the processes of make cluster
	CLUSTER_BIN=$(CLUSTER_BIN) scripts/cluster.sh stop

# The worker fault campaign stays with make test: it kills workers, not
# servers, and its one-minute windows leave no room for a loaded machine
# running a whole cluster beside it.
#
# The history host kill runs last, on its own: the killed host's shards move
# back to it when it restarts, and a test whose timers are seconds apart must
# not run on a cluster that is still settling. When a run fails, the shard
# moves of the history hosts are printed beside it.
CLUSTER_TEST := SVCUPDATE_TEST_TEMPORAL_ADDRESS=$(CLUSTER_ADDRESS) CLUSTER_BIN=$(CURDIR)/$(CLUSTER_BIN) \
	$(GO) test -race -count=1 -tags cluster
HOST_KILL_TEST := ^TestHistoryHostKilledMidLifecycle$$
test-cluster: cluster ## the end-to-end suite against make cluster, then a history host killed mid-lifecycle; stops the cluster after
	$(CLUSTER_TEST) -timeout 40m -skip '^TestFaultCampaign$$|$(HOST_KILL_TEST)' ./e2e/; suite=$$?; \
		$(CLUSTER_TEST) -timeout 10m -run '$(HOST_KILL_TEST)' ./e2e/; kill=$$?; \
		if [ $$suite -ne 0 ] || [ $$kill -ne 0 ]; then echo "shard moves of the history hosts:"; scripts/cluster.sh shards; fi; \
		CLUSTER_BIN=$(CLUSTER_BIN) scripts/cluster.sh stop; [ $$suite -eq 0 ] && [ $$kill -eq 0 ]

bench: $(TEMPORAL) ## run every benchmark
	$(GO) test -run '^$$' -bench . ./...

# The server and its SQL schema tool (bin/.../sql), from the module proxy.
$(CLUSTER_BIN)/server:
	GOBIN=$(CURDIR)/$(CLUSTER_BIN) $(GO) install go.temporal.io/server/cmd/server@$(TEMPORAL_SERVER_VERSION) go.temporal.io/server/cmd/tools/sql@$(TEMPORAL_SERVER_VERSION)

# The Web UI server, with the UI built in.
$(CLUSTER_BIN)/ui/server:
	GOBIN=$(CURDIR)/$(CLUSTER_BIN)/ui $(GO) install github.com/temporalio/ui-server/v2/cmd/server@$(TEMPORAL_UI_SERVER_VERSION)

$(TEMPORAL):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)
