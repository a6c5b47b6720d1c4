package zkafka

import (
	"fmt"
	"maps"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/zkafka-go/zkafka/internal/commit"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
)

// testEnv is the broker a test runs against (testhelper's selection: KAFKA_BOOTSTRAP_SERVERS,
// a container, or an embedded kfake cluster of the test's own) with short names for the
// helpers the engine tests use.
type testEnv struct {
	addr    string
	cluster *kfake.Cluster // nil on an external broker
}

// newEnv selects the broker the suite runs on.
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	return envOf(t, testhelper.NewBroker(t))
}

// newEmbeddedEnv starts an embedded kfake cluster whatever the environment says, for tests
// that need its fault injection or group introspection.
func newEmbeddedEnv(t testing.TB) *testEnv {
	t.Helper()
	return envOf(t, testhelper.EmbeddedBroker(t))
}

func envOf(t testing.TB, b *testhelper.Broker) *testEnv {
	return envWithin(t, b, testRunsAtMost)
}

// envWithin is envOf for a test that may run up to limit (a long stress run bounds its own
// steps).
func envWithin(t testing.TB, b *testhelper.Broker, limit time.Duration) *testEnv {
	watchdogAfter(t, limit)
	e := &testEnv{addr: b.Addr()}
	if b.Embedded() {
		e.cluster = b.Cluster(t)
	}
	return e
}

// testRunsAtMost bounds a test that uses a broker: the longest take under a minute, and a
// test that hangs (a wait for an event that never comes) would otherwise hold the suite
// until go test's -timeout, 30 minutes, and be named only in the last lines of its output.
const testRunsAtMost = 4 * time.Minute

// watchdog ends the test binary, with every goroutine's stack and t's name, when t runs over
// testRunsAtMost.
func watchdog(t testing.TB) { watchdogAfter(t, testRunsAtMost) }

// watchdogAfter is watchdog with its own limit.
func watchdogAfter(t testing.TB, limit time.Duration) {
	name := t.Name()
	timer := time.AfterFunc(limit, func() {
		buf := make([]byte, 16<<20)
		buf = buf[:runtime.Stack(buf, true)]
		fmt.Fprintf(os.Stderr, "%s\n", buf)
		panic(fmt.Sprintf("test %s ran over %s: it hangs (its goroutines are above)", name, limit))
	})
	t.Cleanup(func() { timer.Stop() })
}

func (e *testEnv) embedded() bool { return e.cluster != nil }

func uniqueTestName(t testing.TB, prefix string) string { return testhelper.UniqueName(t, prefix) }

func (e *testEnv) newTopic(t testing.TB, partitions int) string {
	t.Helper()
	name := uniqueTestName(t, "t")
	testhelper.CreateTopic(t, e.addr, name, partitions)
	return name
}

type rec = testhelper.Record

func (e *testEnv) produce(t testing.TB, topic string, recs []rec) {
	t.Helper()
	testhelper.Produce(t, e.addr, topic, recs...)
}

// keyed makes n records with keys "k<i mod keys>" and values "<i>", spread by the partitioner.
func keyed(n, keys int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{Key: []byte(fmt.Sprintf("k%d", i%keys)), Value: []byte(fmt.Sprint(i)), Partition: testhelper.AnyPartition}
	}
	return out
}

func (e *testEnv) committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	return testhelper.CommittedOffsets(t, e.addr, group, topic)
}

func (e *testEnv) endOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	return testhelper.EndOffsets(t, e.addr, topic)
}

// consumeAll reads n records of topic from the beginning.
func (e *testEnv) consumeAll(t testing.TB, topic string, n int) []testhelper.Consumed {
	t.Helper()
	return testhelper.ConsumeAll(t, e.addr, topic, n, 60*time.Second)
}

// client returns a Client on the broker, closed when the test ends.
func (e *testEnv) client(t testing.TB) *Client {
	c := NewClient(Config{BootstrapServers: []string{e.addr}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func intp(v int) *int { return &v }

// The three ways a group rebalances (SPEC G6); the tests that rebalance a group run under each.
const (
	protocolEager       = "eager"       // classic protocol, range assignor: every partition revoked
	protocolCooperative = "cooperative" // classic protocol, cooperative-sticky: only what moves
	protocolConsumer    = "consumer"    // KIP-848: the broker assigns, incrementally
)

// underProtocol sets cfg up for protocol. Under the consumer protocol the broker owns the
// session timeout and the assignor, so cfg's SessionTimeoutMillis is dropped.
func underProtocol(cfg ConsumerTopicConfig, protocol string) ConsumerTopicConfig {
	props := maps.Clone(cfg.AdditionalProps)
	if props == nil {
		props = map[string]any{}
	}
	switch protocol {
	case protocolEager:
		props["partition.assignment.strategy"] = "range"
	case protocolCooperative:
		props["partition.assignment.strategy"] = "cooperative-sticky"
	case protocolConsumer:
		cfg.GroupProtocol, cfg.SessionTimeoutMillis = GroupProtocolConsumer, nil
	default:
		panic("unknown protocol " + protocol)
	}
	cfg.AdditionalProps = props
	return cfg
}

// eachProtocol runs f as a subtest under each rebalance protocol.
func eachProtocol(t *testing.T, f func(t *testing.T, protocol string)) {
	for _, p := range []string{protocolEager, protocolCooperative, protocolConsumer} {
		t.Run(p, func(t *testing.T) { f(t, p) })
	}
}

// Used by the dead letter and reliability tests.
var (
	_ = newEmbeddedEnv
	_ = (*testEnv).consumeAll
)

// completions reads what the commits of group on topic say is finished above each committed
// offset (their metadata), by partition; a partition without a commit or metadata is absent.
func (e *testEnv) completions(t testing.TB, group, topic string) map[int32]*commit.Completions {
	t.Helper()
	out := map[int32]*commit.Completions{}
	for p, md := range testhelper.CommittedMetadata(t, e.addr, group, topic) {
		c, err := commit.Decode(md)
		if err == nil {
			out[p] = c
		}
	}
	return out
}

// requireNothingCommittedPast fails unless each partition's committed offset (if any) is at
// most upTo.
func requireNothingCommittedPast(t testing.TB, committed map[int32]int64, upTo int64, msg string) {
	t.Helper()
	for p, off := range committed {
		require.LessOrEqual(t, off, upTo, "partition %d: %s", p, msg)
	}
}
