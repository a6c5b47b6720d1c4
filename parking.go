package zkafka

// The parking of one virtual partition: messages waiting for a retry (retry.go), and behind
// each of them the later messages of its key. A message whose processor failed with attempts
// left is parked with the time its retry is due; a message popped from the queue whose key
// has something parked joins the end of that key's list instead of running. The processor
// takes a parked message once it is due, between queue pops; when a key's taken message
// settles (finished, dead-lettered or let go of) the next message of its list is due at once.
// Keys are per Kafka partition (messages of different partitions have no order to keep); a
// nil-keyed message promises no order and is parked alone.
//
// Invariant: a key's messages in the parking, plus the one of them the processor has taken
// (running), are in offset order, and none of the key's messages runs while another of them
// is parked or taken. Every parked message still counts in the in-flight bound and holds back
// its partition's commit: it is not finished. The key router (virtual_partition.go) keeps
// sending the key here, since its messages are still in flight.
//
// The parking belongs to its virtual partition and is guarded by the partition's mutex: the
// processor (processor.go) parks, takes and settles; a revoke (revoke.go) and a stop remove.

import (
	"container/heap"
	"time"
)

// parkKey identifies the parked messages of one key of one Kafka partition.
type parkKey struct {
	tp  tpKey
	key string
}

// parkedKey is the parked messages of one key, or one nil-keyed message.
type parkedKey struct {
	k       parkKey
	nilKey  bool
	msgs    []*Message // in offset order; msgs[0] runs next
	due     time.Time  // when msgs[0] may run
	running bool       // one of the key's messages is taken and has not settled yet
	idx     int        // index in the due heap; -1 when not in it
	// When msgs[0] was parked for its retry and the error of its failed run (Work.Status).
	since time.Time
	cause error
}

// parking is the parked messages of one virtual partition.
type parking struct {
	keys map[parkKey]*parkedKey // keyed messages with something parked or taken
	due  dueHeap                // entries with a message to run, by due time
}

func keyOf(m *Message) parkKey {
	return parkKey{tp: tpKey{m.Topic, m.Partition}, key: m.Key}
}

// active reports whether anything is parked or taken (the queue's fast path skips the rest).
func (pk *parking) active() bool { return len(pk.keys) > 0 || len(pk.due) > 0 }

// park puts m, whose processor failed with cause at since, back to wait until due, ahead of
// the later messages of its key.
func (pk *parking) park(m *Message, due, since time.Time, cause error) {
	m.taken = false
	if m.isKeyNil {
		heap.Push(&pk.due, &parkedKey{nilKey: true, msgs: []*Message{m}, due: due, since: since, cause: cause})
		return
	}
	k := keyOf(m)
	e := pk.keys[k]
	if e == nil {
		if pk.keys == nil {
			pk.keys = map[parkKey]*parkedKey{}
		}
		e = &parkedKey{k: k, idx: -1}
		pk.keys[k] = e
	}
	e.msgs = append(e.msgs, nil)
	copy(e.msgs[1:], e.msgs)
	e.msgs[0] = m
	e.running = false
	e.due, e.since, e.cause = due, since, cause
	pk.schedule(e)
}

// join parks m behind its key's parked messages when the key has any (or one taken); it
// reports whether it did.
func (pk *parking) join(m *Message) bool {
	if m.isKeyNil || len(pk.keys) == 0 {
		return false
	}
	e := pk.keys[keyOf(m)]
	if e == nil {
		return false
	}
	e.msgs = append(e.msgs, m)
	return true
}

// peek returns the parked message due first if it is due at now, without taking it;
// otherwise wait is how long until it is (0 when nothing is scheduled).
func (pk *parking) peek(now time.Time) (m *Message, wait time.Duration) {
	if len(pk.due) == 0 {
		return nil, 0
	}
	e := pk.due[0]
	if d := e.due.Sub(now); d > 0 {
		return nil, d
	}
	return e.msgs[0], 0
}

