package zkafka

// Commit tracking: which offset of a Kafka partition may be committed. The tracker itself is
// package internal/commit (its doc states the invariant: the stored offset is 1 + the highest
// offset below which every message read is finished, and no commit lists an unfinished
// message as finished). This file is where the root package meets it: a message read is
// recorded with its partition's commit.Partition (KReader.newMessage) and gets one
// commit.Outcome; Message.DoneWithContext finishes it (commit.Partition.Finish); the offset
// store (offsets.go) commits the Snapshots; the rebalancer (rebalance.go) resets and removes
// partitions.

import (
	"context"
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/zkafka-go/zkafka/internal/commit"
)

// tpKey identifies a topic partition.
type tpKey struct {
	topic     string
	partition int32
}

// recordOf is km's commit.Record: what tells it apart from another record at its offset.
func recordOf(km *kafka.Message) commit.Record {
	id := commit.Record{Stamp: km.Timestamp.UnixMilli(), Epoch: -1}
	if e := km.TopicPartition.LeaderEpoch; e != nil {
		id.Epoch = *e
	}
	return id
}

// errMetadataMismatch is the failure logged for commit metadata whose base record is not the
// first record read.
var errMetadataMismatch = errors.New("the first record read is not the one the commit metadata names")

// readOutcome acts on what trk said of the message just read at offset, when it is not
// plain: it reports whether the message is not to be run — finished before (counted), or
// read before in this assignment — and warns about a last commit that is about another log.
func (o *offsetStore) readOutcome(trk *commit.Partition, out commit.Outcome, offset int64) (drop bool) {
	topic, partition := trk.TopicPartition()
	if out.MetadataIgnored() {
		o.counts.Load().ignored.Add(1)
		o.failures.warnf(context.Background(), "zkafka: ignoring commit metadata about another log (topic created again?); messages finished by the last owner may run again",
			errMetadataMismatch, "group", o.groupID, "topic", topic, "partition", partition, "offset", offset)
	}
	switch out.Action() {
	case commit.Skip:
		o.counts.Load().alreadyFinished.Add(1)
		return true
	case commit.Drop:
		o.logger.Debugw(context.Background(), "zkafka: message read twice in one assignment; the second is dropped",
			"group", o.groupID, "topic", topic, "partition", partition, "offset", offset)
		return true
	}
	return false
}

// settleLate reads the last commit of trk's partition through o, when its assignment could
// not (commit.PendingHandover), before the partition's first message is recorded.
func settleLate(o *offsetStore, trk *commit.Partition) {
	o.tracker.SettleLate(trk, func() commit.Handover {
		topic, partition := trk.TopicPartition()
		h := o.priors([]kafka.TopicPartition{{Topic: &topic, Partition: partition}}, true)
		return h[tpKey{topic, partition}]
	})
}

// trackerSnapshot is what Work.Status reads of a partition's commit state, at one moment.
type trackerSnapshot struct {
	stored     int64 // the offset to store: 1 + the finished prefix; -1: nothing finished yet
	oldest     int64 // the oldest unfinished offset; -1: nothing unfinished
	unfinished int   // messages read and not finished
	committed  int64
	movedAt    time.Time
	assignedAt time.Time
	lastRead   int64     // the highest offset read in the assignment; -1: none
	readAt     time.Time // when lastRead was first seen (zero: nothing read)
}

// statusOf snapshots trk for Work.Status, taken at now.
func statusOf(trk *commit.Partition, now time.Time) trackerSnapshot {
	s := trk.Status(now)
	return trackerSnapshot{stored: s.Stored, oldest: s.Oldest, unfinished: s.Unfinished, committed: s.Committed,
		movedAt: s.MovedAt, assignedAt: s.AssignedAt, lastRead: s.LastRead, readAt: s.ReadAt}
}
