package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zkafka-go/zkafka"
)

// envWorker carries a process worker's spec (JSON) from the harness to the re-executed test
// binary.
const envWorker = "ZKAFKA_CHAOS_WORKER"

// workerSpec tells a worker what to consume and where to record.
type workerSpec struct {
	Addr  string `json:"addr"`
	Topic string `json:"topic"`
	Group string `json:"group"`
	DLT   string `json:"dlt"`
	Run   string `json:"run"`
	File  string `json:"file"`
	Seed  int64  `json:"seed"`
}

// errInjected is the error of a processor failure the harness injected.
var errInjected = errors.New("chaos: injected processor failure")

// mix is splitmix64 over the seed and a message's coordinates: the per-message dice.
func mix(seed int64, partition int32, offset int64) uint64 {
	z := uint64(seed) ^ uint64(partition)<<48 ^ uint64(offset)*0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Misbehaviours the dice pick for a message (misbehaviour).
const (
	behave = iota
	fail
	panics
	timeout // returns once its context ends, after ProcessTimeout
	stuck   // ignores its context: the Work abandons it after the grace period
)

// misbehaviour is what the harness makes the processor do with the message at partition and
// offset.
func misbehaviour(cfg *Config, partition int32, offset int64) int {
	h := mix(cfg.Seed, partition, offset)
	u := float64(h>>11) / float64(1<<53)
	switch {
	case u < cfg.FailRate:
		return fail
	case u < cfg.FailRate+cfg.PanicRate:
		return panics
	case u < cfg.FailRate+cfg.PanicRate+cfg.TimeoutRate:
		if h&3 == 0 {
			return stuck
		}
		return timeout
	}
	return behave
}

// misbehave makes the processor fail, panic or time out for the messages the dice pick.
func misbehave(ctx context.Context, cfg *Config, m *zkafka.Message) error {
	switch misbehaviour(cfg, m.Partition, m.Offset) {
	case fail:
		return errInjected
	case panics:
		panic(fmt.Sprintf("chaos: injected panic at partition %d offset %d", m.Partition, m.Offset))
	case stuck:
		time.Sleep(2*cfg.ProcessTimeout + cfg.ProcessTimeout/2)
		return nil
	case timeout:
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// processor is the processor a worker runs: the harness's faults and Config.Processor, with
// a record of when it started and how it returned, wrapped by Config.Wrap.
func processor(cfg *Config, run string, s sink, inject bool) ProcessFunc {
	inner := func(ctx context.Context, m *zkafka.Message) (err error) {
		ev := event{kind: evStart, run: run, partition: m.Partition, offset: m.Offset, at: time.Now().UnixNano(), ts: m.TimeStamp.UnixNano(), key: m.Key}
		s.record(ev)
		defer func() {
			r := recover()
			ev.at = time.Now().UnixNano()
			ev.kind = evReturnOK
			if r != nil || err != nil {
				ev.kind = evReturnErr
			}
			s.record(ev)
			if r != nil {
				panic(r)
			}
		}()
		if inject {
			if err := misbehave(ctx, cfg, m); err != nil {
				return err
			}
		}
		return cfg.Processor(ctx, m)
	}
	if cfg.Wrap != nil {
		return cfg.Wrap(inner)
	}
	return inner
}

// newWork builds the Work a worker runs.
func newWork(client *zkafka.Client, cfg *Config, spec workerSpec, s sink, inject bool) *zkafka.Work {
	ms := func(d time.Duration) *int { v := int(d.Milliseconds()); return &v }
	tc := zkafka.ConsumerTopicConfig{
		ClientID:              spec.Run,
		GroupID:               spec.Group,
		Topic:                 spec.Topic,
		Formatter:             zkafka.StringFmt,
		ReadTimeoutMillis:     ms(100 * time.Millisecond),
		ProcessTimeoutMillis:  ms(cfg.ProcessTimeout),
		MaxPollIntervalMillis: ms(max(cfg.SessionTimeout, 6*time.Second)), // also the rebalance timeout: how long a rebalance waits for a killed member
		AutoCommitIntervalMs:  ms(cfg.AutoCommitInterval),
	}
	switch {
	case cfg.Protocol == ProtocolConsumer:
		// The broker owns the session timeout and assigns (Run sets its
		// group.consumer.session.timeout.ms to cfg.SessionTimeout).
		tc.GroupProtocol = zkafka.GroupProtocolConsumer
	case cfg.AssignmentStrategy != "":
		tc.AdditionalProps = map[string]any{"partition.assignment.strategy": cfg.AssignmentStrategy}
		fallthrough
	default:
		tc.SessionTimeoutMillis = ms(cfg.SessionTimeout)
	}
	if spec.DLT != "" {
		tc.DeadLetterTopicConfig = &zkafka.ProducerTopicConfig{Topic: spec.DLT, DeliveryTimeoutMs: ms(5 * time.Second)}
	}
	run := spec.Run
	opts := []zkafka.WorkOption{
		zkafka.Speedup(cfg.Speedup),
		zkafka.CircuitBreakAfter(5),
		zkafka.CircuitBreakFor(300 * time.Millisecond),
		zkafka.WithOnDone(func(_ context.Context, m *zkafka.Message, err error) {
			kind := evDoneOK
			if err != nil {
				kind = evDoneErr
			}
			s.record(event{kind: kind, run: run, partition: m.Partition, offset: m.Offset, at: time.Now().UnixNano(), ts: m.TimeStamp.UnixNano(), key: m.Key})
		}),
	}
	opts = append(opts, cfg.WorkOptions...)
	p := processor(cfg, spec.Run, s, inject)
	if os.Getenv(EnvBatch) == "1" {
		return zkafka.NewWorkFactory(client).CreateBatchWithFunc(tc, batchOf(p), opts...)
	}
	return zkafka.NewWorkFactory(client).CreateWithFunc(tc, p, opts...)
}

// EnvBatch set to 1 makes every worker a batch processor (WorkFactory.CreateBatch, the
// default BatchPolicy) that runs the harness's processor for each message of a batch in
// order: CHAOS_BATCH=1 make chaos. A failed or panicking message is named in a BatchError (a
// panic as a PermanentError); no message starts once the batch's context is done (a timeout:
// those left are named too; an abandoned batch runs no further message).
const EnvBatch = "CHAOS_BATCH"

// batchOf runs p for each message of a batch, in order.
func batchOf(p ProcessFunc) func(ctx context.Context, msgs []*zkafka.Message) error {
	one := func(ctx context.Context, m *zkafka.Message) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = zkafka.PermanentError(fmt.Errorf("chaos: processor panicked: %v", r))
			}
		}()
		return p(ctx, m)
	}
	return func(ctx context.Context, msgs []*zkafka.Message) error {
		var failed zkafka.BatchError
		for i, m := range msgs {
			if err := ctx.Err(); err != nil {
				for j := i; j < len(msgs); j++ {
					failed.Fail(j, err) // timed out or cancelled: the rest not started
				}
				break
			}
			if err := one(ctx, m); err != nil {
				failed.Fail(i, err)
			}
		}
		if len(failed.Failed) > 0 {
			return &failed
		}
		return nil
	}
}

