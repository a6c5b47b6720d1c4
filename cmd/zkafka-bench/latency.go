package main

// The latency scenario, latency-sN: how long a record waits between its timestamp (set by the
// producer when it hands the record over) and the start of the handler that processes it,
// under a steady keyed load the consumer can carry: about half of the noop-sN rate measured
// in the same run (a noop-sN child is run first to measure it when the run has none). Each
// round runs two children on fresh topics at the same rate: a zkafka Work with Speedup(N) and
// a noop handler, and the raw confluent loop (Poll, StoreMessage), which "starts its handler"
// when Poll returns the record. Each child first produces a few records and waits until its
// consumer has read them (it has joined the group), then produces its load, paced every
// millisecond, for -latency-seconds, and keeps the samples of records produced from
// latencyWarmup after that.
//
// Percentiles are exact: every sample is kept (8 bytes each; a 5 s run at 300,000 msg/s is
// 12 MB) and sorted once at the end. No histogram library is in the project's dependency
// lists, and an exact sort of one run's samples costs milliseconds; an HDR histogram would
// only bound the memory of much longer runs. Record timestamps have a resolution of 1 ms, so
// a latency reads up to 1 ms short.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkafka-go/zkafka"
)

// latencyWarmup is how long after its consumer read the primer records a child starts keeping
// samples.
const latencyWarmup = 500 * time.Millisecond

// rawLatency is the child that runs the raw loop of a latency round.
const rawLatency = "raw-latency"

// latencies is what a latency child reports besides a result's usual fields.
type latencies struct {
	Rate    float64 `json:"rate"` // achieved produce rate, msg/s
	Samples int     `json:"samples"`
	P50Ms   float64 `json:"p50_ms"`
	P99Ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
}

// sampler keeps the latencies of records produced at or after from (from is set at the first
// record); safe for concurrent use.
type sampler struct {
	from    atomic.Int64 // UnixNano; 0 until the first record
	samples []int64      // ns; preallocated
	n       atomic.Int64
	seen    atomic.Int64 // every record, kept or not
}

func newSampler(capacity int) *sampler { return &sampler{samples: make([]int64, capacity)} }

// record notes one record's wait, from its timestamp ts to now.
func (s *sampler) record(ts time.Time) {
	now := time.Now()
	s.seen.Add(1)
	if s.from.Load() == 0 {
		s.from.CompareAndSwap(0, now.Add(latencyWarmup).UnixNano())
	}
	if ts.UnixNano() < s.from.Load() {
		return
	}
	if i := s.n.Add(1) - 1; i < int64(len(s.samples)) {
		s.samples[i] = int64(now.Sub(ts))
	}
}

// percentiles returns the nearest-rank percentiles of the samples kept.
func (s *sampler) percentiles() latencies {
	vs := slices.Clone(s.samples[:min(s.n.Load(), int64(len(s.samples)))])
	slices.Sort(vs)
	return latencies{Samples: len(vs), P50Ms: rank(vs, 0.50), P99Ms: rank(vs, 0.99), MaxMs: rank(vs, 1)}
}

// rank is the q-quantile of sorted vs (nearest rank) in milliseconds; NaN without samples.
func rank(vs []int64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	i := max(int(math.Ceil(q*float64(len(vs))))-1, 0)
	return float64(vs[i]) / 1e6
}

// pace produces keyed records to topic at rate msg/s for d, each Millisecond what is due, and
// returns how many it produced.
func pace(addr, topic string, o options, rate float64, d time.Duration) (int, error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": addr, "broker.address.family": "v4", "linger.ms": 0,
		"go.delivery.reports": false, "enable.metrics.push": false, "queue.buffering.max.kbytes": 1 << 20,
	})
	if err != nil {
		return 0, err
	}
	defer p.Close()
	value := make([]byte, o.size)
	keys := make([][]byte, o.keys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%d", i)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	n := 0
	for now := start; now.Sub(start) < d; now = <-tick.C {
		for due := int(rate * now.Sub(start).Seconds()); n < due; n++ {
			m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: keys[n%o.keys], Value: value}
			for err := p.Produce(m, nil); err != nil; err = p.Produce(m, nil) {
				var kerr kafka.Error
				if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
					return n, fmt.Errorf("producing: %w", err)
				}
				p.Flush(1)
			}
		}
	}
	if left := p.Flush(30000); left > 0 {
		return n, fmt.Errorf("producing: %d records not delivered", left)
	}
	return n, nil
}

