package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/zkafka-go/zkafka/examples/internal/syncbuf"
	"github.com/zkafka-go/zkafka/testhelper"
	_ "github.com/zkafka-go/zkafka/testhelper/container" // ZKAFKA_TESTCONTAINERS=1 may start Kafka in Docker
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// span is the part of stdouttrace's JSON the test reads.
type span struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
}

func TestWorkerOtelOneTracePerOrder(t *testing.T) {
	cfg := config{
		brokers:  testhelper.NewBroker(t).Addr(),
		topic:    testhelper.UniqueName(t, "orders"),
		group:    testhelper.UniqueName(t, "worker"),
		count:    2,
		duration: 45 * time.Second,
	}
	var out, spans syncbuf.Buffer
	if err := run(context.Background(), cfg, nil, &out, &spans); err != nil {
		t.Fatal(err)
	}
	byID := map[string]span{}
	dec := json.NewDecoder(strings.NewReader(spans.String()))
	for {
		var s span
		if err := dec.Decode(&s); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		byID[s.SpanContext.SpanID] = s
	}
	// Every "charge card" span descends, through process and publish, from a "place order".
	found := 0
	for _, s := range byID {
		if s.Name != "charge card" {
			continue
		}
		found++
		var chain []string
		for cur, ok := s, true; ok; cur, ok = byID[cur.Parent.SpanID] {
			chain = append(chain, cur.Name)
			if cur.SpanContext.TraceID != s.SpanContext.TraceID {
				t.Errorf("span %s is in another trace", cur.Name)
			}
		}
		if got := strings.Join(chain, " < "); got != "charge card < "+cfg.topic+" process < "+cfg.topic+" publish < place order" {
			t.Errorf("span chain %s", got)
		}
	}
	if found != 2 {
		t.Fatalf("found %d charge card spans, want 2:\n%s", found, out.String())
	}
}
