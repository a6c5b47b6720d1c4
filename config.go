package zkafka

// Configuration: Config (the cluster), ConsumerTopicConfig and ProducerTopicConfig (one
// reader or writer each), their defaults, their validation (once, at the edge: Client.Reader,
// Client.Writer, Work.Run) with errors that name the field, and their translation into
// librdkafka keys. Secrets are kept out of their printed forms by redact.go.

import (
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zillow/zfmt"
	"github.com/zkafka-go/zkafka/internal/format"
)

// Defaults of ConsumerTopicConfig (SPEC S3).
const (
	// DefaultReadTimeoutMillis is how long one poll of the consumer waits for a message.
	DefaultReadTimeoutMillis = 1000
	// DefaultProcessTimeoutMillis bounds one call of a processor.
	DefaultProcessTimeoutMillis = 60000
	// DefaultSessionTimeoutMillis is the consumer group session timeout (session.timeout.ms).
	DefaultSessionTimeoutMillis = 61000
	// DefaultMaxPollIntervalMillis is max.poll.interval.ms.
	DefaultMaxPollIntervalMillis = 61000
)

// Config is what every reader and writer of a Client shares: where the brokers are and how to
// authenticate to them.
type Config struct {
	// BootstrapServers are the broker addresses ("host:port"). Required unless every topic
	// config sets its own.
	BootstrapServers []string
	// SaslUsername and SaslPassword, when both set, turn on SASL_SSL with SCRAM-SHA-256 (the
	// mechanism can be changed with AdditionalProps "sasl.mechanism"). Never logged.
	SaslUsername *string
	SaslPassword *string
	// CAFile is a PEM file of CA certificates to verify the brokers with (ssl.ca.location).
	// Setting it, or KeyFile/CertFile, turns on TLS (security.protocol SSL, or SASL_SSL with SASL).
	CAFile string
	// KeyFile is the client's PEM private key (ssl.key.location), for mutual TLS.
	KeyFile string
	// CertFile is the client's PEM certificate (ssl.certificate.location), for mutual TLS.
	CertFile string
}

// SchemaRegistryConfig configures the schema registry formatters and the avro formatter.
type SchemaRegistryConfig struct {
	// URL of the schema registry; "mock://name" gives an in-memory registry shared by name.
	URL string
	// Serialization configures writes.
	Serialization SerializationConfig
	// Deserialization configures reads.
	Deserialization DeserializationConfig
	// SubjectName overrides the subject (default: the topic name strategy, "<topic>-value").
	SubjectName string
}

// SerializationConfig configures how a writer encodes with a schema.
type SerializationConfig struct {
	// AutoRegisterSchemas registers Schema with the registry on first write (default false).
	AutoRegisterSchemas bool
	// Schema is the writer schema (avro JSON, .proto text or JSON schema).
	Schema string
}

// DeserializationConfig configures how a reader decodes with a schema.
type DeserializationConfig struct {
	// Schema is the reader schema; data written with a compatible schema is resolved to it.
	Schema string
}

