package zkafka

// Taking a Status of a running Work (status.go). Nothing is stopped and nothing is added to a
// message's path: a message's read time is stamped once per batch (readLoop.dispatch) and the rest
// is state the engine keeps anyway, read under the lock of the part that owns it.
//
// Per assigned partition (rebalance.go): the tracker's snapshot (commit.go: stored offset,
// oldest unfinished offset, unfinished count, when the position last moved, the last
// commit); librdkafka's cached high watermark and group membership, under the KReader's handle
// (reader.go); then the search for each partition's oldest unfinished message, in the places
// a message can be, in the order it leaves them last: a dead letter write (deadletter.go), a
// virtual partition's current message (processor.go), its parking and its queue
// (parking.go, virtual_partition.go). A message that moves on between two looks is missed;
// the search runs once more, with fresh tracker snapshots, for what it missed, then calls the
// rest WaitUnknown.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"reflect"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The parts of *kafka.Consumer that Status reads, when the consumer has them.
type (
	watermarkReader interface {
		GetWatermarkOffsets(topic string, partition int32) (low, high int64, err error)
	}
	groupMetadataReader interface {
		GetConsumerGroupMetadata() (*kafka.ConsumerGroupMetadata, error)
	}
	positionReader interface {
		Position(partitions []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	}
	rebalanceProtocolReader interface {
		GetRebalanceProtocol() string
	}
)

var (
	_ watermarkReader         = (*kafka.Consumer)(nil)
	_ groupMetadataReader     = (*kafka.Consumer)(nil)
	_ positionReader          = (*kafka.Consumer)(nil)
	_ rebalanceProtocolReader = (*kafka.Consumer)(nil)
)

// statusTaker takes one Status of a running Work.
type statusTaker struct {
	rs  *runState
	now time.Time
}

// take fills st with the run's state.
func (t statusTaker) take(st *Status) {
	rs := t.rs
	st.Running = true
	select {
	case <-rs.stopping:
		st.Stopping = true
	default:
	}
	st.InFlight.Messages, st.InFlight.Bytes = rs.bound.msgs.Load(), rs.bound.size.Load()
	st.Batches = t.batches()
	if gate := rs.loop.gate; gate != nil {
		state, opened := gate.describe()
		st.Breaker, st.BreakerOpenedAt = state.String(), opened
	}
	kr := rs.published.Load()
	if kr == nil {
		return
	}
	st.Group = kr.groupID
	st.Fenced, st.FencedSince, st.FencedBecause = kr.offsets.fence.state()
	parts, paused, resumedAt := kr.owned.assignment()
	if paused {
		st.Paused = true
		switch {
		case st.Stopping:
			st.PausedBecause = PausedStopping
		case st.Breaker == CircuitBreakerStateOpen.String():
			st.PausedBecause = PausedBreaker
		default:
			st.PausedBecause = PausedInFlightBound
		}
	}
	st.Partitions = t.partitions(kr, parts, paused, resumedAt, st)
}

// partitions describes the assigned partitions parts, paused or last resumed at resumedAt.
func (t statusTaker) partitions(kr *KReader, parts []tpKey, paused bool, resumedAt time.Time, st *Status) []PartitionStatus {
	out := make([]PartitionStatus, len(parts))
	snaps := make([]trackerSnapshot, len(parts))
	positions := make([]int64, len(parts))
	told := make([]bool, len(parts)) // librdkafka said what it knows of the end offset
	for i, k := range parts {
		out[i] = PartitionStatus{Topic: k.topic, Partition: k.partition, EndOffset: -1, Paused: paused}
		snaps[i] = trackerOf(kr, k, t.now)
		positions[i] = -1
	}
	kr.withConsumer(func(c KafkaConsumer) {
		if wm, ok := c.(watermarkReader); ok {
			for i := range out {
				_, high, err := wm.GetWatermarkOffsets(out[i].Topic, out[i].Partition)
				told[i] = err == nil
				if err == nil && high >= 0 {
					out[i].EndOffset = high
				}
			}
		}
		if pr, ok := c.(positionReader); ok {
			readPositions(pr, parts, positions)
		}
		if g, ok := c.(groupMetadataReader); ok {
			if md, err := g.GetConsumerGroupMetadata(); err == nil {
				st.MemberID, st.Generation, _ = groupMembership(md)
			}
		}
		if rp, ok := c.(rebalanceProtocolReader); ok {
			if p := rp.GetRebalanceProtocol(); p != "NONE" {
				st.RebalanceProtocol = p
			}
		}
	})
	found := t.oldest(kr, parts, snaps)
	for i := range out {
		s, ok := found[parts[i]]
		t.fill(&out[i], snaps[i], s, ok, st)
		if out[i].Oldest == nil && told[i] {
			t.readStall(&out[i], snaps[i], positions[i], resumedAt, st)
		}
	}
	return out
}

// readPositions fills positions with librdkafka's application position of each partition of
// parts (the offset after the last message it handed out, control records of transactions
// included), -1 where it has none. A cached read: no broker is asked.
func readPositions(pr positionReader, parts []tpKey, positions []int64) {
	tps := make([]kafka.TopicPartition, len(parts))
	for i, k := range parts {
		tps[i] = kafka.TopicPartition{Topic: &parts[i].topic, Partition: k.partition}
	}
	got, err := pr.Position(tps)
	if err != nil {
		return
	}
	for i := range min(len(got), len(positions)) {
		if got[i].Error == nil && got[i].Offset >= 0 {
			positions[i] = int64(got[i].Offset)
		}
	}
}

// trackerOf snapshots the tracker of partition k at now; a partition without one has read
// nothing.
func trackerOf(kr *KReader, k tpKey, now time.Time) trackerSnapshot {
	if trk := kr.tracker.Lookup(k.topic, k.partition); trk != nil {
		return statusOf(trk, now)
	}
	return trackerSnapshot{stored: -1, oldest: -1, committed: -1, lastRead: -1}
}

// oldest finds the oldest unfinished message of each partition of snaps that has one, and
// updates snaps[i] when it looked again.
func (t statusTaker) oldest(kr *KReader, parts []tpKey, snaps []trackerSnapshot) map[tpKey]sighting {
	l := &lookup{found: map[tpKey]sighting{}}
	for try := 0; try < 2; try++ {
		l.want = l.want[:0]
		for i, k := range parts {
			if _, ok := l.found[k]; ok {
				continue
			}
			if try > 0 {
				snaps[i] = trackerOf(kr, k, t.now) // the one sought may have finished meanwhile
			}
			if snaps[i].oldest >= 0 {
				l.want = append(l.want, target{k: k, offset: snaps[i].oldest})
			}
		}
		if l.complete() {
			break
		}
		t.search(l)
	}
	return l.found
}

// search looks for l's messages where an unfinished message can be.
func (t statusTaker) search(l *lookup) {
	rs := t.rs
	if rs.dlt != nil {
		rs.dlt.lookFor(l)
	}
	for _, vp := range rs.vps {
		if m := vp.busy.Load(); m != nil && !l.complete() && l.wants(m) {
			l.see(t.busy(vp, m))
		}
		if b := vp.batch.Load(); b != nil && !l.complete() {
			t.lookInBatch(l, vp, b)
		}
	}
	for _, vp := range rs.vps {
		if l.complete() {
			return
		}
		vp.lookFor(l)
	}
}

// busy tells what m, the message vp's processor has taken, waits for.
func (t statusTaker) busy(vp *virtualPartition, m *Message) sighting {
	s := sighting{m: m, vp: vp.idx, waits: WaitCompleting}
	p := t.rs.proc
	switch {
	case vp.running.Load() == m:
		s.waits, s.since = WaitHandler, time.Unix(0, vp.startedAt.Load())
	case p.delay > 0 && t.now.Before(m.TimeStamp.Add(p.delay)):
		s.waits, s.until = WaitDelay, m.TimeStamp.Add(p.delay)
	case p.gate.blocking():
		s.waits = WaitBreaker
	}
	return s
}

// batches describes the batches in their handler (batch_processor.go).
func (t statusTaker) batches() []BatchStatus {
	var out []BatchStatus
	for _, vp := range t.rs.vps {
		if bs, ok := t.batchOf(vp, vp.runningBatch.Load()); ok {
			out = append(out, bs)
		}
	}
	return out
}

// batchOf describes b, the batch of vp, when it is in its handler.
func (t statusTaker) batchOf(vp *virtualPartition, b *batchRun) (BatchStatus, bool) {
	if b == nil {
		return BatchStatus{}, false
	}
	started := time.Unix(0, vp.startedAt.Load())
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.msgs) == 0 || vp.runningBatch.Load() != b {
		return BatchStatus{}, false
	}
	bs := BatchStatus{VirtualPartition: vp.idx, Messages: len(b.msgs), StartedAt: started,
		RunningSeconds: t.now.Sub(started).Seconds()}
	for _, m := range b.msgs {
		bs.Bytes += len(m.value)
	}
	first, last := b.msgs[0], b.msgs[len(b.msgs)-1]
	bs.First = MessagePosition{Topic: first.Topic, Partition: first.Partition, Offset: first.Offset}
	bs.Last = MessagePosition{Topic: last.Topic, Partition: last.Partition, Offset: last.Offset}
	return bs, true
}

