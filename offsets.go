package zkafka

// Handing finished offsets to the broker: the commit tracker (commit.go) says which offsets
// may be committed, this commits them. A consumer that can commit explicit offsets (the
// library's own, *kafka.Consumer) gets commits with metadata: every commitEvery while it reads
// (flush), at a revoke and at a stop or Close (commit), each partition's oldest unfinished
// offset with the finished messages above it in the metadata (completions.go, metadata.go). On
// assignment, priors reads back what the last commit said. A consumer with only zkafka v2's
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
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// offsetCommitter is what a consumer needs for commits with metadata; *kafka.Consumer has it.
type offsetCommitter interface {
	CommitOffsets(offsets []kafka.TopicPartition) ([]kafka.TopicPartition, error)
	Committed(partitions []kafka.TopicPartition, timeoutMs int) ([]kafka.TopicPartition, error)
}

var _ offsetCommitter = (*kafka.Consumer)(nil)

// offsetStore stores and commits the finished offsets of one consumer.
type offsetStore struct {
	consumer  KafkaConsumer
	committer offsetCommitter // nil: v2's way, StoreOffsets and librdkafka's commits
	tracker   *commitTracker
	logger    Logger
	failures  *failureLog
	groupID   string
	every     time.Duration // commitEvery, or AutoCommitIntervalMs when set
	counts    atomic.Pointer[commitCounters]

	commitMu   sync.Mutex   // serialises commits
	lastCommit atomic.Int64 // when flush last committed (UnixNano)
	reads      atomic.Int64 // messages read since then (commitBurst)
	limit      int          // the longest metadata written: metadataMaxBytes (tests lower it)
	// commitAtClose is set by a Run's graceful stop: closing commits v2's way too.
	commitAtClose atomic.Bool
	// foreign is set when the consumer's brokers turned out to be another cluster (renew.go):
	// its offsets are of a log that is gone, and nothing more is stored or committed.
	foreign atomic.Bool
}

func newOffsetStore(consumer KafkaConsumer, tracker *commitTracker, logger Logger, failures *failureLog, groupID string, every time.Duration) *offsetStore {
	o := &offsetStore{consumer: consumer, tracker: tracker, logger: logger, failures: failures, groupID: groupID, every: every, limit: metadataMaxBytes}
	o.committer, _ = consumer.(offsetCommitter)
	o.counts.Store(new(commitCounters))
	return o
}

// flush hands finished offsets on: with metadata, a commit when commitEvery has passed since
// the last; otherwise StoreOffsets. now is the time of the call.
func (o *offsetStore) flush(now time.Time) {
	if o.committer == nil {
		o.storeFinished()
		return
	}
	if !o.due(now) {
		return
	}
	o.lastCommit.Store(now.UnixNano())
	o.reads.Store(0)
	if err := o.commitFinished(nil, false); err != nil {
		o.failures.warnf(context.Background(), "zkafka: committing finished offsets failed; the next commit tries again", err, "group", o.groupID)
		return
	}
	for _, t := range o.tracker.trackers(nil) {
		t.closeWindow(now, o.every)
	}
}

// due reports whether a periodic commit is due at now: commitEvery since the last, or
// commitBurstGap after a burst of reads (commitBurst).
func (o *offsetStore) due(now time.Time) bool {
	since := now.UnixNano() - o.lastCommit.Load()
	return since >= int64(o.every) || since >= int64(commitBurstGap) && o.reads.Load() >= commitBurst
}

// commit commits what is finished in the partitions keep accepts (every one when keep is nil)
// and says that the partitions are let go of on purpose (a revoke, a stop, Close).
func (o *offsetStore) commit(keep func(tpKey) bool) error {
	if o.committer != nil {
		return retryCommit(func() error { return o.commitFinished(keep, true) })
	}
	o.store(o.tracker.storable(keep))
	return retryCommit(o.commitStored)
}

// retryCommit runs commit, and again after a backoff (commitRetryBackoff, doubling) while it
// fails for a reason that passes (retriableCommitError) and commitRetryFor allows. A revoke's
// commit refused once by a coordinator that is loading or moving made the next owner run
// again all that the last one finished since its last periodic commit.
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

