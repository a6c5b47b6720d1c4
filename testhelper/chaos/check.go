package chaos

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/testhelper"
)

// Report is what a chaos run did and found.
type Report struct {
	// Seed is the seed the run used.
	Seed int64
	// Protocol is the rebalance protocol the run used.
	Protocol Protocol
	// Produced is the number of records in the topic at the end (its end offsets summed).
	Produced int
	// Processed is the number of distinct offsets a processor returned nil for.
	Processed int
	// ByDrain is the number of offsets first finished by the final drain worker rather than
	// during the chaos: a large share means the workers made little progress under the faults.
	ByDrain int
	// Processings is the number of times a processor returned nil, duplicates included.
	Processings int
	// Failures is the number of processor calls that returned an error, panicked or timed out.
	Failures int
	// DeadLettered is the number of distinct offsets found in the dead letter topic.
	DeadLettered int
	// DeadLetterRecords is the number of records in the dead letter topic.
	DeadLetterRecords int
	// Duplicates is Processings - Processed: successful re-processings.
	Duplicates int
	// DuplicatesByCause splits Duplicates by what happened to the run that first processed
	// the message (see CauseRebalance, CauseSameRun, the worker faults, endFinal, endCrash).
	DuplicatesByCause map[string]int
	// Overlaps counts the times two handlers of one key ran at the same moment.
	Overlaps int
	// Commits is the number of partition offset commits the broker received and the checker
	// verified.
	Commits int
	// Faults counts the faults injected, by kind.
	Faults map[Fault]int
	// Restarts counts worker restarts, by the fault that stopped the worker.
	Restarts map[Fault]int
	// WorstLag is the longest time between a record's timestamp and its first finish.
	WorstLag time.Duration
	// WorstLagAt names the message of WorstLag ("partition 3 offset 120 key \"k7\"").
	WorstLagAt string
	// Duration is the wall-clock time of the run.
	Duration time.Duration
	// Violations are the broken invariants, one readable sentence each; empty when all held.
	Violations []string
}

// String formats the report for a test log.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos report (protocol %s, seed %d, %s):\n", r.Protocol, r.Seed, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(&b, "  produced %d, processed %d (%d processings, %d duplicates = %.2f%%), failures %d, dead-lettered %d (%d dead letter records)\n",
		r.Produced, r.Processed, r.Processings, r.Duplicates, 100*float64(r.Duplicates)/math.Max(1, float64(r.Produced)), r.Failures, r.DeadLettered, r.DeadLetterRecords)
	fmt.Fprintf(&b, "  duplicates by cause: %s; overlaps of one key's handlers: %d\n", causeCounts(r.DuplicatesByCause), r.Overlaps)
	fmt.Fprintf(&b, "  processed under chaos %d, left for the final drain %d\n", r.Processed-r.ByDrain, r.ByDrain)
	fmt.Fprintf(&b, "  offset commits checked %d, worst lag %s (%s)\n", r.Commits, r.WorstLag.Round(time.Millisecond), r.WorstLagAt)
	fmt.Fprintf(&b, "  faults injected: %s\n", counts(r.Faults))
	fmt.Fprintf(&b, "  worker restarts: %s\n", counts(r.Restarts))
	if len(r.Violations) == 0 {
		b.WriteString("  invariants: no loss, per-key order, no overlap, duplicates bounded, commits never past an unfinished message: all held\n")
	} else {
		fmt.Fprintf(&b, "  VIOLATIONS: %d\n", len(r.Violations))
	}
	return b.String()
}

