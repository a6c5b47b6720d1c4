package zkafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/zkafka-go/zkafka/internal/commit"
	"github.com/zkafka-go/zkafka/testhelper"
)

// poisonChildEnv carries the configuration of TestPoisonPillChild, the child process of
// TestPoisonPillIsDeadLetteredAfterNDeaths.
const poisonChildEnv = "ZKAFKA_POISON_CHILD"

// poisonChild is what the child process runs against.
type poisonChild struct {
	Addr, Topic, DLT, Group, Instance, Done string
	Poison                                  int64 // the offset of the message that kills the process
	Others                                  int   // how many other messages there are
	After                                   uint32
}

// poisonExit is the child's exit status when the poison pill kills it.
const poisonExit = 3

// TestPoisonPillIsDeadLetteredAfterNDeaths runs a worker in a child process whose handler
// calls os.Exit on one message, again and again: after at most PoisonPillAfter + 1 restarts
// that message is dead-lettered with a zkafka-error saying why, and every other message is
// processed exactly once (the first run waits, in the poison pill's handler, until a commit
// holds all the others).
func TestPoisonPillIsDeadLetteredAfterNDeaths(t *testing.T) {
	e := newEnv(t)
	topic := e.newTopic(t, 1)
	dlt := e.newTopic(t, 1)
	const n, poisonAt, after = 30, 10, 3
	// Keys of other virtual partitions than the poison pill's, so that none waits behind it.
	var recs []rec
	for i := 0; len(recs) < n; i++ {
		key := fmt.Sprintf("k%d", i)
		if len(recs) == poisonAt {
			key = "poison"
		} else if routeKey(key, 4) == routeKey("poison", 4) {
			continue
		}
		recs = append(recs, rec{Key: []byte(key), Value: []byte(key)})
	}
	e.produce(t, topic, recs)
	cfg := poisonChild{Addr: e.addr, Topic: topic, DLT: dlt, Group: uniqueTestName(t, "g"), Instance: uniqueTestName(t, "i"),
		Done: filepath.Join(t.TempDir(), "done"), Poison: poisonAt, Others: n - 1, After: after}
	spec, err := json.Marshal(cfg)
	require.NoError(t, err)

	runs := 0
	for {
		runs++
		require.LessOrEqual(t, runs, after+2, "dead-lettered after at most PoisonPillAfter + 1 restarts")
		cmd := exec.Command(os.Args[0], "-test.run=^TestPoisonPillChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), poisonChildEnv+"="+string(spec))
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == poisonExit {
			continue
		}
		require.NoError(t, err, "child run %d:\n%s", runs, out)
		break
	}
	t.Logf("dead-lettered at run %d (%d restarts)", runs, runs-1)

	done, err := os.ReadFile(cfg.Done)
	require.NoError(t, err)
	count := map[int64]int{}
	for _, line := range strings.Fields(string(done)) {
		off, err := strconv.ParseInt(line, 10, 64)
		require.NoError(t, err)
		count[off]++
	}
	require.Len(t, count, n-1)
	for off, c := range count {
		require.NotEqual(t, int64(poisonAt), off)
		require.Equal(t, 1, c, "offset %d processed once", off)
	}
	letters := e.consumeAll(t, dlt, 1)
	require.Equal(t, "poison", string(letters[0].Key))
	require.Contains(t, string(letters[0].Headers["zkafka-error"]), "PoisonPillAfter")
	require.Equal(t, e.endOffsets(t, topic), e.committed(t, cfg.Group, topic))
}

// TestPoisonPillChild is the child process of TestPoisonPillIsDeadLetteredAfterNDeaths; it
// does nothing unless poisonChildEnv is set.
func TestPoisonPillChild(t *testing.T) {
	spec := os.Getenv(poisonChildEnv)
	if spec == "" {
		return
	}
	var cfg poisonChild
	require.NoError(t, json.Unmarshal([]byte(spec), &cfg))
	done, err := os.OpenFile(cfg.Done, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	defer done.Close()
	var mu sync.Mutex
	others := 0
	client := NewClient(Config{BootstrapServers: []string{cfg.Addr}})
	defer client.Close()
	// The classic protocol, whose session timeout the client sets: under the consumer protocol
	// the broker's (45 s by default) keeps a dead static member's place, and refuses the
	// restarted instance (UNRELEASED_INSTANCE_ID) until it passes.
	w := NewWorkFactory(client).CreateWithFunc(ConsumerTopicConfig{ClientID: cfg.Instance, GroupID: cfg.Group, Topic: cfg.Topic,
		SessionTimeoutMillis: intp(6000), MaxPollIntervalMillis: intp(20000), GroupProtocol: GroupProtocolClassic,
		AdditionalProps: map[string]any{"group.instance.id": cfg.Instance}},
		func(ctx context.Context, m *Message) error {
			if m.Offset == cfg.Poison {
				// The first time, only once a commit holds every other message (then nothing
				// but the poison pill is redone); later, at once.
				for !othersCommitted(t, cfg) {
					time.Sleep(20 * time.Millisecond)
				}
				os.Exit(poisonExit)
			}
			mu.Lock()
			defer mu.Unlock()
			_, err := fmt.Fprintln(done, m.Offset)
			others++
			return err
		}, Speedup(4), HashRouting(), PoisonPillAfter(cfg.After), WithDeadLetterTopic(ProducerTopicConfig{Topic: cfg.DLT}))
	shutdown := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background(), shutdown) }()
	require.Eventually(t, func() bool { return w.Status().Failures.DeadLettered == 1 }, 60*time.Second, 10*time.Millisecond)
	require.Equal(t, int64(1), w.Status().Failures.PoisonPills)
	require.Eventually(t, func() bool { return len(readLines(cfg.Done)) >= cfg.Others }, 60*time.Second, 10*time.Millisecond)
	close(shutdown)
	require.NoError(t, <-errc)
}

// othersCommitted reports whether the group's commit holds every message but the poison
// pill: it is the committed offset and everything after it is finished.
func othersCommitted(t *testing.T, cfg poisonChild) bool {
	md, ok := testhelper.CommittedMetadata(t, cfg.Addr, cfg.Group, cfg.Topic)[0]
	if !ok {
		return false
	}
	c, err := commit.Decode(md)
	if err != nil || c.Base != cfg.Poison {
		return false
	}
	return len(c.Runs) == 2 && c.Runs[0] == 1 && int(c.Runs[1]) == cfg.Others-int(cfg.Poison)
}

func readLines(path string) []string {
	b, _ := os.ReadFile(path)
	return strings.Fields(string(b))
}
