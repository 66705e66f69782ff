# Boxoffice: `make run` starts everything and prints the URL; `make test` runs every test
# against a real PostgreSQL and a real Kafka-protocol broker. Both start what they need.

GO       ?= go
BIN      := bin/boxoffice
TESTARGS ?=
ARGS     ?=

.PHONY: bench hops run run-cluster test fuzz test-apache-kafka chaos build generate check postgres postgres-stop chromium kafka kafka-cluster kafka-stop clean

KILLS ?= 50
# A count of executions, not a duration: a duration races Go 1.26's fuzz coordinator at its
# deadline and fails with "context deadline exceeded" (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 50000x
KAFKA ?= embedded
# Go runtime settings for every Boxoffice process we start (also in scripts/ and the Dockerfile):
# goroutines start on the smallest stack, not the average of those last scanned. A web process
# keeps several goroutines per open SSE stream, mostly waiting; starting them at the average
# (raised by the consumers' deep stacks) cost 35-45 MB of 480 with 10,000 seat maps open.
# A GODEBUG of your own is added after it, and wins.
export RUNTIME_GODEBUG := adaptivestackstart=0

run: build postgres ## start every part in one process (embedded Kafka) and print the URL
	GODEBUG="$(RUNTIME_GODEBUG)$${GODEBUG:+,$$GODEBUG}" ./$(BIN)

run-cluster: build postgres ## one process per part: a broker, two web, two booking and two payment replicas, notification, ticket
	scripts/run-cluster.sh

build: generate
	$(GO) build -o $(BIN) .

test: postgres chromium ## unit, integration, end-to-end and real-browser tests
	$(GO) test -count=1 $(TESTARGS) ./...

bench: build postgres ## the load scenarios against a fresh system, in under three minutes, printing one table; ARGS go to `boxoffice loadtest`
	scripts/bench.sh $(ARGS)

hops: build postgres ## where one hop's time goes, at a light load: per consumer its wait and handling, per outbox relay its drains' take, publish and commit, its fast lane's publish and delete; ARGS go to `boxoffice loadtest`
	scripts/hops.sh $(ARGS)

chaos: postgres ## the crash test: SIGKILL random parts (broker and PostgreSQL too) KILLS times under load; KAFKA=apache for three Apache Kafka brokers
	$(GO) test -tags chaos -run TestChaos -count=1 -v -timeout 60m . -args -kills=$(KILLS) -kafka=$(KAFKA)

fuzz: postgres ## a short run of every fuzz target, FUZZTIME executions each (seeds alone run in make test); the router's needs PostgreSQL
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./services/event
	$(GO) test -run '^$$' -fuzz '^FuzzBookingRequestJSON$$' -fuzztime $(FUZZTIME) ./web
	$(GO) test -run '^$$' -fuzz '^FuzzBookingForm$$' -fuzztime $(FUZZTIME) ./web
	$(GO) test -run '^$$' -fuzz '^FuzzBookingToken$$' -fuzztime $(FUZZTIME) ./web
	$(GO) test -run '^$$' -fuzz '^FuzzTicketCode$$' -fuzztime $(FUZZTIME) ./web
	$(GO) test -run '^$$' -fuzz '^FuzzRouter$$' -fuzztime $(FUZZTIME) ./web

test-apache-kafka: postgres chromium kafka kafka-cluster ## the end-to-end suite against one Apache Kafka broker, then against three
	BOXOFFICE_TEST_KAFKA_BROKERS=$$(scripts/kafka.sh brokers 1) $(GO) test -count=1 $(TESTARGS) .
	BOXOFFICE_TEST_KAFKA_BROKERS=$$(scripts/kafka.sh brokers 3) BOXOFFICE_TEST_KAFKA_REPLICATION_FACTOR=3 $(GO) test -count=1 $(TESTARGS) .

kafka: ## start one Apache Kafka broker (KRaft) on 127.0.0.1:19092, fetching it from Maven Central once
	@scripts/kafka.sh start 1 >/dev/null

kafka-cluster: ## start three Apache Kafka brokers on 127.0.0.1:29092-29094 (replication 3, min.insync.replicas 2)
	@scripts/kafka.sh start 3 >/dev/null

kafka-stop: ## stop the Apache Kafka brokers (their data stays in .data/apache-kafka)
	@scripts/kafka.sh stop 1; scripts/kafka.sh stop 3

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
