package main

import (
	"bytes"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain lets the test binary stand in for the command when the benchmark re-executes
// itself for a scenario (runChildProcess marks those processes with childEnv).
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestScenarioNames(t *testing.T) {
	for _, tt := range []struct {
		name    string
		kind    string
		speedup int
		wantErr string
	}{
		{name: "raw", kind: "raw"},
		{name: "noop-s1", kind: "noop", speedup: 1},
		{name: "noop-s8", kind: "noop", speedup: 8},
		{name: "sleep1ms-s256", kind: "sleep1ms", speedup: 256},
		{name: "raw-sleep1ms-s64", kind: "raw-sleep1ms", speedup: 64},
		{name: "deadletter-s8", kind: "deadletter", speedup: 8},
		{name: "retry-s1", kind: "retry", speedup: 1},
		{name: "metrics-s8", kind: "metrics", speedup: 8},
		{name: "batch-noop-s8", kind: "batch-noop", speedup: 8},
		{name: "bulk-s8", kind: "bulk", speedup: 8},
		{name: "bulk-batch-s16", kind: "bulk-batch", speedup: 16},
		{name: "noop", wantErr: `unknown scenario "noop"`},
		{name: "raw-s8", wantErr: `unknown scenario "raw-s8"`},
		{name: "sleep2ms-s8", wantErr: `unknown scenario "sleep2ms-s8"`},
		{name: "noop-s0", wantErr: `bad speedup in scenario "noop-s0"`},
		{name: "noop-s65536", wantErr: `bad speedup in scenario "noop-s65536"`},
		{name: "noop-sx", wantErr: `bad speedup in scenario "noop-sx"`},
		{name: "", wantErr: `unknown scenario ""`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kind, speedup, err := scenario(tt.name)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.kind, kind)
			require.Equal(t, tt.speedup, speedup)
		})
	}
}

func TestMedians(t *testing.T) {
	require.True(t, math.IsNaN(medianOf(nil)), "no rounds, no median")
	require.Equal(t, 3.0, medianOf([]float64{3}))
	require.Equal(t, 2.5, medianOf([]float64{4, 1, 3, 2}))
	require.Equal(t, 2.0, medianOf([]float64{5, 1, 2}))
	rs := []result{{Msgs: 100, Seconds: 1}, {Msgs: 100, Seconds: 4}, {Msgs: 100, Seconds: 2}}
	require.Equal(t, 50.0, median(rs, func(r result) float64 { return float64(r.Msgs) / r.Seconds }))
}

func TestBadFlagsAreRefusedWithAReason(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-count", "1"}, 1, "-count 1: need at least 2 messages"},
		{[]string{"-keys", "0"}, 1, "-keys 0: need at least one key"},
		{[]string{"-partitions", "0"}, 1, "-partitions 0: need at least one partition"},
		{[]string{"-rounds", "0"}, 1, "-rounds 0: need at least one round"},
		{[]string{"-size", "-1"}, 1, "-size -1: a value cannot have a negative size"},
		{[]string{"-sleep-seconds", "0"}, 1, "-sleep-seconds 0: must be positive"},
		{[]string{"-latency-seconds", "0"}, 1, "-latency-seconds 0: must be positive"},
		{[]string{"-latency-rate", "-1"}, 1, "-latency-rate -1: cannot be negative"},
		{[]string{"-latency-linger", "-1ms"}, 1, "-latency-linger -1ms: cannot be negative"},
		{[]string{"-scenarios", "raw,fast-s8"}, 1, `unknown scenario "fast-s8"`},
		{[]string{"-no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			require.Equal(t, tt.code, run(tt.args, &out, &errb))
			require.Contains(t, errb.String(), tt.msg)
			require.Empty(t, out.String(), "nothing is measured")
		})
	}
}