// lookInBatch shows l the messages of b, the batch vp's processor has taken, that it looks
// for: in the handler with the batch, or waiting with it to start.
func (t statusTaker) lookInBatch(l *lookup, vp *virtualPartition, b *batchRun) {
	running, inHandler := t.batchOf(vp, b)
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.msgs {
		if l.complete() {
			return
		}
		if !l.wants(m) {
			continue
		}
		s := t.busy(vp, m)
		switch until := b.fillUntil.Load(); {
		case inHandler:
			s.waits, s.since = WaitHandler, running.StartedAt
			s.batch = fmt.Sprintf("in a batch of %d (%s to %s)", running.Messages, running.First, running.Last)
		case until != 0:
			s.waits, s.until = WaitBatchFill, time.Unix(0, until)
			s.batch = fmt.Sprintf("in a batch of %d", len(b.msgs))
		}
		l.see(s)
	}
}

// fill completes ps from its tracker's snapshot and its oldest message's sighting (found).
func (t statusTaker) fill(ps *PartitionStatus, snap trackerSnapshot, s sighting, found bool, st *Status) {
	ps.CommittedOffset, ps.StoredOffset, ps.Unfinished = snap.committed, snap.stored, snap.unfinished
	ps.AssignedAt, ps.MovedAt = snap.assignedAt, snap.movedAt
	base := snap.committed
	if base < 0 {
		base = snap.stored
	}
	if base < 0 {
		base = snap.oldest
	}
	if ps.EndOffset >= 0 && base >= 0 {
		ps.Lag = max(ps.EndOffset-base, 0)
	} else {
		ps.Lag = -1
	}
	if snap.oldest < 0 {
		return
	}
	o := t.describe(snap.oldest, s, found, st)
	ps.Oldest = o
	read := o.ReadAt
	if !found && snap.oldest == snap.lastRead {
		// In no queue and the last message read: most likely caught between the poll that
		// tracked it and its hand-over to a virtual partition. It has stood since it was read
		// (as Status first saw it), not since the partition last moved: a partition that
		// reads again after a long pause or a new consumer is not stuck for it.
		read = snap.readAt
	}
	standing := t.now.Sub(latest(read, snap.movedAt, snap.assignedAt))
	ps.StandingSeconds = standing.Seconds()
	switch {
	case st.Breaker == CircuitBreakerStateOpen.String():
		ps.Stuck, ps.StuckReason = true, breakerStuckReason
	case o.WaitsFor != WaitDelay && standing >= time.Duration(st.StuckAfterSeconds*float64(time.Second)):
		ps.Stuck, ps.StuckReason = true, "position has not moved for "+roundAge(standing)
	}
}

