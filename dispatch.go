package zkafka

// Dispatch: the reader goroutine's hand-over of each message it read to a virtual partition.
// It runs the PostRead hook, picks the virtual partition — round-robin for a nil key, else the
// key router's choice (virtual_partition.go), or the pure hash with HashRouting — counts the
// message in the in-flight bound (inflight.go) and queues it; the processors (processor.go)
// are woken once per batch (wakeQueued), not once per message.
//
// Invariant: every dispatched message is counted in the bound and queued on exactly one
// virtual partition, and a key with messages in flight keeps its virtual partition (G2). Its
// state (router, toWake, rr) is the reader goroutine's alone: readloop.go calls it.

import "context"

// dispatcher routes and queues the messages of one Run.
type dispatcher struct {
	rs     *runState
	router *keyRouter          // nil: pure hash routing (HashRouting)
	toWake []*virtualPartition // queued to in the current batch, not yet woken
	rr     uint64              // round-robin counter for nil keys
	readAt int64               // when the current batch was read (UnixNano), for Work.Status
}

// dispatch runs the read hooks and hands msg to its virtual partition.
func (l *dispatcher) dispatch(msg *Message) {
	rs := l.rs
	hooks := rs.w.lifecycle
	msg.ctx = rs.ctx
	msg.readAt = l.readAt
	if hooks.PostRead != nil {
		ctx, err := catchCtx(func() (context.Context, error) {
			return hooks.PostRead(rs.ctx, LifecyclePostReadMeta{Topic: msg.Topic, GroupID: rs.group, Message: msg})
		})
		if err != nil {
			logFailure(rs.ctx, rs.failures, "zkafka: PostRead hook failed", err, "topic", msg.Topic)
			if isPanic(err) {
				msg.hookErr = err
			}
		}
		if ctx != nil {
			msg.ctx = ctx
		}
	}
	if mt := rs.metrics; mt != nil {
		mt.read(msg)
	}
	idx := l.route(msg)
	msg.vp = idx
	rs.bound.add(len(msg.value))
	vp := rs.vps[idx]
	vp.enqueue(msg)
	if !vp.wakePending {
		vp.wakePending = true
		l.toWake = append(l.toWake, vp)
	}
}

// route picks msg's virtual partition: round-robin for a nil key, else the key router's
// choice (or the pure hash with HashRouting).
func (l *dispatcher) route(msg *Message) int {
	n := len(l.rs.vps)
	switch {
	case n == 1:
		return 0
	case msg.isKeyNil:
		l.rr++
		return int(l.rr % uint64(n))
	case l.router == nil:
		return routeKey(msg.Key, n)
	default:
		msg.route = l.router.route(msg.Key)
		return msg.route.vp
	}
}

// wakeQueued wakes the processors of the virtual partitions dispatch queued to, after it
// counted the messages dispatched as consumed (metrics.go).
func (l *dispatcher) wakeQueued() {
	if mt := l.rs.metrics; mt != nil {
		mt.flushConsumed(l.rs.ctx)
	}
	for _, vp := range l.toWake {
		vp.wakePending = false
		signal(vp.wake)
	}
	l.toWake = l.toWake[:0]
}