// running is one run of a worker: a Work in this process or a worker process.
type running struct {
	exited chan error // receives the run's outcome once, then is closed
	// graceful closes shutdown (SIGTERM for a process); abrupt cancels the context (SIGKILL
	// for a process).
	graceful func()
	abrupt   func()
	output   string // a process worker's combined output file
	// ran is closed when an in-process worker's Run has returned, before its Client.Close
	// (nil for a process).
	ran chan struct{}
}

// EnvLog names the environment variable that, set to a file, makes every worker (in-process
// or a process) append zkafka's log lines of level info and above to it, each with the
// worker's run name and the wall clock: CHAOS_LOG=/tmp/chaos.log make chaos.
const EnvLog = "CHAOS_LOG"

// workerLogger is the Logger of run's Client: a text log to EnvLog's file, or none.
func workerLogger(run string) zkafka.Logger {
	path := os.Getenv(EnvLog)
	if path == "" {
		return zkafka.NoopLogger{}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return zkafka.NoopLogger{}
	}
	return zkafka.NewSlogLogger(slog.New(slog.NewTextHandler(f, nil)).With("run", run))
}

// startInProcess runs a Work in a goroutine with its own Client.
func startInProcess(cfg *Config, spec workerSpec, s sink, inject bool) *running {
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{spec.Addr}}, zkafka.LoggerOption(workerLogger(spec.Run)))
	w := newWork(client, cfg, spec, s, inject)
	ctx, cancel := context.WithCancel(context.Background())
	shutdown := make(chan struct{})
	var once sync.Once
	r := &running{
		exited:   make(chan error, 1),
		graceful: func() { once.Do(func() { close(shutdown) }) },
		abrupt:   cancel,
		ran:      make(chan struct{}),
	}
	go func() {
		err := w.Run(ctx, shutdown)
		close(r.ran)
		cancel()
		if cerr := client.Close(); err == nil && cerr != nil && !errors.Is(cerr, context.Canceled) {
			err = fmt.Errorf("closing the client: %w", cerr)
		}
		r.exited <- err
		close(r.exited)
	}()
	return r
}