// runLatencyChild runs one side of a latency round: the consumer (a Work with Speedup
// speedup, or the raw loop when speedup is 0), the paced producer, then the percentiles.
func runLatencyChild(o options, conf zkafka.Config, tc zkafka.ConsumerTopicConfig, speedup int) result {
	s := newSampler(int(o.rate*o.latencySecs*1.2) + 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	consumed := make(chan error, 1)
	if speedup == 0 {
		go func() { consumed <- rawConsume(ctx, conf, tc, s) }()
	} else {
		w := zkafka.NewWorkFactory(zkafka.NewClient(conf)).CreateWithFunc(tc, func(_ context.Context, m *zkafka.Message) error {
			s.record(m.TimeStamp)
			return nil
		}, zkafka.Speedup(uint16(speedup)))
		go func() { consumed <- w.Run(ctx, nil) }()
	}
	// A few records first, until the consumer has joined and reads: on a busy machine the
	// join can take longer than the whole paced run, whose records would all predate the
	// warm-up. The warm-up starts when the primer has been read.
	deadline := time.Now().Add(o.timeout)
	primed, err := pace(o.bootstrap, o.topic, o, 1000, 5*time.Millisecond)
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	if res, ok := awaitSeen(s, int64(primed), consumed, deadline, o.child); !ok {
		return res
	}
	s.from.Store(time.Now().Add(latencyWarmup).UnixNano())
	n, err := pace(o.bootstrap, o.topic, o, o.rate, time.Duration(o.latencySecs*float64(time.Second)))
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	if res, ok := awaitSeen(s, int64(primed+n), consumed, time.Now().Add(o.timeout), o.child); !ok {
		return res
	}
	// A handler counts a record as seen before it writes the sample: stop the consumer
	// before reading the samples.
	cancel()
	if err := <-consumed; err != nil && !errors.Is(err, context.Canceled) {
		return result{Scenario: o.child, Err: fmt.Sprintf("the consumer stopped with an error: %v", err)}
	}
	lat := s.percentiles()
	lat.Rate = float64(n) / o.latencySecs
	return result{Scenario: o.child, Msgs: n, Latency: &lat}
}

// awaitSeen waits until the consumer has seen n records. It returns the failed result when the
// consumer stops or the deadline passes first.
func awaitSeen(s *sampler, n int64, consumed <-chan error, deadline time.Time, scenario string) (result, bool) {
	for s.seen.Load() < n {
		select {
		case err := <-consumed:
			return result{Scenario: scenario, Err: fmt.Sprintf("the consumer stopped: %v", err)}, false
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return result{Scenario: scenario, Err: fmt.Sprintf("consumed %d of %d records", s.seen.Load(), n)}, false
		}
	}
	return result{}, true
}

// rawConsume is the raw loop of the latency scenario: Poll, record, StoreMessage, until ctx
// ends.
func rawConsume(ctx context.Context, conf zkafka.Config, tc zkafka.ConsumerTopicConfig, s *sampler) error {
	cm, err := consumerConfig(conf, tc)
	if err != nil {
		return err
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	if err := c.SubscribeTopics([]string{tc.Topic}, nil); err != nil {
		return err
	}
	for ctx.Err() == nil {
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				continue
			}
			s.record(e.Timestamp)
			if _, err := c.StoreMessage(e); err != nil {
				return err
			}
		case kafka.Error:
			if e.IsFatal() {
				return e
			}
		}
	}
	return nil
}

