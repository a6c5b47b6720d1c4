package chaos

import (
	"context"
	"os"
	"strconv"
	"time"

	"github.com/zkafka-go/zkafka"
)

// EnvSeed names the environment variable that overrides [Config.Seed] (and the default seed)
// to reproduce a run: CHAOS_SEED=1234 go test -run TestChaos ./...
const EnvSeed = "CHAOS_SEED"

// DefaultSeed is the seed used when neither Config.Seed nor CHAOS_SEED is set.
const DefaultSeed int64 = 20260601

// Fault is a kind of trouble the harness injects.
type Fault string

// The faults the harness knows. [AllFaults] lists them; Config.Faults picks a mix.
const (
	// FaultFetch fails a few fetch requests for the topic (NOT_LEADER_FOR_PARTITION,
	// UNKNOWN_LEADER_EPOCH).
	FaultFetch Fault = "fetch-error"
	// FaultProduce fails a few produce requests (NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT):
	// the harness's own producer and the dead letter writes see them.
	FaultProduce Fault = "produce-error"
	// FaultCommit fails a few offset commits of the group (NOT_COORDINATOR,
	// COORDINATOR_LOAD_IN_PROGRESS, REQUEST_TIMED_OUT).
	FaultCommit Fault = "commit-error"
	// FaultGroup fails a few JoinGroup, SyncGroup and Heartbeat requests of the group, or
	// under ProtocolConsumer ConsumerGroupHeartbeat requests (NOT_COORDINATOR,
	// COORDINATOR_LOAD_IN_PROGRESS, REQUEST_TIMED_OUT).
	FaultGroup Fault = "group-error"
	// FaultCoordinatorMove moves every group coordinator (kfake RehashCoordinators).
	FaultCoordinatorMove Fault = "coordinator-move"
	// FaultLeaderMove moves partition leaders (ShufflePartitionLeaders or MoveTopicPartition).
	FaultLeaderMove Fault = "leader-move"
	// FaultDeadLetterDown makes the dead letter topic reject every write for 0.5–2.5 s.
	FaultDeadLetterDown Fault = "dead-letter-down"
	// FaultWorkerLeave stops a worker gracefully (shutdown closed, SIGTERM for a process)
	// and starts it again a little later: a leave and a join.
	FaultWorkerLeave Fault = "worker-leave"
	// FaultWorkerCancel cancels an in-process worker's context (abrupt stop) and restarts it.
	FaultWorkerCancel Fault = "worker-cancel"
	// FaultWorkerKill kills a worker process with SIGKILL and restarts it. In a run with
	// worker processes and this kind in its mix, the first worker fault is always a kill.
	FaultWorkerKill Fault = "worker-kill"
)

// AllFaults is every fault kind, the default mix.
var AllFaults = []Fault{
	FaultFetch, FaultProduce, FaultCommit, FaultGroup, FaultCoordinatorMove, FaultLeaderMove,
	FaultDeadLetterDown, FaultWorkerLeave, FaultWorkerCancel, FaultWorkerKill,
}

// Protocol is a consumer group rebalance protocol the harness runs the Works under.
type Protocol string

// The protocols of Config.Protocol; [Protocols] lists them.
const (
	// ProtocolEager is the classic protocol with an eager assignor (librdkafka's default
	// range,roundrobin): every rebalance revokes every partition.
	ProtocolEager Protocol = "eager"
	// ProtocolCooperative is the classic protocol with the cooperative-sticky assignor:
	// only the partitions that move are revoked.
	ProtocolCooperative Protocol = "cooperative"
	// ProtocolConsumer is Kafka 4's consumer group protocol (KIP-848,
	// ConsumerTopicConfig.GroupProtocol "consumer"): the broker assigns, incrementally, and
	// owns the session timeout. FaultGroup fails ConsumerGroupHeartbeat requests under it.
	ProtocolConsumer Protocol = "consumer"
)

// Protocols is every protocol, in the order `make chaos-all` runs them.
var Protocols = []Protocol{ProtocolEager, ProtocolCooperative, ProtocolConsumer}

// ProcessFunc is a processor as a Work runs it.
type ProcessFunc func(ctx context.Context, msg *zkafka.Message) error

