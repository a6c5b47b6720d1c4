package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/zkafka-go/zkafka/testhelper"
)

// harness is one chaos run.
type harness struct {
	t        testing.TB
	cfg      Config
	start    time.Time
	addr     string
	cluster  *kfake.Cluster
	brokers  int
	topic    string
	topicID  [16]byte
	dlt      string
	group    string
	dir      string
	testName string

	rec   recorder // in-process workers' events
	slots []*slot
	final chan struct{} // closed to stop every worker gracefully
	wg    sync.WaitGroup

	mu          sync.Mutex
	commits     []commit
	rebalances  []int64 // broker-side times of JoinGroup/SyncGroup requests
	files       []string
	restarts    map[Fault]int
	ends        map[string]runEnd // how each worker run ended, by run id
	problems    []string          // unexpected worker exits, stuck stops
	produceErrs int
}

// commit is one OffsetCommit request for a partition of the topic, as the broker received it.
type commit struct {
	at         int64
	partition  int32
	offset     int64
	member     string // the committing member's id (kfake's starts with the worker run's ClientID)
	generation int32  // its generation, or member epoch under the consumer protocol
}

// command asks a slot to stop its worker and start it again.
type command struct {
	kind         Fault
	restartAfter time.Duration
}

// slot keeps one worker running, restarting it after each fault.
type slot struct {
	id      int
	process bool
	cmd     chan command
}

// Run runs a chaos test as cfg describes and returns its report. Every broken invariant is
// reported with t.Errorf (and a summary with the report); setup failures stop the test with
// t.Fatalf.
//
// A test that sets Config.ProcessWorkers is also the worker: the harness re-executes the test
// binary with -test.run naming t, and in that process Run runs a worker and exits the process
// instead of returning. Keep one Run per test (use subtests for more).
func Run(t testing.TB, cfg Config) Report {
	t.Helper()
	cfg = cfg.withDefaults()
	if js := os.Getenv(envWorker); js != "" {
		childMain(cfg, js)
	}
	logf := cfg.Logf
	if logf == nil {
		logf = t.Logf
	}
	const brokers = 3
	// The session timeout of the consumer protocol is the broker's; a heartbeat a sixth of it,
	// as the classic protocol's Works get (a third of the session, librdkafka's ratio), would
	// be too slow to notice a rebalance in time: the broker's default is 5 s.
	b := testhelper.EmbeddedBroker(t, kfake.NumBrokers(brokers), kfake.BrokerConfigs(map[string]string{
		"group.consumer.session.timeout.ms":    strconv.FormatInt(cfg.SessionTimeout.Milliseconds(), 10),
		"group.consumer.heartbeat.interval.ms": strconv.FormatInt(max(cfg.SessionTimeout.Milliseconds()/6, 100), 10),
	}))
	h := &harness{
		t: t, cfg: cfg, addr: b.Addr(), cluster: b.Cluster(t), brokers: brokers,
		topic: testhelper.UniqueName(t, "chaos"), dir: t.TempDir(), testName: t.Name(),
		final: make(chan struct{}), restarts: map[Fault]int{}, ends: map[string]runEnd{},
	}
	h.group = h.topic + "-group"
	if !cfg.DisableDeadLetter {
		h.dlt = h.topic + "-dlt"
	}
	testhelper.CreateTopic(t, h.addr, h.topic, cfg.Partitions)
	if h.dlt != "" {
		testhelper.CreateTopic(t, h.addr, h.dlt, 2)
	}
	if ti := h.cluster.TopicInfo(h.topic); ti != nil {
		h.topicID = ti.TopicID
	}
	h.observe()
	logf("chaos: protocol %s, seed %d (reproduce with %s=%d): %d messages, %d keys, %d partitions, %d workers (%d processes), faults for %s",
		cfg.Protocol, cfg.Seed, EnvSeed, cfg.Seed, cfg.Messages, cfg.Keys, cfg.Partitions, cfg.Workers, cfg.ProcessWorkers, cfg.Duration)

	h.start = time.Now()
	workerLogger("harness").Infow(context.Background(), "chaos: the dump's times count from here")
	for i := range cfg.Workers {
		s := &slot{id: i, process: i < cfg.ProcessWorkers, cmd: make(chan command)}
		h.slots = append(h.slots, s)
	}
	stopKids := func() {}
	t.Cleanup(func() { stopKids() })
	for _, s := range h.slots {
		h.wg.Add(1)
		go h.keep(s)
	}
	stopKids = func() {
		select {
		case <-h.final:
		default:
			close(h.final)
		}
		h.wg.Wait()
	}

	in := newInjector(h)
	stopFaults := make(chan struct{})
	faultsDone := make(chan struct{})
	var stopOnce sync.Once
	endFaults := func() {
		stopOnce.Do(func() { close(stopFaults) })
		<-faultsDone
		in.clear()
	}
	t.Cleanup(endFaults) // also on a t.Fatalf midway: before the workers stop and the cluster closes
	if !cfg.NoFaults {
		go func() { defer close(faultsDone); in.run(stopFaults) }()
	} else {
		close(faultsDone)
	}
	stopWatch := make(chan struct{})
	go h.watchStalls(logf, stopWatch)
	h.produce(logf)
	if rest := time.Until(h.start.Add(cfg.Duration)); rest > 0 {
		time.Sleep(rest)
	}
	endFaults()
	close(stopWatch)
	logf("chaos: faults stopped after %s; stopping the workers", time.Since(h.start).Round(time.Millisecond))
	stopKids()
	logf("chaos: workers stopped at %s; draining", time.Since(h.start).Round(time.Millisecond))
	h.drain(logf)

	rep := h.check(in.snapshot())
	rep.Duration = time.Since(h.start)
	logf("%s", rep)
	if len(rep.Violations) > 0 {
		t.Errorf("chaos: %d invariant violation(s) with seed %d (reproduce with %s=%d):\n%s",
			len(rep.Violations), cfg.Seed, EnvSeed, cfg.Seed, joinLines(rep.Violations))
	}
	return rep
}

