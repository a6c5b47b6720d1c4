package zkafka

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// closeRaceRounds is how many times each Close race runs; the close lands at a different
// point of the other goroutine's calls each round.
const closeRaceRounds = 12

// TestG15CloseDuringRead closes a reader while another goroutine is inside Read, many
// times: Close waits for the poll in progress, the reading goroutine gets an error from its
// next Read, and nothing touches the closed consumer (before this guard, a SIGSEGV in cgo).
func TestG15CloseDuringRead(t *testing.T) {
	addr := testBroker(t)
	topic := uniqueName("g15-read")
	createTopic(t, addr, topic, 1)
	client := NewClient(Config{BootstrapServers: []string{addr}})
	defer client.Close()
	for round := range closeRaceRounds {
		r, err := client.Reader(t.Context(), ConsumerTopicConfig{
			ClientID: uniqueName("g15-reader"), GroupID: uniqueName("g15"), Topic: topic,
			ReadTimeoutMillis: ptr(150),
		})
		require.NoError(t, err)
		reading := make(chan struct{}, 64)
		done := make(chan error, 1)
		go func() {
			for {
				reading <- struct{}{}
				if _, err := r.Read(context.Background()); err != nil {
					done <- err
					return
				}
			}
		}()
		for range round%3 + 1 { // close during the first, second or third Read
			<-reading
		}
		require.NoError(t, r.Close())
		require.ErrorIs(t, <-done, errReaderClosed, "round %d", round)
		require.NoError(t, r.Close(), "Close twice")
		_, err = r.Read(context.Background())
		require.ErrorIs(t, err, errReaderClosed)
		_, err = r.(*KReader).Assignments(context.Background())
		require.ErrorIs(t, err, errReaderClosed)
	}
}

// TestG15CloseDuringWrite closes a writer while goroutines write through it: every write
// either succeeds or returns an error, none after Close reaches the producer.
func TestG15CloseDuringWrite(t *testing.T) {
	addr := testBroker(t)
	topic := uniqueName("g15-write")
	createTopic(t, addr, topic, 1)
	client := NewClient(Config{BootstrapServers: []string{addr}})
	defer client.Close()
	for round := range closeRaceRounds {
		w, err := client.Writer(t.Context(), ProducerTopicConfig{ClientID: uniqueName("g15-writer"), Topic: topic})
		require.NoError(t, err)
		var wg sync.WaitGroup
		written := make(chan struct{}, 1024)
		for range 4 {
			wg.Go(func() {
				for {
					_, err := w.WriteKey(context.Background(), "k", map[string]int{"round": round})
					if err != nil {
						require.ErrorIs(t, err, errWriterClosed)
						return
					}
					written <- struct{}{}
				}
			})
		}
		for range round % 4 { // close before any write finished, or after a few
			<-written
		}
		w.Close()
		wg.Wait()
		w.Close() // twice is fine
		_, err = w.WriteRaw(context.Background(), nil, []byte("late"))
		require.ErrorIs(t, err, errWriterClosed)
	}
}

// TestG15CloseDuringRun closes the reader of a running Work, and the whole Client of
// another: Run returns, with the reader's error or nil, and nothing crashes.
func TestG15CloseDuringRun(t *testing.T) {
	addr := testBroker(t)
	topic := uniqueName("g15-run")
	createTopic(t, addr, topic, 2)
	for round := range closeRaceRounds {
		client := NewClient(Config{BootstrapServers: []string{addr}})
		tc := ConsumerTopicConfig{
			ClientID: uniqueName("g15-run"), GroupID: uniqueName("g15-run"), Topic: topic,
			ReadTimeoutMillis: ptr(100),
		}
		polled := make(chan struct{}, 1)
		work := NewWorkFactory(client).CreateWithFunc(tc, func(context.Context, *Message) error { return nil },
			WithLifecycleHooks(LifecycleHooks{PostReadImmediate: func(context.Context, LifecyclePostReadImmediateMeta) {
				select {
				case polled <- struct{}{}:
				default:
				}
			}}))
		ran := make(chan error, 1)
		go func() { ran <- work.Run(context.Background(), nil) }()
		<-polled // the Work is inside its read loop
		if round%2 == 0 {
			r, err := client.Reader(t.Context(), tc) // the Work's own reader, from the cache
			if err == nil {
				require.NoError(t, r.Close())
			}
		} else {
			require.NoError(t, client.Close())
		}
		err := <-ran
		if err != nil && !errors.Is(err, errReaderClosed) {
			t.Fatalf("round %d: Run returned %v, want nil or the closed reader's error", round, err)
		}
		require.NoError(t, client.Close())
	}
}
