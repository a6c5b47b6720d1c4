package zkafka

// Logging: the Logger interface every part of the library writes through (key/value pairs,
// never a secret), NoopLogger (the default), and the adapter for log/slog.

import (
	"context"
	"log/slog"
)

// Logger is the structured logger the library writes through. keysAndValues alternate keys
// and values. The library never passes a secret to it.
type Logger interface {
	Debugw(ctx context.Context, msg string, keysAndValues ...any)
	Infow(ctx context.Context, msg string, keysAndValues ...any)
	Warnw(ctx context.Context, msg string, keysAndValues ...any)
	Errorw(ctx context.Context, msg string, keysAndValues ...any)
}

// NoopLogger discards everything. It is the default Logger.
type NoopLogger struct{}

// NewNoopLogger returns a Logger that discards everything.
func NewNoopLogger() Logger { return NoopLogger{} }

// Debugw discards the entry.
func (NoopLogger) Debugw(context.Context, string, ...any) {}

// Infow discards the entry.
func (NoopLogger) Infow(context.Context, string, ...any) {}

// Warnw discards the entry.
func (NoopLogger) Warnw(context.Context, string, ...any) {}

// Errorw discards the entry.
func (NoopLogger) Errorw(context.Context, string, ...any) {}

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
