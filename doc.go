// Package zkafka is a library for stateless Kafka message processing over confluent-kafka-go.
//
// You write one function, Process(ctx, *Message) error; a Work reads topics through a
// consumer group, spreads messages by key over virtual partitions processed in parallel
// (per-key order kept), commits an offset only once every earlier message of its partition is
// finished, writes failures to a dead letter topic, and reports through lifecycle hooks and
// OpenTelemetry. A Client gives Readers and Writers for direct use.
//
// The API follows Zillow's zkafka v2: migrating is changing the import path. See
// docs/guarantees.md for the guarantees and docs/differences-from-v2.md for the differences.
package zkafka
