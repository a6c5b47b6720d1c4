package zkafka

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
)

// testBroker returns the bootstrap address of the broker tests run against:
// KAFKA_BOOTSTRAP_SERVERS when set, else an embedded kfake cluster closed when the test ends.
// (To be replaced by package testhelper.)
func testBroker(t *testing.T) string {
	t.Helper()
	if addr := os.Getenv("KAFKA_BOOTSTRAP_SERVERS"); addr != "" {
		return addr
	}
	c := newKfake(t)
	return strings.Join(c.ListenAddrs(), ",")
}

// newKfake starts an embedded single-broker cluster closed when the test ends.
func newKfake(t *testing.T, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	watchdog(t)
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

// createTopic creates name with the given partitions (an existing topic is fine).
func createTopic(t *testing.T, addr, name string, partitions int) {
	t.Helper()
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": addr})
	require.NoError(t, err)
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: name, NumPartitions: partitions, ReplicationFactor: 1,
	}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	if code := res[0].Error.Code(); code != kafka.ErrNoError && code != kafka.ErrTopicAlreadyExists {
		require.NoError(t, res[0].Error)
	}
}

// uniqueName returns prefix with a random suffix, so tests sharing a broker do not collide.
func uniqueName(prefix string) string {
	return prefix + "-" + uuid.NewString()[:8]
}

// readBack reads n records of a single-partition topic from the beginning with a plain
// confluent consumer, in offset order. extra sets more consumer keys.
func readBack(t *testing.T, addr, topic string, n int, extra kafka.ConfigMap) []*kafka.Message {
	t.Helper()
	cm := kafka.ConfigMap{
		"bootstrap.servers":      addr,
		"group.id":               uniqueName("readback"),
		"enable.auto.commit":     false,
		"fetch.queue.backoff.ms": 10,
	}
	for k, v := range extra {
		cm[k] = v
	}
	c, err := kafka.NewConsumer(&cm)
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()
	require.NoError(t, c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}))
	deadline := time.Now().Add(30 * time.Second)
	var out []*kafka.Message
	for len(out) < n {
		require.True(t, time.Now().Before(deadline), "read %d of %d records of %s", len(out), n, topic)
		m, err := c.ReadMessage(time.Second)
		if err != nil {
			var ke kafka.Error
			if errors.As(err, &ke) && ke.IsTimeout() {
				continue
			}
			require.NoError(t, err)
		}
		out = append(out, m)
	}
	return out
}

// captureLogger records every entry, formatting each key/value with the given verbs.
type captureLogger struct {
	lines chan string
}

func newCaptureLogger() *captureLogger { return &captureLogger{lines: make(chan string, 1000)} }

func (l *captureLogger) log(level, msg string, kv ...any) {
	var b strings.Builder
	b.WriteString(level + " " + msg)
	for _, v := range kv {
		b.WriteString(" " + sprintAll(v))
	}
	l.lines <- b.String()
}

func (l *captureLogger) Debugw(_ context.Context, msg string, kv ...any) { l.log("debug", msg, kv...) }
func (l *captureLogger) Infow(_ context.Context, msg string, kv ...any)  { l.log("info", msg, kv...) }
func (l *captureLogger) Warnw(_ context.Context, msg string, kv ...any)  { l.log("warn", msg, kv...) }
func (l *captureLogger) Errorw(_ context.Context, msg string, kv ...any) { l.log("error", msg, kv...) }

// all returns every line logged so far.
func (l *captureLogger) all() []string {
	var out []string
	for {
		select {
		case s := <-l.lines:
			out = append(out, s)
		default:
			return out
		}
	}
}

// containing returns the lines logged so far (taking them, like all) that hold s.
func (l *captureLogger) containing(s string) []string {
	var out []string
	for _, line := range l.all() {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// sprintAll formats v with every verb a log line might use.
func sprintAll(v any) string {
	return fmt.Sprintf("%v | %+v | %#v | %s | ", v, v, v, v) + fmt.Sprint(v)
}
