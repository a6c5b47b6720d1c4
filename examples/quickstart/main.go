// Command quickstart shows zkafka's main job end to end with nothing to install: it starts a
// Kafka-protocol broker in its own process (or uses KAFKA_BOOTSTRAP_SERVERS), writes a few
// thousand keyed orders, processes them with a Work on 8 virtual partitions with a dead letter
// topic for the ones that fail, checks that each key's orders were processed in order, and
// reads back from the broker what was dead-lettered and committed. It exits 0 when everything
// adds up.
//
//	make example                     # or: go run ./examples/quickstart
//	go run ./examples/quickstart -messages 20000 -speedup 16
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/zkafka-go/zkafka"
	"github.com/zkafka-go/zkafka/examples/internal/kit"
)

type config struct {
	brokers    string
	runID      string // makes topic and group names unique on a shared broker
	messages   int
	keys       int
	partitions int
	speedup    uint16
	failEvery  int           // an order whose number is a multiple of this fails
	work       time.Duration // simulated work per order
	timeout    time.Duration // give up after this long
	statusAddr string        // where the status page is served ("": nowhere)
}

// Order is what the quickstart writes: order N is the Seq-th order of its key.
type Order struct {
	N   int    `json:"n"`
	Key string `json:"key"`
	Seq int    `json:"seq"`
}