// readStall marks ps, a partition with nothing unfinished, stuck when it reads nothing while
// the broker has records for it: the reader is not paused, librdkafka knows no end offset for
// it (no fetch of it was ever answered) or one above its position, and its position has not
// moved for StuckAfter (since the partition was assigned, a message of it was last read, its
// stored offset last moved, or the reader last resumed at resumedAt: a paused partition reads
// nothing by design, and counting the pause made a resumed partition look stalled before its
// first fetch, which replaced the consumer for nothing). pos is librdkafka's position of it,
// -1 when unknown.
//
// A fetcher that stops after it learnt the end offset, on a partition read to that end, is not
// seen: the end offset is librdkafka's cached one, and Status asks no broker.
func (t statusTaker) readStall(ps *PartitionStatus, snap trackerSnapshot, pos int64, resumedAt time.Time, st *Status) {
	if ps.Paused || snap.assignedAt.IsZero() {
		return
	}
	if snap.lastRead >= 0 {
		pos = max(pos, snap.lastRead+1)
	}
	var behind string
	switch {
	case ps.EndOffset < 0:
		behind = "its end offset is unknown: no fetch of it was answered"
	case pos >= 0 && ps.EndOffset > pos:
		behind = fmt.Sprintf("the broker has records up to offset %d and it read up to %d", ps.EndOffset, pos)
	default:
		return
	}
	standing := t.now.Sub(latest(snap.readAt, snap.movedAt, snap.assignedAt, resumedAt))
	if standing < time.Duration(st.StuckAfterSeconds*float64(time.Second)) {
		return
	}
	ps.StandingSeconds = standing.Seconds()
	ps.Stuck, ps.StuckReason = true, readStallReason+" for "+roundAge(standing)+": "+behind
}

