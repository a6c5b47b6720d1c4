package zkafka

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
	"github.com/zkafka-go/zkafka/internal/format"
)

func ptrOf[T any](v T) *T { return &v }

func TestConsumerConfigDefaults(t *testing.T) {
	got := makeConsumerConfig(Config{BootstrapServers: []string{"a:9092", "b:9092"}},
		ConsumerTopicConfig{ClientID: "cid", GroupID: "gid", Topic: "t"}, "")
	require.Equal(t, kafka.ConfigMap{
		"bootstrap.servers":        "a:9092,b:9092",
		"client.id":                "cid",
		"group.id":                 "gid",
		"enable.auto.commit":       true,
		"enable.auto.offset.store": false,
		"auto.offset.reset":        "earliest",
		"session.timeout.ms":       61000,
		"max.poll.interval.ms":     61000,
		"heartbeat.interval.ms":    3000,
		"isolation.level":          "read_uncommitted",
		"fetch.queue.backoff.ms":   10,
		"retry.backoff.ms":         25,
		"go.logs.channel.enable":   false,
		"log_level":                4,
	}, got)
}

func TestProducerConfigDefaults(t *testing.T) {
	got := makeProducerConfig(Config{BootstrapServers: []string{"a:9092"}},
		ProducerTopicConfig{ClientID: "cid", Topic: "t"})
	require.Equal(t, kafka.ConfigMap{
		"bootstrap.servers":         "a:9092",
		"client.id":                 "cid",
		"enable.idempotence":        true,
		keyMaxInFlight:              1,
		"linger.ms":                 0,
		"socket.nagle.disable":      true,
		"go.delivery.report.fields": "none",
		"go.logs.channel.enable":    false,
		"log_level":                 4,
	}, got)
}

