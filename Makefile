# zkafka developer targets. `make test` needs only Go and a C compiler: the tests use an
# embedded Kafka broker unless KAFKA_BOOTSTRAP_SERVERS names another (see testhelper).

GO            ?= go
GOLANGCI_LINT ?= $(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
TEST_FLAGS    ?= -race -count=1 -timeout 30m
TEST_ARGS     ?=
COVER_PROFILE ?= coverage.out

.PHONY: all test test-consumer-protocol cover lint gen bench bench-go setup teardown kafka-start kafka-stop kafka-status \
	example example-producer example-worker example-deadletter-worker example-delay-worker example-batch-worker \
	chaos chaos-all chaos-rebalance close-stress fuzz ci status-screenshot

all: lint test

## test: run every test with the race detector (embedded broker unless KAFKA_BOOTSTRAP_SERVERS is set)
test:
	$(GO) test $(TEST_FLAGS) $(TEST_ARGS) ./...

## test-consumer-protocol: the engine's tests again, every Work and Reader that chooses no
## protocol itself under Kafka 4's consumer group protocol (KIP-848)
test-consumer-protocol:
	ZKAFKA_TEST_GROUP_PROTOCOL=consumer $(GO) test $(TEST_FLAGS) $(TEST_ARGS) .

## cover: run the tests with coverage of every package and print the per-function summary
cover:
	$(GO) test $(TEST_FLAGS) -covermode=atomic -coverpkg=./... -coverprofile=$(COVER_PROFILE) ./...
	$(GO) tool cover -func=$(COVER_PROFILE) | tail -n 1
	@echo "HTML report: $(GO) tool cover -html=$(COVER_PROFILE)"

## lint: golangci-lint v2 with .golangci.yml
lint:
	$(GOLANGCI_LINT) run ./...

## gen: regenerate mocks and other generated code
gen:
	$(GO) generate ./...

BENCH_ARGS    ?=

## bench: zkafka vs a plain confluent-kafka-go loop on the embedded broker (cmd/zkafka-bench;
## BENCH_ARGS="-rounds 5 -count 3000000 …"), then the Go micro-benchmarks (bench-go)
bench:
	$(GO) run ./cmd/zkafka-bench $(BENCH_ARGS)
	$(MAKE) --no-print-directory bench-go

## bench-go: the hot-path Go benchmarks without librdkafka (routing, commit tracking, the per-message path)
bench-go:
	$(GO) test -run xxx -bench . -benchmem -benchtime 1000000x . ./internal/commit

## setup: start Kafka (KRaft) on localhost:29092 and a schema registry on localhost:8081 with Docker
setup:
	docker compose up -d --wait

## teardown: stop what setup started
teardown:
	docker compose down -v

## kafka-start: start a real Apache Kafka on 127.0.0.1:29092 without Docker (Java 17+ and Maven)
kafka-start:
	scripts/kafka-local.sh start

## kafka-stop: stop the broker kafka-start started and remove its data
kafka-stop:
	scripts/kafka-local.sh stop

## kafka-status: say whether the local broker runs
kafka-status:
	scripts/kafka-local.sh status

# run_example builds examples/$(1) into bin/ and runs it as the terminal's foreground job
# (bash job control), so that Ctrl-C reaches the example alone: it stops gracefully, exits 0,
# and make, which never sees the signal, reports no error. EXAMPLE_ARGS are passed on.
EXAMPLE_ARGS ?=
define run_example
	@$(GO) build -o bin/$(1) ./examples/$(1)
	@bash -c 'set -m; bin/$(1) $(EXAMPLE_ARGS); exit $$?'
endef

## example: the quickstart: an embedded broker, 5,000 orders, 8 virtual partitions, dead letters
example:
	$(call run_example,quickstart)

## example-producer: write JSON orders (Kafka of `make setup`, or KAFKA_BOOTSTRAP_SERVERS, or ZKAFKA_EMBEDDED=1)
example-producer:
	$(call run_example,producer)

## example-worker: consume the orders with Speedup 5 and a graceful stop on SIGINT/SIGTERM
example-worker:
	$(call run_example,worker)

## example-deadletter-worker: a worker whose failures go to a dead letter topic
example-deadletter-worker:
	$(call run_example,worker-deadletter)

## example-batch-worker: a batch processor writing batches to a sink, with partial failures
example-batch-worker:
	$(call run_example,worker-batch)

## example-delay-worker: a retry chain: topic -> delayed retry worker -> final dead letter topic
example-delay-worker:
	$(call run_example,worker-delay)

CLOSE_STRESS_CYCLES ?= 500

## close-stress: stop workers while their group rebalances, CLOSE_STRESS_CYCLES (500) times per
## rebalance protocol, in child processes; fails on any abort inside librdkafka or hang
close-stress:
	ZKAFKA_CLOSE_STRESS_CYCLES=$(CLOSE_STRESS_CYCLES) $(GO) test $(TEST_FLAGS) -timeout 0 -v -run '^TestCloseDuringRebalanceNeverAborts$$' .

## chaos: about five minutes of mixed faults, 3 workers (2 of them OS processes), 100,000 messages;
## prints the protocol, the seed and the report, fails on any broken invariant. Reproduce a run with
## CHAOS_SEED=<seed>; CHAOS_PROTOCOL=eager|cooperative|consumer picks the rebalance protocol (default eager;
## CHAOS_STRATEGY=cooperative-sticky still means cooperative).
CHAOS_FLAGS ?= -count=1 -timeout 20m
chaos:
	CHAOS_LONG=1 $(GO) test $(CHAOS_FLAGS) -run '^TestChaosLong$$' -v ./testhelper/chaos/

## chaos-all: make chaos under each rebalance protocol in turn (eager, cooperative, consumer); stops at the first failure
chaos-all:
	for p in eager cooperative consumer; do CHAOS_PROTOCOL=$$p $(MAKE) --no-print-directory chaos || exit 1; done

## chaos-rebalance: make chaos with graceful leaves and joins only (CHAOS_FAULTS=worker-leave)
chaos-rebalance:
	CHAOS_FAULTS=worker-leave $(MAKE) --no-print-directory chaos

## fuzz: run every fuzz target for FUZZTIME each (default 2m)
FUZZTIME ?= 2m
fuzz:
	for t in .:FuzzRouteKey .:FuzzConfigValidation ./internal/format:FuzzFormatterDecode ./internal/commit:FuzzCommitTracker \
		./internal/commit:FuzzDecodeCompletions ./internal/commit:FuzzCompletionsRoundTrip; do \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

## status-screenshot: regenerate docs/status-page.png: a Work with a stuck key, its StatusHandler
## page in headless Chromium (apt-get install -y chromium)
status-screenshot:
	ZKAFKA_REQUIRE_BROWSER=1 $(GO) test -count=1 -run '^TestStatusPageInBrowser$$' . -args -status-screenshot

## ci: what CI runs (.ci/run)
ci:
	bash .ci/run