// readStallReason begins PartitionStatus.StuckReason of a partition that reads nothing while
// the broker has records for it (statusTaker.readStall).
const readStallReason = "nothing read"

// latest returns the latest of times.
func latest(times ...time.Time) time.Time {
	var l time.Time
	for _, t := range times {
		if t.After(l) {
			l = t
		}
	}
	return l
}

// describe makes the OldestUnfinished at offset from its sighting.
func (t statusTaker) describe(offset int64, s sighting, found bool, st *Status) *OldestUnfinished {
	o := &OldestUnfinished{Offset: offset, VirtualPartition: -1, WaitsFor: WaitUnknown}
	if !found {
		o.Detail = "held by no queue of the Work: being dispatched (the reader's current batch, or its PostRead hook), or let go of unfinished by a stop"
		return o
	}
	m := s.m
	o.Key, o.KeyNil, o.VirtualPartition, o.WaitsFor = m.Key, m.isKeyNil, s.vp, s.waits
	o.Since, o.Until, o.Failures = s.since, s.until, s.failures
	if m.readAt != 0 {
		o.ReadAt = time.Unix(0, m.readAt)
		o.AgeSeconds = t.now.Sub(o.ReadAt).Seconds()
	}
	switch {
	case s.waits == WaitBreaker:
		o.Since = latest(o.ReadAt, st.BreakerOpenedAt)
	case o.Since.IsZero():
		o.Since = o.ReadAt
	}
	if !o.Since.IsZero() {
		o.WaitingSeconds = t.now.Sub(o.Since).Seconds()
	}
	if s.cause != nil {
		o.LastError = s.cause.Error()
	}
	o.Detail = t.detail(o, s, st)
	return o
}

// detail says in words what o waits for.
func (t statusTaker) detail(o *OldestUnfinished, s sighting, st *Status) string {
	waiting := roundAge(time.Duration(o.WaitingSeconds * float64(time.Second)))
	left := roundAge(o.Until.Sub(t.now))
	switch o.WaitsFor {
	case WaitQueued:
		return fmt.Sprintf("queued on virtual partition %d behind %d messages%s", s.vp, s.ahead, t.queuedBehind(s.vp))
	case WaitBehindKey:
		return "waits behind an earlier message of its key, which waits for its retry or runs"
	case WaitDelay:
		return "held by ProcessDelayMillis for another " + left
	case WaitBreaker:
		return "the circuit breaker is " + st.Breaker
	case WaitHandler:
		if s.batch != "" {
			return fmt.Sprintf("in the handler %s for %s (ProcessTimeoutMillis %s)", s.batch, waiting, t.rs.proc.timeout)
		}
		return fmt.Sprintf("in the handler for %s (ProcessTimeoutMillis %s)", waiting, t.rs.proc.timeout)
	case WaitRetry:
		return fmt.Sprintf("its handler failed %s; next run in %s", times(o.Failures), left)
	case WaitBatchFill:
		return fmt.Sprintf("%s that waits for more messages (BatchPolicy.MaxWait) for another %s", s.batch, left)
	case WaitDeadLetter:
		d := "writing its dead letter to " + t.rs.dlt.topic + " for " + waiting
		if o.Failures > 0 {
			d += fmt.Sprintf("; failed %s, next attempt in %s", times(o.Failures), left)
		}
		return d
	}
	return "its handler returned; finishing it"
}

