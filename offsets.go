package zkafka

// Handing finished offsets to librdkafka: the commit tracker (commit.go) says which offsets
// may be stored, this stores them (StoreOffsets) and commits them (Commit) when asked. The
// KReader (reader.go) stores before polls and at Close, the rebalancer (rebalance.go) stores
// and commits at a revoke, and a Work's graceful stop commits through KReader.commit.
//
// Invariant: only offsets the tracker returned are stored, so a stored offset never passes a
// message that is not finished (G1). Callers hold the KReader's handle (not closed), or run in
// a rebalance callback, whose caller holds it.

import (
	"context"
	"errors"
	"fmt"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// offsetStore stores and commits the finished offsets of one consumer.
type offsetStore struct {
	consumer KafkaConsumer
	tracker  *commitTracker
	logger   Logger
	groupID  string
}

// storeFinished stores, for every partition whose finished prefix moved, the offset after it.
func (o *offsetStore) storeFinished() { o.store(o.tracker.storable(nil)) }

// store hands offsets to librdkafka. A store refused for a partition this reader no longer
// owns is expected during a rebalance and is only logged at debug level. The caller holds
// the KReader's handle, or runs in a rebalance callback.
func (o *offsetStore) store(offs []storedOffset) {
	if len(offs) == 0 {
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
	tps, err := o.consumer.Commit()
	if err != nil {
		var kerr kafka.Error
		if errors.As(err, &kerr) && (kerr.Code() == kafka.ErrNoOffset || kerr.Code() == kafka.ErrState) {
			return nil
		}
		return fmt.Errorf("zkafka: committing offsets of %s: %w", o.groupID, err)
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
			t.committed.Store(int64(tp.Offset))
		}
	}
}
