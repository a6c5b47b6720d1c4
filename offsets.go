package zkafka

// Handing finished offsets to the broker, and counting what the commits did (CommitCounts):
// the commit tracker (internal/commit, reached through commit.go) says which offsets may be
// committed, this commits them. A consumer that can commit explicit offsets (the library's
// own, *kafka.Consumer) gets commits with metadata: every commitEvery while it reads
// (flush), at a revoke and at a stop or Close (commit), each partition's oldest unfinished
// offset with the finished messages above it in the metadata (commit.Partition.Snapshot). On
// assignment, priors reads back what the last commit said (commit.HandoverOf). A consumer with only zkafka v2's
// methods gets v2's way: offsets stored (StoreOffsets) and committed by librdkafka every
// auto.commit.interval.ms, at a revoke and at a stop (Commit).
//
// Invariant: only offsets and completions the tracker returned are committed, so a commit
// never passes a message that is not finished nor lists one as finished (G1). Commits are
// serialised (commitMu), so a later commit of a partition never carries older state than an
// earlier one. Callers are inside the KReader's handle, or close the consumer
// (KReader.closeConsumer, no call inside), or run in a rebalance callback, whose caller is one
// of those.

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zkafka-go/zkafka/internal/commit"
)

// errNotMember is the error of a commit not sent because the consumer holds no membership of
// its group: it left, or the group expired it or refused its generation and librdkafka
// rejoins.
var errNotMember = errors.New("zkafka: not committing: the consumer is not a member of its group (it left it, or the group dropped it and it rejoins)")

// offsetCommitter is what a consumer needs for commits with metadata; *kafka.Consumer has it.
type offsetCommitter interface {
	CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	Committed(partitions []kafka.TopicPartition, timeoutMs int) ([]kafka.TopicPartition, error)
}

var _ offsetCommitter = (*kafka.Consumer)(nil)

// offsetStore stores and commits the finished offsets of one consumer. The reader goroutine
// flushes and reads; processors commit marks (poison.go); a revoke or Close commits.
type offsetStore struct {
	consumer  KafkaConsumer                  // immutable
	committer offsetCommitter                // immutable; nil: v2's way, StoreOffsets and librdkafka's commits
	tracker   *commit.Tracker                // immutable
	logger    Logger                         // immutable
	failures  *failureLog                    // immutable
	groupID   string                         // immutable
	every     time.Duration                  // immutable: commitEvery, or AutoCommitIntervalMs when set
	counts    atomic.Pointer[commitCounters] // atomic: set by KReader.countInto
	fence     *fence                         // immutable; its own guards: the membership in doubt (fence.go)
	// left reports that the consumer holds no membership of its group (KReader.notMember);
	// nil: it always may commit. Set before the first commit.
	left func() bool

	commitMu   sync.Mutex   // serialises commits
	lastCommit atomic.Int64 // atomic: when flush last committed (UnixNano)
	reads      atomic.Int64 // atomic: messages read since then (commitBurst)
	// inFlightThen is the Run's count of messages in flight at that commit (0 for a
	// Reader outside a Run): with reads, it tells how many finished since (progress). Atomic.
	inFlightThen atomic.Int64
	limit        int // guarded by commitMu: the longest metadata written
	// commitAtClose is set by a Run's graceful stop: closing commits v2's way too. Atomic.
	commitAtClose atomic.Bool
	// foreign is set when the consumer's brokers turned out to be another cluster (renew.go):
	// its offsets are of a log that is gone, and nothing more is stored or committed. Atomic.
	foreign atomic.Bool
}

func newOffsetStore(consumer KafkaConsumer, tracker *commit.Tracker, logger Logger, failures *failureLog, groupID string, every, doubtAfter time.Duration) *offsetStore {
	o := &offsetStore{consumer: consumer, tracker: tracker, logger: logger, failures: failures, groupID: groupID, every: every, limit: commit.MetadataMaxBytes}
	o.committer, _ = consumer.(offsetCommitter)
	holdAfter := commitHoldAfter(every)
	if o.committer == nil {
		// librdkafka commits v2's way and no commit of ours can probe: the fence rises only
		// on a refusal librdkafka reports.
		doubtAfter, holdAfter = 0, 0
	}
	o.fence = newFence(logger, groupID, doubtAfter, holdAfter)
	o.counts.Store(new(commitCounters))
	return o
}

// progressMark is where progress counts from after a commit: the reads and the Run's messages
// in flight at one moment of the reader goroutine (mark). A commit runs on a goroutine of its
// own; taking the reads there, later than the count in flight, lost what was read between
// the two, and a burst was never due.
type progressMark struct{ reads, inFlight int64 }