// ConsumerTopicConfig configures a Reader or a Work.
type ConsumerTopicConfig struct {
	// ClientID names the consumer (client.id) and keys the Client's reader cache. Required.
	ClientID string
	// GroupID is the consumer group (group.id), prefixed by KafkaGroupPrefixOption. Required.
	GroupID string
	// Topic to consume. Topic and Topics are merged; at least one topic is required.
	Topic string
	// Topics to consume, in addition to Topic.
	Topics []string
	// BootstrapServers overrides Config.BootstrapServers for this consumer.
	BootstrapServers []string
	// AutoCommitIntervalMs is how often a reader commits finished offsets while it reads
	// (default 1000 ms, commitEvery); it also commits at every revoke, stop and Close. It is
	// also auto.commit.interval.ms (librdkafka default 5000), which only matters for a
	// consumer with zkafka v2's methods alone (WithConsumerProvider), committed by librdkafka.
	AutoCommitIntervalMs *int
	// AdditionalProps are extra librdkafka keys, applied last. They cannot turn
	// enable.auto.offset.store back on: the library stores offsets itself, only for messages
	// that are finished, and overrides that key.
	AdditionalProps map[string]any
	// Formatter decodes payloads (default JSONFmt).
	Formatter FormatterType
	// SchemaRegistry configures the schema registry and avro formatters.
	SchemaRegistry SchemaRegistryConfig
	// SchemaID is the schema id zfmt's schema id formats (zfmt.AvroSchemaFmt,
	// zfmt.JSONSchemaFmt) expect; schema registry payloads carry their own id. Default 0.
	SchemaID int
	// Transaction reads only committed records (isolation.level read_committed); default
	// read_uncommitted.
	Transaction bool
	// ReadTimeoutMillis bounds one poll (default 1000).
	ReadTimeoutMillis *int
	// ProcessTimeoutMillis bounds one processor call (default 60000).
	ProcessTimeoutMillis *int
	// SessionTimeoutMillis is session.timeout.ms (default 61000), under the classic group
	// protocol. Under the consumer protocol (GroupProtocol) the broker owns the session
	// timeout, and setting it is a configuration error.
	SessionTimeoutMillis *int
	// MaxPollIntervalMillis is max.poll.interval.ms (default 61000).
	MaxPollIntervalMillis *int
	// ProcessDelayMillis holds each message until its timestamp + this delay (default none).
	ProcessDelayMillis *int
	// SaslUsername and SaslPassword override Config's for this consumer. Never logged.
	SaslUsername *string
	SaslPassword *string
	// DeadLetterTopicConfig, when set, is where a Work writes messages that failed. What it
	// leaves unset of ClientID, BootstrapServers, the SASL credentials and the connection keys
	// of AdditionalProps (security.protocol, ssl.*, sasl.*, broker.address.family,
	// client.dns.lookup) comes from this consumer config. Default: none.
	DeadLetterTopicConfig *ProducerTopicConfig
	// GroupProtocol is the consumer group protocol: GroupProtocolClassic (the default: the
	// group's members assign partitions, eager or cooperative-sticky as
	// partition.assignment.strategy says) or GroupProtocolConsumer (Kafka 4's protocol of
	// KIP-848: the broker assigns partitions incrementally and owns the session timeout, the
	// heartbeat interval and the assignor, which group.remote.assignor in AdditionalProps may
	// name). AdditionalProps["group.protocol"] selects it the same way.
	GroupProtocol string
}

// The consumer group protocols of ConsumerTopicConfig.GroupProtocol.
const (
	// GroupProtocolClassic is the classic consumer group protocol (the default).
	GroupProtocolClassic = "classic"
	// GroupProtocolConsumer is Kafka 4's consumer group protocol (KIP-848), which needs a
	// broker that offers it (Kafka 4.0 or later).
	GroupProtocolConsumer = "consumer"
)

// ProducerTopicConfig configures a Writer (and a dead letter topic).
type ProducerTopicConfig struct {
	// ClientID names the producer (client.id); with Topic it keys the Client's writer cache.
	// Required.
	ClientID string
	// Topic to write to. Required.
	Topic string
	// BootstrapServers overrides Config.BootstrapServers for this producer.
	BootstrapServers []string
	// DeliveryTimeoutMs is delivery.timeout.ms (librdkafka default 300000).
	DeliveryTimeoutMs *int
	// AdditionalProps are extra librdkafka keys, applied last.
	AdditionalProps map[string]any
	// Formatter encodes values (default JSONFmt).
	Formatter FormatterType
	// SchemaRegistry configures the schema registry and avro formatters.
	SchemaRegistry SchemaRegistryConfig
	// SchemaID is the schema id zfmt's schema id formats (zfmt.AvroSchemaFmt,
	// zfmt.JSONSchemaFmt) write before the payload; schema registry formats look the id up
	// instead. Default 0.
	SchemaID int
	// Transaction turns on a transactional producer (transactional.id = ClientID).
	Transaction bool
	// RequestRequiredAcks is acks (librdkafka default "all").
	RequestRequiredAcks *string
	// EnableIdempotence is enable.idempotence (default true). An idempotent producer sends
	// one request at a time per broker (max.in.flight.requests.per.connection 1), so that no
	// write it reports delivered can be missing from the topic; AdditionalProps may change it.
	EnableIdempotence *bool
	// LingerMillis is linger.ms (default 0).
	LingerMillis int
	// NagleDisable is socket.nagle.disable (default true).
	NagleDisable *bool
	// SaslUsername and SaslPassword override Config's for this producer. Never logged.
	SaslUsername *string
	SaslPassword *string
}

