package zkafka

// OpenTelemetry glue: the span attribute keys, and text-map carriers over Kafka headers so that
// writers inject and processors (instrument.go) extract the trace context.

import (
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
)

// instrumentationName names the library's tracer (trace.TracerProvider.Tracer).
const instrumentationName = "github.com/zkafka-go/zkafka"

// Span attribute keys, after the OpenTelemetry messaging semantic conventions.
const (
	attrMessagingSystem      = attribute.Key("messaging.system")
	attrMessagingDestination = attribute.Key("messaging.destination.name")
	attrMessagingOperation   = attribute.Key("messaging.operation.type")
	attrMessagingPartition   = attribute.Key("messaging.destination.partition.id")
	attrMessagingOffset      = attribute.Key("messaging.kafka.offset")
)

// messagingSystemKafka is the messaging.system attribute of every span of the library.
var messagingSystemKafka = attrMessagingSystem.String("kafka")

// msgCarrier lets a propagator read and write a Message's headers (map[string][]byte), e.g.
// to extract the producer's span context as the parent of a processing span.
type msgCarrier map[string][]byte

var _ propagation.TextMapCarrier = msgCarrier(nil)

// Get returns the header's value, "" when absent.
func (c msgCarrier) Get(key string) string { return string(c[key]) }

// Set stores the header; it does nothing on a nil map.
func (c msgCarrier) Set(key, value string) {
	if c != nil {
		c[key] = []byte(value)
	}
}

// Keys lists the header names.
func (c msgCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// kafkaHeaderCarrier lets a propagator read and write a record's header list before it is
// produced. Set replaces a header of the same name rather than adding a second one.
type kafkaHeaderCarrier struct {
	headers *[]kafka.Header
}

var _ propagation.TextMapCarrier = kafkaHeaderCarrier{}

// Get returns the value of the first header named key, "" when absent.
func (c kafkaHeaderCarrier) Get(key string) string {
	for _, h := range *c.headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces the header named key, or appends it.
func (c kafkaHeaderCarrier) Set(key, value string) {
	setHeader(c.headers, key, []byte(value))
}

// Keys lists the header names.
func (c kafkaHeaderCarrier) Keys() []string {
	out := make([]string, 0, len(*c.headers))
	for _, h := range *c.headers {
		out = append(out, h.Key)
	}
	return out
}

// setHeader replaces the header named key in hs, or appends it.
func setHeader(hs *[]kafka.Header, key string, value []byte) {
	for i := range *hs {
		if (*hs)[i].Key == key {
			(*hs)[i].Value = value
			return
		}
	}
	*hs = append(*hs, kafka.Header{Key: key, Value: value})
}
