package main

// The latency scenario, latency-sN: how long a record waits between its timestamp (set by the
// producer when it hands the record over) and the start of the handler that processes it,
// under steady keyed loads the consumer can carry: 10 %, 20 % and 40 % of the raw loop's rate
// measured in the same run (latencyLoads; a raw child is run first to measure it when the run
// has none). Each round runs, at each load, two children on fresh topics at the same rate: a
// zkafka Work with Speedup(N) and a noop handler, and the raw confluent loop (Poll,
// StoreMessage), which "starts its handler" when Poll returns the record; which of the two goes
// first alternates from round to round. Each child first produces a few records and waits
// until its consumer has read them (it has joined the group), then produces its load, paced
// every millisecond, for -latency-seconds, and keeps the samples of records produced from
// latencyWarmup after that. The load comes from a generator process of its own (paceChild),
// which the child starts and waits for, so that the consumer measured shares its process with
// nothing else (-latency-generator-in-child runs it as a goroutine of the child, as before
// 2026-12-07); its producer batches for -latency-linger (5 ms), a wait both sides pay alike.
// A child whose generator fell behind its schedule (the machine could not carry the load)
// says so, and the line of that load is marked.
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
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
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

// latencyLoads are the loads of latency-sN, as fractions of the raw loop's rate in the run.
var latencyLoads = []float64{0.10, 0.20, 0.40}

// behindBy is how late after it was due the generator may produce a record before it counts
// as late: records produced late come in a burst, which both consumers see. A load with 1 %
// of its records late or more is reported as not kept.
const behindBy = 5 * time.Millisecond

