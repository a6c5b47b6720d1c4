// Package processortest shows how to test a processor of your own: as plain Go with
// zkafka.GetMsgFromFake, and end to end in a Work on the broker testhelper gives you (an
// embedded one unless KAFKA_BOOTSTRAP_SERVERS names another). Read processor_test.go.
package processortest

import (
	"context"
	"errors"
	"fmt"

	"github.com/zkafka-go/zkafka"
)

// Order is the JSON payload of the orders topic.
type Order struct {
	ID     int     `json:"id"`
	Amount float64 `json:"amount"`
}

// ErrInvalid marks an order that can never be processed.
var ErrInvalid = errors.New("invalid order")

// Processor totals the amounts of valid orders.
type Processor struct {
	// Total receives each valid order's amount.
	Total func(amount float64)
}

// Process handles one order. An invalid order fails without tripping the circuit breaker (it
// is bad data, not a broken dependency); a Work then dead-letters it when a topic is set.
func (p Processor) Process(_ context.Context, msg *zkafka.Message) error {
	var o Order
	if err := msg.Decode(&o); err != nil {
		return err
	}
	if o.Amount <= 0 {
		return zkafka.ProcessError{Err: fmt.Errorf("order %d: %w", o.ID, ErrInvalid), DisableCircuitBreak: true}
	}
	p.Total(o.Amount)
	return nil
}
