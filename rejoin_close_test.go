package zkafka

import (
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestG15StopDuringARejoinLeavesBeforeTheClose: under eager assignment a worker is stopped
// while its JoinGroup is in flight, after the group revoked its partitions for a new member.
// librdkafka postpones the unsubscribe of its leave until that join completes; the join's
// assignment and the revoke after it must then reach rebalance callbacks before
// consumer.Close, because a callback that Close's own poll runs can block for ever inside
// librdkafka (librdkafka#4884). So the worker's leave serves both, and no callback runs
// inside the close: when the join ends soon (the close ends within closeMaxWait), and when it
// outlasts closeMaxWait (Close returns and the close goes on in the background).
func TestG15StopDuringARejoinLeavesBeforeTheClose(t *testing.T) {
	t.Run("join ends soon", func(t *testing.T) { testStopDuringARejoin(t, false) })
	t.Run("join outlasts closeMaxWait", func(t *testing.T) { testStopDuringARejoin(t, true) })
}

func testStopDuringARejoin(t *testing.T, long bool) {
	e := newEmbeddedEnv(t)
	topic := e.newTopic(t, 4)
	group := uniqueTestName(t, "g")
	noop := func(context.Context, *Message) error { return nil }

	logsA := newCaptureLogger()
	clientA := NewClient(Config{BootstrapServers: []string{e.addr}}, LoggerOption(logsA))
	t.Cleanup(func() { _ = clientA.Close() })
	cfgA := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "a"), GroupID: group, Topic: topic}, protocolEager)
	a := startWork(t, NewWorkFactory(clientA).CreateWithFunc(cfgA, noop))
	gi, err := e.cluster.WaitGroupStable(t.Context(), group, 1)
	require.NoError(t, err)
	memberA := gi.Members[0].MemberID
	ra, err := clientA.Reader(t.Context(), cfgA)
	require.NoError(t, err)
	readerA := ra.(*KReader)

	// Hold a's JoinGroup once it rejoins, until a has unsubscribed inside its stop.
	held, release := make(chan struct{}), make(chan struct{})
	var holdOnce sync.Once
	e.cluster.ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		e.cluster.KeepControl()
		if req.(*kmsg.JoinGroupRequest).MemberID != memberA {
			return nil, nil, false
		}
		first := false
		holdOnce.Do(func() { first = true })
		if first {
			close(held)
			e.cluster.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	// Release the join at the first poll of a's leave that finds a unassigned and quiet (leave
	// returned there before it waited for the join), or, when long, at the first such poll past
	// leaveMaxWait (leave gave up there before it waited longer for a join).
	releaseNow := make(chan struct{})
	var releaseOnce sync.Once
	var firstQuiet time.Time
	testHookLeavePolled = func(r *KReader, quiet bool) {
		if r != readerA || !quiet {
			return
		}
		if firstQuiet.IsZero() {
			firstQuiet = time.Now()
		}
		if !long || time.Since(firstQuiet) > leaveMaxWait {
			releaseOnce.Do(func() { close(releaseNow) })
		}
	}
	gone := make(chan (<-chan struct{}), 1)
	testHookClosingLate = func(g <-chan struct{}) { gone <- g }
	t.Cleanup(func() { testHookLeavePolled, testHookClosingLate = nil, nil })

	cfgB := underProtocol(ConsumerTopicConfig{ClientID: uniqueTestName(t, "b"), GroupID: group, Topic: topic}, protocolEager)
	startWork(t, NewWorkFactory(e.client(t)).CreateWithFunc(cfgB, noop))
	select {
	case <-held: // b's join revoked a's partitions, and a rejoins
	case <-time.After(60 * time.Second):
		t.Fatal("a did not rejoin after b joined")
	}
	// From here on, the lines of the stop: the revoke's line comes after its rejoin began.
	require.Eventually(t, func() bool { return len(logsA.containing("zkafka: partitions revoked")) == 1 }, 10*time.Second, time.Millisecond)

	stopped := make(chan error, 1)
	go func() { stopped <- a.stop(t) }()
	select {
	case <-releaseNow:
	case <-time.After(60 * time.Second):
		t.Fatal("a's stop did not leave")
	}
	close(release)
	select {
	case err := <-stopped:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("a's Run did not return")
	}
	if long {
		select {
		case g := <-gone:
			select {
			case <-g:
			case <-time.After(60 * time.Second):
				t.Fatal("a's consumer close did not end")
			}
		default:
			t.Fatal("Close waited for the join past closeMaxWait")
		}
	}

	require.Zero(t, readerA.callbacksInClose.Load(), "rebalance callbacks run by consumer.Close")
	require.True(t, readerA.closeEnded())
	lines := logsA.all()
	all := strings.Join(lines, "\n")
	if long {
		require.Contains(t, all, "warn zkafka: closing the consumer takes long: leaving the group waits for its partitions to be revoked or for a join in flight to end")
		require.Equal(t, 1, strings.Count(all, "closing the consumer takes long"), all)
	} else {
		require.NotContains(t, all, "closing the consumer takes long")
	}
	require.NotContains(t, all, "has not left its group")
	// The held join's assignment reached a's leave, which revoked it before the close.
	parts := regexp.MustCompile(regexp.QuoteMeta(topic) + `/\d+(,` + regexp.QuoteMeta(topic) + `/\d+)*`)
	var changes []string
	for _, l := range lines {
		for _, what := range []string{"zkafka: partitions assigned", "zkafka: partitions revoked"} {
			if strings.Contains(l, what) {
				changes = append(changes, what+" "+parts.FindString(l))
			}
		}
	}
	require.Len(t, changes, 2, "one assignment and its revoke during the stop:\n%s", all)
	require.Equal(t, strings.Replace(changes[0], "assigned", "revoked", 1), changes[1], all)
	require.Regexp(t, "assigned "+parts.String(), changes[0], all)

	gi, err = e.cluster.WaitGroupStable(t.Context(), group, 1)
	require.NoError(t, err)
	require.Equal(t, cfgB.ClientID, gi.Members[0].ClientID)
	require.Equal(t, 4, gi.NumAssigned(), "b owns every partition once a left")
}
