package zkafka

// What a consumer or producer knows of its brokers: whether it can reach them and they accept
// it, and if not why and since when (G18). librdkafka says when all brokers are down or refuse
// the client (error events, which brokerReport in brokerreport.go turns into transitions) but
// never when they are back, so
// the way back is a sign of life: a message or a rebalance for a consumer, a delivery report
// for a producer, or, while a consumer is cut off, a metadata request every brokerProbeEvery
// that succeeds. KReader (reader.go) and producers (producer.go) each own one; a Work, its
// Status and the BrokerStateChanged hook read it.
//
// Invariant: the listener is called once per transition, in the order of the transitions,
// never concurrently with itself. The reason is the first failure's (often the most specific:
// "Failed to resolve 'host:9092'" comes before "1/1 brokers are down") until the way back.

import (
	"sync"
	"sync/atomic"
	"time"
)

// brokerProbeEvery is how often a consumer cut off from its brokers asks them for metadata.
const brokerProbeEvery = 2 * time.Second

// brokerProbeTimeout bounds one such request (and so how long Close waits for it).
const brokerProbeTimeout = 500 * time.Millisecond

// brokerListener is told about each transition: reachable or not, why not, and since when.
type brokerListener func(reachable bool, reason string, since time.Time)

// brokerWatch is one client's view of its brokers. The zero value is not usable; use
// newBrokerWatch.
type brokerWatch struct {
	down atomic.Bool // mirrors !reachable, read without the lock on the hot path

	notify    sync.Mutex     // held across a transition and its listener calls
	recovered brokerListener // told first about a way back (the owner's log line)
	mu        sync.Mutex     // guards the fields below
	state     brokerState
	listen    brokerListener
	cause     string    // the last broker connection error since the last sign of life
	causeAt   time.Time // when it came

	probing   bool          // a probe goroutine runs
	stop      chan struct{} // closed by stopProbe
	stopOnce  sync.Once
	probeDone sync.WaitGroup
}

// brokerState is a brokerWatch's state at one moment.
type brokerState struct {
	reachable bool
	reason    string    // the broker's or librdkafka's words; "" when reachable
	since     time.Time // when it became what it is (for a new client: when it was made)
}

// newBrokerWatch returns a watch that starts reachable. recovered, when not nil, is called
// with the state that ends at each way back (the reason and start of the outage).
func newBrokerWatch(recovered brokerListener) *brokerWatch {
	return &brokerWatch{
		state:     brokerState{reachable: true, since: time.Now()},
		stop:      make(chan struct{}),
		recovered: recovered,
	}
}

// get returns the current state (reachable, for a nil watch).
func (b *brokerWatch) get() (reachable bool, reason string, since time.Time) {
	if b == nil {
		return true, "", time.Time{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state.reachable, b.state.reason, b.state.since
}

// setListener sets who is told about transitions (nil: nobody).
func (b *brokerWatch) setListener(l brokerListener) {
	b.mu.Lock()
	b.listen = l
	b.mu.Unlock()
}

// failed records that the brokers cannot be reached or refuse the client, for reason. It
// reports whether that is news (the client was reachable until now); a failure that is not
// keeps the first one's reason. probe, when not nil, is
// run every brokerProbeEvery on a goroutine of the watch until it reports success, which
// counts as a sign of life, or stopProbe.
func (b *brokerWatch) failed(reason string, probe func() bool) bool {
	b.notify.Lock()
	defer b.notify.Unlock()
	b.mu.Lock()
	news := b.state.reachable
	if news {
		b.state = brokerState{reachable: false, reason: reason, since: time.Now()}
		b.down.Store(true)
	}
	st, l := b.state, b.listen
	if probe != nil && !b.probing {
		select {
		case <-b.stop:
		default:
			b.probing = true
			b.probeDone.Add(1)
			go b.probe(probe)
		}
	}
	b.mu.Unlock()
	if news && l != nil {
		l(st.reachable, st.reason, st.since)
	}
	return news
}

// alive records a sign of life. It reports whether that is news (the client was cut off).
// While reachable it costs one atomic load; on nil it does nothing.
func (b *brokerWatch) alive() bool {
	if b == nil || !b.down.Load() {
		return false
	}
	b.notify.Lock()
	defer b.notify.Unlock()
	b.mu.Lock()
	was := b.state
	news := !was.reachable
	if news {
		b.state = brokerState{reachable: true, since: time.Now()}
		b.down.Store(false)
		b.cause = ""
	}
	st, l := b.state, b.listen
	b.mu.Unlock()
	if news && b.recovered != nil {
		b.recovered(was.reachable, was.reason, was.since)
	}
	if news && l != nil {
		l(st.reachable, st.reason, st.since)
	}
	return news
}

// causeFresh is how long a broker connection error is taken as the cause of an outage.
const causeFresh = 30 * time.Second

// noteCause remembers text, a broker connection error (brokerCause), as the likely cause of
// an outage; lastCause returns it while it is fresh, "" otherwise.
func (b *brokerWatch) noteCause(text string) {
	b.mu.Lock()
	b.cause, b.causeAt = text, time.Now()
	b.mu.Unlock()
}

func (b *brokerWatch) lastCause() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.causeAt) > causeFresh {
		return ""
	}
	return b.cause
}

// probe runs probe every brokerProbeEvery while the client is cut off.
func (b *brokerWatch) probe(probe func() bool) {
	defer b.probeDone.Done()
	t := time.NewTicker(brokerProbeEvery)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.endProbe()
			return
		case <-t.C:
		}
		if !b.down.Load() || probe() {
			b.endProbe()
			b.alive()
			return
		}
	}
}

// endProbe notes that the probe goroutine ends.
func (b *brokerWatch) endProbe() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// stopProbe stops probing for good and waits for a probe in progress. Safe to call twice
// and on nil.
func (b *brokerWatch) stopProbe() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.stopOnce.Do(func() { close(b.stop) })
	b.mu.Unlock()
	b.probeDone.Wait()
}