// mark is the progressMark of now, with inFlight the Run's messages in flight. On the reader
// goroutine, the one that counts reads.
func (o *offsetStore) mark(inFlight int64) progressMark {
	return progressMark{reads: o.reads.Load(), inFlight: inFlight}
}

// flush hands finished offsets on: with metadata, a commit when one is due (due); otherwise
// StoreOffsets. now is the time of the call, at the reads and messages in flight then.
func (o *offsetStore) flush(now time.Time, at progressMark) {
	if o.committer == nil {
		o.storeFinished()
		return
	}
	if !o.due(now, at.inFlight) {
		return
	}
	o.lastCommit.Store(now.UnixNano())
	o.reads.Add(-at.reads)
	then := o.inFlightThen.Swap(at.inFlight)
	if err := o.commitFinished(nil, false); err != nil {
		// Nothing was committed: what finished before this commit still counts toward the
		// next (progress), or a catch-up whose commit failed waited a whole commitEvery for
		// the next, and a kill meanwhile redid it (chaos: 832 messages 259 ms old).
		o.reads.Add(at.reads)
		o.inFlightThen.Store(then)
		o.failures.warnf(context.Background(), "zkafka: committing finished offsets failed; the next commit tries again", err, "group", o.groupID)
		return
	}
	for _, t := range o.tracker.Partitions(nil) {
		t.CloseWindow(now, o.every)
	}
}

// due reports whether a periodic commit is due at now, when the Run has inFlight messages in
// flight: commitEvery since the last, commitBurstGap after it once commitBurst messages
// finished since (progress), commitSurgeGap after it once commitSurge did, or probeEvery
// while the fence is up.
func (o *offsetStore) due(now time.Time, inFlight int64) bool {
	since := time.Duration(now.UnixNano() - o.lastCommit.Load())
	o.fence.check(now)
	if o.fence.isUp() && since >= probeEvery {
		return true // a probe (fence.go)
	}
	if since >= o.every {
		return true
	}
	if since < commitSurgeGap {
		return false
	}
	done := o.progress(inFlight)
	return done >= commitSurge || since >= commitBurstGap && done >= commitBurst
}

// progress is how many messages finished (or were let go of) since the last periodic commit:
// those read since, less the growth of the messages in flight. Counting reads alone missed
// the drain of a full in-flight bound: the reader, paused at the bound, reads nothing while
// the processors finish thousands of messages, and the commits fell back to commitEvery
// (a catch-up on kfake at 6,800 msg/s: p50 107 ms between commit requests, p90 293 ms, where
// 250 finished messages take 37 ms; a kill redoes what finished since). A Reader outside a
// Run counts reads alone (inFlight 0).
func (o *offsetStore) progress(inFlight int64) int64 {
	return o.reads.Load() + o.inFlightThen.Load() - inFlight
}

// commit commits what is finished in the partitions keep accepts (every one when keep is nil)
// and says that the partitions are let go of on purpose (a revoke, a stop, Close).
func (o *offsetStore) commit(keep func(tpKey) bool) error {
	if o.committer != nil {
		return retryCommit(func() error { return o.commitFinished(keep, true) })
	}
	o.store(o.tracker.Storable(byKey(keep)))
	return retryCommit(o.commitStored)
}

// retryCommit runs commit, and again after a backoff (commitRetryBackoff, doubling) while it
// fails for a reason that passes (retriableCommitError) and commitRetryFor allows: a revoke's
// commit refused once by a coordinator that is loading or moving would make the next owner
// run again all that the last one finished since its last periodic commit.
func retryCommit(commit func() error) error {
	deadline := time.Now().Add(commitRetryFor)
	backoff := commitRetryBackoff
	for {
		err := commit()
		if err == nil || !retriableCommitError(err) || time.Now().Add(backoff).After(deadline) {
			return err
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 8*commitRetryBackoff)
	}
}

// retriableCommitError reports whether a commit failed for a reason that passes: the group
// coordinator loading, moving or not answering in time. A commit refused for the member's
// generation or membership does not pass.
func retriableCommitError(err error) bool {
	return isCode(err, kafka.ErrCoordinatorLoadInProgress, kafka.ErrCoordinatorNotAvailable, kafka.ErrNotCoordinator,
		kafka.ErrRequestTimedOut, kafka.ErrTimedOut, kafka.ErrTransport, kafka.ErrWaitCoord, kafka.ErrNetworkException)
}

