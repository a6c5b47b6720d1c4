package testhelper

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// MinSessionTimeout is the smallest consumer-group session timeout every broker this package
// starts accepts (Kafka's group.min.session.timeout.ms; Kafka's own default is 6 s). Tests may
// use session timeouts from this value up.
const MinSessionTimeout = time.Second

// Embedded is a kfake Kafka cluster running in this process. It speaks the Kafka protocol on
// loopback ports, keeps everything in memory, and is gone after Close. Create one with
// [StartEmbedded]; in tests prefer [NewBroker] or [EmbeddedBroker], which close it for you.
type Embedded struct {
	cluster *kfake.Cluster
}

// DefaultEmbeddedOptions returns the options [StartEmbedded] applies before the caller's own,
// so later options override them: topics are auto-created on first use with one partition
// (like Apache Kafka's defaults), and session timeouts down to [MinSessionTimeout] are
// accepted. Setting ZKAFKA_KFAKE_LOG to debug, info, warn or error logs the cluster to stderr.
func DefaultEmbeddedOptions() []kfake.Opt {
	opts := []kfake.Opt{
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
		kfake.GroupMinSessionTimeout(MinSessionTimeout),
	}
	if lvl, ok := kfakeLogLevel(os.Getenv("ZKAFKA_KFAKE_LOG")); ok {
		opts = append(opts, kfake.WithLogger(kfake.BasicLogger(os.Stderr, lvl)))
	}
	return opts
}

func kfakeLogLevel(s string) (kfake.LogLevel, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return kfake.LogLevelDebug, true
	case "info":
		return kfake.LogLevelInfo, true
	case "warn":
		return kfake.LogLevelWarn, true
	case "error":
		return kfake.LogLevelError, true
	}
	return kfake.LogLevelNone, false
}

// StartEmbedded starts an embedded kfake cluster with [DefaultEmbeddedOptions] followed by
// opts (for example kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"), or
// kfake.GroupMinSessionTimeout(500*time.Millisecond)). The caller must Close it. It is meant
// for examples and programs; tests use [NewBroker] or [EmbeddedBroker].
func StartEmbedded(opts ...kfake.Opt) (*Embedded, error) {
	all := append(DefaultEmbeddedOptions(), opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, fmt.Errorf("testhelper: starting embedded kafka: %w", err)
	}
	return &Embedded{cluster: c}, nil
}

// Addr returns the cluster's bootstrap servers, comma separated, for Config.BootstrapServers
// or librdkafka's bootstrap.servers.
func (e *Embedded) Addr() string { return strings.Join(e.cluster.ListenAddrs(), ",") }

// Cluster returns the kfake cluster, for fault injection (Fault, ControlKey), group state
// (GroupInfo, WaitGroupStable) and topic surgery (CreateTopic, DeleteRecords, Compact).
func (e *Embedded) Cluster() *kfake.Cluster { return e.cluster }

// Close stops the cluster and closes its listeners. It is safe to call more than once.
func (e *Embedded) Close() { e.cluster.Close() }
