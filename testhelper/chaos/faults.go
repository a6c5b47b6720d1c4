package chaos

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// injector applies the fault schedule to the cluster and the worker slots.
type injector struct {
	h   *harness
	rng *rand.Rand

	mu              sync.Mutex
	counts          map[Fault]int
	lastWorkerFault time.Time
	handles         []*kfake.FaultHandle
	timers          []*time.Timer
}

func newInjector(h *harness) *injector {
	seed := uint64(h.cfg.Seed)
	return &injector{h: h, rng: rand.New(rand.NewPCG(seed, seed^0x5eed5eed)), counts: map[Fault]int{}}
}

func (in *injector) pick(errs ...*kerr.Error) *kerr.Error { return errs[in.rng.IntN(len(errs))] }

func (in *injector) install(f kfake.Fault) *kfake.FaultHandle {
	hd := in.h.cluster.Fault(f)
	in.mu.Lock()
	in.handles = append(in.handles, hd)
	in.mu.Unlock()
	return hd
}

// run injects faults until stop closes, on a schedule drawn from the seed.
func (in *injector) run(stop <-chan struct{}) {
	cfg := in.h.cfg
	for {
		wait := time.Duration(in.rng.ExpFloat64() * float64(cfg.FaultEvery))
		wait = min(max(wait, cfg.FaultEvery/10), 5*cfg.FaultEvery)
		t := time.NewTimer(wait)
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		kind := cfg.Faults[in.rng.IntN(len(cfg.Faults))]
		if in.firstWorkerFault(kind) {
			kind = FaultWorkerKill // every run with worker processes kills at least one
		}
		if in.apply(kind) {
			in.mu.Lock()
			in.counts[kind]++
			in.mu.Unlock()
		}
	}
}

// firstWorkerFault reports whether kind is the run's first worker fault, in a run that has
// worker processes and kills in its mix.
func (in *injector) firstWorkerFault(kind Fault) bool {
	switch kind {
	case FaultWorkerLeave, FaultWorkerCancel, FaultWorkerKill:
	default:
		return false
	}
	if in.h.cfg.ProcessWorkers == 0 || !in.lastWorkerFault.IsZero() {
		return false
	}
	for _, f := range in.h.cfg.Faults {
		if f == FaultWorkerKill {
			return true
		}
	}
	return false
}

// apply injects one fault and reports whether it was applicable.
func (in *injector) apply(kind Fault) bool {
	h := in.h
	count := 1 + in.rng.IntN(4)
	group := []*kerr.Error{kerr.NotCoordinator, kerr.CoordinatorLoadInProgress, kerr.RequestTimedOut}
	switch kind {
	case FaultFetch:
		in.install(kfake.Fault{Keys: []kmsg.Key{kmsg.Fetch}, Topic: h.topic, Err: in.pick(kerr.NotLeaderForPartition, kerr.UnknownLeaderEpoch), Count: count})
	case FaultProduce:
		in.install(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: in.pick(kerr.NotLeaderForPartition, kerr.RequestTimedOut), Count: count})
	case FaultCommit:
		in.install(kfake.Fault{Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: h.group, Err: in.pick(group...), Count: count})
	case FaultGroup:
		keys := []kmsg.Key{kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat}
		if in.h.cfg.Protocol == ProtocolConsumer {
			keys = []kmsg.Key{kmsg.ConsumerGroupHeartbeat}
		}
		in.install(kfake.Fault{Keys: []kmsg.Key{keys[in.rng.IntN(len(keys))]}, Group: h.group, Err: in.pick(group...), Count: count})
	case FaultCoordinatorMove:
		h.cluster.RehashCoordinators()
	case FaultLeaderMove:
		if in.rng.IntN(2) == 0 {
			h.cluster.ShufflePartitionLeaders()
		} else {
			_ = h.cluster.MoveTopicPartition(h.topic, int32(in.rng.IntN(h.cfg.Partitions)), int32(in.rng.IntN(h.brokers)))
		}
	case FaultDeadLetterDown:
		if h.dlt == "" {
			return false
		}
		hd := in.install(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: h.dlt, Err: in.pick(kerr.NotEnoughReplicas, kerr.RequestTimedOut), Count: -1})
		d := 500*time.Millisecond + time.Duration(in.rng.IntN(2000))*time.Millisecond
		in.mu.Lock()
		in.timers = append(in.timers, time.AfterFunc(d, hd.Remove))
		in.mu.Unlock()
	case FaultWorkerLeave, FaultWorkerCancel, FaultWorkerKill:
		var cands []*slot
		for _, s := range h.slots {
			if (kind == FaultWorkerCancel && s.process) || (kind == FaultWorkerKill && !s.process) {
				continue
			}
			cands = append(cands, s)
		}
		if len(cands) == 0 || time.Since(in.lastWorkerFault) < h.cfg.WorkerFaultGap {
			return false
		}
		s := cands[in.rng.IntN(len(cands))]
		c := command{kind: kind, restartAfter: 200*time.Millisecond + time.Duration(in.rng.IntN(1500))*time.Millisecond}
		select {
		case s.cmd <- c:
			in.lastWorkerFault = time.Now()
		default:
			return false // the worker is restarting from an earlier fault
		}
	default:
		return false
	}
	return true
}

// clear removes every installed fault and stops pending removals.
func (in *injector) clear() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, t := range in.timers {
		t.Stop()
	}
	for _, hd := range in.handles {
		hd.Remove()
	}
	in.handles, in.timers = nil, nil
}

func (in *injector) snapshot() map[Fault]int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[Fault]int, len(in.counts))
	for k, v := range in.counts {
		out[k] = v
	}
	return out
}