// latencies is what a latency child reports besides a result's usual fields.
type latencies struct {
	Rate     float64 `json:"rate"`      // achieved produce rate, msg/s
	Target   float64 `json:"target"`    // the rate asked for, msg/s
	BehindMs float64 `json:"behind_ms"` // the furthest the generator fell behind its schedule
	LatePct  float64 `json:"late_pct"`  // records produced behindBy or more after they were due, %
	Samples  int     `json:"samples"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	// The consumer process's CPU time and context switches over the paced load (the
	// generator runs apart unless -latency-generator-in-child), per record produced.
	CPUUs         float64 `json:"cpu_us_per_msg"`
	SwitchesPerKs float64 `json:"switches_per_kmsg"`

	// With -latency-split, a zkafka child's wait in two parts: from the timestamp to the
	// reader's dispatch (PostRead, on the reader goroutine: the consumer's own wait), and from
	// there to the handler's start (the library's hand-over).
	Split *struct {
		Read, Handoff latencies
	} `json:"split,omitempty"`
}

// kept reports whether the generator kept the rate: it produced at least 99 % of the records
// due, and less than 1 % of them behindBy or more after they were due.
func (l latencies) kept() bool {
	return l.Rate >= 0.99*l.Target && l.LatePct < 1
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
	if trace.IsEnabled() {
		// Each sample in the execution trace (-trace), at the handler's start: the analysis
		// finds what else happened during the slowest ones' waits.
		trace.Log(context.Background(), "latency", strconv.FormatInt(int64(now.Sub(ts)), 10))
	}
}

// readAtKey is the context key of the time the reader dispatched a message (-latency-split).
type readAtKey struct{}

// recordSince keeps a sample of now - since when since is at or after from (UnixNano).
func (s *sampler) recordSince(since, now time.Time, from int64) {
	if since.UnixNano() < from {
		return
	}
	if i := s.n.Add(1) - 1; i < int64(len(s.samples)) {
		s.samples[i] = int64(now.Sub(since))
	}
}

// percentiles returns the nearest-rank percentiles of the samples kept.
func (s *sampler) percentiles() latencies {
	vs := slices.Clone(s.samples[:min(s.n.Load(), int64(len(s.samples)))])
	slices.Sort(vs)
	return latencies{Samples: len(vs), P50Ms: rank(vs, 0.50), P99Ms: rank(vs, 0.99), P999Ms: rank(vs, 0.999), MaxMs: rank(vs, 1)}
}

// rank is the q-quantile of sorted vs (nearest rank) in milliseconds; NaN without samples.
func rank(vs []int64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	i := max(int(math.Ceil(q*float64(len(vs))))-1, 0)
	return float64(vs[i]) / 1e6
}

// pace produces keyed records to topic at rate msg/s for d, each Millisecond what is due. It
// returns how many it produced, the furthest it fell behind its schedule (how long after it
// was due a record was handed to the producer) and how many it produced behindBy or more late.
func pace(addr, topic string, o options, rate float64, d time.Duration) (n int, behind time.Duration, late int, err error) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers": addr, "broker.address.family": "v4", "linger.ms": strconv.FormatFloat(float64(o.genLinger)/float64(time.Millisecond), 'f', -1, 64),
		"go.delivery.reports": false, "enable.metrics.push": false, "queue.buffering.max.kbytes": 1 << 20,
	})
	if err != nil {
		return 0, 0, 0, err
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
	for now := start; now.Sub(start) < d; now = <-tick.C {
		due := int(rate * now.Sub(start).Seconds())
		if n < due {
			// Record i was due at start + i/rate.
			behind = max(behind, now.Sub(start.Add(time.Duration(float64(n)/rate*float64(time.Second)))))
			late += max(0, min(due, int(rate*(now.Sub(start)-behindBy).Seconds()))-n)
		}
		for ; n < due; n++ {
			m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Key: keys[n%o.keys], Value: value}
			for err := p.Produce(m, nil); err != nil; err = p.Produce(m, nil) {
				var kerr kafka.Error
				if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
					return n, behind, late, fmt.Errorf("producing: %w", err)
				}
				p.Flush(1)
			}
		}
	}
	if left := p.Flush(30000); left > 0 {
		return n, behind, late, fmt.Errorf("producing: %d records not delivered", left)
	}
	return n, behind, late, nil
}

// paceChild is the child that produces a latency child's load (runPaceChild).
const paceChild = "pace"

// paced is what the generator child reports besides the records it produced (result.Msgs):
// how far it fell behind its schedule, and how many records were late (pace).
type paced struct {
	BehindNs int64 `json:"behind_ns"`
	Late     int   `json:"late"`
}

// paceLoad produces a latency child's load: o.rate records a second to o.topic for
// -latency-seconds (pace).
func paceLoad(o options) (n int, behind time.Duration, late int, err error) {
	return pace(o.bootstrap, o.topic, o, o.rate, time.Duration(o.latencySecs*float64(time.Second)))
}

// runPaceChild is the generator child: it produces the load (paceLoad) and reports it.
func runPaceChild(o options) result {
	n, behind, late, err := paceLoad(o)
	if err != nil {
		return result{Scenario: paceChild, Msgs: n, Err: err.Error()}
	}
	return result{Scenario: paceChild, Msgs: n, Paced: &paced{BehindNs: int64(behind), Late: late}}
}

// paceApart runs pace in a generator child of its own and waits for it.
func paceApart(o options) (n int, behind time.Duration, late int, err error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, 0, 0, err
	}
	res := runChildProcess(exe, o, paceChild, o.bootstrap, o.topic, o.group, 0)
	switch {
	case res.Err != "":
		return res.Msgs, 0, 0, fmt.Errorf("the generator: %s", res.Err)
	case res.Paced == nil:
		return 0, 0, 0, errors.New("the generator reported nothing")
	}
	return res.Msgs, time.Duration(res.Paced.BehindNs), res.Paced.Late, nil
}

// runLatencyChild runs one side of a latency round: the consumer (a Work with Speedup
// speedup, or the raw loop when speedup is 0), the paced producer, then the percentiles.
func runLatencyChild(o options, conf zkafka.Config, tc zkafka.ConsumerTopicConfig, speedup int) result {
	s := newSampler(int(o.rate*o.latencySecs*1.2) + 1000)
	var read, handoff *sampler // -latency-split
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	consumed := make(chan error, 1)
	if speedup == 0 {
		go func() { consumed <- rawConsume(ctx, conf, tc, s) }()
	} else {
		opts := []zkafka.WorkOption{zkafka.Speedup(uint16(speedup))}
		if o.latencySplit {
			read, handoff = newSampler(cap(s.samples)), newSampler(cap(s.samples))
			opts = append(opts, zkafka.WithLifecycleHooks(zkafka.LifecycleHooks{
				PostRead: func(ctx context.Context, meta zkafka.LifecyclePostReadMeta) (context.Context, error) {
					now := time.Now()
					read.recordSince(meta.Message.TimeStamp, now, s.from.Load())
					return context.WithValue(ctx, readAtKey{}, now), nil
				},
			}))
		}
		w := zkafka.NewWorkFactory(zkafka.NewClient(conf)).CreateWithFunc(tc, func(ctx context.Context, m *zkafka.Message) error {
			if handoff != nil {
				if at, ok := ctx.Value(readAtKey{}).(time.Time); ok && m.TimeStamp.UnixNano() >= s.from.Load() {
					handoff.recordSince(at, time.Now(), 0)
				}
			}
			s.record(m.TimeStamp)
			return nil
		}, opts...)
		go func() { consumed <- w.Run(ctx, nil) }()
	}
	// A few records first, until the consumer has joined and reads: on a busy machine the
	// join can take longer than the whole paced run, whose records would all predate the
	// warm-up. The warm-up starts when the primer has been read.
	deadline := time.Now().Add(o.timeout)
	primed, _, _, err := pace(o.bootstrap, o.topic, o, 1000, 5*time.Millisecond)
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	if res, ok := awaitSeen(s, int64(primed), consumed, deadline, o.child); !ok {
		return res
	}
	s.from.Store(time.Now().Add(latencyWarmup).UnixNano())
	stopTrace := startTrace(o)
	stopProfile := startProfile(o)
	cpu0, sw0 := cpuTime(), switches()
	var n, late int
	var behind time.Duration
	if o.genInChild {
		n, behind, late, err = paceLoad(o)
	} else {
		n, behind, late, err = paceApart(o)
	}
	stopProfile()
	stopTrace()
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	if res, ok := awaitSeen(s, int64(primed+n), consumed, time.Now().Add(o.timeout), o.child); !ok {
		return res
	}
	cpu, sw := cpuTime()-cpu0, switches()-sw0
	// A handler counts a record as seen before it writes the sample: stop the consumer
	// before reading the samples.
	cancel()
	if err := <-consumed; err != nil && !errors.Is(err, context.Canceled) {
		return result{Scenario: o.child, Err: fmt.Sprintf("the consumer stopped with an error: %v", err)}
	}
	lat := s.percentiles()
	lat.Rate, lat.Target, lat.BehindMs = float64(n)/o.latencySecs, o.rate, float64(behind)/1e6
	if n > 0 {
		lat.LatePct = 100 * float64(late) / float64(n)
		lat.CPUUs = cpu.Seconds() * 1e6 / float64(n)
		lat.SwitchesPerKs = float64(sw) * 1000 / float64(n)
	}
	if read != nil {
		lat.Split = &struct{ Read, Handoff latencies }{read.percentiles(), handoff.percentiles()}
	}
	return result{Scenario: o.child, Msgs: n, Latency: &lat}
}

// startProfile starts a CPU profile of the paced window when -cpuprofile names a directory:
// DIR/CHILD-RATE.pprof. It returns what stops it.
func startProfile(o options) (stop func()) {
	if o.profile == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(o.profile, o.child+"-"+strconv.Itoa(int(o.rate))+".pprof"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "zkafka-bench: cpuprofile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "zkafka-bench: cpuprofile:", err)
		_ = f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// startTrace starts an execution trace (runtime/trace) of the paced window when -trace names
// a directory: DIR/CHILD-RATE.trace, for go tool trace. It returns what stops it.
func startTrace(o options) (stop func()) {
	if o.trace == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(o.trace, o.child+"-"+strconv.Itoa(int(o.rate))+".trace"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "zkafka-bench: trace:", err)
		return func() {}
	}
	if err := trace.Start(f); err != nil {
		fmt.Fprintln(os.Stderr, "zkafka-bench: trace:", err)
		_ = f.Close()
		return func() {}
	}
	return func() {
		trace.Stop()
		_ = f.Close()
	}
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
	zk, raw          map[latencyKey][]result // per scenario and load, the rounds that succeeded
	rawRate          float64                 // the first raw rate measured in this run
	warmed           bool                    // a raw child ran (or failed) for rate
}

// latencyKey names one load of one latency scenario.
type latencyKey struct {
	name string
	load float64 // a fraction of the raw rate; 0 with -latency-rate
}

// loads are the loads of a latency scenario: latencyLoads, or only -latency-rate.
func (l *latencyRuns) loads() []float64 {
	if l.o.latencyRate > 0 {
		return []float64{0}
	}
	return latencyLoads
}

// round runs one round of latency-sN: at each load, both children at the same rate, each on
// a fresh topic; the raw loop first in even rounds.
func (l *latencyRuns) round(name string, speedup, round int) {
	for _, load := range l.loads() {
		rate := l.rate(load)
		if rate <= 0 {
			fmt.Fprintf(l.out, "# round %d %s: error: no raw rate to pace by\n", round, name)
			return
		}
		run := func(child string) (result, bool) {
			// The scenario is in the name: the raw child of latency-s1 and of latency-s8 in one run
			// would otherwise share a topic (the second one's creation failed).
			t := fmt.Sprintf("%s-%s-%s-l%.0f-r%d", l.topic, strings.ReplaceAll(name, "-", ""), strings.ReplaceAll(child, "-", ""), load*1000, round)
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
				fmt.Fprintf(l.out, "# round %d %s at %s (%s): error: %s\n", round, name, loadName(load), child, res.Err)
				return res, false
			}
			lat := res.Latency
			note := ""
			if !lat.kept() {
				note = fmt.Sprintf("; the generator did not keep the rate (%.0f of %.0f msg/s, %.1f %% of the records %v late or more, %.1f ms at worst)",
					lat.Rate, lat.Target, lat.LatePct, behindBy, lat.BehindMs)
			}
			if sp := lat.Split; sp != nil {
				note += fmt.Sprintf("; split: to dispatch p50 %.2f p99 %.2f p99.9 %.2f ms, dispatch to handler p50 %.3f p99 %.3f p99.9 %.3f max %.2f ms",
					sp.Read.P50Ms, sp.Read.P99Ms, sp.Read.P999Ms, sp.Handoff.P50Ms, sp.Handoff.P99Ms, sp.Handoff.P999Ms, sp.Handoff.MaxMs)
			}
			fmt.Fprintf(l.out, "# round %d %s at %s (%s): p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms over %d samples at %.0f msg/s, CPU %.2f µs and %.0f switches a 1,000 records%s%s\n",
				round, name, loadName(load), child, lat.P50Ms, lat.P99Ms, lat.P999Ms, lat.MaxMs, lat.Samples, lat.Rate, lat.CPUUs, lat.SwitchesPerKs, note, stealNote(res.StealPct))
			return res, true
		}
		first, second := name, rawLatency
		if round%2 == 0 {
			first, second = second, first
		}
		a, aOK := run(first)
		b, bOK := run(second)
		if !aOK || !bOK {
			continue
		}
		zk, raw := a, b
		if first == rawLatency {
			zk, raw = b, a
		}
		k := latencyKey{name, load}
		l.zk[k] = append(l.zk[k], zk)
		l.raw[k] = append(l.raw[k], raw)
	}
}

// loadName names a load: "10%" of the raw rate, or "fixed" for -latency-rate.
func loadName(load float64) string {
	if load == 0 {
		return "fixed"
	}
	return fmt.Sprintf("%.0f%%", load*100)
}

// rate is the rate of a load: -latency-rate, or that fraction of the first raw rate of this
// run (one load for every round, so that the medians are over the same load), measured now by
// a raw child when the run has none yet. With -latency-rate that child runs too, unmeasured,
// to warm the broker: on a cold one the run's first side (zkafka, in round 1) had p99s of
// 135–156 ms in runs whose other rounds were at 20–90 ms; after a raw catch-up the first
// round was like the others.
func (l *latencyRuns) rate(load float64) float64 {
	if l.rawRate <= 0 && !l.warmed {
		l.warmed = true
		res := runChildProcess(l.exe, l.o, "raw", l.addr, l.topic, l.topic+"-raw-calibration", l.o.count)
		if res.Err != "" || res.Seconds <= 0 {
			fmt.Fprintf(l.out, "# calibration raw: error: %s\n", res.Err)
		} else {
			l.rawRate = float64(res.Msgs) / res.Seconds
			fmt.Fprintf(l.out, "# calibration raw: %.0f msg/s\n", l.rawRate)
		}
	}
	if l.o.latencyRate > 0 {
		return l.o.latencyRate
	}
	return load * l.rawRate
}

// latencyLines are the lines of latency-sN, one per load: the medians over rounds of each
// side's p50, p99 and p99.9 and CPU a record, and whether the generator kept the rate in every
// round.
func (l *latencyRuns) latencyLines(name string) (lines, summary []string) {
	for _, load := range l.loads() {
		k := latencyKey{name, load}
		zk, raw := l.zk[k], l.raw[k]
		if len(zk) == 0 || len(raw) == 0 {
			lines = append(lines, fmt.Sprintf("scenario=%s load=%s error=no_successful_round", name, loadName(load)))
			continue
		}
		med := func(rs []result, f func(latencies) float64) float64 {
			return median(rs, func(r result) float64 { return f(*r.Latency) })
		}
		p50 := func(l latencies) float64 { return l.P50Ms }
		p99 := func(l latencies) float64 { return l.P99Ms }
		p999 := func(l latencies) float64 { return l.P999Ms }
		cpu := func(l latencies) float64 { return l.CPUUs }
		kept := true
		for _, r := range slices.Concat(zk, raw) {
			kept = kept && r.Latency.kept()
		}
		rate := med(zk, func(l latencies) float64 { return l.Rate })
		lines = append(lines, fmt.Sprintf("scenario=%s load=%s rate_msgs_per_s=%.0f zkafka_p50_ms=%.2f zkafka_p99_ms=%.2f zkafka_p999_ms=%.2f raw_p50_ms=%.2f raw_p99_ms=%.2f raw_p999_ms=%.2f zkafka_cpu_us_per_msg=%.2f raw_cpu_us_per_msg=%.2f samples=%d rate_kept=%t",
			name, loadName(load), rate, med(zk, p50), med(zk, p99), med(zk, p999), med(raw, p50), med(raw, p99), med(raw, p999), med(zk, cpu), med(raw, cpu), zk[0].Latency.Samples, kept))
		summary = append(summary, fmt.Sprintf("%s@%s=p50 %.1fms p99 %.1fms (raw %.1f/%.1f) at %.0f msg/s", name, loadName(load), med(zk, p50), med(zk, p99), med(raw, p50), med(raw, p99), rate))
	}
	return lines, summary
}
