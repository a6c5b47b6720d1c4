// Command zkafka-bench measures zkafka against a plain confluent-kafka-go consumer loop, side
// by side, in one run on one machine.
//
// It starts an embedded broker (or uses KAFKA_BOOTSTRAP_SERVERS), produces the data set once,
// then runs every scenario in its own child process (this binary re-executed with -child) with
// a fresh consumer group, so that each scenario's CPU time, allocations and peak RSS are its
// own: the broker and the producer run in the parent (whose CPU time over each child's life
// the round lines print, so that an embedded broker's share shows). Each scenario is repeated
// -rounds times; the medians are printed, one line per scenario, then a one-line summary.
//
// Scenarios:
//
//	raw            Poll + StoreMessage with auto commit, the librdkafka settings zkafka uses
//	noop-sN        zkafka Work, Speedup(N), a processor that returns nil at once
//	sleep1ms-sN    zkafka Work, Speedup(N), a processor that sleeps 1 ms
//	raw-sleep1ms-sN  the control for sleep1ms-sN: the raw loop handing every message to N
//	               goroutines that sleep 1 ms, with no per-key order and no commit tracking;
//	               the most any Kafka library can reach for that handler on this machine
//	deadletter-sN  zkafka Work, Speedup(N): one message in ten fails with a plain error and
//	               is written to a dead letter topic (the breaker off: the scenario measures
//	               the dead letter path); a message counts once finished (OnDone)
//	retry-sN       zkafka Work, Speedup(N), WithRetry with a 1 ms backoff: one message in ten
//	               fails twice, then passes on its third run
//	metrics-sN     noop-sN with every metric recorded by the OpenTelemetry SDK (a manual
//	               reader, collected once a second as a scrape would)
//	batch-noop-sN  noop-sN with a batch processor (WorkFactory.CreateBatch, the default
//	               BatchPolicy) that returns nil at once
//	bulk-sN        a handler that costs what a bulk endpoint does: 2 ms per call plus 5 µs per
//	               message (bulkPerCall, bulkPerMsg), as a single-message processor, Speedup(N)
//	bulk-batch-sN  the same handler as a batch processor (the default BatchPolicy), Speedup(N):
//	               reported against bulk-sN of the same round (ratio_vs_bulk)
//	latency-sN     p50, p99 and p99.9 of the wait from a record's timestamp to its handler's
//	               start, at steady keyed loads of 10, 20 and 40 % of the raw loop's rate, for
//	               a zkafka Work with Speedup(N) and for the raw loop side by side (latency.go)
//
// The deadletter, retry, metrics and batch-noop scenarios are reported against the noop
// scenario of the same Speedup in the same round (ratio_vs_noop). Every scenario but the
// sleeping, bulk and latency ones is also reported against raw in the same round: its rate
// (ratio_vs_raw) and its CPU a message (cpu_vs_raw). Raw's rate_spread says how much raw itself
// moved between rounds.
//
// The raw consumer's configuration is the one zkafka's Client builds: the bench creates a
// Client with a consumer provider that captures the librdkafka map it is handed, so the two
// can never drift apart and the library exports nothing for the bench.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/testhelper"
)

const allScenarios = "raw,noop-s1,noop-s8,batch-noop-s8,metrics-s8,deadletter-s8,retry-s8,sleep1ms-s1,sleep1ms-s8,sleep1ms-s64,sleep1ms-s256,raw-sleep1ms-s64,raw-sleep1ms-s256,bulk-s8,bulk-batch-s8,latency-s8"

// The cost of the bulk scenarios' handler: per call and per message it gets.
const (
	bulkPerCall = 2 * time.Millisecond
	bulkPerMsg  = 5 * time.Microsecond
)

type options struct {
	count      int
	size       int
	keys       int
	partitions int
	rounds     int
	scenarios  string
	sleepSecs  float64
	timeout    time.Duration

	// child mode
	child     string
	bootstrap string
	topic     string
	group     string
	sleepDur  time.Duration
	profile   string
	trace     string
	props     string
	stderr    bool // copy the children's stderr to the parent's
	inFlight  int

	latencySecs  float64       // how long each latency child produces
	latencyRate  float64       // the latency scenarios' rate; 0: latencyLoads of the raw rate
	latencySplit bool          // the latency scenarios: split zkafka's wait at the dispatch
	genInChild   bool          // the latency scenarios: pace the load from the measured child itself
	genLinger    time.Duration // the latency scenarios: the generator's linger.ms
	rate         float64       // child mode: the rate a latency child produces at
}

