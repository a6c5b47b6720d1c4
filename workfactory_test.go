package zkafka

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultInFlightBoundGrowsWithSpeedup(t *testing.T) {
	f := NewWorkFactory(NewClient(Config{BootstrapServers: []string{"127.0.0.1:1"}}))
	proc := func(context.Context, *Message) error { return nil }
	tc := ConsumerTopicConfig{ClientID: "c", GroupID: "g", Topic: "t"}
	for _, tt := range []struct {
		name string
		opts []WorkOption
		want int
	}{
		{"speedup 1", nil, 10000},
		{"speedup 125", []WorkOption{Speedup(125)}, 10000},
		{"speedup 126", []WorkOption{Speedup(126)}, 10080},
		{"speedup 256", []WorkOption{Speedup(256)}, 20480},
		{"speedup 1250 reaches the cap", []WorkOption{Speedup(1250)}, 100000},
		{"max speedup stays at the cap", []WorkOption{Speedup(65535)}, 100000},
		{"explicit bound before speedup", []WorkOption{MaxInFlight(300), Speedup(256)}, 300},
		{"explicit bound after speedup", []WorkOption{Speedup(256), MaxInFlight(300)}, 300},
		{"non-positive bound keeps the default", []WorkOption{Speedup(256), MaxInFlight(0), MaxInFlight(-1)}, 20480},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := f.CreateWithFunc(tc, proc, tt.opts...)
			require.Equal(t, tt.want, w.maxInFlight)
		})
	}
}