// closing commits what is finished before the consumer closes, as commit does. v2's way it
// only stores it, as v2's Close (librdkafka's Close commits it), unless a Run's graceful stop
// asked for the commit (commitAtClose): a consumer of the user's own commits nothing in its
// Close.
func (o *offsetStore) closing() {
	if o.committer == nil && !o.commitAtClose.Load() {
		o.storeFinished()
		return
	}
	if err := o.commit(nil); err != nil {
		o.logger.Warnw(context.Background(), "zkafka: committing on close failed", "group", o.groupID, "error", err)
	}
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
		if o.limit /= 2; o.limit < len(metadataPrefix)+64 {
			o.limit = 0
		}
		o.failures.warnf(context.Background(), "zkafka: the broker refused the commit metadata as too large; writing less", errMetadataTooLarge,
			"group", o.groupID, "limit", o.limit)
	}
}

// commitMark commits the partition keep accepts, tracked by t, unless a commit since mark (a
// count of t's suspect marks) covers it.
func (o *offsetStore) commitMark(t *partitionTracker, mark uint64, keep func(tpKey) bool) error {
	if o.committer == nil {
		return nil
	}
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	if t.marksCommitted >= mark {
		return nil
	}
	_, err := o.commitSnapshots(keep, false)
	return err
}

// commitRead commits the partition keep accepts, tracked by t, unless a commit already says
// offset was read.
func (o *offsetStore) commitRead(t *partitionTracker, offset int64, keep func(tpKey) bool) error {
	if o.committer == nil {
		return nil
	}
	o.commitMu.Lock()
	defer o.commitMu.Unlock()
	if t.recorded.Load() >= offset {
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
	var trks []*partitionTracker
	var next []lastCommit
	var reads []int64
	for _, t := range o.tracker.trackers(keep) {
		offset, c, ok := t.snapshot(released)
		if !ok {
			continue
		}
		read := offset - 1
		if c != nil {
			read = c.read
		}
		md := ""
		if c != nil && o.limit > 0 {
			var truncated bool
			if md, truncated = c.encode(o.limit); truncated {
				o.truncated(t)
			}
		}
		last := lastCommit{offset: offset, md: md, released: released, valid: true}
		if last == t.committed {
			t.marksCommitted = t.marksSnapped
			t.recorded.Store(read)
			continue
		}
		topic := t.topic
		tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: t.partition, Offset: kafka.Offset(offset), Metadata: &md})
		trks, next, reads = append(trks, t), append(next, last), append(reads, read)
	}
	if len(tps) == 0 {
		return false, nil
	}
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
		if err != nil || failed[tpKey{t.topic, t.partition}] {
			t.touch() // taken again by the next commit
			continue
		}
		t.committed = next[i]
		t.marksCommitted = t.marksSnapped
		t.recorded.Store(reads[i])
		t.acked.Store(next[i].offset)
		t.committedOnce()
	}
	if err == nil && (partErr == nil || tooLarge) {
		o.counts.Load().commits.Add(1)
		return tooLarge, nil
	}
	err = cmp.Or(err, partErr) // a partition not committed fails the commit: tried again
	if benignCommitError(err) {
		return tooLarge, nil
	}
	return tooLarge, wrapErr(err, "committing offsets of %s", o.groupID)
}

var (
	// errMetadataTruncated is the failure logged when a commit's metadata is cut short.
	errMetadataTruncated = errors.New("finished offsets above the committed one do not fit offset.metadata.max.bytes")
	// errMetadataTooLarge is the failure logged when the broker refuses a commit's metadata.
	errMetadataTooLarge = errors.New("offset metadata too large for the broker's offset.metadata.max.bytes")
)

