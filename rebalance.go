package zkafka

// The partitions a KReader owns and their pause. The consumer's rebalance callback (rebalance)
// assigns and revokes them — eagerly or incrementally, as the group's protocol says — and the
// Work's reader loop (readloop.go) pauses and resumes them through KReader.setPaused.
//
// Invariant: assigned is the consumer's assignment, and every assigned partition is paused in
// librdkafka exactly when paused is set. librdkafka keeps a partition's pause across Unassign
// and Assign, so revoke lifts it before it lets a paused partition go, and assign pauses a new
// partition when paused is set.
//
// A revoke first tells the listener (the Work's reader loop, revoke.go), which drops the
// partitions' queued messages and waits for their in-flight ones, then stores and commits
// what finished (offsets.go) before the partitions go.

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// rebalanceListener is told about partitions leaving the reader. The Work engine uses it to
// drop queued messages of revoked partitions and wait for their in-flight ones.
type rebalanceListener interface {
	revoked(parts []tpKey)
}

// rebalancer is the assignment of one KReader.
type rebalancer struct {
	// Immutable after newRebalancer:
	consumer    KafkaConsumer       // for AssignmentLost
	pauser      partitionPauser     // nil: pauses hold the read loop instead (pauseState)
	eager       eagerAssigner       // nil: librdkafka assigns after the rebalance callback
	incremental incrementalAssigner // nil: likewise, for cooperative rebalances
	offsets     *offsetStore
	logger      Logger
	groupID     string

	// callbacks counts the rebalance callbacks that ran (KReader.leave waits for a poll
	// without one); leaving is set once the reader leaves the group before its close. Atomic.
	callbacks atomic.Uint64
	leaving   atomic.Bool

	mu       sync.Mutex
	assigned map[tpKey]struct{} // guarded by mu
	paused   bool               // guarded by mu
	resumed  chan struct{}      // guarded by mu; closed when a pause ends (degraded mode)
	// resumedAt is when the last pause ended: a partition is not reading nothing while
	// paused (statusTaker.readStall). Guarded by mu.
	resumedAt time.Time
	listener  rebalanceListener // guarded by mu
}

// newRebalancer finds what consumer can do beyond KafkaConsumer.
func newRebalancer(consumer KafkaConsumer, offsets *offsetStore, logger Logger, groupID string) *rebalancer {
	r := &rebalancer{consumer: consumer, offsets: offsets, logger: logger, groupID: groupID, assigned: map[tpKey]struct{}{}}
	r.pauser, _ = consumer.(partitionPauser)
	r.eager, _ = consumer.(eagerAssigner)
	r.incremental, _ = consumer.(incrementalAssigner)
	return r
}

// rebalance is the consumer's rebalance callback; it runs inside Poll, ReadMessage or Close,
// whose caller holds the KReader's handle, so it calls the consumer without taking it.
func (r *rebalancer) rebalance(_ *kafka.Consumer, ev kafka.Event) error {
	defer r.callbacks.Add(1)
	cooperative := r.protocol() == "COOPERATIVE"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		r.assign(e.Partitions, cooperative)
	case kafka.RevokedPartitions:
		r.revoke(e.Partitions, cooperative)
	}
	// The group answered, but only an accepted commit lifts a raised fence, unless nothing is
	// left to fence (fence.go).
	r.offsets.fence.heard(r.unassignedHere())
	// Commit at the next flush, not a commitEvery later: commits refused while the group
	// rebalanced left finished work uncommitted, which a crash now would have run again.
	r.offsets.lastCommit.Store(0)
	return nil
}

// assign takes newly assigned partitions: fresh commit trackers, the assignment (incremental
// under the cooperative protocol), and a pause if the reader is paused now.
func (r *rebalancer) assign(parts []kafka.TopicPartition, cooperative bool) {
	ctx := context.Background()
	var priors map[tpKey]commit.Handover
	if !r.leaving.Load() {
		// Leaving (KReader.leave), nothing is read from them: the committed state the
		// next owner needs is not read here, which could take committedWait.
		priors = r.offsets.priors(parts, false)
	}
	for _, p := range parts {
		k := tpKey{topicName(p), p.Partition}
		r.offsets.tracker.Reset(k.topic, k.partition, priors[k])
	}
	var err error
	switch {
	case cooperative && r.incremental != nil:
		err = r.incremental.IncrementalAssign(parts)
	case !cooperative && r.eager != nil:
		err = r.eager.Assign(parts)
	}
	if err != nil {
		r.logger.Errorw(ctx, "zkafka: assigning partitions failed", "group", r.groupID, "error", err)
		return
	}
	r.mu.Lock()
	if !cooperative {
		clear(r.assigned)
	}
	for _, p := range parts {
		r.assigned[tpKey{topicName(p), p.Partition}] = struct{}{}
	}
	paused := r.paused
	r.mu.Unlock()
	if paused && r.pauser != nil {
		if err := r.pauser.Pause(parts); err != nil {
			r.logger.Warnw(ctx, "zkafka: pausing newly assigned partitions failed", "error", err)
		}
	}
	r.logger.Infow(ctx, "zkafka: partitions assigned", "group", r.groupID, "partitions", partitionList(parts), "protocol", r.protocol())
}

// protocol is the consumer's rebalance protocol, "EAGER" when it cannot tell.
func (r *rebalancer) protocol() string {
	if r.eager == nil {
		return "EAGER"
	}
	return r.eager.GetRebalanceProtocol()
}