func joinLines(ss []string) string {
	out := ""
	for _, s := range ss {
		out += "  - " + s + "\n"
	}
	return out
}

// observe records, from the broker's side, every offset commit of the group and every
// rebalance request: JoinGroup and SyncGroup, and under the consumer protocol each
// ConsumerGroupHeartbeat that joins (member epoch 0) or reports a changed assignment (its
// Topics set). It is installed before any fault, so it sees every request first; it never
// fails one.
func (h *harness) observe() {
	h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: h.group, Count: -1, When: func(r kmsg.Request) bool {
		req, ok := r.(*kmsg.OffsetCommitRequest)
		if !ok {
			return false
		}
		now := time.Now().UnixNano()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, tp := range req.Topics {
			if tp.Topic != h.topic && tp.TopicID != h.topicID {
				continue
			}
			if tp.Topic == "" && tp.TopicID == ([16]byte{}) {
				continue
			}
			for _, p := range tp.Partitions {
				h.commits = append(h.commits, commit{at: now, partition: p.Partition, offset: p.Offset, member: req.MemberID, generation: req.Generation})
			}
		}
		return false
	}})
	h.cluster.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.ConsumerGroupHeartbeat}, Group: h.group, Count: -1, When: func(r kmsg.Request) bool {
		if hb, ok := r.(*kmsg.ConsumerGroupHeartbeatRequest); ok && hb.MemberEpoch > 0 && hb.Topics == nil {
			return false // a plain heartbeat
		}
		now := time.Now().UnixNano()
		h.mu.Lock()
		h.rebalances = append(h.rebalances, now)
		h.mu.Unlock()
		return false
	}})
}

// produce writes cfg.Messages records, keys "k<i mod Keys>", at an even pace over ProduceFor.
func (h *harness) produce(logf func(string, ...any)) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  h.addr,
		"enable.idempotence": true,
		"acks":               "all",
		"linger.ms":          5,
		// One request at a time, as the library's producers: with more, a first request to a
		// partition refused by an injected fault while the next is in flight is reported
		// delivered but not written (librdkafka's implicit acknowledgement), and the check
		// would count it lost.
		"max.in.flight.requests.per.connection": 1,
		"go.logs.channel.enable":                false,
		"log_level":                             4,
	})
	if err != nil {
		h.t.Fatalf("chaos: creating the producer: %v", err)
	}
	defer p.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range p.Events() {
			if m, ok := ev.(*kafka.Message); ok && m.TopicPartition.Error != nil {
				h.mu.Lock()
				h.produceErrs++
				h.mu.Unlock()
			}
		}
	}()
	const tick = 20 * time.Millisecond
	n := h.cfg.Messages
	ticks := max(int(h.cfg.ProduceFor/tick), 1)
	per := (n + ticks - 1) / ticks
	topic := h.topic
	next := time.Now()
	for i := 0; i < n; {
		for j := 0; j < per && i < n; j, i = j+1, i+1 {
			msg := &kafka.Message{
				TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key:            []byte("k" + strconv.Itoa(i%h.cfg.Keys)),
				Value:          []byte(strconv.Itoa(i)),
			}
			for {
				err := p.Produce(msg, nil)
				if err == nil {
					break
				}
				var kerr kafka.Error
				if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				h.t.Fatalf("chaos: producing: %v", err)
			}
		}
		next = next.Add(tick)
		time.Sleep(time.Until(next))
	}
	for p.Flush(1000) > 0 {
		if time.Since(next) > time.Minute {
			h.t.Fatalf("chaos: producer could not flush within a minute")
		}
	}
	p.Close()
	wg.Wait()
	logf("chaos: produced %d messages in %s", n, time.Since(h.start).Round(time.Millisecond))
}