// topics returns Topic and Topics merged, in order, without duplicates or empty names.
func (c ConsumerTopicConfig) topics() []string {
	seen := make(map[string]struct{}, len(c.Topics)+1)
	var out []string
	for _, t := range append([]string{c.Topic}, c.Topics...) {
		if t == "" {
			continue
		}
		if _, ok := seen[t]; ok {
			continue
		}
		seen[t] = struct{}{}
		out = append(out, t)
	}
	return out
}

// millis returns *v milliseconds, or def milliseconds when v is nil or not positive.
func millis(v *int, def int) time.Duration {
	if v == nil || *v <= 0 {
		return time.Duration(def) * time.Millisecond
	}
	return time.Duration(*v) * time.Millisecond
}

// readTimeout is how long one poll waits (ReadTimeoutMillis, default 1 s).
func (c ConsumerTopicConfig) readTimeout() time.Duration {
	return millis(c.ReadTimeoutMillis, DefaultReadTimeoutMillis)
}

// commitInterval is how often a reader commits while it reads (AutoCommitIntervalMs, default
// commitEvery).
func (c ConsumerTopicConfig) commitInterval() time.Duration {
	return millis(c.AutoCommitIntervalMs, int(commitEvery/time.Millisecond))
}

// processTimeout bounds one processor call (ProcessTimeoutMillis, default 60 s).
func (c ConsumerTopicConfig) processTimeout() time.Duration {
	return millis(c.ProcessTimeoutMillis, DefaultProcessTimeoutMillis)
}

// groupProtocol is the consumer group protocol the config asks for: GroupProtocol, else
// AdditionalProps["group.protocol"], else classic (validateConsumer refuses other values and
// a disagreement between the two).
func (c ConsumerTopicConfig) groupProtocol() string {
	if p := strings.ToLower(strings.TrimSpace(c.GroupProtocol)); p != "" {
		return p
	}
	if s, ok := c.AdditionalProps[keyGroupProtocol].(string); ok && strings.TrimSpace(s) != "" {
		return strings.ToLower(strings.TrimSpace(s))
	}
	return GroupProtocolClassic
}

// consumerProtocol reports whether the config asks for the consumer group protocol of KIP-848.
func (c ConsumerTopicConfig) consumerProtocol() bool {
	return c.groupProtocol() == GroupProtocolConsumer
}

// sessionTimeout is session.timeout.ms (SessionTimeoutMillis, default 61 s).
func (c ConsumerTopicConfig) sessionTimeout() time.Duration {
	return millis(c.SessionTimeoutMillis, DefaultSessionTimeoutMillis)
}

// maxPollInterval is max.poll.interval.ms (MaxPollIntervalMillis, default 61 s).
func (c ConsumerTopicConfig) maxPollInterval() time.Duration {
	return millis(c.MaxPollIntervalMillis, DefaultMaxPollIntervalMillis)
}

// GetFormatter returns the configured formatter type (zkafka v2's accessor).
func (c ConsumerTopicConfig) GetFormatter() FormatterType { return c.Formatter }

// GetSchemaID returns the configured schema id (zkafka v2's accessor).
func (c ConsumerTopicConfig) GetSchemaID() int { return c.SchemaID }

// GetFormatter returns the configured formatter type (zkafka v2's accessor).
func (p ProducerTopicConfig) GetFormatter() FormatterType { return p.Formatter }

// GetSchemaID returns the configured schema id (zkafka v2's accessor).
func (p ProducerTopicConfig) GetSchemaID() int { return p.SchemaID }

// processDelay is ProcessDelayMillis; 0 (no delay) when unset.
func (c ConsumerTopicConfig) processDelay() time.Duration {
	return millis(c.ProcessDelayMillis, 0)
}

// validateFormatter checks that ft names a formatter of this library; owner names the struct.
func validateFormatter(owner string, ft FormatterType) error {
	if ft == zfmt.ProtoSchemaDeprecatedFmt {
		return errConfig("%s.Formatter %q is not supported (its payloads are not the schema registry's protobuf "+
			"wire format): use %q (ProtoSchemaRegistry)", owner, string(ft), string(ProtoSchemaRegistry))
	}
	if !format.Known(ft) {
		return errConfig("%s.Formatter %q is not a known formatter (%s)", owner, string(ft), format.Names)
	}
	return nil
}

