package zkafka

// A stuck partition reaches the user's Logger (G18): while a Run runs, a goroutine takes the
// Work's Status every stuckCheckEvery and writes one warning for each partition whose
// position has stood still for StuckAfter (PartitionStatus.Stuck): held by a message, which
// it names with what that message waits for, or reading nothing while the broker has records
// for it (statusTaker.readStall); one line per stuckRepeatEvery while it stays stuck on that
// message, or reading nothing; and one info line when it moves on. A partition stuck because
// the circuit breaker is open is not logged here: the breaker logs its own changes. A
// partition that reads nothing for renewAfter makes the Run ask for a new consumer (renew.go).
//
// Invariant: for a partition stuck on one offset (or reading nothing), at most one line per
// stuckRepeatEvery.
//
// The same goroutine asks the brokers whether a topic the Run reads exists once no partition
// of it has been assigned for StuckAfter (topics), at most once per StuckAfter: under the
// consumer group protocol librdkafka reports no unknown topic (the classic protocol's error
// event), and a Work subscribed to a missing topic read nothing and said nothing.
//
// The same goroutine watches the consumer's membership of its group (membership): a consumer
// the group coordinator does not accept for StuckAfter, while its broker is reachable, gets
// one warning, and one info line once it joins. Without it such a consumer reads nothing and
// says nothing (seen: a consumer-protocol member refused by a broker that will not convert a
// group of classic members).

import (
	"context"
	"strings"
	"sync"
	"time"
)

// stuckCheckEvery is how often a Run looks for stuck partitions: with StuckAfter's default of
// 10 s, a stuck offset is logged within 12 s of its message being read.
const stuckCheckEvery = 2 * time.Second

// stuckRepeatEvery is how often a partition that stays stuck on one message is logged again.
const stuckRepeatEvery = time.Minute

// stuckWatch is the goroutine of one Run that logs its stuck partitions.
type stuckWatch struct {
	rs       *runState
	reported map[tpKey]stuckReport // partitions logged as stuck and still stuck
	outside  time.Time             // since when the consumer is not a member of its group; zero: it is
	warned   bool                  // whether the time outside has been logged
	unowned  map[string]time.Time  // topics of the Run without an assigned partition, since when
	asked    time.Time             // when the brokers were last asked whether those topics exist
	stop     chan struct{}
	done     sync.WaitGroup
}

// stuckReport is a partition logged as stuck: on which offset (readingNothing: none, it
// reads nothing), and when last.
type stuckReport struct {
	offset int64
	logged time.Time
}

// readingNothing is stuckReport.offset of a partition stuck reading nothing.
const readingNothing = -1

// watchStuck starts the stuck watch of rs; its end waits for the goroutine to exit.
func watchStuck(rs *runState) (end func()) {
	sw := &stuckWatch{rs: rs, reported: map[tpKey]stuckReport{}, stop: make(chan struct{})}
	sw.done.Add(1)
	go sw.run()
	return func() {
		close(sw.stop)
		sw.done.Wait()
	}
}

// testHookStuckChecked, when set by a test, is called after every check of a stuck watch.
var testHookStuckChecked func()

// run checks every stuckCheckEvery until stop closes.
func (sw *stuckWatch) run() {
	defer sw.done.Done()
	t := time.NewTicker(stuckCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-sw.stop:
			return
		case <-t.C:
			st := sw.rs.w.Status()
			sw.check(st)
			sw.membership(st)
			sw.topics(st)
			if r := stallRenewal(st, sw.rs.published.Load(), sw.rs.w.stuckAfter); r != nil {
				sw.rs.requestRenewal(r)
			}
			if testHookStuckChecked != nil {
				testHookStuckChecked()
			}
		}
	}
}

// check logs what st says is newly stuck, still stuck, or moving again.
func (sw *stuckWatch) check(st Status) {
	ctx := context.Background()
	l := sw.rs.w.logger
	seen := make(map[tpKey]bool, len(sw.reported))
	for _, p := range st.Partitions {
		k := tpKey{p.Topic, p.Partition}
		prev, was := sw.reported[k]
		stuck := p.Stuck && p.StuckReason != breakerStuckReason
		at, first := int64(readingNothing), "zkafka: partition is stuck: it reads nothing while the broker has records for it"
		if p.Oldest != nil {
			at, first = p.Oldest.Offset, "zkafka: partition is stuck: its oldest unfinished message holds the commit back"
		}
		switch {
		case stuck && (!was || prev.offset != at):
			l.Warnw(ctx, first, stuckKV(st, p)...)
			sw.reported[k] = stuckReport{offset: at, logged: st.TakenAt}
		case stuck && st.TakenAt.Sub(prev.logged) >= stuckRepeatEvery:
			l.Warnw(ctx, "zkafka: partition is still stuck", stuckKV(st, p)...)
			sw.reported[k] = stuckReport{offset: prev.offset, logged: st.TakenAt}
		case !stuck && was:
			kv := []any{"topic", p.Topic, "partition", p.Partition, "group", st.Group}
			if prev.offset != readingNothing {
				kv = append(kv, "offset", prev.offset)
			}
			l.Infow(ctx, "zkafka: stuck partition moves again", kv...)
			delete(sw.reported, k)
		}
		seen[k] = true
	}
	for k := range sw.reported {
		if !seen[k] {
			delete(sw.reported, k) // revoked: its next owner reports it
		}
	}
}

