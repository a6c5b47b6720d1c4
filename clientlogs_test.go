package zkafka

import (
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/require"
)

// TestSyslogLevel: librdkafka's syslog levels map to the Logger's.
func TestSyslogLevel(t *testing.T) {
	want := map[int]logLevel{0: levelError, 2: levelError, 3: levelWarn, 4: levelWarn, 5: levelInfo, 6: levelInfo, 7: levelDebug}
	for l, lv := range want {
		require.Equal(t, lv, syslogLevel(l), "syslog level %d", l)
	}
}

// TestLogLineKey: lines that differ only in what librdkafka puts in parentheses or in digits
// are the same for the rate limit; other tags, clients or texts are not.
func TestLogLineKey(t *testing.T) {
	a := kafka.LogEvent{Name: "c#consumer-1", Tag: "REQTMOUT", Level: 4, Message: "b:9092/1: Timed out 3 in-flight (after 60000ms)"}
	b := a
	b.Message = "b:9092/1: Timed out 12 in-flight (after 61000ms, 2 identical error(s) suppressed)"
	require.Equal(t, logLineKey(a), logLineKey(b))
	for _, c := range []func(*kafka.LogEvent){
		func(e *kafka.LogEvent) { e.Tag = "OTHER" },
		func(e *kafka.LogEvent) { e.Name = "c#consumer-2" },
		func(e *kafka.LogEvent) { e.Level = 3 },
		func(e *kafka.LogEvent) { e.Message = "b:9092/1: something else" },
	} {
		d := a
		c(&d)
		require.NotEqual(t, logLineKey(a), logLineKey(d))
	}
}

// TestRouteLogs: the config gets the logs channel; lines reach the Logger at their level,
// warnings rate-limited, FAIL and FATAL lines at debug level (the reader and writer log the
// error event that comes with each); close drains what is buffered and
// returns. AdditionalProps that set either key are left alone.
func TestRouteLogs(t *testing.T) {
	logs := newCaptureLogger()
	cm := kafka.ConfigMap{}
	c := routeLogs(cm, nil, logs, newFailureLog(logs))
	require.Equal(t, true, cm[keyLogsChannelEnable])
	ch, ok := cm[keyLogsChannel].(chan kafka.LogEvent)
	require.True(t, ok)
	now := time.Now()
	warn := kafka.LogEvent{Name: "c", Tag: "REQTMOUT", Level: 4, Message: "Timed out (after 1ms)", Timestamp: now}
	ch <- warn
	ch <- warn // same line: counted
	ch <- kafka.LogEvent{Name: "c", Tag: "FAIL", Level: 3, Message: "Connect failed", Timestamp: now}
	ch <- kafka.LogEvent{Name: "c", Tag: "FATAL", Level: 0, Message: "Fatal error: Broker: The instance ID is still used", Timestamp: now}
	ch <- kafka.LogEvent{Name: "c", Tag: "CONF", Level: 6, Message: "info line", Timestamp: now}
	c.close()
	c.close()
	var levels []string
	for _, l := range logs.all() {
		levels = append(levels, strings.Join(strings.Fields(l)[:4], " "))
	}
	require.Equal(t, []string{"warn zkafka: librdkafka REQTMOUT", "debug zkafka: librdkafka FAIL", "debug zkafka: librdkafka FATAL", "info zkafka: librdkafka CONF"}, levels)

	for _, key := range []string{keyLogsChannelEnable, keyLogsChannel} {
		cm := kafka.ConfigMap{}
		require.Nil(t, routeLogs(cm, map[string]any{key: false}, logs, newFailureLog(logs)))
		require.Empty(t, cm)
	}
	var none *clientLogs
	none.close()
}

// TestClusterChangeLine: librdkafka's CLUSTERID line reaches the listener with its text, and
// is still logged; other lines do not; no listener, nothing called.
func TestClusterChangeLine(t *testing.T) {
	logs := newCaptureLogger()
	cm := kafka.ConfigMap{}
	c := routeLogs(cm, nil, logs, newFailureLog(logs))
	ch := cm[keyLogsChannel].(chan kafka.LogEvent)
	told := make(chan string, 10)
	c.onClusterChange(func(text string) { told <- text })
	const text = `Broker 127.0.0.1:9092/0 reports different ClusterId "b" than previously known "a": ` +
		"a client must not be simultaneously connected to multiple clusters"
	ch <- kafka.LogEvent{Name: "c", Tag: "REQTMOUT", Level: 4, Message: "Timed out"}
	ch <- kafka.LogEvent{Name: "c", Tag: tagClusterID, Level: 4, Message: text}
	require.Equal(t, text, <-told)
	c.onClusterChange(nil)
	ch <- kafka.LogEvent{Name: "c", Tag: tagClusterID, Level: 4, Message: text + " again"}
	c.close()
	require.Empty(t, told)
	var tags []string
	for _, l := range logs.all() {
		tags = append(tags, strings.Fields(l)[3])
	}
	require.Equal(t, []string{"REQTMOUT", tagClusterID, tagClusterID}, tags)
	var none *clientLogs
	none.onClusterChange(func(string) {})
}