// isSet reports whether an optional string is present and non-empty.
func isSet(s *string) bool { return s != nil && *s != "" }

// validateSASL checks that a username and password come together. owner names the struct.
func validateSASL(owner string, user, pass *string) error {
	switch {
	case isSet(user) && !isSet(pass):
		return errConfig("%s.SaslUsername is set but SaslPassword is empty", owner)
	case !isSet(user) && isSet(pass):
		return errConfig("%s.SaslPassword is set but SaslUsername is empty", owner)
	}
	return nil
}

// validateNonNegative checks optional millisecond fields; names and values pair up.
func validateNonNegative(owner string, fields map[string]*int) error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if v := fields[n]; v != nil && *v < 0 {
			return errConfig("%s.%s is negative (%d)", owner, n, *v)
		}
	}
	return nil
}

// validateConsumer checks what a Reader or Work needs before anything is created. The errors
// are sentences naming the field; none of them contains a secret.
func validateConsumer(conf Config, tc ConsumerTopicConfig) error {
	const owner = "ConsumerTopicConfig"
	if tc.ClientID == "" {
		return errConfig("%s.ClientID is empty", owner)
	}
	if tc.GroupID == "" {
		return errConfig("%s.GroupID is empty", owner)
	}
	if len(tc.topics()) == 0 {
		return errConfig("invalid config, no topics specified (set %s.Topic or Topics)", owner)
	}
	if len(bootstrapServers(conf.BootstrapServers, tc.BootstrapServers)) == 0 {
		return errConfig("invalid consumer config, missing bootstrap server addresses (set Config.BootstrapServers or %s.BootstrapServers)", owner)
	}
	if err := validateFormatter(owner, tc.Formatter); err != nil {
		return err
	}
	if err := validateNonNegative(owner, map[string]*int{
		"ReadTimeoutMillis":     tc.ReadTimeoutMillis,
		"ProcessTimeoutMillis":  tc.ProcessTimeoutMillis,
		"SessionTimeoutMillis":  tc.SessionTimeoutMillis,
		"MaxPollIntervalMillis": tc.MaxPollIntervalMillis,
		"ProcessDelayMillis":    tc.ProcessDelayMillis,
		"AutoCommitIntervalMs":  tc.AutoCommitIntervalMs,
	}); err != nil {
		return err
	}
	if err := validateGroupProtocol(owner, tc); err != nil {
		return err
	}
	if !tc.consumerProtocol() && tc.maxPollInterval() < tc.sessionTimeout() {
		return errConfig("%s.MaxPollIntervalMillis (%d) must not be less than SessionTimeoutMillis (%d)",
			owner, tc.maxPollInterval().Milliseconds(), tc.sessionTimeout().Milliseconds())
	}
	if err := validateSASL("Config", conf.SaslUsername, conf.SaslPassword); err != nil {
		return err
	}
	if err := validateSASL(owner, tc.SaslUsername, tc.SaslPassword); err != nil {
		return err
	}
	if dl := tc.DeadLetterTopicConfig; dl != nil {
		if dl.Topic == "" {
			return errConfig("%s.DeadLetterTopicConfig.Topic is empty", owner)
		}
		if err := validateFormatter(owner+".DeadLetterTopicConfig", dl.Formatter); err != nil {
			return err
		}
	}
	return nil
}

// validateProducer checks what a Writer needs before anything is created. The errors are
// sentences naming the field; none of them contains a secret.
func validateProducer(conf Config, tc ProducerTopicConfig) error {
	const owner = "ProducerTopicConfig"
	if tc.ClientID == "" {
		return errConfig("%s.ClientID is empty", owner)
	}
	if tc.Topic == "" {
		return errConfig("%s.Topic is empty", owner)
	}
	if len(bootstrapServers(conf.BootstrapServers, tc.BootstrapServers)) == 0 {
		return errConfig("invalid producer config, missing bootstrap server addresses (set Config.BootstrapServers or %s.BootstrapServers)", owner)
	}
	if err := validateFormatter(owner, tc.Formatter); err != nil {
		return err
	}
	lingerMillis := tc.LingerMillis
	if err := validateNonNegative(owner, map[string]*int{
		"DeliveryTimeoutMs": tc.DeliveryTimeoutMs,
		"LingerMillis":      &lingerMillis,
	}); err != nil {
		return err
	}
	if err := validateSASL("Config", conf.SaslUsername, conf.SaslPassword); err != nil {
		return err
	}
	return validateSASL(owner, tc.SaslUsername, tc.SaslPassword)
}

