package zkafka

// Work.Status: a snapshot of what one Work is doing, for a person (StatusHandler's page,
// status_page.go) or a machine (the same data as JSON, a health check that decides to
// restart). The types here are what it returns; status_snapshot.go takes it.
//
// The question it answers first is "why does this partition's offset not move?": for every
// assigned partition it names the oldest unfinished message — the one that holds the commit
// back — and what that message waits for.

import (
	"strconv"
	"time"
)

// Status is a snapshot of one Work, taken by Work.Status.
type Status struct {
	// TakenAt is when the snapshot was taken.
	TakenAt time.Time `json:"taken_at"`
	// Topics are the topics the Work reads.
	Topics []string `json:"topics"`
	// Group is the consumer group (with the Client's group prefix once a run has its reader).
	Group string `json:"group"`
	// MemberID and Generation are the consumer's membership of the group as librdkafka knows
	// it: "" and -1 when unknown (not running, not joined yet, or a Reader that is not the
	// library's own). Under the consumer group protocol Generation is the member epoch.
	MemberID   string `json:"member_id"`
	Generation int32  `json:"generation"`
	// GroupProtocol is the consumer group protocol the Work asks for: "classic" or "consumer"
	// (ConsumerTopicConfig.GroupProtocol).
	GroupProtocol string `json:"group_protocol"`
	// RebalanceProtocol is how partitions move between members, as librdkafka reports it
	// once the consumer has joined: "EAGER" (the classic protocol's range and roundrobin) or
	// "COOPERATIVE" (cooperative-sticky, and the consumer protocol); "" when unknown.
	RebalanceProtocol string `json:"rebalance_protocol,omitempty"`
	// Running reports whether Run is in progress; Stopping whether its stop has begun.
	Running  bool `json:"running"`
	Stopping bool `json:"stopping"`
	// Breaker is the circuit breaker's state: "closed", "open", "half-open", or "disabled"
	// (DisableCircuitBreaker). BreakerOpenedAt is when it last opened in this run.
	Breaker         string    `json:"breaker"`
	BreakerOpenedAt time.Time `json:"breaker_opened_at,omitzero"`
	// Paused reports whether the reader has paused its partitions (it keeps polling, so the
	// group membership holds), and PausedBecause why: PausedInFlightBound, PausedBreaker or
	// PausedStopping.
	Paused        bool        `json:"paused"`
	PausedBecause PauseReason `json:"paused_because,omitempty"`
	// Fenced reports that the member cannot be sure the group still gives it its partitions:
	// the broker refused a commit for its membership (a rebalance in progress, an old
	// generation or member epoch, an unknown member). No handler starts for its partitions
	// until a rebalance assigns or revokes them or a commit is accepted (G19); reading goes
	// on. FencedSince is when it began, FencedBecause the broker's answer.
	Fenced        bool      `json:"fenced"`
	FencedSince   time.Time `json:"fenced_since,omitzero"`
	FencedBecause string    `json:"fenced_because,omitempty"`
	// InFlight counts the messages read and not yet finished, against the bound (MaxInFlight,
	// MaxInFlightBytes).
	InFlight InFlightStatus `json:"in_flight"`
	// VirtualPartitions is the Work's Speedup.
	VirtualPartitions int `json:"virtual_partitions"`
	// StuckAfterSeconds is the StuckAfter the partitions are judged by.
	StuckAfterSeconds float64 `json:"stuck_after_seconds"`
	// Partitions has one entry per assigned partition, by topic and partition. It is empty
	// when the Work is not running, or reads through a Reader that is not the library's own
	// (whose partitions the Work does not know).
	Partitions []PartitionStatus `json:"partitions"`
	// Batches has one entry per virtual partition whose batch processor
	// (WorkFactory.CreateBatch) runs a batch now, in virtual partition order; empty for a
	// single-message processor and while no batch runs.
	Batches []BatchStatus `json:"batches,omitempty"`
	// Broker says whether the brokers can be reached.
	Broker BrokerStatus `json:"broker"`
	// Failures counts what became of the Work's failed messages, over all its runs.
	Failures FailureCounts `json:"failures"`
	// Commits counts what the Work's commits did, over all its runs.
	Commits CommitCounts `json:"commits"`
	// AbandonedHandlers counts the handlers the Work gave up waiting for, over all its runs:
	// handlers still running ProcessTimeoutMillis plus the grace period after their message
	// started. Each is a goroutine that has not returned.
	AbandonedHandlers int64 `json:"abandoned_handlers"`
}

// BatchStatus is a batch in its handler (ProcessBatch), in a Status.
type BatchStatus struct {
	// VirtualPartition is the virtual partition the batch is of.
	VirtualPartition int `json:"virtual_partition"`
	// Messages is the batch's size; Bytes its payload bytes.
	Messages int `json:"messages"`
	Bytes    int `json:"bytes"`
	// First and Last are its first and last messages (read order).
	First MessagePosition `json:"first"`
	Last  MessagePosition `json:"last"`
	// StartedAt is when ProcessBatch was called; RunningSeconds how long it has run.
	StartedAt      time.Time `json:"started_at"`
	RunningSeconds float64   `json:"running_seconds"`
}