// keep runs slot s's worker until h.final closes, stopping and restarting it on command.
func (h *harness) keep(s *slot) {
	defer h.wg.Done()
	for gen := 0; ; gen++ {
		run := fmt.Sprintf("w%d-r%d", s.id, gen)
		r, err := h.startWorker(s, run)
		if err != nil {
			h.problem("worker %s did not start: %v", run, err)
			return
		}
		select {
		case <-h.final:
			h.endRun(run, endFinal)
			h.stopWorker(r, run, FaultWorkerLeave)
			return
		case c := <-s.cmd:
			h.endRun(run, string(c.kind))
			h.stopWorker(r, run, c.kind)
			h.mu.Lock()
			h.restarts[c.kind]++
			h.mu.Unlock()
			t := time.NewTimer(c.restartAfter)
			select {
			case <-t.C:
			case <-h.final:
				t.Stop()
				return
			}
		case err := <-r.exited:
			h.endRun(run, endCrash)
			h.problem("worker %s stopped by itself: %v%s", run, err, outputOf(r))
			select {
			case <-time.After(500 * time.Millisecond):
			case <-h.final:
				return
			}
		}
	}
}

func outputOf(r *running) string {
	if r.output == "" {
		return ""
	}
	return "; its last output:\n" + tail(r.output, 15)
}

func (h *harness) problem(format string, args ...any) {
	h.mu.Lock()
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

func (h *harness) spec(run string) workerSpec {
	return workerSpec{Addr: h.addr, Topic: h.topic, Group: h.group, DLT: h.dlt, Run: run, Seed: h.cfg.Seed}
}

func (h *harness) startWorker(s *slot, run string) (*running, error) {
	spec := h.spec(run)
	if !s.process {
		return startInProcess(&h.cfg, spec, &h.rec, true), nil
	}
	spec.File = filepath.Join(h.dir, run+".events")
	h.mu.Lock()
	h.files = append(h.files, spec.File)
	h.mu.Unlock()
	return startProcess(h.testName, h.dir, spec)
}

// clientCloseLimit bounds an in-process worker's Client.Close: the library's 30 s wait for a
// consumer close left to the background, and a margin.
const clientCloseLimit = 40 * time.Second

// stopWorker stops a run the way kind says and checks it stopped in time.
func (h *harness) stopWorker(r *running, run string, kind Fault) {
	limit := 30 * time.Second // graceful: queued work finishes first (G3)
	switch kind {
	case FaultWorkerCancel, FaultWorkerKill:
		r.abrupt()
		limit = 10 * time.Second // abrupt: prompt (G4)
	default:
		r.graceful()
	}
	if r.ran != nil {
		// Run must return within limit (G3, G4); Client.Close may then wait for a consumer
		// whose commit waits for an absent coordinator (G14), for up to 30 s.
		select {
		case <-r.ran:
		case <-time.After(limit):
			h.problem("worker %s: Run did not return within %s of a %s%s", run, limit, kind, outputOf(r))
		}
		limit = clientCloseLimit
	}
	select {
	case err := <-r.exited:
		if err != nil && kind == FaultWorkerLeave {
			h.problem("worker %s returned an error from a graceful stop: %v%s", run, err, outputOf(r))
		}
	case <-time.After(limit):
		h.problem("worker %s did not stop within %s of a %s; killing it%s", run, limit, kind, outputOf(r))
		r.abrupt()
		if err := <-r.exited; err != nil {
			h.t.Logf("chaos: worker %s, killed after a stuck stop: %v", run, err)
		}
	}
}

// drain runs one fault-free worker until the group has committed every offset.
func (h *harness) drain(logf func(string, ...any)) {
	cfg := h.cfg
	cfg.Wrap = nil
	r := startInProcess(&cfg, h.spec("drain"), &h.rec, false)
	end := testhelper.EndOffsets(h.t, h.addr, h.topic)
	deadline := time.Now().Add(h.cfg.DrainTimeout)
	var committed map[int32]int64
	for {
		committed = testhelper.CommittedOffsets(h.t, h.addr, h.group, h.topic)
		caught := true
		for p, e := range end {
			if e > 0 && committed[p] < e {
				caught = false
			}
		}
		if caught || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-r.exited:
			h.problem("the drain worker stopped by itself: %v", err)
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	h.stopWorker(r, "drain", FaultWorkerLeave)
	committed = testhelper.CommittedOffsets(h.t, h.addr, h.group, h.topic)
	for p, e := range end {
		if committed[p] < e {
			h.problem("after the drain partition %d is committed up to %d, short of its end offset %d: the group is stuck", p, committed[p], e)
		}
	}
	logf("chaos: drained at %s", time.Since(h.start).Round(time.Millisecond))
}