func TestConsumerConfigMapping(t *testing.T) {
	base := func() ConsumerTopicConfig { return ConsumerTopicConfig{ClientID: "cid", GroupID: "gid", Topic: "t"} }
	conf := Config{BootstrapServers: []string{"client:9092"}}
	tests := []struct {
		name   string
		conf   Config
		tc     func(*ConsumerTopicConfig)
		prefix string
		want   kafka.ConfigMap // keys that must have these values
		absent []string        // keys that must not be set
	}{
		{name: "group prefix", prefix: "dev.", want: kafka.ConfigMap{"group.id": "dev.gid"}},
		{name: "topic bootstrap servers win", tc: func(c *ConsumerTopicConfig) { c.BootstrapServers = []string{"t1:1", "t2:2"} },
			want: kafka.ConfigMap{"bootstrap.servers": "t1:1,t2:2"}},
		{name: "empty topic bootstrap servers fall back", tc: func(c *ConsumerTopicConfig) { c.BootstrapServers = []string{""} },
			want: kafka.ConfigMap{"bootstrap.servers": "client:9092"}},
		{name: "auto commit interval", tc: func(c *ConsumerTopicConfig) { c.AutoCommitIntervalMs = ptrOf(250) },
			want: kafka.ConfigMap{"auto.commit.interval.ms": 250}},
		{name: "auto commit interval unset", absent: []string{"auto.commit.interval.ms", "security.protocol", "sasl.mechanism", "sasl.username", "sasl.password", "ssl.ca.location", "ssl.key.location", "ssl.certificate.location"}},
		{name: "session timeout and derived heartbeat", tc: func(c *ConsumerTopicConfig) { c.SessionTimeoutMillis = ptrOf(6000) },
			want: kafka.ConfigMap{"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000}},
		{name: "heartbeat capped at 3 s", tc: func(c *ConsumerTopicConfig) { c.SessionTimeoutMillis = ptrOf(45000) },
			want: kafka.ConfigMap{"heartbeat.interval.ms": 3000}},
		{name: "heartbeat from AdditionalProps session timeout", tc: func(c *ConsumerTopicConfig) {
			c.AdditionalProps = map[string]any{"session.timeout.ms": "4500"}
		}, want: kafka.ConfigMap{"session.timeout.ms": "4500", "heartbeat.interval.ms": 1500}},
		{name: "heartbeat from AdditionalProps wins", tc: func(c *ConsumerTopicConfig) {
			c.AdditionalProps = map[string]any{"heartbeat.interval.ms": 777}
		}, want: kafka.ConfigMap{"heartbeat.interval.ms": 777}},
		{name: "consumer group protocol: no session timeout or heartbeat", tc: func(c *ConsumerTopicConfig) {
			c.SessionTimeoutMillis = ptrOf(6000)
			c.AdditionalProps = map[string]any{"group.protocol": "consumer"}
		}, want: kafka.ConfigMap{"group.protocol": "consumer"}, absent: []string{"session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"}},
		{name: "consumer group protocol from GroupProtocol", tc: func(c *ConsumerTopicConfig) {
			c.GroupProtocol = GroupProtocolConsumer
			c.AdditionalProps = map[string]any{"group.remote.assignor": "range"}
		}, want: kafka.ConfigMap{"group.protocol": "consumer", "group.remote.assignor": "range"},
			absent: []string{"session.timeout.ms", "heartbeat.interval.ms", "partition.assignment.strategy"}},
		{name: "classic group protocol keeps them", tc: func(c *ConsumerTopicConfig) {
			c.AdditionalProps = map[string]any{"group.protocol": "classic"}
		}, want: kafka.ConfigMap{"session.timeout.ms": 61000, "heartbeat.interval.ms": 3000}},
		{name: "zero session timeout means default", tc: func(c *ConsumerTopicConfig) { c.SessionTimeoutMillis = ptrOf(0) },
			want: kafka.ConfigMap{"session.timeout.ms": 61000}},
		{name: "max poll interval", tc: func(c *ConsumerTopicConfig) { c.MaxPollIntervalMillis = ptrOf(90000) },
			want: kafka.ConfigMap{"max.poll.interval.ms": 90000}},
		{name: "transaction reads committed", tc: func(c *ConsumerTopicConfig) { c.Transaction = true },
			want: kafka.ConfigMap{"isolation.level": "read_committed"}},
		{name: "AdditionalProps add keys and override defaults", tc: func(c *ConsumerTopicConfig) {
			c.AdditionalProps = map[string]any{"auto.offset.reset": "latest", "fetch.queue.backoff.ms": 50, "retry.backoff.ms": 100, "partition.assignment.strategy": "cooperative-sticky"}
		}, want: kafka.ConfigMap{"auto.offset.reset": "latest", "fetch.queue.backoff.ms": 50, "retry.backoff.ms": 100, "partition.assignment.strategy": "cooperative-sticky"}},
		{name: "AdditionalProps cannot turn on offset store", tc: func(c *ConsumerTopicConfig) {
			c.AdditionalProps = map[string]any{"enable.auto.offset.store": true}
		}, want: kafka.ConfigMap{"enable.auto.offset.store": false}},
		{name: "client SASL", conf: Config{BootstrapServers: []string{"x:1"}, SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			want: kafka.ConfigMap{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "u", "sasl.password": "p"}},
		{name: "topic SASL overrides client SASL", conf: Config{BootstrapServers: []string{"x:1"}, SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			tc:   func(c *ConsumerTopicConfig) { c.SaslUsername, c.SaslPassword = ptrOf("tu"), ptrOf("tp") },
			want: kafka.ConfigMap{"sasl.username": "tu", "sasl.password": "tp"}},
		{name: "topic SASL without client SASL", tc: func(c *ConsumerTopicConfig) { c.SaslUsername, c.SaslPassword = ptrOf("tu"), ptrOf("tp") },
			want: kafka.ConfigMap{"security.protocol": "SASL_SSL", "sasl.username": "tu", "sasl.password": "tp"}},
		{name: "SASL mechanism from AdditionalProps", conf: Config{BootstrapServers: []string{"x:1"}, SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			tc:   func(c *ConsumerTopicConfig) { c.AdditionalProps = map[string]any{"sasl.mechanism": "PLAIN"} },
			want: kafka.ConfigMap{"sasl.mechanism": "PLAIN"}},
		{name: "TLS files", conf: Config{BootstrapServers: []string{"x:1"}, CAFile: "/ca.pem", KeyFile: "/key.pem", CertFile: "/cert.pem"},
			want:   kafka.ConfigMap{"security.protocol": "SSL", "ssl.ca.location": "/ca.pem", "ssl.key.location": "/key.pem", "ssl.certificate.location": "/cert.pem"},
			absent: []string{"sasl.mechanism", "sasl.username"}},
		{name: "CA file alone", conf: Config{BootstrapServers: []string{"x:1"}, CAFile: "/ca.pem"},
			want:   kafka.ConfigMap{"security.protocol": "SSL", "ssl.ca.location": "/ca.pem"},
			absent: []string{"ssl.key.location", "ssl.certificate.location"}},
		{name: "TLS with SASL", conf: Config{BootstrapServers: []string{"x:1"}, CAFile: "/ca.pem", SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			want: kafka.ConfigMap{"security.protocol": "SASL_SSL", "ssl.ca.location": "/ca.pem", "sasl.username": "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := base()
			if tt.tc != nil {
				tt.tc(&tc)
			}
			c := conf
			if tt.conf.BootstrapServers != nil {
				c = tt.conf
			}
			got := makeConsumerConfig(c, tc, tt.prefix)
			for k, v := range tt.want {
				require.Contains(t, got, k)
				require.Equal(t, v, got[k], k)
			}
			for _, k := range tt.absent {
				require.NotContains(t, got, k)
			}
			require.Equal(t, false, got["enable.auto.offset.store"], "offset store is always off")
		})
	}
}

func TestProducerConfigMapping(t *testing.T) {
	conf := Config{BootstrapServers: []string{"client:9092"}}
	tests := []struct {
		name   string
		conf   Config
		tc     func(*ProducerTopicConfig)
		want   kafka.ConfigMap
		absent []string
	}{
		{name: "unset optional keys", absent: []string{"acks", "delivery.timeout.ms", "transactional.id", "security.protocol", "sasl.username", "sasl.password", "ssl.ca.location"}},
		{name: "topic bootstrap servers win", tc: func(c *ProducerTopicConfig) { c.BootstrapServers = []string{"t:1"} },
			want: kafka.ConfigMap{"bootstrap.servers": "t:1"}},
		{name: "idempotence off, librdkafka's requests in flight", tc: func(c *ProducerTopicConfig) { c.EnableIdempotence = ptrOf(false) },
			want: kafka.ConfigMap{"enable.idempotence": false}, absent: []string{keyMaxInFlight}},
		{name: "acks", tc: func(c *ProducerTopicConfig) { c.RequestRequiredAcks = ptrOf("1") }, want: kafka.ConfigMap{"acks": "1"}},
		{name: "linger", tc: func(c *ProducerTopicConfig) { c.LingerMillis = 25 }, want: kafka.ConfigMap{"linger.ms": 25}},
		{name: "nagle enabled", tc: func(c *ProducerTopicConfig) { c.NagleDisable = ptrOf(false) }, want: kafka.ConfigMap{"socket.nagle.disable": false}},
		{name: "delivery timeout", tc: func(c *ProducerTopicConfig) { c.DeliveryTimeoutMs = ptrOf(5000) }, want: kafka.ConfigMap{"delivery.timeout.ms": 5000}},
		{name: "transaction", tc: func(c *ProducerTopicConfig) { c.Transaction = true }, want: kafka.ConfigMap{"transactional.id": "cid"}},
		{name: "AdditionalProps last", tc: func(c *ProducerTopicConfig) {
			c.AdditionalProps = map[string]any{"enable.idempotence": false, "compression.type": "zstd"}
		}, want: kafka.ConfigMap{"enable.idempotence": false, "compression.type": "zstd"}},
		{name: "client SASL", conf: Config{BootstrapServers: []string{"x:1"}, SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			want: kafka.ConfigMap{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "u", "sasl.password": "p"}},
		{name: "topic SASL overrides", conf: Config{BootstrapServers: []string{"x:1"}, SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			tc:   func(c *ProducerTopicConfig) { c.SaslUsername, c.SaslPassword = ptrOf("tu"), ptrOf("tp") },
			want: kafka.ConfigMap{"sasl.username": "tu", "sasl.password": "tp"}},
		{name: "own requests in flight", tc: func(c *ProducerTopicConfig) { c.AdditionalProps = map[string]any{keyMaxInFlight: 5} },
			want: kafka.ConfigMap{keyMaxInFlight: 5}},
		{name: "TLS", conf: Config{BootstrapServers: []string{"x:1"}, CAFile: "/ca", KeyFile: "/k", CertFile: "/c"},
			want: kafka.ConfigMap{"security.protocol": "SSL", "ssl.ca.location": "/ca", "ssl.key.location": "/k", "ssl.certificate.location": "/c"}},
		{name: "TLS and SASL", conf: Config{BootstrapServers: []string{"x:1"}, CertFile: "/c", KeyFile: "/k", SaslUsername: ptrOf("u"), SaslPassword: ptrOf("p")},
			want: kafka.ConfigMap{"security.protocol": "SASL_SSL", "ssl.certificate.location": "/c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := ProducerTopicConfig{ClientID: "cid", Topic: "t"}
			if tt.tc != nil {
				tt.tc(&tc)
			}
			c := conf
			if tt.conf.BootstrapServers != nil {
				c = tt.conf
			}
			got := makeProducerConfig(c, tc)
			for k, v := range tt.want {
				require.Contains(t, got, k)
				require.Equal(t, v, got[k], k)
			}
			for _, k := range tt.absent {
				require.NotContains(t, got, k)
			}
		})
	}
}

func TestConsumerTopicConfigGetters(t *testing.T) {
	var zero ConsumerTopicConfig
	require.Equal(t, time.Second, zero.readTimeout())
	require.Equal(t, 60*time.Second, zero.processTimeout())
	require.Equal(t, 61*time.Second, zero.sessionTimeout())
	require.Equal(t, 61*time.Second, zero.maxPollInterval())
	require.Equal(t, time.Duration(0), zero.processDelay())
	require.Nil(t, zero.topics())

	set := ConsumerTopicConfig{
		ReadTimeoutMillis: ptrOf(5), ProcessTimeoutMillis: ptrOf(6), SessionTimeoutMillis: ptrOf(7),
		MaxPollIntervalMillis: ptrOf(8), ProcessDelayMillis: ptrOf(9),
		Topic: "a", Topics: []string{"b", "", "a", "c", "b"},
	}
	require.Equal(t, 5*time.Millisecond, set.readTimeout())
	require.Equal(t, 6*time.Millisecond, set.processTimeout())
	require.Equal(t, 7*time.Millisecond, set.sessionTimeout())
	require.Equal(t, 8*time.Millisecond, set.maxPollInterval())
	require.Equal(t, 9*time.Millisecond, set.processDelay())
	require.Equal(t, []string{"a", "b", "c"}, set.topics())
	require.Equal(t, []string{"x"}, ConsumerTopicConfig{Topics: []string{"x"}}.topics())
}

func TestValidateConsumer(t *testing.T) {
	conf := Config{BootstrapServers: []string{"b:1"}}
	ok := func() ConsumerTopicConfig { return ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"} }
	tests := []struct {
		name string
		conf *Config
		tc   func(*ConsumerTopicConfig)
		want string
	}{
		{name: "valid", want: ""},
		{name: "topics only", tc: func(c *ConsumerTopicConfig) { c.Topic, c.Topics = "", []string{"x"} }, want: ""},
		{name: "client id", tc: func(c *ConsumerTopicConfig) { c.ClientID = "" }, want: "zkafka: ConsumerTopicConfig.ClientID is empty"},
		{name: "group id", tc: func(c *ConsumerTopicConfig) { c.GroupID = "" }, want: "zkafka: ConsumerTopicConfig.GroupID is empty"},
		{name: "topic", tc: func(c *ConsumerTopicConfig) { c.Topic, c.Topics = "", []string{""} }, want: "zkafka: invalid config, no topics specified (set ConsumerTopicConfig.Topic or Topics)"},
		{name: "bootstrap", conf: &Config{}, want: "zkafka: invalid consumer config, missing bootstrap server addresses (set Config.BootstrapServers or ConsumerTopicConfig.BootstrapServers)"},
		{name: "bootstrap from topic", conf: &Config{}, tc: func(c *ConsumerTopicConfig) { c.BootstrapServers = []string{"x:1"} }, want: ""},
		{name: "formatter", tc: func(c *ConsumerTopicConfig) { c.Formatter = "xyz" }, want: `zkafka: ConsumerTopicConfig.Formatter "xyz" is not a known formatter (` + format.Names + ")"},
		{name: "negative read timeout", tc: func(c *ConsumerTopicConfig) { c.ReadTimeoutMillis = ptrOf(-1) }, want: "zkafka: ConsumerTopicConfig.ReadTimeoutMillis is negative (-1)"},
		{name: "negative process timeout", tc: func(c *ConsumerTopicConfig) { c.ProcessTimeoutMillis = ptrOf(-2) }, want: "zkafka: ConsumerTopicConfig.ProcessTimeoutMillis is negative (-2)"},
		{name: "negative session timeout", tc: func(c *ConsumerTopicConfig) { c.SessionTimeoutMillis = ptrOf(-3) }, want: "zkafka: ConsumerTopicConfig.SessionTimeoutMillis is negative (-3)"},
		{name: "negative max poll", tc: func(c *ConsumerTopicConfig) { c.MaxPollIntervalMillis = ptrOf(-4) }, want: "zkafka: ConsumerTopicConfig.MaxPollIntervalMillis is negative (-4)"},
		{name: "negative delay", tc: func(c *ConsumerTopicConfig) { c.ProcessDelayMillis = ptrOf(-5) }, want: "zkafka: ConsumerTopicConfig.ProcessDelayMillis is negative (-5)"},
		{name: "negative commit interval", tc: func(c *ConsumerTopicConfig) { c.AutoCommitIntervalMs = ptrOf(-6) }, want: "zkafka: ConsumerTopicConfig.AutoCommitIntervalMs is negative (-6)"},
		{name: "max poll below session", tc: func(c *ConsumerTopicConfig) { c.MaxPollIntervalMillis = ptrOf(10000) },
			want: "zkafka: ConsumerTopicConfig.MaxPollIntervalMillis (10000) must not be less than SessionTimeoutMillis (61000)"},
		{name: "max poll below session is fine under the consumer group protocol", tc: func(c *ConsumerTopicConfig) {
			c.MaxPollIntervalMillis = ptrOf(10000)
			c.AdditionalProps = map[string]any{"group.protocol": "consumer"}
		}, want: ""},
		{name: "unknown group protocol", tc: func(c *ConsumerTopicConfig) { c.GroupProtocol = "modern" },
			want: `zkafka: ConsumerTopicConfig.GroupProtocol is "modern": use "classic" (the default) or "consumer"`},
		{name: "group protocol contradicted", tc: func(c *ConsumerTopicConfig) {
			c.GroupProtocol = GroupProtocolConsumer
			c.AdditionalProps = map[string]any{"group.protocol": "classic"}
		}, want: `zkafka: ConsumerTopicConfig.GroupProtocol is "consumer" but AdditionalProps["group.protocol"] is "classic": set one of them`},
		{name: "session timeout under the consumer group protocol", tc: func(c *ConsumerTopicConfig) {
			c.GroupProtocol = GroupProtocolConsumer
			c.SessionTimeoutMillis = ptrOf(6000)
		}, want: "zkafka: ConsumerTopicConfig.SessionTimeoutMillis is set, but under the consumer group protocol the broker owns the " +
			"session timeout (its group.consumer.session.timeout.ms): leave it unset"},
		{name: "assignment strategy under the consumer group protocol", tc: func(c *ConsumerTopicConfig) {
			c.AdditionalProps = map[string]any{"group.protocol": "consumer", "partition.assignment.strategy": "cooperative-sticky"}
		}, want: `zkafka: ConsumerTopicConfig.AdditionalProps["partition.assignment.strategy"] is set, but under the consumer group protocol ` +
			"the broker assigns partitions; name its assignor with group.remote.assignor"},
		{name: "heartbeat under the consumer group protocol", tc: func(c *ConsumerTopicConfig) {
			c.GroupProtocol = GroupProtocolConsumer
			c.AdditionalProps = map[string]any{"heartbeat.interval.ms": 500}
		}, want: `zkafka: ConsumerTopicConfig.AdditionalProps["heartbeat.interval.ms"] is set, but under the consumer group protocol ` +
			"the broker's group.consumer.heartbeat.interval.ms sets it"},
		{name: "client username without password", conf: &Config{BootstrapServers: []string{"b:1"}, SaslUsername: ptrOf("u")},
			want: "zkafka: Config.SaslUsername is set but SaslPassword is empty"},
		{name: "client password without username", conf: &Config{BootstrapServers: []string{"b:1"}, SaslPassword: ptrOf("secret-pw")},
			want: "zkafka: Config.SaslPassword is set but SaslUsername is empty"},
		{name: "topic username without password", tc: func(c *ConsumerTopicConfig) { c.SaslUsername = ptrOf("u") },
			want: "zkafka: ConsumerTopicConfig.SaslUsername is set but SaslPassword is empty"},
		{name: "dead letter topic", tc: func(c *ConsumerTopicConfig) { c.DeadLetterTopicConfig = &ProducerTopicConfig{} },
			want: "zkafka: ConsumerTopicConfig.DeadLetterTopicConfig.Topic is empty"},
		{name: "dead letter formatter", tc: func(c *ConsumerTopicConfig) {
			c.DeadLetterTopicConfig = &ProducerTopicConfig{Topic: "d", Formatter: "nope"}
		},
			want: `zkafka: ConsumerTopicConfig.DeadLetterTopicConfig.Formatter "nope" is not a known formatter (` + format.Names + ")"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := ok()
			if tt.tc != nil {
				tt.tc(&tc)
			}
			c := conf
			if tt.conf != nil {
				c = *tt.conf
			}
			err := validateConsumer(c, tc)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.want)
			require.True(t, IsConfigError(err))
		})
	}
}

func TestValidateProducer(t *testing.T) {
	conf := Config{BootstrapServers: []string{"b:1"}}
	tests := []struct {
		name string
		conf *Config
		tc   func(*ProducerTopicConfig)
		want string
	}{
		{name: "valid", want: ""},
		{name: "client id", tc: func(c *ProducerTopicConfig) { c.ClientID = "" }, want: "zkafka: ProducerTopicConfig.ClientID is empty"},
		{name: "topic", tc: func(c *ProducerTopicConfig) { c.Topic = "" }, want: "zkafka: ProducerTopicConfig.Topic is empty"},
		{name: "bootstrap", conf: &Config{BootstrapServers: []string{" "}}, want: "zkafka: invalid producer config, missing bootstrap server addresses (set Config.BootstrapServers or ProducerTopicConfig.BootstrapServers)"},
		{name: "formatter", tc: func(c *ProducerTopicConfig) { c.Formatter = "xyz" }, want: `zkafka: ProducerTopicConfig.Formatter "xyz" is not a known formatter (` + format.Names + ")"},
		{name: "delivery timeout", tc: func(c *ProducerTopicConfig) { c.DeliveryTimeoutMs = ptrOf(-1) }, want: "zkafka: ProducerTopicConfig.DeliveryTimeoutMs is negative (-1)"},
		{name: "linger", tc: func(c *ProducerTopicConfig) { c.LingerMillis = -2 }, want: "zkafka: ProducerTopicConfig.LingerMillis is negative (-2)"},
		{name: "topic password without username", tc: func(c *ProducerTopicConfig) { c.SaslPassword = ptrOf("pw") },
			want: "zkafka: ProducerTopicConfig.SaslPassword is set but SaslUsername is empty"},
		{name: "client username without password", conf: &Config{BootstrapServers: []string{"b:1"}, SaslUsername: ptrOf("u"), SaslPassword: ptrOf("")},
			want: "zkafka: Config.SaslUsername is set but SaslPassword is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := ProducerTopicConfig{ClientID: "c", Topic: "t"}
			if tt.tc != nil {
				tt.tc(&tc)
			}
			c := conf
			if tt.conf != nil {
				c = *tt.conf
			}
			err := validateProducer(c, tc)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.want)
			require.True(t, IsConfigError(err))
		})
	}
}

// TestG12ZeroValuesNeverPanic feeds zero values to everything that takes a config.
func TestG12ZeroValuesNeverPanic(t *testing.T) {
	require.NotPanics(t, func() {
		require.Error(t, validateConsumer(Config{}, ConsumerTopicConfig{}))
		require.Error(t, validateProducer(Config{}, ProducerTopicConfig{}))
		_ = makeConsumerConfig(Config{}, ConsumerTopicConfig{}, "")
		_ = makeProducerConfig(Config{}, ProducerTopicConfig{})
		_ = sprintAll(Config{}) + sprintAll(ConsumerTopicConfig{}) + sprintAll(ProducerTopicConfig{}) + sprintAll(SchemaRegistryConfig{})
		var nilConf *ConsumerTopicConfig
		_ = sprintAll(nilConf)
		c := NewClient(Config{})
		_, err := c.Reader(t.Context(), ConsumerTopicConfig{})
		require.True(t, IsConfigError(err))
		_, err = c.Writer(t.Context(), ProducerTopicConfig{})
		require.True(t, IsConfigError(err))
		require.NoError(t, c.Close())
	})
}

// TestLibrdkafkasRefusalsAreConfigErrors: an unknown property and an invalid value, which
// librdkafka refuses when the consumer or producer is made, are configuration errors from a
// Reader, a Writer and a Work's Run, and they name the key.
func TestLibrdkafkasRefusalsAreConfigErrors(t *testing.T) {
	e := newEnv(t)
	cases := map[string]struct {
		props map[string]any
		key   string
	}{
		"unknown property": {map[string]any{"no.such.property": "x"}, "no.such.property"},
		"invalid value":    {map[string]any{"socket.timeout.ms": -5}, "socket.timeout.ms"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(NoopLogger{}))
			t.Cleanup(func() { _ = c.Close() })
			ccfg := ConsumerTopicConfig{ClientID: uniqueTestName(t, "c"), GroupID: "g", Topic: "orders", AdditionalProps: tc.props}
			_, rerr := c.Reader(t.Context(), ccfg)
			_, werr := c.Writer(t.Context(), ProducerTopicConfig{ClientID: uniqueTestName(t, "p"), Topic: "orders", AdditionalProps: tc.props})
			w := NewWorkFactory(c).CreateWithFunc(ccfg, func(context.Context, *Message) error { return nil })
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			runErr := w.Run(ctx, nil)
			for what, err := range map[string]error{"Reader": rerr, "Writer": werr, "Run": runErr} {
				require.Error(t, err, what)
				require.True(t, IsConfigError(err), "%s: %v", what, err)
				require.Contains(t, err.Error(), `"`+tc.key+`"`, what)
				require.Contains(t, err.Error(), "(key "+tc.key+" of AdditionalProps)", what)
				require.Equal(t, 1, strings.Count(err.Error(), "zkafka: "), what)
				var kerr kafka.Error
				require.ErrorAs(t, err, &kerr, "%s: librdkafka's error is kept", what)
			}
		})
	}
}
