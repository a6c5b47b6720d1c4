package chaos

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// How a worker run ended, besides the worker faults (FaultWorkerLeave, FaultWorkerCancel,
// FaultWorkerKill): stopped gracefully at the end of the chaos, or exited by itself.
const (
	endFinal = "final-stop"
	endCrash = "crash"
)

// runEnd is how and when a worker run was stopped.
type runEnd struct {
	how string
	at  int64
}

// endRun records that run is being stopped, and how.
func (h *harness) endRun(run, how string) {
	h.mu.Lock()
	h.ends[run] = runEnd{how: how, at: time.Now().UnixNano()}
	h.mu.Unlock()
}

// Causes of a duplicate: a successful re-processing of an offset that a run had already
// processed successfully, named by what happened to that first run before the re-processing.
const (
	// CauseRebalance: the first run was still running: its partition moved in a rebalance
	// (or came back to it) before the offset was committed.
	CauseRebalance = "rebalance"
	// CauseSameRun: the same run processed the offset again (it lost and regained the
	// partition, or re-read it after a failed commit).
	CauseSameRun = "same-run"
)

// duplicateCauses counts the duplicates by cause: the first run's end (a FaultWorker* kind,
// endFinal or endCrash) when it had ended before the re-processing, else CauseRebalance or
// CauseSameRun.
func duplicateCauses(events []event, ends map[string]runEnd) map[string]int {
	type ok struct {
		run string
		at  int64
	}
	oks := map[[2]int64][]ok{}
	for _, e := range events {
		if e.kind == evReturnOK {
			k := [2]int64{int64(e.partition), e.offset}
			oks[k] = append(oks[k], ok{e.run, e.at})
		}
	}
	out := map[string]int{}
	for _, list := range oks {
		if len(list) < 2 {
			continue
		}
		sort.Slice(list, func(i, j int) bool { return list[i].at < list[j].at })
		first := list[0]
		for _, again := range list[1:] {
			switch end, ended := ends[first.run]; {
			case again.run == first.run:
				out[CauseSameRun]++
			case ended && end.at <= again.at:
				out[end.how]++
			default:
				out[CauseRebalance]++
			}
		}
	}
	return out
}

// interval is one run of a handler: from its start to its return.
type interval struct {
	run        string
	partition  int32
	offset     int64
	start, end int64
}

// overlaps finds two handlers of the same key running at the same moment in different runs
// (or twice in one run). A start without a return (the run was killed or cancelled, or the
// handler was abandoned) counts as an instant. stuck excludes the handlers the harness makes
// ignore their context: the Work abandons them by design (G10) while they still run.
func overlaps(events []event, stuck func(partition int32, offset int64) bool) []string {
	type open struct {
		run       string
		partition int32
		offset    int64
	}
	started := map[open][]int64{}
	byKey := map[string][]interval{}
	for _, e := range events {
		o := open{e.run, e.partition, e.offset}
		switch e.kind {
		case evStart:
			started[o] = append(started[o], e.at)
		case evReturnOK, evReturnErr:
			if q := started[o]; len(q) > 0 {
				started[o] = q[1:]
				if !stuck(e.partition, e.offset) {
					byKey[e.key] = append(byKey[e.key], interval{e.run, e.partition, e.offset, q[0], e.at})
				}
			}
		}
	}
	var out []string
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ivs := byKey[k]
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].start < ivs[j].start })
		var last interval
		for i, iv := range ivs {
			if i > 0 && iv.start < last.end {
				out = append(out, fmt.Sprintf("OVERLAP: key %q: run %s was in the handler for partition %d offset %d until %s while run %s started partition %d offset %d",
					k, last.run, last.partition, last.offset, time.Duration(last.end-iv.start), iv.run, iv.partition, iv.offset))
			}
			if i == 0 || iv.end > last.end {
				last = iv
			}
		}
	}
	return out
}

// causeCounts formats duplicates by cause, "none" when there are none.
func causeCounts(m map[string]int) string {
	f := make(map[Fault]int, len(m))
	for k, v := range m {
		f[Fault(k)] = v
	}
	return counts(f)
}
