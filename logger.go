package zkafka

// Logging: the Logger interface every part of the library writes through (key/value pairs,
// never a secret), the default logger (warnings and errors to stderr), NoopLogger for
// silence, and the adapter for log/slog.

import (
	"context"
	"io"
	"log/slog"
	"os"
)

// Logger is the structured logger the library writes through. keysAndValues alternate keys
// and values. The library never passes a secret to it.
type Logger interface {
	Debugw(ctx context.Context, msg string, keysAndValues ...any)
	Infow(ctx context.Context, msg string, keysAndValues ...any)
	Warnw(ctx context.Context, msg string, keysAndValues ...any)
	Errorw(ctx context.Context, msg string, keysAndValues ...any)
}

// NoopLogger discards everything. Give it (LoggerOption, WithLogger) to silence the library;
// with no Logger given, warnings and errors go to stderr (see defaultLogger).
type NoopLogger struct{}

// Debugw discards the entry.
func (NoopLogger) Debugw(context.Context, string, ...any) {}

// Infow discards the entry.
func (NoopLogger) Infow(context.Context, string, ...any) {}

// Warnw discards the entry.
func (NoopLogger) Warnw(context.Context, string, ...any) {}

// Errorw discards the entry.
func (NoopLogger) Errorw(context.Context, string, ...any) {}

// defaultLogger is the Logger of a Client, WorkFactory, Reader or Writer that was given none:
// warnings and errors go to stderr as log/slog text lines, debug and info lines are dropped.
// A program that sets no logger thus still learns of a dead broker, a missing topic or
// failing messages (G18). zkafka v2 logs nothing by default; NoopLogger does that here.
// A Work whose factory was given no logger takes its Client's (Work.inheritFromClient), which
// it tells by this type.
type defaultLogger struct{ s *SlogLogger }

// stderrLogger is the one defaultLogger.
var stderrLogger = newDefaultLogger(os.Stderr)

func newDefaultLogger(w io.Writer) defaultLogger {
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})
	return defaultLogger{s: NewSlogLogger(slog.New(h))}
}

// Debugw drops the entry.
func (defaultLogger) Debugw(context.Context, string, ...any) {}

// Infow drops the entry.
func (defaultLogger) Infow(context.Context, string, ...any) {}

// Warnw writes the entry to stderr.
func (d defaultLogger) Warnw(ctx context.Context, msg string, kv ...any) { d.s.Warnw(ctx, msg, kv...) }

// Errorw writes the entry to stderr.
func (d defaultLogger) Errorw(ctx context.Context, msg string, kv ...any) {
	d.s.Errorw(ctx, msg, kv...)
}

// isDefaultLogger reports whether l is the logger of one that was given none.
func isDefaultLogger(l Logger) bool {
	_, ok := l.(defaultLogger)
	return l == nil || ok
}

// discards reports whether l is the NoopLogger, so that a path taken for many messages can
// skip building a line's fields.
func discards(l Logger) bool {
	_, noop := l.(NoopLogger)
	return noop
}

// SlogLogger adapts a *slog.Logger to Logger.
type SlogLogger struct {
	l *slog.Logger
}

// NewSlogLogger returns a Logger writing to l; slog.Default() when l is nil.
func NewSlogLogger(l *slog.Logger) *SlogLogger {
	if l == nil {
		l = slog.Default()
	}
	return &SlogLogger{l: l}
}

// Debugw logs at debug level.
func (s *SlogLogger) Debugw(ctx context.Context, msg string, kv ...any) {
	s.l.DebugContext(ctx, msg, kv...)
}

// Infow logs at info level.
func (s *SlogLogger) Infow(ctx context.Context, msg string, kv ...any) {
	s.l.InfoContext(ctx, msg, kv...)
}

// Warnw logs at warn level.
func (s *SlogLogger) Warnw(ctx context.Context, msg string, kv ...any) {
	s.l.WarnContext(ctx, msg, kv...)
}

// Errorw logs at error level.
func (s *SlogLogger) Errorw(ctx context.Context, msg string, kv ...any) {
	s.l.ErrorContext(ctx, msg, kv...)
}
