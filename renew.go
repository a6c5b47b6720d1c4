package zkafka

// Renewing a Run's consumer (G18: a partition that reads nothing is not left so): a consumer
// that librdkafka leaves unable to read is replaced by a new one, as a restart would, while the
// Run goes on.
//
// Two signs call for it:
//   - librdkafka's CLUSTERID warning (clientlogs.go): the brokers at the consumer's address
//     are another cluster now. The consumer keeps state of the old one and was seen to read
//     nothing for minutes after it was assigned its partitions again.
//   - a read stall: a partition that Status marks stuck because it reads nothing while the
//     broker has records for it (statusTaker.readStall) for renewAfter, while the brokers are
//     reachable. The stuck watch (stuckwatch.go), which reads every Status, asks for it.
//
// The reader goroutine renews (readLoop.renew), between two polls: it revokes every partition
// of the old consumer as a rebalance does (queued messages dropped, in-flight ones waited for
// up to revokeWait, what finished committed: revoke.go), closes it through KReader.Close, and
// asks the ClientProvider for a new one (a Client makes one: its cached reader is closed). The
// new consumer joins the group and starts where the committed offsets say, so nothing is lost
// and what was read and not finished is read again. After a cluster change nothing more of the
// old consumer is committed (offsetStore.foreign): its offsets are of a log that is gone.
//
// Invariant: after start, only the reader goroutine replaces rs.reader and rs.kr; a request
// names the consumer it is about, and one about a consumer already replaced is dropped.

import (
	"cmp"
	"time"
)

// minRenewAfter is the shortest read stall that makes a new consumer, whatever StuckAfter:
// an assignment's first fetch waits for the committed offsets and a metadata round, which a
// busy broker can take seconds over.
const minRenewAfter = 5 * time.Second

// renewAfter is how long a partition may read nothing while the broker has records for it
// before its Work makes a new consumer: twice StuckAfter (the stall is logged at StuckAfter,
// so a person sees the warning first), at least minRenewAfter.
func renewAfter(stuckAfter time.Duration) time.Duration {
	return max(2*stuckAfter, minRenewAfter)
}

// renewal is a request for a new consumer.
type renewal struct {
	kr      *KReader // the consumer to replace
	reason  string   // why, in words, for the log line
	cluster bool     // its brokers are another cluster: commit nothing more of it
	kv      []any    // more of why, for the log line
}

// requestRenewal asks the reader goroutine for a new consumer. A cluster change replaces a
// pending request (it must stop the old consumer's commits); a stall does not.
func (rs *runState) requestRenewal(r *renewal) {
	if r.cluster {
		rs.renewal.Store(r)
		return
	}
	rs.renewal.CompareAndSwap(nil, r)
}

// watchCluster makes a CLUSTERID line of kr's librdkafka ask for a new consumer.
func (rs *runState) watchCluster(kr *KReader) {
	kr.logs.onClusterChange(func(text string) {
		rs.requestRenewal(&renewal{kr: kr, cluster: true,
			reason: "its brokers are another cluster now (librdkafka CLUSTERID)", kv: []any{"librdkafka", text}})
	})
}

// stalled returns the partitions of st that have read nothing for at least after while the
// broker has records for them (statusTaker.readStall).
func stalled(st Status, after time.Duration) []PartitionStatus {
	var out []PartitionStatus
	for _, p := range st.Partitions {
		if p.Stuck && p.Oldest == nil && p.StandingSeconds >= after.Seconds() {
			out = append(out, p)
		}
	}
	return out
}

// stallRenewal is the request for a new consumer that st calls for, nil when none: a
// partition read-stalled for renewAfter while the brokers are reachable (a consumer that
// cannot reach them is reported as such, brokerhealth.go, and a new one would not reach them
// either) and the run is not stopping.
func stallRenewal(st Status, kr *KReader, stuckAfter time.Duration) *renewal {
	after := renewAfter(stuckAfter)
	ps := stalled(st, after)
	if len(ps) == 0 || kr == nil || st.Stopping || (st.Broker.Known && !st.Broker.Reachable) {
		return nil
	}
	p := ps[0]
	return &renewal{kr: kr, reason: "a partition has read nothing for " + roundAge(after) + " while the broker has records for it",
		kv: []any{"topic", p.Topic, "partition", p.Partition, "stuck_reason", p.StuckReason, "stalled_partitions", len(ps)}}
}

// testHookRenewed, when set by a test, is called after each new consumer is in place (or
// could not be made).
var testHookRenewed func()

// renew replaces the run's consumer as r asks, on the reader goroutine, unless r is about a
// consumer already replaced, or a stall that a fresh Status no longer shows (a revoke's wait
// held the reader, say).
func (l *readLoop) renew(r *renewal) {
	rs := l.rs
	rs.renewal.CompareAndSwap(r, nil)
	old := rs.kr
	if old == nil || old != r.kr {
		return
	}
	if !r.cluster && stallRenewal(rs.w.Status(), old, rs.w.stuckAfter) == nil {
		return
	}
	if r.cluster {
		old.offsets.foreign.Store(true)
	}
	rs.w.logger.Warnw(rs.ctx, "zkafka: replacing the consumer with a new one, as a restart would: "+r.reason,
		append([]any{"group", rs.group, "topics", rs.w.topicConfig.topics(), "client_id", rs.w.topicConfig.ClientID}, r.kv...)...)
	parts, _, _ := old.owned.assignment()
	for _, k := range parts {
		old.offsets.tracker.MarkRevoking(k.topic, k.partition)
	}
	l.revoked(parts)
	old.setListener(nil)
	rs.published.Store(nil)
	rs.closeReader()
	rs.reader, rs.kr = nil, nil
	l.paused, l.idle = false, true
	reader, err := rs.w.cp.Reader(rs.ctx, rs.w.topicConfig)
	switch {
	case err != nil:
		l.readerErr = err // readerMissing logs it and asks again
	case reader != nil:
		rs.useReader(reader)
	}
	if testHookRenewed != nil {
		testHookRenewed()
	}
}

// missingReaderError is the failed read readerMissing reports: why the last request for a
// reader failed, once, else that the ClientProvider returned none.
func (l *readLoop) missingReaderError() error {
	err := cmp.Or(l.readerErr, errNilReader)
	l.readerErr = nil
	return err
}
