package testhelper

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// opTimeout bounds every admin call and wait in this package.
const opTimeout = 30 * time.Second

// newAdmin returns an AdminClient for addr; the caller closes it.
func newAdmin(t testing.TB, addr string) *kafka.AdminClient {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{
		"bootstrap.servers":     addr,
		"broker.address.family": "v4",
		"client.id":             "zkafka-testhelper",
		"enable.metrics.push":   false,
		"log.connection.close":  false,
	})
	if err != nil {
		t.Fatalf("testhelper: admin client for %s: %v", addr, err)
	}
	return a
}

// UniqueName returns a topic or group name that no other test, run or process uses:
// prefix, the test's name (characters Kafka does not allow replaced by '-') and a random
// suffix. Tests share a real broker, so every topic and group they create needs one.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testhelper: random name: %v", err)
	}
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, t.Name())
	if len(name) > 180 {
		name = name[:180]
	}
	if prefix != "" {
		name = prefix + "-" + name
	}
	return name + "-" + hex.EncodeToString(b[:])
}

// CreateTopic creates topic with the given number of partitions (replication factor 1) and
// waits until the broker's metadata shows every partition with a leader. A topic that already
// exists is left as it is, so calling it twice is fine.
func CreateTopic(t testing.TB, addr, topic string, partitions int) {
	t.Helper()
	a := newAdmin(t, addr)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1,
	}}, kafka.SetAdminOperationTimeout(opTimeout))
	if err != nil {
		t.Fatalf("testhelper: creating topic %s: %v", topic, err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			t.Fatalf("testhelper: creating topic %s: %v", topic, r.Error)
		}
	}
	if err := waitTopic(ctx, a, topic); err != nil {
		t.Fatalf("testhelper: waiting for topic %s: %v", topic, err)
	}
}

// waitTopic polls metadata until topic exists and each of its partitions has a leader.
func waitTopic(ctx context.Context, a metadataGetter, topic string) error {
	var last error
	for {
		md, err := a.GetMetadata(&topic, false, 5000)
		if err == nil {
			tm, ok := md.Topics[topic]
			switch {
			case !ok:
				last = errors.New("not in metadata")
			case tm.Error.Code() != kafka.ErrNoError:
				last = tm.Error
			case len(tm.Partitions) == 0:
				last = errors.New("no partitions yet")
			default:
				last = nil
				for _, p := range tm.Partitions {
					if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
						last = fmt.Errorf("partition %d has no leader yet", p.ID)
					}
				}
				if last == nil {
					return nil
				}
			}
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metadataGetter asks for metadata: an AdminClient, or a consumer (committed reads through
// one).
type metadataGetter interface {
	GetMetadata(topic *string, allTopics bool, timeoutMs int) (*kafka.Metadata, error)
}

// partitionsOf returns the sorted partition ids of topic, waiting until it has any.
func partitionsOf(ctx context.Context, t testing.TB, a metadataGetter, topic string) []int32 {
	t.Helper()
	if err := waitTopic(ctx, a, topic); err != nil {
		t.Fatalf("testhelper: reading partitions of %s: %v", topic, err)
	}
	md, err := a.GetMetadata(&topic, false, 5000)
	if err != nil {
		t.Fatalf("testhelper: reading partitions of %s: %v", topic, err)
	}
	ps := make([]int32, 0, len(md.Topics[topic].Partitions))
	for _, p := range md.Topics[topic].Partitions {
		ps = append(ps, p.ID)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}
