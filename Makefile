# Boxoffice: `make run` starts everything and prints the URL; `make test` runs every test
# against a real PostgreSQL and a real Kafka-protocol broker. Both start what they need.

GO       ?= go
BIN      := bin/boxoffice
TESTARGS ?=

.PHONY: run test chaos build generate check postgres postgres-stop chromium clean

KILLS ?= 50

run: build postgres ## start every part in one process (embedded Kafka) and print the URL
	./$(BIN)

build: generate
	$(GO) build -o $(BIN) .

test: postgres chromium ## unit, integration, end-to-end and real-browser tests
	$(GO) test -count=1 $(TESTARGS) ./...

chaos: postgres ## the crash test: SIGKILL random parts (broker and PostgreSQL too) KILLS times under load
	$(GO) test -tags chaos -run TestChaos -count=1 -v -timeout 60m . -args -kills=$(KILLS)

generate: ## regenerate the templ components (the output is committed)
	$(GO) tool templ generate

check: ## what CI fails on besides the tests: formatting, vet, stale generated code
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags chaos .
	$(GO) tool templ generate
	@git diff --exit-code -- templates || { echo "templ generate changed files: commit the generated code"; exit 1; }
	@test -z "$$(git ls-files --others --exclude-standard templates)" || { echo "untracked generated files:"; git ls-files --others --exclude-standard templates; exit 1; }

postgres: ## start the private PostgreSQL cluster (.data/pg) unless DATABASE_URL answers
	@scripts/postgres.sh start >/dev/null

chromium: ## install Debian's Chromium for the browser test, if missing
	@scripts/chromium.sh >/dev/null

postgres-stop:
	@scripts/postgres.sh stop

clean:
	rm -rf bin