// bootstrapServers returns the topic's servers when it has any, else the client's, without
// empty entries.
func bootstrapServers(client, topic []string) []string {
	src := client
	if len(nonEmpty(topic)) > 0 {
		src = topic
	}
	return nonEmpty(src)
}

// nonEmpty drops the empty strings of ss.
func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Consumer keys of librdkafka that the library sets.
const (
	keyEnableAutoOffsetStore = "enable.auto.offset.store"
	keyHeartbeatInterval     = "heartbeat.interval.ms"
	keySessionTimeout        = "session.timeout.ms"
	keyGroupProtocol         = "group.protocol"
	// maxHeartbeatMillis caps the derived heartbeat.interval.ms.
	maxHeartbeatMillis = 3000
)

// commitRetryBackoffMillis is the consumer's retry.backoff.ms: librdkafka retries a commit the
// coordinator refused with a retriable error (COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR,
// REQUEST_TIMED_OUT) twice with the same offsets, after this backoff and twice it, while the
// library's synchronous commit holds its lock; what finishes meanwhile waits. 25 ms, the
// commit's own burst gap, keeps the three tries within about 75 ms instead of 300 ms.
// librdkafka's cap, retry.backoff.max.ms (1 s), still bounds retries that go on longer.
const commitRetryBackoffMillis = 25

// makeConsumerConfig is the one place a consumer's configuration becomes librdkafka keys:
//
//	bootstrap.servers         tc.BootstrapServers when set, else conf.BootstrapServers
//	client.id                 tc.ClientID
//	group.id                  groupPrefix + tc.GroupID
//	enable.auto.commit        true (stored offsets are committed periodically, on revoke and close)
//	auto.commit.interval.ms   tc.AutoCommitIntervalMs, when set
//	auto.offset.reset         earliest
//	session.timeout.ms        tc.SessionTimeoutMillis (default 61000); not set under the
//	                          consumer protocol (KIP-848: the broker's
//	                          group.consumer.session.timeout.ms rules, librdkafka refuses it)
//	max.poll.interval.ms      tc.MaxPollIntervalMillis (default 61000)
//	heartbeat.interval.ms     min(session timeout / 3, 3000); not set under the consumer
//	                          protocol, likewise
//	group.protocol            consumer when tc.GroupProtocol (or AdditionalProps) asks for it
//	isolation.level           read_committed when tc.Transaction, else read_uncommitted
//	fetch.queue.backoff.ms    10 (librdkafka's 1 s default stalls a consumer after a pause)
//	retry.backoff.ms          25, not librdkafka's 100 (see commitRetryBackoffMillis)
//	go.logs.channel.enable    false here; the reader then sets it and go.logs.channel so that
//	                          librdkafka's log lines reach the Logger (routeLogs, clientlogs.go)
//	log_level                 4 (warnings and errors; librdkafka's 6 adds chatter)
//	SASL and TLS keys         see applySecurity
//	tc.AdditionalProps        applied last, overriding any key above
//	enable.auto.offset.store  false, always, after AdditionalProps: the library stores offsets
//	                          itself, only for finished messages
//
// Throughput: fetch.queue.backoff.ms is the one librdkafka default that costs a consumer
// dearly — with its 1 s default every consumer, the plain confluent loop included, stalls
// whenever the prefetch queue fills up (docs/performance.md has the figures). The other
// fetch keys are left at librdkafka's defaults: smaller partition fetches interleave
// partitions more finely but gave no measurable gain, and a larger prefetch only costs memory.
func makeConsumerConfig(conf Config, tc ConsumerTopicConfig, groupPrefix string) kafka.ConfigMap {
	cm := kafka.ConfigMap{
		"bootstrap.servers":      strings.Join(bootstrapServers(conf.BootstrapServers, tc.BootstrapServers), ","),
		"client.id":              tc.ClientID,
		"group.id":               groupPrefix + tc.GroupID,
		"enable.auto.commit":     true,
		"auto.offset.reset":      "earliest",
		keySessionTimeout:        int(tc.sessionTimeout().Milliseconds()),
		"max.poll.interval.ms":   int(tc.maxPollInterval().Milliseconds()),
		"isolation.level":        "read_uncommitted",
		"fetch.queue.backoff.ms": 10,
		"retry.backoff.ms":       commitRetryBackoffMillis,
		"go.logs.channel.enable": false,
		"log_level":              4,
	}
	if tc.AutoCommitIntervalMs != nil {
		cm["auto.commit.interval.ms"] = *tc.AutoCommitIntervalMs
	}
	if tc.Transaction {
		cm["isolation.level"] = "read_committed"
	}
	applySecurity(cm, conf, tc.SaslUsername, tc.SaslPassword)
	for k, v := range tc.AdditionalProps {
		cm[k] = v
	}
	if tc.consumerProtocol() {
		// The broker owns the session timeout and the heartbeat under KIP-848's protocol, and
		// librdkafka refuses a consumer that sets them (validateGroupProtocol refuses a user's).
		delete(cm, keySessionTimeout)
		cm[keyGroupProtocol] = GroupProtocolConsumer
	} else if _, ok := tc.AdditionalProps[keyHeartbeatInterval]; !ok {
		session := int(tc.sessionTimeout().Milliseconds())
		if s, ok := intValue(tc.AdditionalProps[keySessionTimeout]); ok && s > 0 {
			session = s
		}
		cm[keyHeartbeatInterval] = max(1, min(session/3, maxHeartbeatMillis))
	}
	cm[keyEnableAutoOffsetStore] = false
	return cm
}