// truncated counts and logs (rate-limited) a commit of t whose metadata was cut short.
func (o *offsetStore) truncated(t *partitionTracker) {
	o.counts.Load().truncated.Add(1)
	o.failures.warnf(context.Background(), "zkafka: commit metadata truncated; messages finished above the committed offset and left out run again if the partition changes owner",
		errMetadataTruncated, "group", o.groupID, "topic", t.topic, "partition", t.partition)
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

// handover is what an assignment learns of a partition's last commit.
type handover struct {
	prior *prior // what it says is finished and suspect; nil: nothing
	// window: the last owner died (its last commit was not released), so until this owner's
	// first periodic commit a message runs only once a commit says it was read; or nobody
	// ever committed (firstOnly), so the messages read before this owner's first commit
	// wait for it (poison.go).
	window, firstOnly bool
	// committed is the group's committed offset (negative: none), when known
	// (knowsCommitted): what this reader finished before is used only at or above it.
	committed      int64
	knowsCommitted bool
	// pending: the committed offset could not be read at the assignment (no coordinator
	// then: it had moved); it is read again when the partition's first message arrives
	// (settleLate), by when librdkafka has found the coordinator to fetch from.
	pending bool
}

// priors reads the committed offsets of newly assigned partitions and, from their metadata,
// what is finished above them. Metadata of another writer, or whose offset is not the
// committed one, is ignored with a warning (rate-limited). A read that fails leaves the
// partitions pending, to be read late (late false); a late read that fails is warned about
// and reads nothing.
func (o *offsetStore) priors(parts []kafka.TopicPartition, late bool) map[tpKey]handover {
	if o.committer == nil || len(parts) == 0 {
		return nil
	}
	ctx := context.Background()
	got, failed, err := readCommitted(o.committer, parts)
	out := make(map[tpKey]handover, len(parts))
	switch {
	case err == nil:
	case late:
		o.logger.Warnw(ctx, "zkafka: reading committed offsets failed; messages finished by the last owner may run again", "group", o.groupID, "error", err)
	default:
		o.logger.Debugw(ctx, "zkafka: reading committed offsets failed at assignment; read again at the first message", "group", o.groupID, "error", err)
		for _, tp := range failed {
			out[tpKey{topicName(tp), tp.Partition}] = handover{pending: true}
		}
	}
	for _, tp := range got {
		if tp.Error != nil {
			continue
		}
		k := tpKey{topicName(tp), tp.Partition}
		h, err := handoverOf(tp)
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

// handoverOf is what the committed offset tp says: its offset, and what its metadata says is
// finished above it (an error for metadata this library cannot use, with h still carrying
// the offset).
func handoverOf(tp kafka.TopicPartition) (h handover, err error) {
	h = handover{committed: int64(tp.Offset), knowsCommitted: true}
	h.window = tp.Offset < 0
	h.firstOnly = h.window
	if tp.Metadata == nil || *tp.Metadata == "" || tp.Offset < 0 {
		return h, nil
	}
	c, err := decodeCompletions(*tp.Metadata)
	if err == nil && c.base != int64(tp.Offset) {
		err = fmt.Errorf("%w: metadata for offset %d, committed offset %d", errBadMetadata, c.base, tp.Offset)
	}
	if err != nil {
		return h, err
	}
	h.prior, h.window = newPrior(c), !c.released
	return h, nil
}

// storeFinished stores, for every partition whose finished prefix moved, the offset after it
// (v2's way).
func (o *offsetStore) storeFinished() { o.store(o.tracker.storable(nil)) }

// store hands offsets to librdkafka. A store refused for a partition this reader no longer
// owns is expected during a rebalance and is only logged at debug level. The caller holds
// the KReader's handle, or runs in a rebalance callback.
func (o *offsetStore) store(offs []storedOffset) {
	if len(offs) == 0 || o.foreign.Load() {
		return
	}
	tps := make([]kafka.TopicPartition, len(offs))
	for i, o := range offs {
		topic := o.topic
		tps[i] = kafka.TopicPartition{Topic: &topic, Partition: o.partition, Offset: kafka.Offset(o.offset)}
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
		if t := o.tracker.lookup(tpKey{topicName(tp), tp.Partition}); t != nil {
			t.acked.Store(int64(tp.Offset))
		}
	}
}

// skipFinished reports whether the message just read at offset is not to be run: finished
// before, as the partition's last commit says (verdict, from the tracker, which has finished
// it then; counted), or read before in this assignment. It warns about a last commit that is
// about another log.
func (o *offsetStore) skipFinished(trk *partitionTracker, v readVerdict, offset int64) bool {
	switch {
	case v.skip:
		o.counts.Load().alreadyFinished.Add(1)
		return true
	case v.again:
		o.logger.Debugw(context.Background(), "zkafka: message read twice in one assignment; the second is dropped",
			"group", o.groupID, "topic", trk.topic, "partition", trk.partition, "offset", offset)
		return true
	case v.mismatch:
		o.counts.Load().ignored.Add(1)
		o.failures.warnf(context.Background(), "zkafka: ignoring commit metadata about another log (topic created again?); messages finished by the last owner may run again",
			errMetadataMismatch, "group", o.groupID, "topic", trk.topic, "partition", trk.partition, "offset", offset)
	}
	return false
}
