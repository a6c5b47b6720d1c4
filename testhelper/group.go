package testhelper

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Group is a consumer group as the broker describes it through the admin API
// (DescribeConsumerGroups), which works on every broker. The generation is not part of it;
// on the embedded broker [Broker.GroupGeneration] gives it.
type Group struct {
	// ID is the group id.
	ID string
	// State is the broker's name for the group state: "Empty", "Stable",
	// "PreparingRebalance", "CompletingRebalance", "Dead", or "Unknown".
	State string
	// Members holds the current members, sorted by member id.
	Members []GroupMember
}

// GroupMember is one member of a [Group].
type GroupMember struct {
	// MemberID is the id the broker gave the member; ClientID and Host are what the member's
	// client reported.
	MemberID string
	ClientID string
	Host     string
	// Assignment maps each assigned topic to its partitions, sorted.
	Assignment map[string][]int32
}

// Assigned returns the number of partitions assigned across all members.
func (g Group) Assigned() int {
	n := 0
	for _, m := range g.Members {
		for _, ps := range m.Assignment {
			n += len(ps)
		}
	}
	return n
}

// DescribeGroup returns group's state and members as the broker reports them. A group the
// broker does not know is returned with State "Dead" (Kafka) or "Unknown" and no members.
func DescribeGroup(t testing.TB, addr, group string) Group {
	t.Helper()
	a := newAdmin(t, addr)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	g, err := describeGroup(ctx, a, group)
	if err != nil {
		t.Fatalf("testhelper: describing group %s: %v", group, err)
	}
	return g
}

func describeGroup(ctx context.Context, a *kafka.AdminClient, group string) (Group, error) {
	res, err := a.DescribeConsumerGroups(ctx, []string{group})
	if err != nil {
		return Group{}, err
	}
	out := Group{ID: group, State: kafka.ConsumerGroupStateUnknown.String()}
	for _, d := range res.ConsumerGroupDescriptions {
		if d.Error.Code() != kafka.ErrNoError && d.Error.Code() != kafka.ErrGroupIDNotFound {
			return Group{}, d.Error
		}
		out.State = d.State.String()
		for _, m := range d.Members {
			gm := GroupMember{MemberID: m.ConsumerID, ClientID: m.ClientID, Host: m.Host, Assignment: map[string][]int32{}}
			for _, tp := range m.Assignment.TopicPartitions {
				if tp.Topic != nil {
					gm.Assignment[*tp.Topic] = append(gm.Assignment[*tp.Topic], tp.Partition)
				}
			}
			for _, ps := range gm.Assignment {
				sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			}
			out.Members = append(out.Members, gm)
		}
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].MemberID < out.Members[j].MemberID })
	return out, nil
}

// WaitGroupStable waits until group is Stable with exactly members members and returns it; it
// fails the test after timeout with the last state seen. It polls the admin API, so it works
// on every broker.
func WaitGroupStable(t testing.TB, addr, group string, members int, timeout time.Duration) Group {
	t.Helper()
	a := newAdmin(t, addr)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last Group
	var lastErr error
	for {
		g, err := describeGroup(ctx, a, group)
		if err == nil && g.State == kafka.ConsumerGroupStateStable.String() && len(g.Members) == members {
			return g
		}
		if err == nil {
			last = g
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testhelper: group %s not stable with %d members within %v: last state %q with %d members (last error: %v)",
				group, members, timeout, last.State, len(last.Members), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