// result is what a child reports to the parent, as one JSON line on stdout.
type result struct {
	Scenario  string  `json:"scenario"`
	Msgs      int     `json:"msgs"`
	Seconds   float64 `json:"seconds"`
	CPUSecs   float64 `json:"cpu_seconds"`
	Mallocs   uint64  `json:"mallocs"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// Switches is how often the child's threads gave up or lost their core in the window
	// (getrusage's voluntary and involuntary context switches): each costs a few
	// microseconds of CPU on a virtual machine, where waking a sleeping core exits to the host.
	Switches int64  `json:"switches"`
	Err      string `json:"error,omitempty"`

	Latency *latencies `json:"latency,omitempty"` // the latency scenarios'
	Paced   *paced     `json:"paced,omitempty"`   // the latency generator's (paceChild)

	// StealPct is the share of the machine's CPU time the hypervisor gave to others while the
	// child ran (steal in /proc/stat), set by the parent; -1 where the kernel does not say.
	StealPct float64 `json:"-"`
}

// childEnv marks a process started by runChildProcess, so that a test binary standing in for
// this command (see main_test.go) knows to run as the command.
const childEnv = "ZKAFKA_BENCH_CHILD"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: it parses args and runs the benchmark (or, with -child, one scenario),
// printing to stdout, and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("zkafka-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.count, "count", 300000, "messages in the data set (noop and raw scenarios read all of them)")
	fs.IntVar(&o.size, "size", 100, "value size in bytes")
	fs.IntVar(&o.keys, "keys", 1000, "distinct keys")
	fs.IntVar(&o.partitions, "partitions", 8, "topic partitions")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds of every scenario; medians are reported")
	fs.StringVar(&o.scenarios, "scenarios", allScenarios, "comma-separated scenarios to run")
	fs.Float64Var(&o.sleepSecs, "sleep-seconds", 4, "target duration of each sleep scenario (its message count is Speedup × this / the measured 1 ms sleep, at most -count/2)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "give up on a scenario after this long")
	fs.StringVar(&o.child, "child", "", "internal: run one scenario and report it as JSON")
	fs.StringVar(&o.bootstrap, "bootstrap", "", "internal: broker address for -child")
	fs.StringVar(&o.topic, "topic", "", "internal: topic for -child")
	fs.StringVar(&o.group, "group", "", "internal: consumer group for -child")
	fs.DurationVar(&o.sleepDur, "sleep", time.Millisecond, "handler sleep of the sleep scenarios")
	fs.StringVar(&o.props, "props", "", "extra librdkafka consumer keys for every scenario, raw included (ConsumerTopicConfig.AdditionalProps): k=v,k=v")
	fs.IntVar(&o.inFlight, "max-in-flight", 0, "zkafka.MaxInFlight for the zkafka scenarios (0: the library default)")
	fs.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of each scenario's measured window to DIR/SCENARIO.pprof")
	fs.Float64Var(&o.latencySecs, "latency-seconds", 5, "how long each side of a latency scenario produces its load")
	fs.Float64Var(&o.latencyRate, "latency-rate", 0, "the latency scenarios' one load in msg/s (0: 10, 20 and 40 % of the raw rate measured in this run)")
	fs.BoolVar(&o.latencySplit, "latency-split", false, "latency scenarios: also split zkafka's wait at the reader's dispatch (a PostRead hook, which costs an allocation per message)")
	fs.BoolVar(&o.genInChild, "latency-generator-in-child", false, "latency scenarios: produce the load from a goroutine of the measured child instead of a process of its own (as before 2026-12-07)")
	fs.DurationVar(&o.genLinger, "latency-linger", 5*time.Millisecond, "latency scenarios: how long the generator's producer waits to batch records (linger.ms, librdkafka's default; both sides pay it alike; 0, as before 2026-12-07, saturates 2 cores at 40 %)")
	fs.BoolVar(&o.stderr, "child-stderr", false, "copy each child's stderr to stderr (with GODEBUG=gctrace=1 or schedtrace=1000, the runtime's figures per scenario)")
	fs.StringVar(&o.trace, "trace", "", "write an execution trace (runtime/trace) of each latency child's paced window to DIR/CHILD-RATE.trace")
	fs.Float64Var(&o.rate, "rate", 0, "internal: the load a latency child produces")
	if err := fs.Parse(args); err != nil {
		return 2
	}

	if o.child != "" {
		res := runChild(o)
		_ = json.NewEncoder(stdout).Encode(res)
		return 0 // no graceful close: the process exits, and the next scenario uses a fresh group
	}
	if err := runParent(o, stdout); err != nil {
		fmt.Fprintln(stderr, "zkafka-bench:", err)
		return 1
	}
	return 0
}

// scenario parses a scenario name into its kind ("raw", "noop", "sleep1ms", "raw-sleep1ms")
// and speedup.
func scenario(name string) (kind string, speedup int, err error) {
	if name == "raw" {
		return "raw", 0, nil
	}
	i := strings.LastIndex(name, "-s")
	if i < 0 {
		return "", 0, fmt.Errorf("unknown scenario %q", name)
	}
	kind, s := name[:i], name[i+2:]
	if kind != "noop" && kind != "sleep1ms" && kind != "raw-sleep1ms" && kind != "latency" && !vsNoop(kind) && !isBulk(kind) {
		return "", 0, fmt.Errorf("unknown scenario %q", name)
	}
	speedup, err = strconv.Atoi(s)
	if err != nil || speedup < 1 || speedup > math.MaxUint16 {
		return "", 0, fmt.Errorf("bad speedup in scenario %q", name)
	}
	return kind, speedup, nil
}

// validate checks the flags of a parent run.
func (o options) validate() error {
	switch {
	case o.count < 2:
		return fmt.Errorf("-count %d: need at least 2 messages (the first one starts the clock)", o.count)
	case o.size < 0:
		return fmt.Errorf("-size %d: a value cannot have a negative size", o.size)
	case o.keys < 1:
		return fmt.Errorf("-keys %d: need at least one key", o.keys)
	case o.partitions < 1:
		return fmt.Errorf("-partitions %d: need at least one partition", o.partitions)
	case o.rounds < 1:
		return fmt.Errorf("-rounds %d: need at least one round", o.rounds)
	case o.sleepSecs <= 0:
		return fmt.Errorf("-sleep-seconds %g: must be positive", o.sleepSecs)
	case o.sleepDur <= 0:
		return fmt.Errorf("-sleep %s: must be positive", o.sleepDur)
	case o.timeout <= 0:
		return fmt.Errorf("-timeout %s: must be positive", o.timeout)
	case o.latencySecs <= 0:
		return fmt.Errorf("-latency-seconds %g: must be positive", o.latencySecs)
	case o.latencyRate < 0:
		return fmt.Errorf("-latency-rate %g: cannot be negative", o.latencyRate)
	case o.genLinger < 0:
		return fmt.Errorf("-latency-linger %s: cannot be negative", o.genLinger)
	}
	return nil
}

func runParent(o options, out io.Writer) error {
	if err := o.validate(); err != nil {
		return err
	}
	names := strings.Split(o.scenarios, ",")
	for _, n := range names {
		if _, _, err := scenario(n); err != nil {
			return err
		}
	}
	addr := os.Getenv("KAFKA_BOOTSTRAP_SERVERS")
	brokerKind := "external " + addr
	if addr == "" {
		e, err := testhelper.StartEmbedded()
		if err != nil {
			return err
		}
		defer e.Close()
		addr = e.Addr()
		brokerKind = "embedded kfake"
	}
	topic := fmt.Sprintf("zkafka-bench-%d", time.Now().UnixNano())
	start := time.Now()
	if err := produce(addr, topic, o); err != nil {
		return err
	}
	sleepDur := measureSleep(time.Millisecond)
	fmt.Fprintf(out, "# zkafka-bench: broker=%s topic=%s msgs=%d size=%d keys=%d partitions=%d rounds=%d cpus=%d go=%s\n",
		brokerKind, topic, o.count, o.size, o.keys, o.partitions, o.rounds, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(out, "# produced in %.1fs; time.Sleep(1ms) takes %.3fms here\n", time.Since(start).Seconds(), float64(sleepDur)/1e6)

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	runSteal := readCPUTicks()
	all := map[string][]result{}
	ratios := map[string][]float64{}     // per round: rate / raw's rate in the same round
	cpuRatios := map[string][]float64{}  // per round: CPU a message / raw's in the same round
	var rawRates []float64               // raw's rate, round by round
	noopRatios := map[string][]float64{} // per round: rate / noop's of the same Speedup
	bulkRatios := map[string][]float64{} // per round: bulk-batch's rate / bulk's of the same Speedup
	lat := latencyRuns{o: o, exe: exe, addr: addr, topic: topic, out: out, zk: map[latencyKey][]result{}, raw: map[latencyKey][]result{}}
	for round := 1; round <= o.rounds; round++ {
		rawRate, rawCPU := 0.0, 0.0
		noopRate := map[int]float64{}
		bulkRate := map[int]float64{}
		for _, name := range names {
			kind, speedup, _ := scenario(name)
			if kind == "latency" {
				lat.round(name, speedup, round)
				continue
			}
			msgs := o.count
			if isSleep(kind) {
				// At most half the data set: the rate is measured with messages still behind
				// the window, not while the last keys drain one message per ms each.
				msgs = min(o.count/2, max(1000, int(float64(speedup)*o.sleepSecs*float64(time.Second)/float64(sleepDur))))
			}
			switch kind {
			case "bulk": // as the sleep scenarios: about -sleep-seconds of calls
				msgs = min(o.count/2, max(1000, int(float64(speedup)*o.sleepSecs*float64(time.Second)/float64(bulkPerCall+bulkPerMsg))))
			case "bulk-batch": // half the data set: the rate with messages still behind the window
				msgs = max(o.count/2, 1)
			}
			group := fmt.Sprintf("%s-%s-r%d", topic, name, round)
			cpu0 := cpuTime()
			res := runChildProcess(exe, o, name, addr, topic, group, msgs)
			parentCPU := cpuTime() - cpu0 // the broker's, when embedded: it runs in this process
			if res.Err != "" {
				fmt.Fprintf(out, "# round %d %s: error: %s\n", round, name, res.Err)
				continue
			}
			fmt.Fprintf(out, "# round %d %s: %.0f msg/s, %.2f µs CPU/msg, %.1f allocs/msg, %.0f context switches/1k msgs, %.0f MB peak RSS (%d msgs in %.2fs); parent (broker) CPU %.2fs over the whole child%s\n",
				round, name, float64(res.Msgs)/res.Seconds, res.CPUSecs*1e6/float64(res.Msgs),
				float64(res.Mallocs)/float64(res.Msgs), float64(res.Switches)*1000/float64(res.Msgs), res.PeakRSSMB, res.Msgs, res.Seconds, parentCPU.Seconds(), stealNote(res.StealPct))
			all[name] = append(all[name], res)
			rate := float64(res.Msgs) / res.Seconds
			cpu := res.CPUSecs / float64(res.Msgs)
			if kind == "noop" {
				noopRate[speedup] = rate
			}
			if r := noopRate[speedup]; vsNoop(kind) && r > 0 {
				noopRatios[name] = append(noopRatios[name], rate/r)
			}
			switch kind {
			case "bulk":
				bulkRate[speedup] = rate
			case "bulk-batch":
				if r := bulkRate[speedup]; r > 0 {
					bulkRatios[name] = append(bulkRatios[name], rate/r)
				}
			}
			switch {
			case kind == "raw":
				rawRate, rawCPU = rate, cpu
				rawRates = append(rawRates, rate)
				if lat.rawRate == 0 {
					lat.rawRate = rate // the latency loads stay the same for the whole run
				}
			case isSleep(kind):
				ratios[name] = append(ratios[name], rate/(float64(speedup)*float64(time.Second)/float64(sleepDur)))
			case rawRate > 0:
				ratios[name] = append(ratios[name], rate/rawRate)
				if rawCPU > 0 {
					cpuRatios[name] = append(cpuRatios[name], cpu/rawCPU)
				}
			}
		}
	}

	type med struct{ rate, cpu, allocs, rss, switches float64 }
	meds := map[string]med{}
	for _, name := range names {
		rs := all[name]
		if len(rs) == 0 {
			continue
		}
		meds[name] = med{
			rate:   median(rs, func(r result) float64 { return float64(r.Msgs) / r.Seconds }),
			cpu:    median(rs, func(r result) float64 { return r.CPUSecs * 1e6 / float64(r.Msgs) }),
			allocs: median(rs, func(r result) float64 { return float64(r.Mallocs) / float64(r.Msgs) }),
			rss:    median(rs, func(r result) float64 { return r.PeakRSSMB }),
			switches: median(rs, func(r result) float64 {
				return float64(r.Switches) * 1000 / float64(r.Msgs)
			}),
		}
	}
	raw, haveRaw := meds["raw"]
	var summary []string
	for _, name := range names {
		kind, _, _ := scenario(name)
		if kind == "latency" {
			lines, items := lat.latencyLines(name)
			for _, line := range lines {
				fmt.Fprintln(out, line)
			}
			summary = append(summary, items...)
			continue
		}
		m, ok := meds[name]
		if !ok {
			fmt.Fprintf(out, "scenario=%s error=no_successful_round\n", name)
			continue
		}
		line := fmt.Sprintf("scenario=%s msgs_per_s=%.0f cpu_us_per_msg=%.2f allocs_per_msg=%.1f peak_rss_mb=%.0f switches_per_kmsg=%.0f",
			name, m.rate, m.cpu, m.allocs, m.rss, m.switches)
		r := medianOf(ratios[name])
		switch {
		case isSleep(kind):
			line += fmt.Sprintf(" ratio_vs_ideal=%.2f", r)
			item := fmt.Sprintf("%s=%.2f×ideal", name, r)
			if c, ok := meds["raw-"+name]; ok && c.rate > 0 {
				line += fmt.Sprintf(" ratio_vs_control=%.2f", m.rate/c.rate)
				item += fmt.Sprintf("(%.2f×control)", m.rate/c.rate)
			}
			summary = append(summary, item)
		case kind == "raw":
			line += " ratio_vs_raw=1.00 cpu_vs_raw=1.00" + spreadField(rawRates)
		case isBulk(kind):
			if br := medianOf(bulkRatios[name]); kind == "bulk-batch" && !math.IsNaN(br) {
				line += fmt.Sprintf(" ratio_vs_bulk=%.2f", br)
				summary = append(summary, fmt.Sprintf("%s=%.1f×bulk", name, br))
			}
		case vsNoop(kind):
			if nr := medianOf(noopRatios[name]); !math.IsNaN(nr) {
				line += fmt.Sprintf(" ratio_vs_noop=%.2f", nr)
				summary = append(summary, fmt.Sprintf("%s=%.2f×noop", name, nr))
			}
			if haveRaw {
				line += fmt.Sprintf(" ratio_vs_raw=%.2f cpu_vs_raw=%.2f", r, medianOf(cpuRatios[name]))
			}
		case haveRaw:
			c := medianOf(cpuRatios[name])
			line += fmt.Sprintf(" ratio_vs_raw=%.2f cpu_vs_raw=%.2f", r, c)
			summary = append(summary, fmt.Sprintf("%s=%.2f×raw(CPU %.2f×)", name, r, c))
		}
		fmt.Fprintln(out, line)
	}
	if haveRaw {
		summary = append([]string{fmt.Sprintf("raw=%.0f msg/s%s", raw.rate, spreadNote(rawRates))}, summary...)
	}
	fmt.Fprintf(out, "summary: %s (medians of %d rounds; ratios are medians of per-round ratios; %s%s)\n", strings.Join(summary, " "), o.rounds, brokerKind, stealNote(readCPUTicks().since(runSteal)))
	return nil
}

// spreadField is raw's line's rate_spread: how far its slowest and fastest rounds lie apart,
// as a share of its median rate ("" with one round). A ratio to raw that differs from 1 by less
// than this is within what the machine itself moved between rounds.
func spreadField(rates []float64) string {
	if len(rates) < 2 {
		return ""
	}
	return fmt.Sprintf(" rate_spread=%.2f", spread(rates))
}

// spreadNote is spreadField for the summary.
func spreadNote(rates []float64) string {
	if len(rates) < 2 {
		return ""
	}
	return fmt.Sprintf(" (rounds %.0f–%.0f, spread %.0f %%)", slices.Min(rates), slices.Max(rates), 100*spread(rates))
}

// spread is (max − min) / median of rates.
func spread(rates []float64) float64 {
	return (slices.Max(rates) - slices.Min(rates)) / medianOf(rates)
}

// vsNoop reports whether a scenario kind is reported against noop (ratio_vs_noop).
func vsNoop(kind string) bool { return isFailing(kind) || kind == "metrics" || kind == "batch-noop" }

// isBulk reports whether a scenario kind runs the bulk handler (bulkPerCall, bulkPerMsg).
func isBulk(kind string) bool { return kind == "bulk" || kind == "bulk-batch" }

// isBatch reports whether a scenario kind runs a batch processor.
func isBatch(kind string) bool { return kind == "batch-noop" || kind == "bulk-batch" }

// isFailing reports whether a scenario kind fails some of its messages.
func isFailing(kind string) bool { return kind == "deadletter" || kind == "retry" }

// fails reports whether the failing scenarios fail this message: one in ten, spread over
// partitions and offsets.
func fails(m *zkafka.Message) bool { return (m.Offset*7+int64(m.Partition))%10 == 0 }

// deadLetterTopic is the dead letter topic of the deadletter scenarios of a run.
func deadLetterTopic(topic string) string { return topic + "-dead" }

// isSleep reports whether a scenario kind runs the 1 ms sleep handler.
func isSleep(kind string) bool { return kind == "sleep1ms" || kind == "raw-sleep1ms" }

func median(rs []result, f func(result) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	return medianOf(vs)
}

func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// measureSleep returns the median duration of time.Sleep(d) on this machine.
func measureSleep(d time.Duration) time.Duration {
	ds := make([]time.Duration, 201)
	for i := range ds {
		t := time.Now()
		time.Sleep(d)
		ds[i] = time.Since(t)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func runChildProcess(exe string, o options, name, addr, topic, group string, msgs int) result {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-child", name, "-bootstrap", addr, "-topic", topic, "-group", group,
		"-count", strconv.Itoa(msgs), "-size", strconv.Itoa(o.size), "-keys", strconv.Itoa(o.keys), "-sleep", o.sleepDur.String(), "-cpuprofile", o.profile, "-trace", o.trace, "-props", o.props, "-max-in-flight", strconv.Itoa(o.inFlight),
		"-rate", strconv.FormatFloat(o.rate, 'f', -1, 64), "-latency-seconds", strconv.FormatFloat(o.latencySecs, 'f', -1, 64), "-latency-split="+strconv.FormatBool(o.latencySplit), "-latency-generator-in-child="+strconv.FormatBool(o.genInChild), "-latency-linger", o.genLinger.String(), "-timeout", o.timeout.String())
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if o.stderr {
		fmt.Fprintf(os.Stderr, "# child %s (%s)\n", name, group)
		cmd.Stderr = io.MultiWriter(&errb, os.Stderr)
	}
	steal0 := readCPUTicks()
	if err := cmd.Run(); err != nil {
		return result{Scenario: name, Err: fmt.Sprintf("%v: %s", err, lastLine(errb.String()))}
	}
	stealPct := readCPUTicks().since(steal0)
	var res result
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		if line := sc.Bytes(); len(line) > 0 && line[0] == '{' {
			if err := json.Unmarshal(line, &res); err != nil {
				return result{Scenario: name, Err: err.Error()}
			}
		}
	}
	if res.Scenario == "" && res.Err == "" {
		return result{Scenario: name, Err: "child printed no result: " + lastLine(errb.String())}
	}
	res.StealPct = stealPct
	return res
}

// cpuTicks is the machine's CPU time in clock ticks, from the first line of /proc/stat: all
// of it, and the part the hypervisor ran something else (steal). ok is false where there is
// no /proc/stat.
type cpuTicks struct {
	total, steal uint64
	ok           bool
}

// readCPUTicks reads the machine's CPU ticks.
func readCPUTicks() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	return parseCPUTicks(string(b))
}

// parseCPUTicks reads the CPU ticks from the text of /proc/stat.
func parseCPUTicks(stat string) cpuTicks {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTicks{}
	}
	var t cpuTicks
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTicks{}
		}
		t.total += n
		if i == 7 {
			t.steal = n
		}
	}
	t.ok = true
	return t
}

// since returns the share of the CPU ticks from earlier to t that were stolen, in %; -1 when
// either reading failed or no time passed.
func (t cpuTicks) since(earlier cpuTicks) float64 {
	if !t.ok || !earlier.ok || t.total <= earlier.total {
		return -1
	}
	return 100 * float64(t.steal-earlier.steal) / float64(t.total-earlier.total)
}

// stealNote is how a round's line tells the share of the CPUs the host took while it ran.
func stealNote(pct float64) string {
	if pct < 0 {
		return ""
	}
	return fmt.Sprintf("; the host took %.0f %% of the CPUs (steal)", pct)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// createTopic creates a topic of that many partitions.
func createTopic(addr, topic string, partitions int) error {
	admin, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": addr, "broker.address.family": "v4", "enable.metrics.push": false})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}})
	admin.Close()
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError {
			return fmt.Errorf("creating topic %s: %w", topic, r.Error)
		}
	}
	return nil
}

// produce creates the topics (the data set's and the dead letter topic) and writes the data
// set: count values of size bytes, key i mod keys.
func produce(addr, topic string, o options) error {
	if err := createTopic(addr, topic, o.partitions); err != nil {
		return err
	}
	if err := createTopic(addr, deadLetterTopic(topic), 1); err != nil {
		return err
	}
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":          addr,
		"broker.address.family":      "v4",
		"linger.ms":                  20,
		"batch.num.messages":         10000,
		"queue.buffering.max.kbytes": 1 << 20,
		"go.delivery.reports":        false,
		"enable.metrics.push":        false,
		"go.logs.channel.enable":     false,
	})
	if err != nil {
		return err
	}
	defer p.Close()
	value := bytes.Repeat([]byte{'x'}, o.size)
	keys := make([][]byte, o.keys)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key-%d", i))
	}
	for i := 0; i < o.count; i++ {
		m := &kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            keys[i%o.keys],
			Value:          value,
		}
		for {
			err := p.Produce(m, nil)
			if err == nil {
				break
			}
			var kerr kafka.Error
			if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
				p.Flush(100)
				continue
			}
			return fmt.Errorf("producing: %w", err)
		}
	}
	for left := p.Flush(60000); left > 0; left = p.Flush(1000) {
		return fmt.Errorf("producing: %d messages not delivered", left)
	}
	return nil
}

// --- child side ---

// errBench is the failure of the failing scenarios.
var errBench = errors.New("zkafka-bench: failing one message in ten")

// meter records the process's CPU time, allocations and wall clock at the first message and
// at the last.
type meter struct {
	profile string // file for a CPU profile of the window, if set
	started atomic.Bool
	t0      time.Time
	cpu0    time.Duration
	sw0     int64
	mallocs uint64
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// switches is the process's context switches so far, voluntary and involuntary.
func switches() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Nvcsw + ru.Nivcsw
}

func (m *meter) first() {
	if m.started.Load() || !m.started.CompareAndSwap(false, true) {
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs = ms.Mallocs
	if m.profile != "" {
		if f, err := os.Create(m.profile); err == nil {
			_ = pprof.StartCPUProfile(f)
		}
	}
	m.cpu0 = cpuTime()
	m.sw0 = switches()
	m.t0 = time.Now()
}

// end reports the totals for n messages. The first message itself is excluded from the window
// (it starts it), so the rate is (n-1) / elapsed.
func (m *meter) end(name string, n int) result {
	elapsed := time.Since(m.t0)
	cpu := cpuTime() - m.cpu0
	sw := switches() - m.sw0
	if m.profile != "" {
		pprof.StopCPUProfile()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return result{
		Scenario:  name,
		Msgs:      n - 1,
		Seconds:   elapsed.Seconds(),
		CPUSecs:   cpu.Seconds(),
		Mallocs:   ms.Mallocs - m.mallocs,
		PeakRSSMB: peakRSSMB(),
		Switches:  sw,
	}
}

// peakRSSMB reads VmHWM from /proc/self/status: the process's peak resident set.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return float64(kb) / 1024
		}
	}
	return 0
}

// consumerConfig returns the librdkafka configuration zkafka's Client builds for tc.
func consumerConfig(conf zkafka.Config, tc zkafka.ConsumerTopicConfig) (kafka.ConfigMap, error) {
	var captured map[string]any
	errCaptured := errors.New("captured")
	c := zkafka.NewClient(conf, zkafka.WithConsumerProvider(func(m map[string]any) (zkafka.KafkaConsumer, error) {
		captured = m
		return nil, errCaptured
	}))
	defer c.Close()
	if _, err := c.Reader(context.Background(), tc); !errors.Is(err, errCaptured) {
		return nil, fmt.Errorf("capturing zkafka's consumer config: %v", err)
	}
	cm := configMap(captured)
	// The Client routes librdkafka's log lines to a channel it drains (and closed with the
	// capturing reader); the raw loop has no Logger.
	cm["go.logs.channel.enable"] = false
	delete(cm, "go.logs.channel")
	return cm, nil
}

// configMap copies a configuration the Client built into a librdkafka ConfigMap.
func configMap(m map[string]any) kafka.ConfigMap {
	cm := make(kafka.ConfigMap, len(m))
	for k, v := range m {
		cm[k] = v
	}
	return cm
}

func profilePath(o options) string {
	if o.profile == "" {
		return ""
	}
	return filepath.Join(o.profile, o.child+".pprof")
}

func runChild(o options) result {
	if o.child == paceChild {
		return runPaceChild(o)
	}
	if o.child == rawLatency {
		return runLatencyChild(o, zkafka.Config{BootstrapServers: []string{o.bootstrap}},
			zkafka.ConsumerTopicConfig{ClientID: o.group, GroupID: o.group, Topic: o.topic}, 0)
	}
	kind, speedup, err := scenario(o.child)
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	conf := zkafka.Config{BootstrapServers: []string{o.bootstrap}}
	tc := zkafka.ConsumerTopicConfig{ClientID: o.group, GroupID: o.group, Topic: o.topic}
	if o.props != "" {
		tc.AdditionalProps = map[string]any{}
		for _, kv := range strings.Split(o.props, ",") {
			k, v, _ := strings.Cut(kv, "=")
			tc.AdditionalProps[k] = v
		}
	}
	switch kind {
	case "raw":
		return runRaw(o, conf, tc, 0)
	case "raw-sleep1ms":
		return runRaw(o, conf, tc, speedup)
	case "latency":
		return runLatencyChild(o, conf, tc, speedup)
	}
	m := meter{profile: profilePath(o)}
	var n atomic.Int64
	done := make(chan struct{})
	target := int64(o.count)
	sleep := o.sleepDur
	batchHandler := func(_ context.Context, msgs []*zkafka.Message) error {
		if kind == "bulk-batch" {
			time.Sleep(bulkPerCall + time.Duration(len(msgs))*bulkPerMsg)
		}
		if c := n.Add(int64(len(msgs))); c >= target && c-int64(len(msgs)) < target {
			close(done)
		}
		return nil
	}
	handler := func(_ context.Context, msg *zkafka.Message) error {
		switch kind {
		case "sleep1ms":
			time.Sleep(sleep)
		case "bulk":
			time.Sleep(bulkPerCall + bulkPerMsg)
		}
		if isFailing(kind) {
			if fails(msg) && (kind == "deadletter" || msg.Attempt() < 3) {
				return errBench
			}
			return nil // counted by OnDone
		}
		if n.Add(1) == target {
			close(done)
		}
		return nil
	}
	client := zkafka.NewClient(conf, zkafka.WithConsumerProvider(func(cfg map[string]any) (zkafka.KafkaConsumer, error) {
		cm := configMap(cfg)
		c, err := kafka.NewConsumer(&cm)
		if err != nil {
			return nil, err
		}
		return meteredConsumer{Consumer: c, m: &m}, nil
	}))
	opts := []zkafka.WorkOption{zkafka.Speedup(uint16(speedup))}
	switch kind {
	case "deadletter":
		opts = append(opts, zkafka.DisableCircuitBreaker(), zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: deadLetterTopic(o.topic)}))
	case "retry":
		opts = append(opts, zkafka.WithRetry(zkafka.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	}
	if isFailing(kind) {
		opts = append(opts, zkafka.WithOnDone(func(context.Context, *zkafka.Message, error) {
			if n.Add(1) == target {
				close(done)
			}
		}))
	}
	if o.inFlight > 0 {
		opts = append(opts, zkafka.MaxInFlight(o.inFlight))
	}
	var factoryOpts []zkafka.WorkFactoryOption
	if kind == "metrics" {
		stop := scrapeMetrics()
		defer stop()
		factoryOpts = append(factoryOpts, zkafka.WithMeterProvider(meterProvider))
	}
	wf := zkafka.NewWorkFactory(client, factoryOpts...)
	w := wf.CreateWithFunc(tc, handler, opts...)
	if isBatch(kind) {
		w = wf.CreateBatchWithFunc(tc, batchHandler, opts...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx, nil) }()
	select {
	case <-done:
		return m.end(o.child, o.count)
	case err := <-runErr:
		return result{Scenario: o.child, Err: fmt.Sprintf("Run returned early: %v", err)}
	}
}

// meteredConsumer is a zkafka child's consumer: it starts the meter at the first message its
// Poll returns, as the raw loop does, so that the window holds every read it counts. (Started
// at the first handler instead, it missed the reads before it: up to a few thousand of them,
// with a deep catch-up waking the processors every 4 ms.) The embedded *kafka.Consumer gives
// the Client every method it looks for.
type meteredConsumer struct {
	*kafka.Consumer
	m *meter
}

// Poll polls the consumer and starts the meter at the first message.
func (c meteredConsumer) Poll(timeoutMs int) kafka.Event {
	e := c.Consumer.Poll(timeoutMs)
	if _, ok := e.(*kafka.Message); ok {
		c.m.first()
	}
	return e
}

// runRaw is the plain confluent-kafka-go loop: Poll, StoreMessage, auto commit. With sleepers
// > 0 it hands every message to that many goroutines that sleep o.sleepDur each (the control
// of the sleep scenarios), through a channel as deep as zkafka's default in-flight bound, and
// counts a message when its sleep is over.
func runRaw(o options, conf zkafka.Config, tc zkafka.ConsumerTopicConfig, sleepers int) result {
	cm, err := consumerConfig(conf, tc)
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	if err := c.SubscribeTopics([]string{o.topic}, nil); err != nil {
		return result{Scenario: o.child, Err: err.Error()}
	}
	m := meter{profile: profilePath(o)}
	var slept atomic.Int64
	done := make(chan struct{})
	work := make(chan *kafka.Message, 10000)
	for range sleepers {
		go func() {
			for range work {
				time.Sleep(o.sleepDur)
				if slept.Add(1) == int64(o.count) {
					close(done)
				}
			}
		}()
	}
	n := 0
	for n < o.count {
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				continue
			}
			m.first()
			if _, err := c.StoreMessage(e); err != nil {
				return result{Scenario: o.child, Err: err.Error()}
			}
			n++
			if sleepers > 0 {
				work <- e
			}
		case kafka.Error:
			if e.IsFatal() {
				return result{Scenario: o.child, Err: e.Error()}
			}
		}
	}
	if sleepers > 0 {
		<-done
	}
	return m.end(o.child, o.count)
}

// meterProvider is the metrics scenarios' OpenTelemetry SDK provider; scrapeMetrics collects
// from it.
var (
	metricsReader = sdkmetric.NewManualReader()
	meterProvider = sdkmetric.NewMeterProvider(sdkmetric.WithReader(metricsReader))
)

// scrapeMetrics collects meterProvider's metrics once a second, as a Prometheus scrape or a
// periodic exporter would, until the returned func is called.
func scrapeMetrics() (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var rm metricdata.ResourceMetrics
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := metricsReader.Collect(context.Background(), &rm); err != nil {
					fmt.Fprintln(os.Stderr, "zkafka-bench: collecting metrics:", err)
				}
			}
		}
	}()
	return func() { close(done) }
}