// latencyRuns is the parent's side of the latency scenarios of one run.
type latencyRuns struct {
	o                options
	exe, addr, topic string
	out              io.Writer
	zk, raw          map[string][]result // per scenario, the rounds that succeeded
	noop             map[int]float64     // the last noop-sN rate measured in this run, by N
}

// round runs one round of latency-sN: both children at the same rate, each on a fresh topic.
func (l *latencyRuns) round(name string, speedup, round int) {
	rate := l.rate(speedup)
	if rate <= 0 {
		fmt.Fprintf(l.out, "# round %d %s: error: no noop-s%d rate to pace by\n", round, name, speedup)
		return
	}
	run := func(child string) (result, bool) {
		t := fmt.Sprintf("%s-%s-r%d", l.topic, strings.ReplaceAll(child, "-", ""), round)
		res := result{Scenario: child}
		if err := createTopic(l.addr, t, l.o.partitions); err != nil {
			res.Err = err.Error()
		} else {
			lo := l.o
			lo.rate = rate
			res = runChildProcess(l.exe, lo, child, l.addr, t, t, 0)
		}
		if res.Err == "" && res.Latency == nil {
			res.Err = "no latencies reported"
		}
		if res.Err != "" {
			fmt.Fprintf(l.out, "# round %d %s (%s): error: %s\n", round, name, child, res.Err)
			return res, false
		}
		fmt.Fprintf(l.out, "# round %d %s (%s): p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d samples at %.0f msg/s\n",
			round, name, child, res.Latency.P50Ms, res.Latency.P99Ms, res.Latency.MaxMs, res.Latency.Samples, res.Latency.Rate)
		return res, true
	}
	zk, ok := run(name)
	raw, rawOK := run(rawLatency)
	if ok && rawOK {
		l.zk[name] = append(l.zk[name], zk)
		l.raw[name] = append(l.raw[name], raw)
	}
}

// rate is the load of latency-sN: -latency-rate, or half the noop-sN rate of this run,
// measured now by a noop-sN child when the run has none.
func (l *latencyRuns) rate(speedup int) float64 {
	if l.o.latencyRate > 0 {
		return l.o.latencyRate
	}
	if r, ok := l.noop[speedup]; ok {
		return r / 2
	}
	name := fmt.Sprintf("noop-s%d", speedup)
	res := runChildProcess(l.exe, l.o, name, l.addr, l.topic, fmt.Sprintf("%s-%s-calibration", l.topic, name), l.o.count)
	if res.Err != "" || res.Seconds <= 0 {
		fmt.Fprintf(l.out, "# calibration %s: error: %s\n", name, res.Err)
		return 0
	}
	l.noop[speedup] = float64(res.Msgs) / res.Seconds
	fmt.Fprintf(l.out, "# calibration %s: %.0f msg/s\n", name, l.noop[speedup])
	return l.noop[speedup] / 2
}

// latencyLine is the line of latency-sN: the medians over rounds of each side's p50 and p99.
func latencyLine(name string, zk, raw []result) (line, summary string, err error) {
	if len(zk) == 0 || len(raw) == 0 {
		return "", "", errors.New("no successful round")
	}
	med := func(rs []result, f func(latencies) float64) float64 {
		return median(rs, func(r result) float64 { return f(*r.Latency) })
	}
	p50 := func(l latencies) float64 { return l.P50Ms }
	p99 := func(l latencies) float64 { return l.P99Ms }
	rate := med(zk, func(l latencies) float64 { return l.Rate })
	line = fmt.Sprintf("scenario=%s rate_msgs_per_s=%.0f zkafka_p50_ms=%.2f zkafka_p99_ms=%.2f raw_p50_ms=%.2f raw_p99_ms=%.2f samples=%d",
		name, rate, med(zk, p50), med(zk, p99), med(raw, p50), med(raw, p99), zk[0].Latency.Samples)
	summary = fmt.Sprintf("%s=p50 %.1fms p99 %.1fms (raw %.1f/%.1f) at %.0f msg/s", name, med(zk, p50), med(zk, p99), med(raw, p50), med(raw, p99), rate)
	return line, summary, nil
}
