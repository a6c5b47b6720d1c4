package zkafka

// librdkafka's own log lines (a broker connection that failed, a message that timed out, a
// producer that terminated with records in its queue) go to the Logger, not raw to stderr:
// each consumer and producer the library makes gets confluent-kafka-go's logs channel
// (go.logs.channel.enable, go.logs.channel) and a goroutine that drains it until the client
// is closed. Warnings and worse pass through the client's failureLog (failurelog.go), so a
// line librdkafka repeats is written once and then summarised.
//
// Levels: librdkafka uses syslog's. 0–2 (emergency, alert, critical) become Errorw; 3 (error)
// and 4 (warning) Warnw, because what librdkafka logs at 3 is a broker connection it retries
// by itself, and what needs the user reaches the library as an error event, logged at error
// level by the reader or writer; 5 and 6 (notice, info) Infow; 7 (debug) Debugw. A FAIL line
// (a failed broker connection) is written at debug level: the same text comes as an error
// event, which the reader or writer logs. The library
// sets log_level 4, so only warnings and worse are produced unless AdditionalProps raise it
// (with a debug list for 7).
//
// One line is also acted on: librdkafka's CLUSTERID warning ("a client must not be
// simultaneously connected to multiple clusters"), written when a broker reports another
// cluster id than the one the client knew — its brokers were replaced by a new cluster at the
// same address. librdkafka goes on with state of the old cluster and can read nothing again
// (seen: a consumer assigned its partition reading nothing for minutes), so the reader tells
// its Work, which makes a new consumer (renew.go).

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// tagBrokerFail tags librdkafka's line for a failed broker connection, which always comes
// with an error event of the same text (ErrTransport, ErrResolve, ErrAuthentication, …) that
// the reader or writer logs: the line itself is written at debug level.
const tagBrokerFail = "FAIL"

// tagFatal tags librdkafka's line for a fatal error, which always comes with the fatal error
// event that the reader logs as "consumer failed" (it ends the Run) and the writer as a
// producer replaced: the line itself is written at debug level.
const tagFatal = "FATAL"

// tagClusterID tags librdkafka's line for a broker that reports another cluster id than the
// one the client knew; clusterChangeText is in its text.
const (
	tagClusterID      = "CLUSTERID"
	clusterChangeText = "multiple clusters"
)

// The librdkafka keys that route log lines to a channel.
const (
	keyLogsChannelEnable = "go.logs.channel.enable"
	keyLogsChannel       = "go.logs.channel"
)

// clientLogs drains one client's log channel into a Logger. The drain goroutine, its client's
// owner (close) and a Run (onClusterChange) use it at once.
type clientLogs struct {
	events   chan kafka.LogEvent // immutable; librdkafka sends, the drain goroutine receives
	logger   Logger              // immutable
	failures *failureLog         // immutable
	stop     chan struct{}       // immutable; closed by close
	done     chan struct{}       // immutable; closed when the drain returned
	once     sync.Once           // makes close's close(stop) happen once
	// clusterChanged is called, on the drain goroutine, with the text of each CLUSTERID line;
	// nil: nobody listens. Atomic.
	clusterChanged atomic.Pointer[func(text string)]
}

// routeLogs sets cm's keys so that librdkafka's log lines go to a channel, and starts
// draining it into logger (warnings and worse through failures). It returns nil, changing
// nothing, when the user's AdditionalProps set either key: their channel, their choice.
func routeLogs(cm kafka.ConfigMap, user map[string]any, logger Logger, failures *failureLog) *clientLogs {
	if _, ok := user[keyLogsChannelEnable]; ok {
		return nil
	}
	if _, ok := user[keyLogsChannel]; ok {
		return nil
	}
	c := &clientLogs{
		events:   make(chan kafka.LogEvent, 64),
		logger:   logger,
		failures: failures,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	cm[keyLogsChannelEnable] = true
	cm[keyLogsChannel] = c.events
	go c.drain()
	return c
}

// drain writes every log line until close, then those still buffered.
func (c *clientLogs) drain() {
	defer close(c.done)
	for {
		select {
		case e := <-c.events:
			c.write(e)
		case <-c.stop:
			for {
				select {
				case e := <-c.events:
					c.write(e)
				default:
					return
				}
			}
		}
	}
}

// write writes one log line at the level its syslog level maps to.
func (c *clientLogs) write(e kafka.LogEvent) {
	level := syslogLevel(e.Level)
	if e.Tag == tagBrokerFail || e.Tag == tagFatal {
		level = levelDebug
	}
	if f := c.clusterChanged.Load(); f != nil && (e.Tag == tagClusterID || strings.Contains(e.Message, clusterChangeText)) {
		(*f)(e.Message)
	}
	msg := "zkafka: librdkafka " + e.Tag
	kv := []any{"client", e.Name, "text", e.Message, "syslog_level", e.Level}
	if level < levelWarn {
		level.write(context.Background(), c.logger, msg, kv)
		return
	}
	c.failures.log(context.Background(), level, logLineKey(e), msg, kv...)
}

// syslogLevel maps a librdkafka (syslog) level to the Logger's (see the file comment).
func syslogLevel(l int) logLevel {
	switch {
	case l <= 2:
		return levelError
	case l <= 4:
		return levelWarn
	case l <= 6:
		return levelInfo
	default:
		return levelDebug
	}
}

// logLineKey is what makes two librdkafka lines "the same" for the rate limit: client, tag,
// level and the text before its first parenthesis (where librdkafka puts what changes from
// one line to the next: durations, counts of suppressed repeats), each run of digits masked.
func logLineKey(e kafka.LogEvent) string {
	text := e.Message
	if i := strings.IndexByte(text, '('); i >= 0 {
		text = text[:i]
	}
	var b strings.Builder
	b.WriteString("librdkafka\x00" + e.Name + "\x00" + e.Tag + "\x00" + strconv.Itoa(e.Level) + "\x00")
	digits := false
	for _, r := range text {
		isDigit := r >= '0' && r <= '9'
		switch {
		case !isDigit:
			b.WriteRune(r)
		case !digits:
			b.WriteByte('#')
		}
		digits = isDigit
	}
	return b.String()
}

// onClusterChange sets who is told of a CLUSTERID line (nil: nobody). Safe on nil: a client
// whose log lines go to the user's own channel tells nobody.
func (c *clientLogs) onClusterChange(f func(text string)) {
	if c == nil {
		return
	}
	if f == nil {
		c.clusterChanged.Store(nil)
		return
	}
	c.clusterChanged.Store(&f)
}

// close stops the drain once the client is closed (librdkafka sends nothing more) and waits
// for it. Safe on nil and twice.
func (c *clientLogs) close() {
	if c == nil {
		return
	}
	c.once.Do(func() { close(c.stop) })
	<-c.done
}
