.PHONY: help test vet workflowcheck

GO ?= go

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

vet: ## go vet every package
	$(GO) vet ./...

workflowcheck: ## check workflow code for non-determinism
	$(GO) tool workflowcheck ./workflows/...

test: vet workflowcheck ## vet, workflowcheck and every test with -race
	$(GO) test -race -count=1 ./...
