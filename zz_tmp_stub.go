package zkafka

// TEMPORARY: replaced by the client change at merge.

import (
	"context"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func (c ConsumerTopicConfig) topics() []string {
	out := []string{}
	if c.Topic != "" {
		out = append(out, c.Topic)
	}
	return append(out, c.Topics...)
}

func ms(p *int, def int) time.Duration {
	if p == nil {
		return time.Duration(def) * time.Millisecond
	}
	return time.Duration(*p) * time.Millisecond
}
func (c ConsumerTopicConfig) readTimeout() time.Duration { return ms(c.ReadTimeoutMillis, 1000) }
func (c ConsumerTopicConfig) processTimeout() time.Duration {
	return ms(c.ProcessTimeoutMillis, 60000)
}
func (c ConsumerTopicConfig) processDelay() time.Duration { return ms(c.ProcessDelayMillis, 0) }
func (c ConsumerTopicConfig) maxPollInterval() time.Duration {
	return ms(c.MaxPollIntervalMillis, 61000)
}

func makeConsumerConfig(conf Config, tc ConsumerTopicConfig, prefix string) kafka.ConfigMap {
	return kafka.ConfigMap{}
}

type ClientProvider interface {
	Reader(ctx context.Context, topicConfig ConsumerTopicConfig, opts ...ReaderOption) (Reader, error)
	Writer(ctx context.Context, topicConfig ProducerTopicConfig, opts ...WriterOption) (Writer, error)
	Close() error
}
type WriterOption func()
type Writer interface {
	Write(ctx context.Context, value any, opts ...WriteOption) (Response, error)
	WriteKey(ctx context.Context, key string, value any, opts ...WriteOption) (Response, error)
	WriteRaw(ctx context.Context, key *string, value []byte, opts ...WriteOption) (Response, error)
	Close()
}
type WriteOption interface{}
type KWriter struct{}

func (w *KWriter) writeMessage(ctx context.Context, key []byte, value []byte, headers []kafka.Header) (Response, error) {
	return Response{}, nil
}

var _ = trace.NewNoopTracerProvider
var _ propagation.TextMapPropagator

type msgCarrier map[string][]byte

func (c msgCarrier) Get(key string) string { return string(c[key]) }
func (c msgCarrier) Set(key, v string)     { c[key] = []byte(v) }
func (c msgCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

func WithHeaders(map[string]string) WriteOption { return nil }