func counts(m map[Fault]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	total := 0
	for k, v := range m {
		keys = append(keys, string(k))
		total += v
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[Fault(k)])
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// offsetState is what the checker knows of one offset.
type offsetState struct {
	key       string
	hasKey    bool
	ts        int64
	okAt      int64 // first successful return; 0 if none
	okRun     string
	doneAt    int64 // first OnDone; 0 if none
	doneErrAt int64 // first OnDone of a failure (dead letter acknowledged); 0 if none
	failedAt  int64 // first failed return
	oks       int
	starts    int
	fails     int
	deadLeter bool
}

// finishedAt is when the offset was finished as far as a commit may know: its processor
// returned nil, or OnDone ran for its failure — after the dead letter was acknowledged — less
// the tolerance for OnDone trailing the mark. MaxInt64 when never. An OnDone for a success
// does not count: the processor's own return is what proves the work was done.
func (s *offsetState) finishedAt(tol int64) int64 {
	f := int64(math.MaxInt64)
	if s.okAt != 0 {
		f = s.okAt
	}
	if s.doneErrAt != 0 {
		f = min(f, s.doneErrAt-tol)
	}
	return f
}

const maxShown = 10

// check gathers every record and verifies the invariants.
func (h *harness) check(faults map[Fault]int) Report {
	t := h.t
	rep := Report{Seed: h.cfg.Seed, Protocol: h.cfg.Protocol, Faults: faults, Restarts: map[Fault]int{}}
	events := h.rec.snapshot()
	h.mu.Lock()
	files := slices.Clone(h.files)
	commits := slices.Clone(h.commits)
	rebalances := slices.Clone(h.rebalances)
	problems := slices.Clone(h.problems)
	for k, v := range h.restarts {
		rep.Restarts[k] = v
	}
	produceErrs := h.produceErrs
	h.mu.Unlock()
	for _, f := range files {
		evs, err := readEvents(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the process was killed before it opened its record
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("reading a worker's record: %v", err))
		}
		events = append(events, evs...)
	}
	rep.Violations = append(rep.Violations, problems...)
	if path := os.Getenv(EnvDump); path != "" {
		h.dump(path, events, commits, rebalances)
	}
	if produceErrs > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("the harness's producer lost %d records (delivery failures)", produceErrs))
	}

	end := testhelper.EndOffsets(t, h.addr, h.topic)
	state := map[int32][]offsetState{}
	for p, e := range end {
		state[p] = make([]offsetState, e)
		rep.Produced += int(e)
	}
	at := func(p int32, o int64) *offsetState {
		st := state[p]
		if o < 0 || o >= int64(len(st)) {
			return nil
		}
		return &st[o]
	}
	var outside int
	for _, e := range events {
		s := at(e.partition, e.offset)
		if s == nil {
			outside++
			continue
		}
		s.key, s.hasKey, s.ts = e.key, true, e.ts
		switch e.kind {
		case evStart:
			s.starts++
		case evReturnOK:
			s.oks++
			rep.Processings++
			if s.okAt == 0 || e.at < s.okAt {
				s.okAt, s.okRun = e.at, e.run
			}
		case evReturnErr:
			s.fails++
			rep.Failures++
			if s.failedAt == 0 || e.at < s.failedAt {
				s.failedAt = e.at
			}
		case evDoneOK, evDoneErr:
			if s.doneAt == 0 || e.at < s.doneAt {
				s.doneAt = e.at
			}
			if e.kind == evDoneErr && (s.doneErrAt == 0 || e.at < s.doneErrAt) {
				s.doneErrAt = e.at
			}
		}
	}
	if outside > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d records name offsets beyond the topic's end offsets", outside))
	}

	// Dead letters, matched by their original coordinates.
	if h.dlt != "" {
		dend := testhelper.EndOffsets(t, h.addr, h.dlt)
		n := 0
		for _, e := range dend {
			n += int(e)
		}
		rep.DeadLetterRecords = n
		if n > 0 {
			for _, c := range testhelper.ConsumeTo(t, h.addr, h.dlt, dend, 60*time.Second) {
				if string(c.Headers[zkafka.HeaderOriginalTopic]) != h.topic {
					continue
				}
				p, err1 := strconv.ParseInt(string(c.Headers[zkafka.HeaderOriginalPartition]), 10, 32)
				o, err2 := strconv.ParseInt(string(c.Headers[zkafka.HeaderOriginalOffset]), 10, 64)
				s := at(int32(p), o)
				if err1 != nil || err2 != nil || s == nil {
					rep.Violations = append(rep.Violations, fmt.Sprintf("dead letter at %s/%d offset %d has bad original coordinates %q/%q",
						h.dlt, c.Partition, c.Offset, c.Headers[zkafka.HeaderOriginalPartition], c.Headers[zkafka.HeaderOriginalOffset]))
					continue
				}
				if !s.deadLeter {
					rep.DeadLettered++
				}
				s.deadLeter = true
			}
		}
	}

	rel := func(ns int64) string {
		if ns == math.MaxInt64 || ns == 0 {
			return "never"
		}
		return "at " + time.Duration(ns-h.start.UnixNano()).Round(time.Millisecond).String()
	}
	keyOf := func(s *offsetState) string {
		if !s.hasKey {
			return "(key unknown: never handed to a processor)"
		}
		return "key " + strconv.Quote(s.key)
	}

	// (1) No loss; (3) duplicates; lag.
	var lost []string
	partitions := make([]int32, 0, len(state))
	for p := range state {
		partitions = append(partitions, p)
	}
	slices.Sort(partitions)
	tol := h.cfg.CommitTolerance.Nanoseconds()
	for _, p := range partitions {
		for o := range state[p] {
			s := &state[p][o]
			if s.oks > 0 {
				rep.Processed++
				if s.okRun == "drain" {
					rep.ByDrain++
				}
			}
			if f := s.finishedAt(0); f != math.MaxInt64 && s.ts > 0 {
				if lag := time.Duration(f - s.ts); lag > rep.WorstLag {
					rep.WorstLag = lag
					rep.WorstLagAt = fmt.Sprintf("partition %d offset %d %s, finished %s", p, o, keyOf(s), rel(f))
				}
			}
			accounted := s.oks > 0 || s.deadLeter || (h.dlt == "" && s.doneErrAt != 0)
			if !accounted {
				lost = append(lost, fmt.Sprintf("LOSS: partition %d offset %d (%s) was never processed successfully nor dead-lettered: started %d time(s), failed %d time(s), OnDone %s",
					p, o, keyOf(s), s.starts, s.fails, rel(s.doneAt)))
			}
		}
	}
	if len(lost) > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d message(s) lost (committed past without being processed or dead-lettered)", len(lost)))
		rep.Violations = append(rep.Violations, lost[:min(len(lost), maxShown)]...)
	}
	rep.Duplicates = rep.Processings - rep.Processed
	if ratio := float64(rep.Duplicates) / math.Max(1, float64(rep.Produced)); ratio > h.cfg.MaxDuplicateRatio {
		rep.Violations = append(rep.Violations, fmt.Sprintf("DUPLICATES: %d successful re-processings for %d messages (%.1f%%), above the bound of %.1f%%",
			rep.Duplicates, rep.Produced, 100*ratio, 100*h.cfg.MaxDuplicateRatio))
	}

	h.mu.Lock()
	rep.DuplicatesByCause = duplicateCauses(events, h.ends)
	h.mu.Unlock()
	over := overlaps(events, func(p int32, o int64) bool { return misbehaviour(&h.cfg, p, o) == stuck })
	rep.Overlaps = len(over)
	if len(over) > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d overlap(s): two handlers of one key ran at the same moment", len(over)))
		rep.Violations = append(rep.Violations, over[:min(len(over), maxShown)]...)
	}

	// (4) No commit passed an unfinished message: prefix maximum of finish times per partition.
	prefix := map[int32][]int64{}
	for p, st := range state {
		pm := make([]int64, len(st)+1) // pm[c] = latest finish among offsets < c
		for o := range st {
			pm[o+1] = max(pm[o], st[o].finishedAt(tol))
		}
		prefix[p] = pm
	}
	var bad []string
	nbad := 0
	shown := map[[2]int64]bool{} // (partition, unfinished offset) already explained
	for _, c := range commits {
		rep.Commits++
		pm, ok := prefix[c.partition]
		if !ok || c.offset < 0 {
			continue
		}
		if c.offset > int64(len(pm)-1) {
			nbad++
			bad = append(bad, fmt.Sprintf("COMMIT PAST END: partition %d committed offset %d %s, beyond its end offset %d", c.partition, c.offset, rel(c.at), len(pm)-1))
			continue
		}
		if pm[c.offset] <= c.at {
			continue
		}
		nbad++
		if len(bad) >= maxShown {
			continue
		}
		st := state[c.partition]
		for o := int64(0); o < c.offset; o++ {
			if st[o].finishedAt(tol) > c.at {
				s := &st[o]
				if shown[[2]int64{int64(c.partition), o}] {
					break
				}
				shown[[2]int64{int64(c.partition), o}] = true
				bad = append(bad, fmt.Sprintf("COMMIT PASSED UNFINISHED: partition %d offset %d (%s) was committed past (commit of offset %d received %s) but was not finished then: it finished %s (processor returned nil %s, OnDone %s, dead-lettered %v)",
					c.partition, o, keyOf(s), c.offset, rel(c.at), rel(s.finishedAt(tol)), rel(s.okAt), rel(s.doneAt), s.deadLeter))
				break
			}
		}
	}
	if nbad > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d offset commit(s) passed a message that was not finished", nbad))
		rep.Violations = append(rep.Violations, bad...)
	}

	// (2) Per-key order within each run: starts of a key in offset order; a step back only
	// after a rebalance request reached the broker.
	slices.Sort(rebalances)
	type runKey struct {
		run       string
		partition int32
		key       string
	}
	starts := map[runKey][]event{}
	for _, e := range events {
		if e.kind == evStart {
			k := runKey{e.run, e.partition, e.key}
			starts[k] = append(starts[k], e)
		}
	}
	var order []string
	norder := 0
	for k, evs := range starts {
		sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
		for i := 1; i < len(evs); i++ {
			prev, cur := evs[i-1], evs[i]
			if cur.offset > prev.offset {
				continue
			}
			// A rebalance between the two starts explains a re-read.
			j, _ := slices.BinarySearch(rebalances, prev.at)
			if j < len(rebalances) && rebalances[j] <= cur.at {
				continue
			}
			norder++
			if len(order) < maxShown {
				order = append(order, fmt.Sprintf("ORDER: worker run %s started partition %d offset %d (key %q) %s after offset %d of the same key %s, with no rebalance in between",
					k.run, k.partition, cur.offset, k.key, rel(cur.at), prev.offset, rel(prev.at)))
			}
		}
	}
	if norder > 0 {
		rep.Violations = append(rep.Violations, fmt.Sprintf("%d per-key order violation(s)", norder))
		rep.Violations = append(rep.Violations, order...)
	}
	return rep
}

// EnvDump names an environment variable: when set to a file path, the harness writes every
// recorded event, commit, rebalance and worker run's end there, one per line, for a post-mortem (default unset).
const EnvDump = "CHAOS_DUMP"

func (h *harness) dump(path string, events []event, commits []commit, rebalances []int64) {
	var b strings.Builder
	base := h.start.UnixNano()
	for _, e := range events {
		fmt.Fprintf(&b, "%c run=%s p=%d o=%d at=%s key=%q\n", e.kind, e.run, e.partition, e.offset, time.Duration(e.at-base), e.key)
	}
	for _, c := range commits {
		fmt.Fprintf(&b, "C p=%d o=%d at=%s member=%s gen=%d\n", c.partition, c.offset, time.Duration(c.at-base), c.member, c.generation)
	}
	for _, r := range rebalances {
		fmt.Fprintf(&b, "J at=%s\n", time.Duration(r-base))
	}
	h.mu.Lock()
	for run, e := range h.ends {
		fmt.Fprintf(&b, "E run=%s how=%s at=%s\n", run, e.how, time.Duration(e.at-base))
	}
	h.mu.Unlock()
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		h.t.Logf("chaos: writing %s: %v", path, err)
	}
}