// commitKept commits what is finished in the partitions keep accepts, those an incremental
// revoke leaves to the member, before the revoke returns. Their handlers ran on while the
// revoke waited for the partitions it takes, and the periodic commit waited with the reader
// goroutine; once the revoke returns, librdkafka rejoins, and under the classic protocol a
// commit queues behind that JoinGroup until the group has rebalanced (seconds when a member
// is gone). A cooperative chaos run lost 1,710 such messages to a kill 6 s later. A failure
// is left to the next periodic commit.
func (o *offsetStore) commitKept(keep func(tpKey) bool) {
	if o.committer == nil {
		return
	}
	if err := o.commitFinished(keep, false); err != nil {
		o.failures.warnf(context.Background(), "zkafka: committing finished offsets failed; the next commit tries again", err, "group", o.groupID)
	}
}

// closing commits what is finished before the consumer closes, as commit does. v2's way it
// only stores it, as v2's Close (librdkafka's Close commits it), unless a Run's graceful stop
// asked for the commit (commitAtClose): a consumer of the user's own commits nothing in its
// Close. It returns the commit's error; the caller logs it (KReader.closeConsumer).
func (o *offsetStore) closing() error {
	if o.committer == nil && !o.commitAtClose.Load() {
		o.storeFinished()
		return nil
	}
	return o.commit(nil)
}

// commitFinished commits, for each partition keep accepts whose tracker changed since its last
// commit (each one when released), its snapshot: the offset and the completions above it.
func (o *offsetStore) commitFinished(keep func(tpKey) bool, released bool) error {
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	for {
		tooLarge, err := o.commitSnapshots(keep, released)
		if !tooLarge || o.limit == 0 {
			return err
		}
		// The broker's offset.metadata.max.bytes is below the default: write less from now
		// on, down to none, and commit those partitions again at once.
		if o.limit /= 2; o.limit < len(commit.MetadataPrefix)+64 {
			o.limit = 0
		}
		o.failures.warnf(context.Background(), "zkafka: the broker refused the commit metadata as too large; writing less", errMetadataTooLarge,
			"group", o.groupID, "limit", o.limit)
	}
}

// commitMark commits the partition keep accepts, tracked by t, unless a commit since mark (a
// count of t's suspect marks) covers it.
func (o *offsetStore) commitMark(t *commit.Partition, mark uint64, keep func(tpKey) bool) error {
	if o.committer == nil {
		return nil
	}
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	if t.MarkCommitted(mark) {
		return nil
	}
	_, err := o.commitSnapshots(keep, false)
	return err
}

// commitRead commits the partition keep accepts, tracked by t, unless a commit already says
// offset was read.
func (o *offsetStore) commitRead(t *commit.Partition, offset int64, keep func(tpKey) bool) error {
	if o.committer == nil {
		return nil
	}
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	if t.Recorded(offset) {
		return nil
	}
	_, err := o.commitSnapshots(keep, false)
	return err
}

// commitSnapshots is commitFinished with commitMu held. tooLarge reports that the broker
// refused a metadata as too large.
func (o *offsetStore) commitSnapshots(keep func(tpKey) bool, released bool) (tooLarge bool, err error) {
	if o.foreign.Load() {
		return false, nil
	}
	var tps []kafka.TopicPartition
	var trks []*commit.Partition
	var sent []commit.Commit
	probe := o.fence.wantsProbe(time.Now()) // commit what did not change too, to hear the group's answer
	for _, t := range o.tracker.Partitions(byKey(keep)) {
		if probe {
			t.Touch()
		}
		c, ok := t.Snapshot(released, o.limit)
		if !ok {
			continue
		}
		if c.Truncated {
			o.truncated(t)
		}
		if t.Unchanged(c) && !probe {
			continue
		}
		topic, partition := t.TopicPartition()
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: partition, Offset: kafka.Offset(c.Offset), Metadata: &c.Metadata})
		trks, sent = append(trks, t), append(sent, c)
	}
	if len(tps) == 0 {
		return false, nil
	}
	if o.left != nil && o.left() {
		// librdkafka would send it with generation -1 (and no member id once the group forgot
		// it): a commit outside the group, which the broker takes when the group has no
		// member at that moment, over what the partitions' later owner committed. In a
		// cooperative chaos run a member the group had expired probed with such a commit and
		// set a partition back 373 offsets, which the next owner ran again.
		for _, t := range trks {
			t.Touch()
		}
		return false, errNotMember
	}
	o.fence.sending(time.Now())
	res, err := o.committer.CommitOffsets(tps)
	tooLarge = isCode(err, kafka.ErrOffsetMetadataTooLarge)
	failed, partErr := make(map[tpKey]bool), error(nil)
	for _, r := range res {
		if r.Error != nil {
			failed[tpKey{topicName(r), r.Partition}] = true
			tooLarge = tooLarge || isCode(r.Error, kafka.ErrOffsetMetadataTooLarge)
			partErr = cmp.Or(partErr, r.Error)
		}
	}
	for i, t := range trks {
		if topic, partition := t.TopicPartition(); err != nil || failed[tpKey{topic, partition}] {
			t.Touch() // taken again by the next commit
			continue
		}
		t.Committed(sent[i])
	}
	if err == nil && (partErr == nil || tooLarge) {
		o.counts.Load().commits.Add(1)
		if o.fence.isUp() {
			// The messages held back start at once and finish in a burst, read long ago:
			// the next commit is due after commitBurstGap, as after a burst of reads.
			o.reads.Store(commitBurst)
		}
		o.fence.answer("a commit")
		return tooLarge, nil
	}
	err = cmp.Or(err, partErr) // a partition not committed fails the commit: tried again
	if doubtfulCommitError(err) {
		o.fence.raise(err)
	}
	if benignCommitError(err) {
		return tooLarge, nil
	}
	return tooLarge, wrapErr(err, "committing offsets of %s", o.groupID)
}

