// Package testhelper gives tests, examples and users of zkafka a Kafka broker and small helpers
// to drive it: topic creation, producing and consuming records, and reading committed offsets,
// end offsets and group state from the broker itself.
//
// # Choosing a broker
//
// [NewBroker] selects, in order:
//
//  1. the broker named by the environment variable KAFKA_BOOTSTRAP_SERVERS (for example a real
//     Apache Kafka started by scripts/kafka-local.sh or docker compose);
//  2. when ZKAFKA_TESTCONTAINERS=1, a Docker daemon answers and the test binary imports
//     package testhelper/container (for its effect), Apache Kafka in a container started with
//     testcontainers-go; testhelper itself does not pull Docker into a program;
//  3. otherwise an embedded kfake cluster (github.com/twmb/franz-go/pkg/kfake) in the test
//     process — no setup at all.
//
// Every helper that takes an address talks to the broker through confluent-kafka-go (the
// client zkafka itself uses) and the Kafka admin API, so the same test works on all three.
//
// # Embedded-only powers
//
// Fault injection ([kfake.Cluster.Fault], [kfake.Cluster.ControlKey]) and group introspection
// beyond what the admin API returns (the group generation, [kfake.Cluster.GroupInfo]) exist only
// on the embedded broker. A test that needs them asks for one with [EmbeddedBroker], which
// always starts kfake whatever the environment says, and so runs everywhere; it never skips.
//
// # Defaults shared by all brokers
//
// The embedded broker, the container and scripts/kafka-local.sh all accept session timeouts
// down to 1 s (group.min.session.timeout.ms=1000, instead of Kafka's 6 s) so tests can use short
// sessions, create unknown topics on first use with one partition, and start rebalances at once.
// A broker named by KAFKA_BOOTSTRAP_SERVERS keeps whatever its operator configured.
package testhelper