// brokerOwnedKeys are the librdkafka keys the broker owns under the consumer group protocol,
// each with what to do instead.
var brokerOwnedKeys = map[string]string{
	keySessionTimeout:               "the broker's group.consumer.session.timeout.ms sets it",
	keyHeartbeatInterval:            "the broker's group.consumer.heartbeat.interval.ms sets it",
	"partition.assignment.strategy": "the broker assigns partitions; name its assignor with group.remote.assignor",
}

// testHookTopicConfig, when set by a test, rewrites every ConsumerTopicConfig a Work or a
// Reader is made with (main_test.go: ZKAFKA_TEST_GROUP_PROTOCOL runs the suite under another
// group protocol).
var testHookTopicConfig func(ConsumerTopicConfig) ConsumerTopicConfig

// validateGroupProtocol refuses an unknown protocol, a GroupProtocol that AdditionalProps
// contradicts, and, under the consumer protocol, the settings the broker owns: librdkafka
// would refuse them with its own words, these name the field.
func validateGroupProtocol(owner string, tc ConsumerTopicConfig) error {
	p := tc.groupProtocol()
	if p != GroupProtocolClassic && p != GroupProtocolConsumer {
		return errConfig("%s.GroupProtocol is %q: use %q (the default) or %q", owner, p, GroupProtocolClassic, GroupProtocolConsumer)
	}
	if s, ok := tc.AdditionalProps[keyGroupProtocol].(string); ok && tc.GroupProtocol != "" && !strings.EqualFold(strings.TrimSpace(s), p) {
		return errConfig("%s.GroupProtocol is %q but AdditionalProps[%q] is %q: set one of them", owner, tc.GroupProtocol, keyGroupProtocol, s)
	}
	if p != GroupProtocolConsumer {
		return nil
	}
	if tc.SessionTimeoutMillis != nil {
		return errConfig("%s.SessionTimeoutMillis is set, but under the consumer group protocol the broker owns the session timeout "+
			"(its group.consumer.session.timeout.ms): leave it unset", owner)
	}
	for _, k := range slices.Sorted(maps.Keys(brokerOwnedKeys)) {
		if _, set := tc.AdditionalProps[k]; set {
			return errConfig("%s.AdditionalProps[%q] is set, but under the consumer group protocol %s", owner, k, brokerOwnedKeys[k])
		}
	}
	return nil
}