// queuedBehind says what holds the processor of virtual partition vp.
func (t statusTaker) queuedBehind(vp int) string {
	v := t.rs.vps[vp]
	if v.stalls.Load() > 0 {
		return "; the virtual partition waits for a failing dead letter write"
	}
	if bs, ok := t.batchOf(v, v.runningBatch.Load()); ok {
		return fmt.Sprintf("; it runs a batch of %d (%s to %s) in the handler for %s", bs.Messages, bs.First, bs.Last,
			roundAge(time.Duration(bs.RunningSeconds*float64(time.Second))))
	}
	b := v.busy.Load()
	if b == nil {
		return ""
	}
	d := fmt.Sprintf("; it is busy with %s/%d offset %d (key %q)", b.Topic, b.Partition, b.Offset, b.Key)
	if v.running.Load() == b {
		d += " in the handler for " + roundAge(t.now.Sub(time.Unix(0, v.startedAt.Load())))
	}
	return d
}

// times says n times in words.
func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// roundAge formats d for a person: to 0.1 s under a minute, to the second above.
func roundAge(d time.Duration) string {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// sighting is where Status found an unfinished message and what it waits for there.
type sighting struct {
	m        *Message
	vp       int
	waits    WaitReason
	since    time.Time // zero: since it was read
	until    time.Time
	ahead    int // WaitQueued: messages ahead of it in its queue
	failures int
	cause    error
	batch    string // WaitHandler of a batch: the batch in words
}

// target is a message Status looks for: a partition's oldest unfinished offset.
type target struct {
	k      tpKey
	offset int64
}

// lookup is Status's search for the oldest unfinished message of each partition. The places
// searched call wants for each message they hold and see for each one wanted.
type lookup struct {
	want  []target // still sought (a few: one per partition with unfinished messages)
	found map[tpKey]sighting
}

// wants reports whether m is sought.
func (l *lookup) wants(m *Message) bool {
	for _, w := range l.want {
		if w.offset == m.Offset && w.k.partition == m.Partition && w.k.topic == m.Topic {
			return true
		}
	}
	return false
}

// see records a sighting of a sought message.
func (l *lookup) see(s sighting) {
	k := tpKey{s.m.Topic, s.m.Partition}
	for i, w := range l.want {
		if w.k == k {
			l.want = append(l.want[:i], l.want[i+1:]...)
			break
		}
	}
	l.found[k] = s
}

// complete reports whether nothing more is sought.
func (l *lookup) complete() bool { return len(l.want) == 0 }

// membership is the reader's membership of its group as its consumer reports it; known is
// false when the consumer cannot say (not librdkafka's, or closed).
func (r *KReader) membership() (member string, generation int32, known bool) {
	r.withConsumer(func(c KafkaConsumer) {
		if g, ok := c.(groupMetadataReader); ok {
			if md, err := g.GetConsumerGroupMetadata(); err == nil {
				member, generation, known = groupMembership(md)
			}
		}
	})
	return member, generation, known
}

// groupMembership reads the member id and generation out of confluent-kafka-go's
// ConsumerGroupMetadata, whose only field is librdkafka's serialised group metadata
// (rd_kafka_consumer_group_metadata_write: "CGMDv2:", the generation as a 32-bit integer in
// the host's byte order, then the NUL-terminated group id and member id). It reads that
// private field by reflection because there is no other way: confluent-kafka-go has no
// accessor for the member id or the generation, librdkafka's statistics carry neither, and
// calling librdkafka's rd_kafka_consumer_group_metadata_* directly would need cgo against the
// headers confluent-kafka-go bundles. Anything unexpected (another layout after an upgrade)
// gives "", -1 and !ok, which Status shows as unknown; TestGroupMembershipParsesConfluentMetadata
// checks both the parse and that fallback.
func groupMembership(md *kafka.ConsumerGroupMetadata) (member string, generation int32, ok bool) {
	const magic = "CGMDv2:"
	if md == nil {
		return "", -1, false
	}
	v := reflect.ValueOf(md).Elem()
	if v.Kind() != reflect.Struct || v.NumField() != 1 || v.Field(0).Kind() != reflect.Slice ||
		v.Field(0).Type().Elem().Kind() != reflect.Uint8 {
		return "", -1, false
	}
	b := v.Field(0).Bytes()
	if !bytes.HasPrefix(b, []byte(magic)) || len(b) < len(magic)+4 {
		return "", -1, false
	}
	generation = int32(binary.NativeEndian.Uint32(b[len(magic):]))
	_, rest, found := bytes.Cut(b[len(magic)+4:], []byte{0}) // the group id
	if !found {
		return "", -1, false
	}
	id, _, found := bytes.Cut(rest, []byte{0})
	if !found {
		return "", -1, false
	}
	return string(id), generation, true
}
