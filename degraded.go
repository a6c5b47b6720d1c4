package zkafka

// The degraded read mode of a KReader (reader.go): a consumer from WithConsumerProvider that
// has only zkafka v2's KafkaConsumer methods (no Poll, no Pause) is read with ReadMessage, the
// way v2 reads. Such a consumer cannot pause its partitions, so while the reader is paused
// (back-pressure, the breaker) the read waits for the resume instead of reading.
//
// Invariant: a paused reader reads nothing; a fatal error ends the Run; errors about the
// brokers or a topic are reported (brokerhealth.go) and returned as read errors, which count
// toward the breaker as in v2; anything else retriable is read on from.
//
// KReader.readMessage calls read with the reader's handle held shared.

import (
	"context"
	"errors"

	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// degradedReader is what the degraded mode needs of its KReader.
type degradedReader struct {
	consumer KafkaConsumer
	owned    *rebalancer
	brokers  *brokerReport
	logger   Logger
	groupID  string
}

// read is ReadMessage, unless the reader is paused, when it waits for the resume up to timeout
// and reads nothing. It returns a message, nothing, a read error, or a fatal error.
func (d degradedReader) read(timeout time.Duration) (*kafka.Message, error) {
	if paused, resumed := d.owned.pauseState(); paused {
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			select {
			case <-resumed:
			case <-t.C:
			}
		}
		return nil, nil
	}
	km, err := d.consumer.ReadMessage(timeout)
	if err != nil {
		var kerr kafka.Error
		switch {
		case errors.As(err, &kerr) && kerr.IsFatal():
			return nil, wrapErr(err, "fatal consumer error")
		case brokerFailure(err) || brokerCause(err) || topicFailure(err):
			_ = d.brokers.consumerError(err)
			return nil, &readError{err: err}
		case errors.As(err, &kerr) && kerr.Code() == kafka.ErrTimedOut:
			d.brokers.settle(false)
			return nil, nil
		case errors.As(err, &kerr) && kerr.IsRetriable():
			d.logger.Debugw(context.Background(), "zkafka: retriable consumer error", "group", d.groupID, "error", err)
			return nil, nil
		case km != nil:
			// A partition error comes with its message: log it, read on.
			d.logger.Warnw(context.Background(), "zkafka: consumer reported a partition error", "group", d.groupID, "error", err)
			return nil, nil
		}
		return nil, &readError{err: err}
	}
	return km, nil
}
