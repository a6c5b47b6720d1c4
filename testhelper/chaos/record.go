package chaos

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// eventKind is what happened to a message in a worker.
type eventKind byte

const (
	evStart     eventKind = 'S' // the processor started
	evReturnOK  eventKind = 'R' // the processor returned nil
	evReturnErr eventKind = 'E' // the processor returned an error or panicked
	evDoneOK    eventKind = 'D' // OnDone ran for a success
	evDoneErr   eventKind = 'F' // OnDone ran for a failure: its dead letter was acknowledged (or there is no dead letter topic)
)

// event is one line of a worker's record.
type event struct {
	kind      eventKind
	run       string // worker run id: one Run call of one Work
	partition int32
	offset    int64
	at        int64 // wall clock, UnixNano
	ts        int64 // the record's timestamp, UnixNano
	key       string
}

func (e event) line() string {
	return fmt.Sprintf("%c %s %d %d %d %d %s\n", e.kind, e.run, e.partition, e.offset, e.at, e.ts, strconv.Quote(e.key))
}

func parseEvent(s string) (event, error) {
	f := strings.SplitN(s, " ", 7)
	if len(f) != 7 || len(f[0]) != 1 {
		return event{}, fmt.Errorf("bad record line %q", s)
	}
	var e event
	e.kind = eventKind(f[0][0])
	e.run = f[1]
	p, err1 := strconv.ParseInt(f[2], 10, 32)
	o, err2 := strconv.ParseInt(f[3], 10, 64)
	at, err3 := strconv.ParseInt(f[4], 10, 64)
	ts, err4 := strconv.ParseInt(f[5], 10, 64)
	key, err5 := strconv.Unquote(f[6])
	for _, err := range []error{err1, err2, err3, err4, err5} {
		if err != nil {
			return event{}, fmt.Errorf("bad record line %q: %w", s, err)
		}
	}
	e.partition, e.offset, e.at, e.ts, e.key = int32(p), o, at, ts, key
	return e, nil
}

// sink receives a worker's events: the shared in-process recorder, or a file.
type sink interface {
	record(e event)
}

// recorder collects the events of in-process workers.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) record(e event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// fileSink appends one line per event to a file with a single write each, so a SIGKILL
// loses nothing that was recorded: the kernel has the line once write returns.
type fileSink struct {
	mu sync.Mutex
	f  *os.File
}

func (s *fileSink) record(e event) {
	s.mu.Lock()
	_, _ = s.f.WriteString(e.line())
	s.mu.Unlock()
}

// readEvents reads a process worker's record file. A line cut short is impossible with
// single-write appends, but a malformed line is reported rather than trusted.
func readEvents(path string) ([]event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		e, err := parseEvent(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
