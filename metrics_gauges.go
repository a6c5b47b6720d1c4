package zkafka

// The gauges of a Run's metrics (metrics.go): observable, so that the message path pays
// nothing for them. One callback, registered for the Run and unregistered by its stop, takes
// the Work's Status (status.go) when a metric reader collects, and observes from it the
// in-flight messages and bytes, the paused partitions, the breaker, and per assigned partition
// its lag and the age of its oldest unfinished message.

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// runGauges is the gauges of one Run.
type runGauges struct {
	rs    *runState
	group string
	work  []metric.ObserveOption // the Work's attribute set

	inMsgs, inBytes, paused, breaker, lag metric.Int64ObservableGauge
	oldest                                metric.Float64ObservableGauge
	reg                                   metric.Registration // nil: not registered

	mu    sync.Mutex // guards parts: a provider's readers may collect at the same time
	parts map[tpKey][]metric.ObserveOption
}

// newRunGauges makes the gauges of rs and registers their callback.
func newRunGauges(meter metric.Meter, rs *runState, group string) (*runGauges, error) {
	g := &runGauges{rs: rs, group: group, parts: map[tpKey][]metric.ObserveOption{}}
	g.work = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(semconv.MessagingSystemKafka,
		semconv.MessagingConsumerGroupName(group), semconv.MessagingClientID(rs.w.topicConfig.ClientID)))}
	var errs [6]error
	gauge := func(i int, name, unit, desc string) metric.Int64ObservableGauge {
		var inst metric.Int64ObservableGauge
		inst, errs[i] = meter.Int64ObservableGauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		return inst
	}
	g.inMsgs = gauge(0, metricInFlightMessages, "{message}", "Messages read and not yet finished or dropped.")
	g.inBytes = gauge(1, metricInFlightBytes, "By", "Payload bytes of the messages in flight.")
	g.paused = gauge(2, metricPausedPartitions, "{partition}", "Assigned partitions the reader has paused (in-flight bound, open circuit breaker or stop).")
	g.breaker = gauge(3, metricBreakerState, "1", "Circuit breaker state: 0 closed, 1 half-open, 2 open.")
	g.lag = gauge(4, metricLag, "{message}", "End offset minus committed offset of an assigned partition.")
	g.oldest, errs[5] = meter.Float64ObservableGauge(metricOldestAge, metric.WithUnit("s"),
		metric.WithDescription("Time since the oldest unfinished message of an assigned partition was read; 0 when none is."))
	if err := errors.Join(errs[:]...); err != nil {
		return g, err
	}
	reg, err := meter.RegisterCallback(g.observe, g.inMsgs, g.inBytes, g.paused, g.breaker, g.lag, g.oldest)
	g.reg = reg
	return g, err
}

// observe is the callback: it observes every gauge from one Status of the Work.
func (g *runGauges) observe(_ context.Context, o metric.Observer) error {
	st := g.rs.w.Status()
	if !st.Running {
		return nil
	}
	o.ObserveInt64(g.inMsgs, st.InFlight.Messages, g.work...)
	o.ObserveInt64(g.inBytes, st.InFlight.Bytes, g.work...)
	if gate := g.rs.loop.gate; gate != nil {
		state, _ := gate.describe()
		o.ObserveInt64(g.breaker, breakerGauge(state), g.work...)
	}
	if g.rs.published.Load() == nil {
		return nil // a Reader that is not the library's own: its partitions are unknown
	}
	paused := 0
	for _, p := range st.Partitions {
		if p.Paused {
			paused++
		}
		opts := g.partition(p.Topic, p.Partition)
		if p.Lag >= 0 {
			o.ObserveInt64(g.lag, p.Lag, opts...)
		}
		age := 0.0
		if p.Oldest != nil {
			age = p.Oldest.AgeSeconds
		}
		o.ObserveFloat64(g.oldest, age, opts...)
	}
	o.ObserveInt64(g.paused, int64(paused), g.work...)
	return nil
}

// partition returns the attribute set of a partition's gauges.
func (g *runGauges) partition(topic string, partition int32) []metric.ObserveOption {
	k := tpKey{topic, partition}
	g.mu.Lock()
	defer g.mu.Unlock()
	opts, ok := g.parts[k]
	if !ok {
		opts = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(semconv.MessagingSystemKafka,
			semconv.MessagingDestinationName(topic), semconv.MessagingConsumerGroupName(g.group),
			semconv.MessagingDestinationPartitionID(strconv.Itoa(int(partition)))))}
		g.parts[k] = opts
	}
	return opts
}