// revoke lets partitions go (G6): it tells the listener (the Work's reader loop, which drops
// their queued messages and waits for the in-flight ones), stores and commits what finished
// unless the assignment was lost, drops their trackers, lifts their pause and unassigns them.
func (r *rebalancer) revoke(parts []kafka.TopicPartition, cooperative bool) {
	ctx := context.Background()
	keys := make([]tpKey, len(parts))
	set := make(map[tpKey]struct{}, len(parts))
	for i, p := range parts {
		keys[i] = tpKey{topicName(p), p.Partition}
		set[keys[i]] = struct{}{}
	}
	for _, k := range keys {
		r.offsets.tracker.MarkRevoking(k.topic, k.partition)
	}
	r.mu.Lock()
	l := r.listener
	r.mu.Unlock()
	if l != nil {
		l.revoked(keys)
	}
	lost := r.consumer.AssignmentLost()
	if !lost {
		if err := r.offsets.commit(func(k tpKey) bool { _, ok := set[k]; return ok }); err != nil {
			r.logger.Warnw(ctx, "zkafka: committing on revoke failed", "group", r.groupID, "error", err)
		}
		if cooperative {
			r.offsets.commitKept(func(k tpKey) bool { _, ok := set[k]; return !ok })
		}
	}
	for _, k := range keys {
		r.offsets.tracker.Remove(k.topic, k.partition)
	}
	r.mu.Lock()
	for _, k := range keys {
		delete(r.assigned, k)
	}
	paused := r.paused
	r.mu.Unlock()
	if paused && r.pauser != nil {
		// librdkafka keeps a partition's pause across Unassign and Assign: a partition that
		// left paused would come back paused, whatever the reader's state is then. (Resuming
		// it on assign instead left partitions unread for minutes under make chaos.)
		if err := r.pauser.Resume(parts); err != nil {
			r.logger.Warnw(ctx, "zkafka: resuming revoked partitions failed", "group", r.groupID, "error", err)
		}
	}
	var err error
	switch {
	case cooperative && r.incremental != nil:
		err = r.incremental.IncrementalUnassign(parts)
	case !cooperative && r.eager != nil:
		err = r.eager.Unassign()
	}
	if err != nil {
		r.logger.Warnw(ctx, "zkafka: unassigning partitions failed", "group", r.groupID, "error", err)
	}
	r.logger.Infow(ctx, "zkafka: partitions revoked", "group", r.groupID, "partitions", partitionList(parts), "lost", lost)
}

// unassignedHere reports whether the reader owns no partition by its own count.
func (r *rebalancer) unassignedHere() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.assigned) == 0
}

// unassigned reports whether the consumer owns no partition, by librdkafka's count and ours.
func (r *rebalancer) unassigned() bool {
	r.mu.Lock()
	n := len(r.assigned)
	r.mu.Unlock()
	parts, err := r.consumer.Assignment()
	return n == 0 && err == nil && len(parts) == 0
}

// partitionList formats partitions as "topic/partition,…" for logs.
func partitionList(parts []kafka.TopicPartition) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s/%d", topicName(p), p.Partition)
	}
	return b.String()
}

// setPaused pauses or resumes every assigned partition. While paused the consumer keeps
// polling (rebalances are served and the group membership is kept) but fetches nothing. A
// consumer without Pause (the degraded mode) is not read from while paused instead
// (pauseState). The caller holds the KReader's handle.
func (r *rebalancer) setPaused(paused bool) {
	r.mu.Lock()
	if r.paused == paused {
		r.mu.Unlock()
		return
	}
	r.paused = paused
	if paused {
		r.resumed = make(chan struct{})
	} else {
		r.resumedAt = time.Now()
		if r.resumed != nil {
			close(r.resumed)
			r.resumed = nil
		}
	}
	if r.pauser == nil {
		r.mu.Unlock()
		return
	}
	parts := make([]kafka.TopicPartition, 0, len(r.assigned))
	for k := range r.assigned {
		topic := k.topic
		parts = append(parts, kafka.TopicPartition{Topic: &topic, Partition: k.partition})
	}
	r.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	var err error
	if paused {
		err = r.pauser.Pause(parts)
	} else {
		err = r.pauser.Resume(parts)
	}
	if err != nil {
		r.logger.Warnw(context.Background(), "zkafka: pause/resume failed", "paused", paused, "error", err)
	}
}

// pauseState reports whether the partitions are paused, and a channel closed when the pause
// ends (for the degraded mode, which waits instead of reading).
func (r *rebalancer) pauseState() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.paused, r.resumed
}

// endPause wakes whoever waits for the end of a pause (the reader is closing).
func (r *rebalancer) endPause() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.resumed != nil {
		close(r.resumed)
		r.resumed = nil
	}
}

// assignment returns the assigned partitions, by topic and partition, whether they are
// paused, and when the last pause ended (zero: none did) (Work.Status).
func (r *rebalancer) assignment() (parts []tpKey, paused bool, resumedAt time.Time) {
	r.mu.Lock()
	parts = make([]tpKey, 0, len(r.assigned))
	for k := range r.assigned {
		parts = append(parts, k)
	}
	paused, resumedAt = r.paused, r.resumedAt
	r.mu.Unlock()
	slices.SortFunc(parts, func(a, b tpKey) int {
		return cmp.Or(strings.Compare(a.topic, b.topic), cmp.Compare(a.partition, b.partition))
	})
	return parts, paused, resumedAt
}

// setListener sets who is told about revoked partitions (nil: nobody).
func (r *rebalancer) setListener(l rebalanceListener) {
	r.mu.Lock()
	r.listener = l
	r.mu.Unlock()
}