// TestBenchmarkRunsEveryKindOfScenario runs the benchmark end to end on a small data set, each
// scenario in a child process, against the embedded broker (or KAFKA_BOOTSTRAP_SERVERS), and
// checks the lines it prints.
func TestBenchmarkRunsEveryKindOfScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and a dozen child processes")
	}
	var out, errb bytes.Buffer
	// A zkafka child's measure starts at the first message its consumer's Poll returns
	// (meteredConsumer). When it started at the first handler, the reader could read all
	// 4,000 records before then, and noop-s1 once measured no allocation at all.
	code := run([]string{
		"-count", "4000", "-keys", "50", "-partitions", "4", "-rounds", "1", "-sleep-seconds", "0.25", "-latency-seconds", "1",
		"-scenarios", "raw,noop-s1,noop-s8,batch-noop-s8,metrics-s8,deadletter-s8,retry-s8,sleep1ms-s8,raw-sleep1ms-s8,bulk-s8,bulk-batch-s8,latency-s8",
	}, &out, &errb)
	require.Equal(t, 0, code, "stderr: %s\nstdout: %s", errb.String(), out.String())

	lines := map[string]map[string]string{}
	var summary string
	field := regexp.MustCompile(`(\w+)=(\S+)`)
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "scenario="):
			kv := map[string]string{}
			for _, m := range field.FindAllStringSubmatch(line, -1) {
				kv[m[1]] = m[2]
			}
			name := kv["scenario"]
			if load, ok := kv["load"]; ok {
				name += "@" + load
			}
			lines[name] = kv
		case strings.HasPrefix(line, "summary: "):
			summary = line
		}
	}
	require.Len(t, lines, 14, out.String())
	loads := []string{"latency-s8@10%", "latency-s8@20%", "latency-s8@40%"}
	latency := map[string]map[string]string{}
	for _, l := range loads {
		latency[l] = lines[l]
		delete(lines, l)
	}
	positive := func(name, key string) float64 {
		v, err := strconv.ParseFloat(lines[name][key], 64)
		require.NoError(t, err, "%s %s in %v\n%s", name, key, lines[name], out.String())
		require.Greater(t, v, 0.0, "%s %s", name, key)
		return v
	}
	for name := range lines {
		for _, k := range []string{"msgs_per_s", "cpu_us_per_msg", "allocs_per_msg", "peak_rss_mb", "switches_per_kmsg"} {
			positive(name, k)
		}
	}
	require.Equal(t, "1.00", lines["raw"]["ratio_vs_raw"])
	require.Equal(t, "1.00", lines["raw"]["cpu_vs_raw"])
	require.NotContains(t, lines["raw"], "rate_spread", "one round: no spread")
	for _, name := range []string{"noop-s1", "noop-s8", "metrics-s8", "batch-noop-s8"} {
		positive(name, "ratio_vs_raw")
		positive(name, "cpu_vs_raw")
	}
	// 8 handlers sleeping 1 ms cannot beat 8 per ms, whatever else is true.
	require.LessOrEqual(t, positive("sleep1ms-s8", "ratio_vs_ideal"), 1.05)
	require.LessOrEqual(t, positive("raw-sleep1ms-s8", "ratio_vs_ideal"), 1.05)
	positive("sleep1ms-s8", "ratio_vs_control")
	require.NotContains(t, lines["raw-sleep1ms-s8"], "ratio_vs_control")
	positive("metrics-s8", "ratio_vs_noop")
	positive("deadletter-s8", "ratio_vs_noop")
	positive("retry-s8", "ratio_vs_noop")
	positive("batch-noop-s8", "ratio_vs_noop")
	positive("bulk-batch-s8", "ratio_vs_bulk")
	require.NotContains(t, lines["bulk-s8"], "ratio_vs_raw")
	rates := []float64{}
	for _, l := range loads {
		lines[l] = latency[l]
		for _, k := range []string{"rate_msgs_per_s", "zkafka_p50_ms", "zkafka_p99_ms", "zkafka_p999_ms", "raw_p50_ms", "raw_p99_ms", "raw_p999_ms", "samples"} {
			positive(l, k)
		}
		require.LessOrEqual(t, positive(l, "zkafka_p50_ms"), positive(l, "zkafka_p99_ms"))
		require.LessOrEqual(t, positive(l, "zkafka_p99_ms"), positive(l, "zkafka_p999_ms"))
		require.LessOrEqual(t, positive(l, "raw_p50_ms"), positive(l, "raw_p99_ms"))
		require.Contains(t, []string{"true", "false"}, lines[l]["rate_kept"])
		rates = append(rates, positive(l, "rate_msgs_per_s"))
	}
	// The loads are 10, 20 and 40 % of the raw rate of the run.
	require.Less(t, rates[0], rates[1])
	require.Less(t, rates[1], rates[2])
	require.Regexp(t, `^summary: raw=\d+ msg/s noop-s1=[\d.]+×raw\(CPU [\d.]+×\) noop-s8=[\d.]+×raw\(CPU [\d.]+×\) batch-noop-s8=[\d.]+×noop metrics-s8=[\d.]+×noop deadletter-s8=[\d.]+×noop retry-s8=[\d.]+×noop sleep1ms-s8=[\d.]+×ideal\([\d.]+×control\) raw-sleep1ms-s8=[\d.]+×ideal bulk-batch-s8=[\d.]+×bulk latency-s8@10%=p50 [\d.]+ms p99 [\d.]+ms \(raw [\d.]+/[\d.]+\) at \d+ msg/s latency-s8@20%=.* latency-s8@40%=.* \(medians of 1 rounds`, summary)
}