// byKey is keep, a filter of partitions by tpKey, as the commit tracker takes it.
func byKey(keep func(tpKey) bool) func(string, int32) bool {
	if keep == nil {
		return nil
	}
	return func(topic string, partition int32) bool { return keep(tpKey{topic, partition}) }
}

var (
	// errMetadataTruncated is the failure logged when a commit's metadata is cut short.
	errMetadataTruncated = errors.New("finished offsets above the committed one do not fit offset.metadata.max.bytes")
	// errMetadataTooLarge is the failure logged when the broker refuses a commit's metadata.
	errMetadataTooLarge = errors.New("offset metadata too large for the broker's offset.metadata.max.bytes")
)

// truncated counts and logs (rate-limited) a commit of t whose metadata was cut short.
func (o *offsetStore) truncated(t *commit.Partition) {
	topic, partition := t.TopicPartition()
	o.counts.Load().truncated.Add(1)
	o.failures.warnf(context.Background(), "zkafka: commit metadata truncated; messages finished above the committed offset and left out run again if the partition changes owner",
		errMetadataTruncated, "group", o.groupID, "topic", topic, "partition", partition)
}

// isCode reports whether err is a kafka.Error with one of codes.
func isCode(err error, codes ...kafka.ErrorCode) bool {
	kerr, ok := errors.AsType[kafka.Error](err)
	return ok && slices.Contains(codes, kerr.Code())
}

// benignCommitError reports whether a failed commit is expected and needs no log: nothing to
// commit, no assignment left.
func benignCommitError(err error) bool {
	return isCode(err, kafka.ErrNoOffset, kafka.ErrState)
}

// priors reads the committed offsets of newly assigned partitions and, from their metadata,
// what is finished above them. Metadata of another writer, or whose offset is not the
// committed one, is ignored with a warning (rate-limited). A read that fails leaves the
// partitions pending, to be read late (late false); a late read that fails is warned about
// and reads nothing.
func (o *offsetStore) priors(parts []kafka.TopicPartition, late bool) map[tpKey]commit.Handover {
	if o.committer == nil || len(parts) == 0 {
		return nil
	}
	ctx := context.Background()
	got, failed, err := readCommitted(o.committer, parts)
	out := make(map[tpKey]commit.Handover, len(parts))
	switch {
	case err == nil:
	case late:
		o.logger.Warnw(ctx, "zkafka: reading committed offsets failed; messages finished by the last owner may run again", "group", o.groupID, "error", err)
	default:
		o.logger.Debugw(ctx, "zkafka: reading committed offsets failed at assignment; read again at the first message", "group", o.groupID, "error", err)
		for _, tp := range failed {
			out[tpKey{topicName(tp), tp.Partition}] = commit.PendingHandover()
		}
	}
	for _, tp := range got {
		if tp.Error != nil {
			continue
		}
		k := tpKey{topicName(tp), tp.Partition}
		md := ""
		if tp.Metadata != nil {
			md = *tp.Metadata
		}
		h, err := commit.HandoverOf(int64(tp.Offset), md)
		if err != nil {
			o.counts.Load().ignored.Add(1)
			o.failures.warnf(ctx, "zkafka: ignoring commit metadata this library cannot use; messages finished by the last owner may run again", err,
				"group", o.groupID, "topic", k.topic, "partition", k.partition)
		}
		out[k] = h
	}
	return out
}

