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
// librdkafka (librdkafka#4884). So the worker's leave serves both, no callback runs inside
// the close, and the close ends in time.
func TestG15StopDuringARejoinLeavesBeforeTheClose(t *testing.T) {
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
	// The first poll of a's leave that finds a unassigned and quiet: leave returned there
	// before it waited for the join.
	quiet := make(chan struct{})
	var quietOnce sync.Once
	testHookLeavePolled = func(r *KReader, q bool) {
		if r == readerA && q {
			quietOnce.Do(func() { close(quiet) })
		}
	}
	t.Cleanup(func() { testHookLeavePolled = nil })

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
	case <-quiet:
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

	require.Zero(t, readerA.callbacksInClose.Load(), "rebalance callbacks run by consumer.Close")
	require.True(t, readerA.closeEnded(), "a's consumer closed within closeMaxWait")
	lines := logsA.all()
	all := strings.Join(lines, "\n")
	require.NotContains(t, all, "closing the consumer takes long")
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