// take returns the parked message due first if it is due at now, taking it; otherwise wait
// is how long until it is (0 when nothing is scheduled).
func (pk *parking) take(now time.Time) (m *Message, wait time.Duration) {
	if m, wait = pk.peek(now); m != nil {
		pk.pop()
	}
	return m, wait
}

// pop takes the parked message due first, which peek returned.
func (pk *parking) pop() {
	e := heap.Pop(&pk.due).(*parkedKey)
	m := e.msgs[0]
	e.msgs[0] = nil
	e.msgs = e.msgs[1:]
	m.taken = true
	e.running = !e.nilKey
	e.cause = nil
}

// settle ends the turn of m, taken from the parking, that was finished or let go of: the next
// message of its key is due now. It reports whether one is.
func (pk *parking) settle(m *Message, now time.Time) bool {
	m.taken = false
	if m.isKeyNil {
		return false
	}
	k := keyOf(m)
	e := pk.keys[k]
	if e == nil || !e.running {
		return false
	}
	e.running = false
	if len(e.msgs) == 0 {
		delete(pk.keys, k)
		return false
	}
	e.due = now
	pk.schedule(e)
	return true
}

// schedule puts e in the due heap, or moves it to its new place there.
func (pk *parking) schedule(e *parkedKey) {
	if e.idx >= 0 {
		heap.Fix(&pk.due, e.idx)
		return
	}
	heap.Push(&pk.due, e)
}

// removeIf takes out the parked messages for which drop is true (their partition is revoked)
// and returns them; a key left with nothing parked or taken is forgotten.
func (pk *parking) removeIf(drop func(*Message) bool) []*Message {
	if !pk.active() {
		return nil
	}
	var dropped []*Message
	keep := pk.due[:0:0]
	for _, e := range pk.due {
		if e.msgs = filter(e.msgs, drop, &dropped); len(e.msgs) > 0 {
			keep = append(keep, e)
			continue
		}
		e.idx = -1
		if !e.running && !e.nilKey {
			delete(pk.keys, e.k)
		}
	}
	for k, e := range pk.keys {
		if e.idx >= 0 {
			continue // in the due heap: done above
		}
		// Taken, with messages parked behind it (or none).
		if e.msgs = filter(e.msgs, drop, &dropped); len(e.msgs) == 0 && !e.running {
			delete(pk.keys, k)
		}
	}
	pk.due = keep
	for i, e := range pk.due {
		e.idx = i
	}
	heap.Init(&pk.due)
	return dropped
}

// filter keeps, in order, the messages of msgs for which drop is false and appends the others
// to dropped.
func filter(msgs []*Message, drop func(*Message) bool, dropped *[]*Message) []*Message {
	kept := msgs[:0]
	for _, m := range msgs {
		if drop(m) {
			*dropped = append(*dropped, m)
		} else {
			kept = append(kept, m)
		}
	}
	clear(msgs[len(kept):])
	return kept
}

// removeAll takes out every parked message (a stop).
func (pk *parking) removeAll() []*Message {
	return pk.removeIf(func(*Message) bool { return true })
}

// lookFor shows l the parked messages it looks for (Work.Status): the first of a key's
// entry waits for its retry when it has run before, every other waits for its key.
func (pk *parking) lookFor(l *lookup, vp int) {
	see := func(e *parkedKey) {
		for i, m := range e.msgs {
			if !l.wants(m) {
				continue
			}
			s := sighting{m: m, vp: vp, waits: WaitBehindKey}
			if i == 0 && !e.running && m.retries > 0 {
				s.waits, s.since, s.until, s.failures, s.cause = WaitRetry, e.since, e.due, int(m.retries), e.cause
			}
			l.see(s)
		}
	}
	for _, e := range pk.due {
		see(e)
	}
	for _, e := range pk.keys {
		if e.idx < 0 { // taken, with messages behind it: not in the due heap
			see(e)
		}
	}
}

// dueHeap orders parked entries by due time (container/heap).
type dueHeap []*parkedKey

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h *dueHeap) Push(x any) {
	e := x.(*parkedKey)
	e.idx = len(*h)
	*h = append(*h, e)
}

func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.idx = -1
	return e
}