// makeProducerConfig is the one place a producer's configuration becomes librdkafka keys:
//
//	bootstrap.servers          tc.BootstrapServers when set, else conf.BootstrapServers
//	client.id                  tc.ClientID
//	enable.idempotence         tc.EnableIdempotence (default true)
//	max.in.flight.requests.per.connection
//	                           1 while idempotent (see maxInFlightIdempotent)
//	acks                       tc.RequestRequiredAcks, when set (librdkafka default all)
//	linger.ms                  tc.LingerMillis (default 0)
//	socket.nagle.disable       tc.NagleDisable (default true)
//	delivery.timeout.ms        tc.DeliveryTimeoutMs, when set
//	transactional.id           tc.ClientID, when tc.Transaction
//	go.delivery.report.fields  none (a write only needs the partition and offset back)
//	go.logs.channel.enable     false here; the writer then routes log lines as a reader does
//	log_level                  4 (warnings and errors)
//	SASL and TLS keys          see applySecurity
//	tc.AdditionalProps         applied last, overriding any key above
func makeProducerConfig(conf Config, tc ProducerTopicConfig) kafka.ConfigMap {
	idempotence := true
	if tc.EnableIdempotence != nil {
		idempotence = *tc.EnableIdempotence
	}
	nagleDisable := true
	if tc.NagleDisable != nil {
		nagleDisable = *tc.NagleDisable
	}
	cm := kafka.ConfigMap{
		"bootstrap.servers":         strings.Join(bootstrapServers(conf.BootstrapServers, tc.BootstrapServers), ","),
		"client.id":                 tc.ClientID,
		"enable.idempotence":        idempotence,
		"linger.ms":                 tc.LingerMillis,
		"socket.nagle.disable":      nagleDisable,
		"go.delivery.report.fields": "none",
		"go.logs.channel.enable":    false,
		"log_level":                 4,
	}
	if idempotence {
		cm[keyMaxInFlight] = maxInFlightIdempotent
	}
	if tc.RequestRequiredAcks != nil {
		cm["acks"] = *tc.RequestRequiredAcks
	}
	if tc.DeliveryTimeoutMs != nil {
		cm["delivery.timeout.ms"] = *tc.DeliveryTimeoutMs
	}
	if tc.Transaction {
		cm["transactional.id"] = tc.ClientID
	}
	applySecurity(cm, conf, tc.SaslUsername, tc.SaslPassword)
	for k, v := range tc.AdditionalProps {
		cm[k] = v
	}
	return cm
}

// An idempotent producer's requests in flight per broker connection (librdkafka's default is
// 5). With more than one, a write acknowledged by librdkafka can be missing from the topic:
// when a producer's first request to a partition is refused as not written (NOT_LEADER,
// NOT_ENOUGH_REPLICAS) while its next one is in flight, a broker that has no state for the
// producer on that partition accepts the next one whatever its sequence (Apache Kafka since
// 2.5, kfake), and librdkafka then reports the refused messages delivered ("implicit ack",
// confluent-kafka-go#921). One request at a time cannot leave such a gap; a request still
// carries a batch for every partition of the broker. AdditionalProps may set another value.
const (
	keyMaxInFlight        = "max.in.flight.requests.per.connection"
	maxInFlightIdempotent = 1
)

// applySecurity sets the SASL and TLS keys shared by consumers and producers. The topic's
// username and password, when set, replace the client's. With credentials:
// security.protocol SASL_SSL, sasl.mechanism SCRAM-SHA-256, sasl.username, sasl.password.
// CAFile, KeyFile and CertFile set ssl.ca.location, ssl.key.location and
// ssl.certificate.location, and security.protocol SSL (SASL_SSL with credentials).
// AdditionalProps, applied afterwards, may change any of these (e.g. sasl.mechanism PLAIN).
func applySecurity(cm kafka.ConfigMap, conf Config, user, pass *string) {
	if !isSet(user) {
		user, pass = conf.SaslUsername, conf.SaslPassword
	}
	sasl := isSet(user) && isSet(pass)
	tls := conf.CAFile != "" || conf.KeyFile != "" || conf.CertFile != ""
	switch {
	case sasl:
		cm["security.protocol"] = "SASL_SSL"
	case tls:
		cm["security.protocol"] = "SSL"
	}
	if sasl {
		cm["sasl.mechanism"] = "SCRAM-SHA-256"
		cm["sasl.username"] = *user
		cm["sasl.password"] = *pass
	}
	if conf.CAFile != "" {
		cm["ssl.ca.location"] = conf.CAFile
	}
	if conf.KeyFile != "" {
		cm["ssl.key.location"] = conf.KeyFile
	}
	if conf.CertFile != "" {
		cm["ssl.certificate.location"] = conf.CertFile
	}
}

// intValue reads an integer librdkafka value given as a Go number or a decimal string.
func intValue(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case float64:
		return int(n), true
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(n))
		return i, err == nil
	}
	return 0, false
}