// breakerStuckReason is PartitionStatus.StuckReason of a partition held by an open breaker.
const breakerStuckReason = "circuit breaker open"

// stuckKV is the key-value pairs of a stuck partition's log line.
func stuckKV(st Status, p PartitionStatus) []any {
	o := p.Oldest
	if o == nil { // reading nothing
		return []any{"topic", p.Topic, "partition", p.Partition, "group", st.Group, "end_offset", p.EndOffset,
			"committed_offset", p.CommittedOffset, "standing", roundAge(time.Duration(p.StandingSeconds * float64(time.Second))),
			"reason", p.StuckReason, "renew_after", roundAge(renewAfter(time.Duration(st.StuckAfterSeconds * float64(time.Second)))),
			"broker_reachable", !st.Broker.Known || st.Broker.Reachable}
	}
	key := o.Key
	if o.KeyNil {
		key = "<nil>"
	}
	return []any{"topic", p.Topic, "partition", p.Partition, "group", st.Group, "offset", o.Offset,
		"key", key, "virtual_partition", o.VirtualPartition, "waits_for", string(o.WaitsFor),
		"detail", o.Detail, "standing", roundAge(time.Duration(p.StandingSeconds * float64(time.Second))),
		"reason", p.StuckReason}
}

// membership logs a consumer that has not been a member of its group for StuckAfter while its
// broker is reachable (an unreachable broker is logged as such: brokerhealth.go), and the end
// of that. A Reader that is not the library's own, or a consumer that cannot say, is not
// watched.
func (sw *stuckWatch) membership(st Status) {
	kr := sw.rs.published.Load()
	if kr == nil {
		return
	}
	_, generation, known := kr.membership()
	ctx := context.Background()
	switch {
	case !known:
	case generation > 0 || st.Stopping:
		if sw.warned && !st.Stopping {
			sw.rs.w.logger.Infow(ctx, "zkafka: the consumer joined its group", "group", st.Group,
				"after", roundAge(st.TakenAt.Sub(sw.outside)))
		}
		sw.outside, sw.warned = time.Time{}, false
	case sw.outside.IsZero():
		sw.outside = st.TakenAt
	case !sw.warned && st.TakenAt.Sub(sw.outside) >= sw.rs.w.stuckAfter && (!st.Broker.Known || st.Broker.Reachable):
		hint := "a rebalance that waits for another member, or a coordinator refusing this one"
		if st.GroupProtocol == GroupProtocolConsumer {
			hint = "the consumer protocol needs Kafka 4.0 or later, and a group whose classic members the broker will not convert refuses it"
		}
		sw.rs.w.logger.Warnw(ctx, "zkafka: the consumer is not a member of its group: it reads nothing until the group coordinator accepts it",
			"group", st.Group, "for", roundAge(st.TakenAt.Sub(sw.outside)), "group_protocol", st.GroupProtocol, "hint", hint)
		sw.warned = true
	}
}

// topics reports, as the classic protocol's error event would be (brokerhealth.go, rate-limited
// there), each topic of the Run that has had no assigned partition for StuckAfter and that the
// brokers say does not exist.
func (sw *stuckWatch) topics(st Status) {
	kr := sw.rs.published.Load()
	if kr == nil || st.Stopping {
		return
	}
	owned := map[string]bool{}
	for _, p := range st.Partitions {
		owned[p.Topic] = true
	}
	var due []string
	for _, topic := range st.Topics {
		since, seen := sw.unowned[topic]
		switch {
		case owned[topic] || strings.HasPrefix(topic, "^"): // a pattern names no one topic
			delete(sw.unowned, topic)
		case !seen:
			if sw.unowned == nil {
				sw.unowned = map[string]time.Time{}
			}
			sw.unowned[topic] = st.TakenAt
		case st.TakenAt.Sub(since) >= sw.rs.w.stuckAfter:
			due = append(due, topic)
		}
	}
	if len(due) == 0 || st.TakenAt.Sub(sw.asked) < sw.rs.w.stuckAfter {
		return
	}
	sw.asked = st.TakenAt
	for _, err := range kr.missingTopics(due) {
		_ = kr.brokers.consumerError(err)
	}
}