func main() {
	cfg := config{runID: time.Now().Format("150405.000")}
	flag.IntVar(&cfg.messages, "messages", 5000, "orders to write and process")
	flag.IntVar(&cfg.keys, "keys", 100, "distinct keys")
	flag.IntVar(&cfg.partitions, "partitions", 4, "Kafka partitions of the topic")
	speedup := flag.Uint("speedup", 8, "virtual partitions (zkafka.Speedup)")
	flag.IntVar(&cfg.failEvery, "fail-every", 97, "orders whose number is a multiple of this fail and are dead-lettered")
	flag.DurationVar(&cfg.work, "work", 2*time.Millisecond, "simulated work per order")
	flag.StringVar(&cfg.statusAddr, "status-addr", "127.0.0.1:8081", "where to serve the status page while it runs (empty: nowhere)")
	timeout := kit.DurationFlag(90 * time.Second)
	flag.Parse()
	cfg.speedup, cfg.timeout = uint16(*speedup), *timeout

	broker, err := kit.FindBroker(true) // embedded unless KAFKA_BOOTSTRAP_SERVERS is set
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
	where := "embedded broker in this process at " + broker.Addr
	if !broker.Embedded {
		where = "broker at " + broker.Addr
	}
	fmt.Println("zkafka quickstart on the", where)
	cfg.brokers = broker.Addr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout)
	stop()
	broker.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "quickstart: FAILED:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config, out io.Writer) error {
	if cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
	}
	topic := "quickstart-orders-" + cfg.runID
	deadLetters := "quickstart-orders-dead-" + cfg.runID
	group := "quickstart-" + cfg.runID
	if err := kit.CreateTopics(ctx, cfg.brokers, cfg.partitions, topic); err != nil {
		return err
	}
	if err := kit.CreateTopics(ctx, cfg.brokers, 1, deadLetters); err != nil {
		return err
	}

	// Library warnings (one per failed order) would drown the progress lines: show errors only.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	client := zkafka.NewClient(zkafka.Config{BootstrapServers: []string{cfg.brokers}},
		zkafka.LoggerOption(zkafka.NewSlogLogger(logger)))
	defer client.Close()

	// 1. Write the orders: one goroutine per key, each writing its key's orders in sequence.
	start := time.Now()
	if err := produce(ctx, client, topic, cfg); err != nil {
		return fmt.Errorf("writing orders: %w", err)
	}
	fmt.Fprintf(out, "wrote %d orders over %d keys to %s (%d partitions) in %s\n",
		cfg.messages, cfg.keys, topic, cfg.partitions, time.Since(start).Round(time.Millisecond))

	// 2. Process them: Speedup virtual partitions, failures to the dead letter topic.
	var (
		processed, failed atomic.Int64
		order             = newOrderCheck()
		finished          = make(chan struct{})
		finish            = sync.OnceFunc(func() { close(finished) })
	)
	work := zkafka.NewWorkFactory(client).CreateWithFunc(zkafka.ConsumerTopicConfig{
		ClientID: "quickstart",
		GroupID:  group,
		Topic:    topic,
	}, func(ctx context.Context, msg *zkafka.Message) error {
		var o Order
		if err := msg.Decode(&o); err != nil {
			return err
		}
		order.see(msg.Key, o.Seq)
		time.Sleep(cfg.work)
		if o.N%cfg.failEvery == 0 {
			// A bad order, not a broken dependency: dead-letter it without tripping the breaker.
			return zkafka.ProcessError{Err: fmt.Errorf("order %d: simulated failure", o.N), DisableCircuitBreak: true}
		}
		return nil
	},
		zkafka.Speedup(cfg.speedup),
		zkafka.WithDeadLetterTopic(zkafka.ProducerTopicConfig{Topic: deadLetters}),
		zkafka.WithOnDone(func(_ context.Context, _ *zkafka.Message, err error) {
			// Runs once per order, after its dead letter (if any) was acknowledged.
			if err != nil {
				failed.Add(1)
			}
			if processed.Add(1) == int64(cfg.messages) {
				finish()
			}
		}),
	)

	// The status page, while the Work runs: per partition the lag and the message that holds
	// its offset, stuck ones first (also as JSON).
	stopPage, err := kit.ServeStatusPage(cfg.statusAddr, zkafka.StatusHandler(work), out)
	if err != nil {
		return err
	}
	defer stopPage()

	shutdown := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() {
		start := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				fmt.Fprintf(out, "  %3.0fs  processed %5d/%d  dead-lettered %3d\n",
					time.Since(start).Seconds(), processed.Load(), cfg.messages, failed.Load())
			case <-finished:
				close(shutdown) // graceful stop: finish, commit, return
				return
			case <-ctx.Done():
				return
			}
		}
	})
	start = time.Now()
	runErr := work.Run(ctx, shutdown)
	finish()
	progress.Wait()
	if runErr != nil {
		return runErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("processed %d of %d orders before stopping: %w", processed.Load(), cfg.messages, err)
	}
	elapsed := time.Since(start)

	// 3. Read the outcome back from the broker.
	wantFailed := (cfg.messages-1)/cfg.failEvery + 1
	deadLettered, err := readDeadLetters(ctx, client, deadLetters, wantFailed)
	if err != nil {
		return err
	}
	committed, end, err := offsets(ctx, cfg.brokers, group, topic)
	if err != nil {
		return err
	}

	// 4. The summary.
	ok := true
	check := func(good bool) string {
		if good {
			return "yes"
		}
		ok = false
		return "NO"
	}
	fmt.Fprintf(out, "\nsummary (Speedup %d, %d Kafka partitions, %s)\n", cfg.speedup, cfg.partitions, elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "  processed:          %d of %d, all of them: %s\n", processed.Load(), cfg.messages, check(processed.Load() == int64(cfg.messages)))
	fmt.Fprintf(out, "  failed:             %d (every order number divisible by %d), as expected: %s\n", failed.Load(), cfg.failEvery, check(failed.Load() == int64(wantFailed)))
	fmt.Fprintf(out, "  dead-lettered:      %d read back from %s with their zkafka-* headers, all of them: %s\n", deadLettered, deadLetters, check(deadLettered == wantFailed))
	fmt.Fprintf(out, "  per-key order kept: %s (%d keys, %d out-of-order)\n", check(order.violations() == 0), order.keys(), order.violations())
	fmt.Fprintf(out, "  committed offsets (read from the broker):\n")
	for _, p := range sortedPartitions(end) {
		fmt.Fprintf(out, "    partition %d: committed %5d, end %5d, up to date: %s\n", p, committed[p], end[p], check(committed[p] == end[p]))
	}
	if !ok {
		return errors.New("the summary shows a problem")
	}
	fmt.Fprintln(out, "all good")
	return nil
}