// MessagePosition is where a message is: its topic, partition and offset.
type MessagePosition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// String is "topic/partition@offset".
func (p MessagePosition) String() string {
	return p.Topic + "/" + strconv.Itoa(int(p.Partition)) + "@" + strconv.FormatInt(p.Offset, 10)
}

// PauseReason is why the reader has paused its partitions (Status.PausedBecause).
type PauseReason string

// Why Status.Paused is set.
const (
	// PausedInFlightBound: the messages read and not finished reached MaxInFlight or
	// MaxInFlightBytes.
	PausedInFlightBound PauseReason = "in-flight bound reached"
	// PausedBreaker: the circuit breaker is open.
	PausedBreaker PauseReason = "circuit breaker open"
	// PausedStopping: the Work is stopping and reads nothing new.
	PausedStopping PauseReason = "stopping"
)

// Stuck reports whether any partition of s is stuck (PartitionStatus.Stuck).
func (s Status) Stuck() bool {
	for _, p := range s.Partitions {
		if p.Stuck {
			return true
		}
	}
	return false
}

// InFlightStatus counts a Work's messages read and not yet finished (queued, running, waiting
// for a retry or for their dead letter), with the bound the reader pauses at.
type InFlightStatus struct {
	Messages    int64 `json:"messages"`
	Bytes       int64 `json:"bytes"`
	MaxMessages int64 `json:"max_messages"`
	MaxBytes    int64 `json:"max_bytes"`
}

// BrokerStatus says whether a Work's brokers can be reached. Known is false while the library
// cannot tell; then the other fields are zero.
type BrokerStatus struct {
	Known     bool `json:"known"`
	Reachable bool `json:"reachable"`
	// Error is why the brokers cannot be used, when they cannot.
	Error string `json:"error,omitempty"`
	// Since is when they became reachable or unreachable.
	Since time.Time `json:"since,omitzero"`
}

// PartitionStatus is one assigned partition in a Status. Offsets are -1 when unknown.
type PartitionStatus struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// CommittedOffset is the last offset a commit of this reader set, as the broker
	// acknowledged it (librdkafka's automatic commits and the Work's own); -1 until the
	// first since the partition was assigned.
	CommittedOffset int64 `json:"committed_offset"`
	// StoredOffset is the offset the next commit will set: 1 + the highest offset below which
	// every message read is finished (G1); -1 until one is finished.
	StoredOffset int64 `json:"stored_offset"`
	// EndOffset is the partition's high watermark as librdkafka last fetched it (cached, not
	// asked of the broker).
	EndOffset int64 `json:"end_offset"`
	// Lag is EndOffset − CommittedOffset. Before the first commit it is counted from
	// StoredOffset, or else from the oldest unfinished offset; -1 when there is no base.
	Lag int64 `json:"lag"`
	// Unfinished counts the messages of the partition read and not finished.
	Unfinished int `json:"unfinished"`
	// Paused reports whether the reader has paused the partition.
	Paused bool `json:"paused"`
	// AssignedAt is when the partition was assigned; MovedAt when StoredOffset last moved.
	AssignedAt time.Time `json:"assigned_at"`
	MovedAt    time.Time `json:"moved_at,omitzero"`
	// StandingSeconds is how long the position has stood still: how long the oldest
	// unfinished message has been the oldest (since it was read, the position last moved, or
	// the partition was assigned, whichever is latest). When nothing is unfinished it is 0,
	// unless the partition reads nothing while the broker has records for it (see Stuck):
	// then it is how long nothing has been read since the partition was assigned or the
	// reader last resumed (a pause at the in-flight bound or the breaker is no stall).
	StandingSeconds float64 `json:"standing_seconds"`
	// Stuck is set when the position has stood still for StuckAfter or longer: held by its
	// oldest unfinished message (unless that only waits for its ProcessDelayMillis), or
	// reading nothing while the broker has records for it — the reader is not paused and
	// librdkafka knows no end offset for the partition (EndOffset -1: no fetch of it was
	// answered) or one above its position. It is also set while the circuit breaker is open
	// and messages of the partition are unfinished. StuckReason says which. A partition that
	// reads nothing for twice StuckAfter (at least 5 s) while the brokers are reachable makes
	// the Work replace its consumer, as a restart would.
	Stuck       bool   `json:"stuck"`
	StuckReason string `json:"stuck_reason,omitempty"`
	// Oldest is the oldest unfinished message, the one the position waits for; nil when
	// nothing is unfinished.
	Oldest *OldestUnfinished `json:"oldest_unfinished,omitempty"`
}