// Config describes a chaos run. The zero value is a short run with every fault; every field
// says its default.
type Config struct {
	// Seed drives every random choice of the harness (default DefaultSeed; CHAOS_SEED
	// overrides both). Runs with the same seed inject the same schedule; timing still varies.
	Seed int64
	// Messages is how many messages are produced (default 2000).
	Messages int
	// Keys is how many distinct keys the messages spread over, "k0".."k<Keys-1>" (default 64).
	Keys int
	// Partitions of the topic (default 4).
	Partitions int
	// Workers is how many Works run at once in the group (default 2).
	Workers int
	// ProcessWorkers is how many of the Workers run as separate OS processes (default 0).
	// A process worker is the test binary re-executed to run only the calling test, so
	// the test function must call Run with the same Config in every process.
	ProcessWorkers int
	// Duration is how long faults are injected (default 20 s). Producing takes ProduceFor of
	// it; the run then waits (at most Duration more) for the workers to catch up.
	Duration time.Duration
	// ProduceFor is how long producing the messages takes (default 60% of Duration).
	ProduceFor time.Duration
	// FaultEvery is the mean time between two faults (default 400 ms).
	FaultEvery time.Duration
	// Faults is the mix of faults to inject, drawn uniformly (default AllFaults). A worker
	// fault without a worker of its kind (FaultWorkerKill without ProcessWorkers, for
	// example) is skipped.
	Faults []Fault
	// WorkerFaultGap is the least time between two worker faults (leave, cancel, kill)
	// (default 3 s): each one costs the group a rebalance, and a group that does nothing but
	// rebalance processes nothing. A worker fault drawn sooner is skipped.
	WorkerFaultGap time.Duration
	// NoFaults turns fault injection off (default false), for a baseline run.
	NoFaults bool

	// Processor is the processor under test (default: returns nil at once). It runs in every
	// worker, including the final drain.
	Processor ProcessFunc
	// FailRate, PanicRate and TimeoutRate are the fractions of messages (chosen by seed,
	// partition and offset) for which the harness makes the processor return an error,
	// panic, or run past ProcessTimeout (a quarter of those also ignore the cancelled context
	// and are abandoned by the Work) before Processor is called. Defaults 0.01, 0.003, 0.002;
	// negative means none. The final drain worker injects none.
	FailRate, PanicRate, TimeoutRate float64
	// Wrap, when set, wraps the processor exactly as the Work sees it, outside the harness's
	// recording. It exists to simulate a broken engine in tests of the harness itself (for
	// example a wrapper that returns nil without calling next) and is nil by default.
	Wrap func(next ProcessFunc) ProcessFunc

	// DisableDeadLetter runs the Works without a dead letter topic (default false: failed
	// messages go to "<topic>-dlt"). Without one, a failed message counts as finished.
	DisableDeadLetter bool
	// Speedup is the Works' virtual partition count (default 4).
	Speedup uint16
	// ProcessTimeout is ConsumerTopicConfig.ProcessTimeoutMillis (default 300 ms).
	ProcessTimeout time.Duration
	// SessionTimeout is how long a killed worker keeps its partitions (default 3 s): the
	// Works' ConsumerTopicConfig.SessionTimeoutMillis under the classic protocols, the
	// embedded broker's group.consumer.session.timeout.ms under ProtocolConsumer (which
	// refuses the former: the broker owns it).
	SessionTimeout time.Duration
	// AutoCommitInterval is ConsumerTopicConfig.AutoCommitIntervalMs (default 250 ms).
	AutoCommitInterval time.Duration
	// Protocol is the group's rebalance protocol (default ProtocolEager, or
	// ProtocolCooperative when AssignmentStrategy is "cooperative-sticky").
	Protocol Protocol
	// AssignmentStrategy is the Works' partition.assignment.strategy under the classic
	// protocols (default "": librdkafka's eager range,roundrobin under ProtocolEager,
	// "cooperative-sticky" under ProtocolCooperative). Setting it to "cooperative-sticky"
	// with no Protocol selects ProtocolCooperative.
	AssignmentStrategy string
	// WorkOptions are added to every Work the harness creates (default none).
	WorkOptions []zkafka.WorkOption

	// MaxDuplicateRatio bounds successful re-processings of a message over messages produced
	// (default 0.5); above it the run fails.
	MaxDuplicateRatio float64
	// CommitTolerance is how much later than an offset commit the Work's OnDone may record
	// the dead letter acknowledgement of an earlier offset (default 50 ms): OnDone runs just
	// after the message is marked finished, so the commit can overtake the record.
	CommitTolerance time.Duration
	// DrainTimeout bounds the final drain (default 90 s).
	DrainTimeout time.Duration
	// Logf, when set, receives progress lines (default t.Logf).
	Logf func(format string, args ...any)
}

func (c Config) withDefaults() Config {
	if s, err := strconv.ParseInt(os.Getenv(EnvSeed), 10, 64); err == nil {
		c.Seed = s
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Messages, 2000)
	def(&c.Keys, 64)
	def(&c.Partitions, 4)
	def(&c.Workers, 2)
	c.ProcessWorkers = min(max(c.ProcessWorkers, 0), c.Workers)
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defd(&c.Duration, 20*time.Second)
	defd(&c.ProduceFor, c.Duration*6/10)
	defd(&c.FaultEvery, 400*time.Millisecond)
	defd(&c.WorkerFaultGap, 3*time.Second)
	defd(&c.ProcessTimeout, 300*time.Millisecond)
	defd(&c.SessionTimeout, 3*time.Second)
	defd(&c.AutoCommitInterval, 250*time.Millisecond)
	defd(&c.CommitTolerance, 50*time.Millisecond)
	defd(&c.DrainTimeout, 90*time.Second)
	if len(c.Faults) == 0 {
		c.Faults = AllFaults
	}
	if c.Protocol == "" {
		c.Protocol = ProtocolEager
		if c.AssignmentStrategy == "cooperative-sticky" {
			c.Protocol = ProtocolCooperative
		}
	}
	if c.Protocol == ProtocolCooperative && c.AssignmentStrategy == "" {
		c.AssignmentStrategy = "cooperative-sticky"
	}
	rate := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	rate(&c.FailRate, 0.01)
	rate(&c.PanicRate, 0.003)
	rate(&c.TimeoutRate, 0.002)
	if c.Speedup == 0 {
		c.Speedup = 4
	}
	if c.MaxDuplicateRatio <= 0 {
		c.MaxDuplicateRatio = 0.5
	}
	if c.Processor == nil {
		c.Processor = func(context.Context, *zkafka.Message) error { return nil }
	}
	return c
}