// testPattern turns a test name into a -test.run pattern that matches only that test.
func testPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// startProcess re-executes the test binary to run only testName as a worker.
func startProcess(testName, dir string, spec workerSpec) (*running, error) {
	js, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, spec.Run+".out"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(os.Args[0], "-test.run="+testPattern(testName), "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), envWorker+"="+string(js), envReady+"="+filepath.Join(dir, spec.Run+".ready"))
	cmd.Stdout, cmd.Stderr = out, out
	stdin, err := cmd.StdinPipe() // the worker exits when this closes: it never outlives us
	if err != nil {
		out.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	ready := filepath.Join(dir, spec.Run+".ready")
	pidMu.Lock()
	pids[cmd.Process.Pid] = true
	pidMu.Unlock()
	r := &running{
		exited: make(chan error, 1),
		graceful: func() {
			// SIGTERM before the child installed its handler would kill it outright: wait
			// (bounded) for the file it writes once it listens.
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if _, err := os.Stat(ready); err == nil {
					break
				}
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
		},
		abrupt: func() { _ = cmd.Process.Kill() },
		output: out.Name(),
	}
	go func() {
		err := cmd.Wait()
		pidMu.Lock()
		delete(pids, cmd.Process.Pid)
		pidMu.Unlock()
		_ = stdin.Close()
		out.Close()
		r.exited <- err
		close(r.exited)
	}()
	return r, nil
}

// tail returns the last n lines of a file, for explaining a worker process's exit.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// envReady names the file a worker process creates once it handles SIGTERM.
const envReady = "ZKAFKA_CHAOS_READY"

// childMain runs in a re-executed test binary: it runs one worker until SIGTERM (graceful)
// or until its stdin closes (the harness is gone), then exits the process.
func childMain(cfg Config, js string) {
	var spec workerSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker: bad spec:", err)
		os.Exit(2)
	}
	cfg.Seed = spec.Seed
	f, err := os.OpenFile(spec.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker:", err)
		os.Exit(2)
	}
	dumpOnSignal()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if ready := os.Getenv(envReady); ready != "" {
		_ = os.WriteFile(ready, nil, 0o600) // the harness may send SIGTERM from now on
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		fmt.Fprintln(os.Stderr, "chaos worker: harness gone, exiting")
		os.Exit(3)
	}()
	r := startInProcess(&cfg, spec, &fileSink{f: f}, true)
	select {
	case <-term:
		r.graceful()
	case err := <-r.exited:
		fmt.Fprintln(os.Stderr, "chaos worker: Run returned before shutdown:", err)
		os.Exit(1)
	}
	if err := <-r.exited; err != nil {
		fmt.Fprintln(os.Stderr, "chaos worker: Run:", err)
		os.Exit(1)
	}
	_ = f.Close()
	os.Exit(0)
}
