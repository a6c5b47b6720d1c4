package testhelper

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Environment variables that select the broker; see the package documentation.
const (
	// EnvBootstrapServers names a running broker to use instead of starting one
	// (for example "127.0.0.1:29092"). Unset by default.
	EnvBootstrapServers = "KAFKA_BOOTSTRAP_SERVERS"
	// EnvTestcontainers, set to "1", starts Kafka in a Docker container when a Docker daemon
	// answers. Unset by default; without Docker the embedded broker is used instead.
	EnvTestcontainers = "ZKAFKA_TESTCONTAINERS"
)

// Kind says where a [Broker] comes from.
type Kind string

// The kinds of broker [NewBroker] can select.
const (
	// KindExternal is a broker named by KAFKA_BOOTSTRAP_SERVERS.
	KindExternal Kind = "external"
	// KindContainer is Apache Kafka in a Docker container started by testcontainers-go.
	KindContainer Kind = "container"
	// KindEmbedded is an in-process kfake cluster.
	KindEmbedded Kind = "embedded"
)

// Broker is a Kafka broker a test can use. Its lifetime is the test's: whatever [NewBroker]
// or [EmbeddedBroker] started is stopped by t.Cleanup.
type Broker struct {
	addr     string
	kind     Kind
	embedded *Embedded
}

// NewBroker returns the broker this test run should use (see the package documentation for
// the order: KAFKA_BOOTSTRAP_SERVERS, then testcontainers, then embedded). opts apply only
// when the embedded broker is started, after [DefaultEmbeddedOptions]. A test that needs
// kfake-only features uses [EmbeddedBroker] instead.
func NewBroker(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	if addr := strings.TrimSpace(os.Getenv(EnvBootstrapServers)); addr != "" {
		return &Broker{addr: addr, kind: KindExternal}
	}
	if os.Getenv(EnvTestcontainers) == "1" {
		containerMu.Lock()
		start := containerStarter
		containerMu.Unlock()
		if start == nil {
			t.Logf("testhelper: %s=1 but this test binary does not import %s; using the embedded broker",
				EnvTestcontainers, "github.com/zkafka-go/zkafka/testhelper/container")
		} else if addr, ok := start(t); ok {
			return &Broker{addr: addr, kind: KindContainer}
		}
	}
	return EmbeddedBroker(t, opts...)
}

var (
	containerMu      sync.Mutex
	containerStarter func(testing.TB) (addr string, ok bool)
)

// RegisterContainerStarter sets how NewBroker starts Kafka in a container when
// ZKAFKA_TESTCONTAINERS=1 (default: not at all). Package testhelper/container registers its
// Start when imported; testhelper itself does not depend on Docker.
func RegisterContainerStarter(start func(t testing.TB) (addr string, ok bool)) {
	containerMu.Lock()
	defer containerMu.Unlock()
	containerStarter = start
}

// EmbeddedBroker always starts an embedded kfake cluster, whatever the environment says, and
// closes it when the test ends. Use it for tests that inject faults or read group state the
// admin API does not expose; such tests then run on every machine and never skip.
func EmbeddedBroker(t testing.TB, opts ...kfake.Opt) *Broker {
	t.Helper()
	e, err := StartEmbedded(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return &Broker{addr: e.Addr(), kind: KindEmbedded, embedded: e}
}

// Addr returns the bootstrap servers, comma separated.
func (b *Broker) Addr() string { return b.addr }

// Kind says which of the three brokers this is.
func (b *Broker) Kind() Kind { return b.kind }

// Embedded reports whether this is the in-process kfake cluster, on which [Broker.Cluster]
// gives fault injection and group introspection.
func (b *Broker) Embedded() bool { return b.kind == KindEmbedded }

// Cluster returns the kfake cluster of an embedded broker, for Fault, ControlKey, GroupInfo,
// WaitGroupStable and the like. It fails the test on any other broker: a test that needs it
// should get its broker from [EmbeddedBroker].
func (b *Broker) Cluster(t testing.TB) *kfake.Cluster {
	t.Helper()
	if b.embedded == nil {
		t.Fatalf("testhelper: the %s broker at %s has no kfake cluster; use testhelper.EmbeddedBroker for this test", b.kind, b.addr)
	}
	return b.embedded.Cluster()
}

// GroupGeneration returns a group's generation (its epoch), or -1 when the group does not
// exist. Only the embedded broker can tell: the admin API does not expose the generation, so
// on any other broker it fails the test.
func (b *Broker) GroupGeneration(t testing.TB, group string) int32 {
	t.Helper()
	info := b.Cluster(t).GroupInfo(group)
	if info == nil {
		return -1
	}
	return info.Epoch
}