// readCommitted reads the committed offsets of parts: got, with failed those of them it
// could not read (every one when the read failed) and err the error of one of them.
func readCommitted(c offsetCommitter, parts []kafka.TopicPartition) (got, failed []kafka.TopicPartition, err error) {
	if got, err = c.Committed(parts, int(committedWait/time.Millisecond)); err != nil {
		return nil, parts, err
	}
	for _, tp := range got {
		if tp.Error != nil {
			failed, err = append(failed, tp), tp.Error
		}
	}
	return got, failed, err
}

// storeFinished stores, for every partition whose finished prefix moved, the offset after it
// (v2's way).
func (o *offsetStore) storeFinished() { o.store(o.tracker.Storable(nil)) }

// store hands offsets to librdkafka. A store refused for a partition this reader no longer
// owns is expected during a rebalance and is only logged at debug level. The caller holds
// the KReader's handle, or runs in a rebalance callback.
func (o *offsetStore) store(offs []commit.Stored) {
	if len(offs) == 0 || o.foreign.Load() {
		return
	}
	tps := make([]kafka.TopicPartition, len(offs))
	for i, s := range offs {
		topic := s.Topic
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: s.Partition, Offset: kafka.Offset(s.Offset)}
	}
	if _, err := o.consumer.StoreOffsets(tps); err != nil {
		o.logger.Debugw(context.Background(), "zkafka: offsets not stored (partition no longer assigned?)", "error", err)
	}
}

// commitStored commits the stored offsets synchronously. Nothing to commit (ErrNoOffset) and
// no assignment left to commit for (ErrState) are not errors. The caller holds handle, or
// runs in a rebalance callback.
func (o *offsetStore) commitStored() error {
	if o.foreign.Load() {
		return nil
	}
	tps, err := o.consumer.Commit()
	if err != nil {
		if benignCommitError(err) {
			return nil
		}
		return wrapErr(err, "committing offsets of %s", o.groupID)
	}
	o.committed(tps)
	return nil
}

// committed notes the offsets a commit set (a synchronous one, or librdkafka's automatic
// commits, reported by Poll as kafka.OffsetsCommitted) on the partitions' trackers, for
// Work.Status. Partitions without an offset or with an error are left as they were.
func (o *offsetStore) committed(tps []kafka.TopicPartition) {
	for _, tp := range tps {
		if tp.Error != nil || tp.Offset < 0 {
			continue
		}
		if t := o.tracker.Lookup(topicName(tp), tp.Partition); t != nil {
			t.SetCommitted(int64(tp.Offset))
		}
	}
}

// The counts behind Status.Commits: what the commits and their metadata did. The offset store
// and the KReader (reader.go) update them; each counter only grows.

// CommitCounts counts what a Work's commits did since the Work was created. Each field only
// grows, ready to be exported as a metric counter.
type CommitCounts struct {
	// Commits counts the commits written: finished offsets and, in their metadata, the
	// finished messages above the committed offset (see "Duplicates and poison pills" in
	// docs/guarantees.md).
	Commits int64 `json:"commits"`
	// AlreadyFinished counts the messages read and not handed to the processor because the
	// commit metadata of their partition said they were finished before: by another member
	// of the group, or by this program before a restart. They are not processed again.
	AlreadyFinished int64 `json:"already_finished"`
	// Truncated counts the commits whose metadata had no room (offset.metadata.max.bytes,
	// 4096 bytes) for every finished message above the committed offset. Those left out run
	// again should the partition change owner before the next commit.
	Truncated int64 `json:"truncated"`
	// Ignored counts the commit metadata found at an assignment and not used: written by
	// another library or version, or about another log (a topic deleted and created again).
	Ignored int64 `json:"ignored"`
}

// commitCounts returns the counts of this Work's commits, over all its runs (Status.Commits).
func (w *Work) commitCounts() CommitCounts {
	c := &w.commits
	return CommitCounts{
		Commits:         c.commits.Load(),
		AlreadyFinished: c.alreadyFinished.Load(),
		Truncated:       c.truncated.Load(),
		Ignored:         c.ignored.Load(),
	}
}

// commitCounters is the live form of CommitCounts.
type commitCounters struct {
	commits, alreadyFinished, truncated, ignored atomic.Int64
}