// produce writes cfg.messages orders: order n has key n%keys and is the (n/keys)-th of its key.
func produce(ctx context.Context, client *zkafka.Client, topic string, cfg config) error {
	w, err := client.Writer(ctx, zkafka.ProducerTopicConfig{ClientID: "quickstart-producer", Topic: topic})
	if err != nil {
		return err
	}
	errs := make(chan error, cfg.keys)
	var wg sync.WaitGroup
	for k := range cfg.keys {
		wg.Go(func() {
			key := fmt.Sprintf("customer-%03d", k)
			for n := k; n < cfg.messages; n += cfg.keys {
				// Each write waits for the broker's ack, so a key's orders land in sequence.
				if _, err := w.WriteKey(ctx, key, Order{N: n, Key: key, Seq: n / cfg.keys}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when no writer failed
}

// readDeadLetters reads want dead letters back with a zkafka Reader of a fresh group and
// checks that each carries the headers zkafka adds. It returns how many it read.
func readDeadLetters(ctx context.Context, client *zkafka.Client, topic string, want int) (int, error) {
	r, err := client.Reader(ctx, zkafka.ConsumerTopicConfig{
		ClientID: "quickstart-dead-letter-check",
		GroupID:  "quickstart-dead-letter-check-" + topic,
		Topic:    topic,
	})
	if err != nil {
		return 0, err
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n := 0
	for n < want {
		msg, err := r.Read(ctx)
		if err != nil {
			return n, fmt.Errorf("reading dead letters: %w", err)
		}
		if ctx.Err() != nil {
			return n, nil
		}
		if msg == nil {
			continue
		}
		for _, h := range []string{zkafka.HeaderOriginalTopic, zkafka.HeaderOriginalOffset, zkafka.HeaderError, zkafka.HeaderAttempt} {
			if _, ok := msg.Headers[h]; !ok {
				return n, fmt.Errorf("dead letter at offset %d lacks header %s", msg.Offset, h)
			}
		}
		msg.Done()
		n++
	}
	return n, nil
}

// offsets reads the group's committed offsets and the topic's end offsets from the broker.
func offsets(ctx context.Context, brokers, group, topic string) (committed, end map[int32]int64, err error) {
	admin, err := kit.NewAdmin(brokers)
	if err != nil {
		return nil, nil, err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	md, err := admin.GetMetadata(&topic, false, 5000)
	if err != nil {
		return nil, nil, err
	}
	var tps []kafka.TopicPartition
	latest := map[kafka.TopicPartition]kafka.OffsetSpec{}
	for _, p := range md.Topics[topic].Partitions {
		tp := kafka.TopicPartition{Topic: &topic, Partition: p.ID}
		tps = append(tps, tp)
		latest[tp] = kafka.LatestOffsetSpec
	}
	ends, err := admin.ListOffsets(ctx, latest)
	if err != nil {
		return nil, nil, fmt.Errorf("reading end offsets: %w", err)
	}
	end = map[int32]int64{}
	for tp, info := range ends.ResultInfos {
		end[tp.Partition] = int64(info.Offset)
	}
	res, err := admin.ListConsumerGroupOffsets(ctx, []kafka.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}},
		kafka.SetAdminRequireStableOffsets(true))
	if err != nil {
		return nil, nil, fmt.Errorf("reading committed offsets: %w", err)
	}
	committed = map[int32]int64{}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Error == nil && tp.Offset >= 0 {
				committed[tp.Partition] = int64(tp.Offset)
			}
		}
	}
	return committed, end, nil
}

func sortedPartitions(m map[int32]int64) []int32 {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

// orderCheck verifies that each key's orders arrive with Seq 0, 1, 2, … in turn.
type orderCheck struct {
	mu   sync.Mutex
	next map[string]int
	bad  int
}

func newOrderCheck() *orderCheck { return &orderCheck{next: map[string]int{}} }

func (c *orderCheck) see(key string, seq int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq != c.next[key] {
		c.bad++
	}
	c.next[key] = seq + 1
}

func (c *orderCheck) violations() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bad
}

func (c *orderCheck) keys() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.next)
}
