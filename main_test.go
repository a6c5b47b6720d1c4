package zkafka

import (
	"fmt"
	"maps"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a goroutine behind (SPEC G14).
// ZKAFKA_TEST_GROUP_PROTOCOL=consumer runs every test under Kafka 4's consumer group protocol
// (KIP-848), except those that choose a protocol or an assignor themselves.
func TestMain(m *testing.M) {
	switch p := os.Getenv("ZKAFKA_TEST_GROUP_PROTOCOL"); p {
	case "", GroupProtocolClassic:
	case GroupProtocolConsumer:
		testHookTopicConfig = underConsumerProtocol
	default:
		fmt.Fprintf(os.Stderr, "ZKAFKA_TEST_GROUP_PROTOCOL=%q: want classic or consumer\n", p)
		os.Exit(2)
	}
	goleak.VerifyTestMain(m)
}

// underConsumerProtocol moves cfg to the consumer group protocol unless it chose a protocol or
// an assignor; the broker owns the session timeout then.
func underConsumerProtocol(cfg ConsumerTopicConfig) ConsumerTopicConfig {
	for _, k := range []string{"group.protocol", "partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"} {
		if _, ok := cfg.AdditionalProps[k]; ok {
			return cfg
		}
	}
	if cfg.GroupProtocol != "" {
		return cfg
	}
	cfg.GroupProtocol, cfg.SessionTimeoutMillis = GroupProtocolConsumer, nil
	cfg.AdditionalProps = maps.Clone(cfg.AdditionalProps)
	return cfg
}