// OldestUnfinished is the oldest message of a partition that is read and not finished, and
// what it waits for.
type OldestUnfinished struct {
	Offset int64 `json:"offset"`
	// Key is the record key (KeyNil: the record had none). As JSON, bytes that are not UTF-8
	// become U+FFFD.
	Key    string `json:"key"`
	KeyNil bool   `json:"key_nil,omitempty"`
	// VirtualPartition is the virtual partition it is routed to; -1 when unknown.
	VirtualPartition int `json:"virtual_partition"`
	// WaitsFor is what it waits for, and Detail the same in words, with what it waits behind.
	WaitsFor WaitReason `json:"waits_for"`
	Detail   string     `json:"detail"`
	// ReadAt is when the reader read it (zero: unknown).
	ReadAt time.Time `json:"read_at,omitzero"`
	// Since is when it began to wait for WaitsFor: the handler's start, when it was parked for
	// its retry, when its dead letter write began; for the other reasons, when it was read.
	Since time.Time `json:"since,omitzero"`
	// Until is when the wait ends by itself: the end of its ProcessDelayMillis, its retry, its
	// dead letter's next attempt; zero otherwise.
	Until time.Time `json:"until,omitzero"`
	// AgeSeconds is the time since ReadAt; WaitingSeconds the time since Since.
	AgeSeconds     float64 `json:"age_seconds"`
	WaitingSeconds float64 `json:"waiting_seconds"`
	// Failures counts the failed attempts so far: the handler's runs for WaitRetry, the dead
	// letter writes for WaitDeadLetter. LastError is the last one's error.
	Failures  int    `json:"failures,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// WaitReason is what an unfinished message waits for.
type WaitReason string

// The reasons an unfinished message waits.
const (
	// WaitQueued: in its virtual partition's queue, behind the messages ahead of it.
	WaitQueued WaitReason = "queued"
	// WaitBehindKey: behind an earlier message of its key that waits for a retry (G2).
	WaitBehindKey WaitReason = "behind_key"
	// WaitDelay: held until its timestamp + ProcessDelayMillis (G9).
	WaitDelay WaitReason = "process_delay"
	// WaitBreaker: the circuit breaker does not let it run.
	WaitBreaker WaitReason = "circuit_breaker"
	// WaitHandler: its handler runs.
	WaitHandler WaitReason = "handler"
	// WaitCompleting: its handler returned; the hooks and the bookkeeping run.
	WaitCompleting WaitReason = "completing"
	// WaitRetry: its handler failed; it waits for its retry (WithRetry).
	WaitRetry WaitReason = "retry_backoff"
	// WaitDeadLetter: its dead letter is written, and retried while the write fails (G5).
	WaitDeadLetter WaitReason = "dead_letter"
	// WaitBatchFill: taken into a batch (WorkFactory.CreateBatch) that waits, up to
	// BatchPolicy.MaxWait, for more messages before its handler runs.
	WaitBatchFill WaitReason = "batch_fill"
	// WaitUnknown: read, and held by no queue of the Work: being dispatched (in the reader's
	// current batch, handed to its queue at the batch's end, or in a slow PostRead hook), or
	// let go of unfinished by a stop (it is read again after a restart).
	WaitUnknown WaitReason = "unknown"
)

// Status returns a snapshot of the Work: its group membership, breaker, in-flight messages,
// and per assigned partition the offsets, lag, pause and the oldest unfinished message with
// what it waits for. It is cheap enough to call every second: it stops nothing; it takes each
// part's lock briefly (a partition's tracker, a virtual partition's queue, looked through up
// to the message sought) and reads librdkafka's cached state (GetWatermarkOffsets,
// GetConsumerGroupMetadata), never the broker. Each partition's offsets are read at one
// moment; its oldest message is looked up right after, so a message that moved on meanwhile is
// reported where it went, or as WaitUnknown. Safe to call at any time from any goroutine,
// also on a Work that is not running.
func (w *Work) Status() Status {
	now := time.Now()
	st := Status{
		TakenAt:           now,
		Topics:            w.topicConfig.topics(),
		Group:             w.topicConfig.GroupID,
		Generation:        -1,
		GroupProtocol:     w.topicConfig.groupProtocol(),
		Breaker:           "closed",
		VirtualPartitions: int(w.speedup),
		StuckAfterSeconds: w.stuckAfter.Seconds(),
		InFlight:          InFlightStatus{MaxMessages: int64(w.maxInFlight), MaxBytes: w.maxBytes},
		Broker:            w.brokerStatus(),
		Failures:          w.failureCounts(),
		Commits:           w.commitCounts(),
		AbandonedHandlers: w.abandoned.Load(),
	}
	if w.cbDisabled {
		st.Breaker = "disabled"
	}
	if rs := w.run.Load(); rs != nil {
		statusTaker{rs: rs, now: now}.take(&st)
	}
	return st
}

// brokerStatus is what the library's consumer of the Run in progress knows of its brokers;
// not known between Runs or with a Reader that is not the library's own.
func (w *Work) brokerStatus() BrokerStatus {
	rs := w.run.Load()
	if rs == nil {
		return BrokerStatus{}
	}
	kr := rs.published.Load()
	if kr == nil {
		return BrokerStatus{}
	}
	ok, reason, since := kr.brokerHealth()
	return BrokerStatus{Known: true, Reachable: ok, Error: reason, Since: since}
}
