package chaos

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"
)

// EnvStallDir names an environment variable: when set to a directory, every stall the
// harness reports (see watchStalls) also writes the goroutines of the harness's process and of
// every worker process there, for a post-mortem (default unset: the stall is only logged).
const EnvStallDir = "CHAOS_STALL_DIR"

// stallAfter is how long a partition with unread records may go without a handler starting
// one of its messages before the harness reports it as stalled.
const stallAfter = 20 * time.Second

// watchStalls reports, while the run goes on, every partition whose end offset is past the
// last offset any worker started and on which no handler started for stallAfter: the group's
// state, its members and the partition's owner. It does not fail the run (rebalances under
// faults can stall a group that long); the worst lag in the report does.
func (h *harness) watchStalls(logf func(string, ...any), stop <-chan struct{}) {
	lastStart := map[int32]int64{}
	lastMove := map[int32]time.Time{}
	var lastDump time.Time
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		next := h.nextToStart()
		now := time.Now()
		for _, pi := range h.cluster.PartitionInfos(h.topic) {
			p := pi.Partition
			if next[p] != lastStart[p] || pi.HighWatermark <= next[p] {
				lastStart[p], lastMove[p] = next[p], now
				continue
			}
			if now.Sub(lastMove[p]) < stallAfter {
				continue
			}
			logf("chaos: STALL: partition %d: no handler started for %s; next offset %d, end offset %d; %s",
				p, now.Sub(lastMove[p]).Round(time.Second), next[p], pi.HighWatermark, h.groupState(p))
			lastMove[p] = now
			if dir := os.Getenv(EnvStallDir); dir != "" && now.Sub(lastDump) > 10*time.Second {
				lastDump = now
				h.dumpGoroutines(logf, dir)
			}
		}
	}
}

// nextToStart returns, per partition, one past the highest offset a handler started.
func (h *harness) nextToStart() map[int32]int64 {
	evs := h.rec.snapshot()
	h.mu.Lock()
	files := append([]string(nil), h.files...)
	h.mu.Unlock()
	for _, f := range files {
		more, _ := readEvents(f)
		evs = append(evs, more...)
	}
	next := map[int32]int64{}
	for _, e := range evs {
		if e.kind == evStart && e.offset >= next[e.partition] {
			next[e.partition] = e.offset + 1
		}
	}
	return next
}

// groupState describes the group as the broker sees it, and who owns partition p.
func (h *harness) groupState(p int32) string {
	gi := h.cluster.GroupInfo(h.group)
	if gi == nil {
		return "no group"
	}
	var members []string
	owner := "nobody"
	for _, m := range gi.Members {
		members = append(members, m.ClientID)
		for _, q := range m.Assignment[h.topic] {
			if q == p {
				owner = m.ClientID
			}
		}
	}
	s := fmt.Sprintf("group %s, generation %d, members [%s], owner %s", gi.State, gi.Epoch, strings.Join(members, " "), owner)
	if c, ok := gi.Commits[h.topic][p]; ok {
		s += fmt.Sprintf(", committed %d", c.Offset)
	}
	return s
}

// dumpGoroutines writes the goroutines of this process to dir and asks every worker process
// to write its own to its output (SIGUSR1, see dumpOnSignal), copied to dir a moment later.
func (h *harness) dumpGoroutines(logf func(string, ...any), dir string) {
	stamp := time.Now().Format("150405")
	if f, err := os.Create(filepath.Join(dir, "stall-"+stamp+"-harness.txt")); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(f, 2)
		_ = f.Close()
		logf("chaos: STALL: goroutines written to %s", f.Name())
	}
	pidMu.Lock()
	for pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGUSR1)
	}
	pidMu.Unlock()
	go func() {
		time.Sleep(3 * time.Second)
		outs, _ := filepath.Glob(filepath.Join(h.dir, "*.out"))
		for _, o := range outs {
			if b, err := os.ReadFile(o); err == nil {
				_ = os.WriteFile(filepath.Join(dir, "stall-"+stamp+"-"+filepath.Base(o)), b, 0o600)
			}
		}
	}()
}

// The worker processes running now, by pid, for dumpGoroutines.
var (
	pidMu sync.Mutex
	pids  = map[int]bool{}
)

// dumpOnSignal makes a worker process write its goroutines to stderr on SIGUSR1.
func dumpOnSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	go func() {
		for range c {
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		}
	}()
}