// TestSamplerPercentiles: samples of records produced before the warm-up ends are dropped;
// percentiles are nearest-rank over the rest.
func TestSamplerPercentiles(t *testing.T) {
	s := newSampler(1000)
	start := time.Now()
	s.record(start.Add(-time.Second)) // the first record starts the warm-up and is dropped
	require.Equal(t, 0, s.percentiles().Samples)
	from := time.Unix(0, s.from.Load())
	for i := 1; i <= 100; i++ {
		s.vsForTest(from.Add(time.Hour), time.Duration(i)*time.Millisecond)
	}
	p := s.percentiles()
	require.Equal(t, 100, p.Samples)
	require.Equal(t, 50.0, p.P50Ms)
	require.Equal(t, 99.0, p.P99Ms)
	require.Equal(t, 100.0, p.P999Ms)
	require.Equal(t, 100.0, p.MaxMs)
	require.Equal(t, int64(1), s.seen.Load())
	require.True(t, math.IsNaN(rank(nil, 0.5)))
	require.Equal(t, 7.0, rank([]int64{7e6}, 0.99))
}

// vsForTest keeps a sample of d for a record at ts, as record would at ts + d.
func (s *sampler) vsForTest(ts time.Time, d time.Duration) {
	if ts.UnixNano() >= s.from.Load() {
		s.samples[s.n.Add(1)-1] = int64(d)
	}
}

// TestTwoLatencyScenariosInOneRun: each latency scenario's raw side reads its own topics (the
// raw children of latency-s1 and latency-s2 at one -latency-rate once shared one, and the
// second scenario's rounds failed). A raw catch-up warms the broker once before the first
// round, and each side's round reports its CPU and switches a record.
func TestTwoLatencyScenariosInOneRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and four child processes")
	}
	var out, errb bytes.Buffer
	code := run([]string{
		"-count", "1000", "-keys", "50", "-partitions", "2", "-rounds", "1", "-latency-seconds", "0.5",
		"-latency-rate", "2000", "-scenarios", "latency-s1,latency-s2",
	}, &out, &errb)
	require.Equal(t, 0, code, "stderr: %s\nstdout: %s", errb.String(), out.String())
	require.NotContains(t, out.String(), "error", out.String())
	require.Regexp(t, `(?m)^scenario=latency-s1 load=fixed .*raw_p99_ms=[\d.]+ .*zkafka_cpu_us_per_msg=[\d.]+ raw_cpu_us_per_msg=[\d.]+ `, out.String())
	require.Regexp(t, `(?m)^scenario=latency-s2 load=fixed .*raw_p99_ms=[\d.]+`, out.String())
	require.Equal(t, 1, strings.Count(out.String(), "# calibration raw: "), out.String())
	require.Less(t, strings.Index(out.String(), "# calibration raw: "), strings.Index(out.String(), "# round 1 latency-s1"), out.String())
	require.Len(t, regexp.MustCompile(`(?m)^# round 1 latency-s\d at fixed \((latency-s\d|raw-latency)\): .* msg/s, CPU [\d.]+ µs and \d+ switches a 1,000 records`).FindAllString(out.String(), -1), 4, out.String())
}

// TestHostSteal: the share of the CPUs the hypervisor took between two readings of
// /proc/stat, and no figure where it cannot be read.
func TestHostSteal(t *testing.T) {
	before := parseCPUTicks("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n")
	after := parseCPUTicks("cpu  300 0 100 950 10 0 5 135 0 0\ncpu0 150 0 50 500 5 0 2 68 0 0\n")
	require.True(t, before.ok)
	require.Equal(t, uint64(1000), before.total)
	require.InDelta(t, 20.0, after.since(before), 1e-9) // 100 stolen of 500 ticks
	require.Equal(t, -1.0, after.since(cpuTicks{}))
	require.Equal(t, -1.0, before.since(before))
	require.False(t, parseCPUTicks("intr 1 2 3\n").ok)
	require.False(t, parseCPUTicks("cpu 1 2 x 4 5 6 7 8\n").ok)
	require.Equal(t, "", stealNote(-1))
	require.Equal(t, "; the host took 20 % of the CPUs (steal)", stealNote(20))
}

// TestSpread: raw's rate_spread and the summary's note are (max − min) / median of its rounds'
// rates, and absent for one round.
func TestSpread(t *testing.T) {
	rates := []float64{100000, 120000, 80000}
	require.InDelta(t, 0.4, spread(rates), 1e-9)
	require.Equal(t, " rate_spread=0.40", spreadField(rates))
	require.Equal(t, " (rounds 80000–120000, spread 40 %)", spreadNote(rates))
	require.Empty(t, spreadField(rates[:1]))
	require.Empty(t, spreadNote(nil))
}
