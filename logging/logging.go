// Package logging builds the process's slog logger and routes the libraries' loggers into it: go-libp2p and
// go-libp2p-pubsub log through gologshim, kad-dht and go-ds-pebble through go-log (zap).
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"

	golog "github.com/ipfs/go-log/v2"
	"github.com/libp2p/go-libp2p/gologshim"
	"go.uber.org/zap/zapcore"
)

// ParseLevel parses debug|info|warn|error.
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

// New returns a logger writing text or JSON to w at level.
func New(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

var routeOnce sync.Once

// RouteLibraries sends libp2p's and go-log's output to logger. Library messages below warn are dropped unless
// level is debug. It takes effect once per process (the libraries keep global loggers); call it before the
// first host is built.
func RouteLibraries(logger *slog.Logger, level slog.Level) {
	routeOnce.Do(func() {
		libLevel := max(level, slog.LevelWarn)
		h := &levelHandler{min: libLevel, next: logger.Handler()}
		gologshim.SetDefaultHandler(h)
		golog.SetPrimaryCore(&zapToSlog{h: h, min: libLevel})
		golog.SetAllLoggers(golog.LevelWarn)
		// A lone node cannot refresh its routing table; that is normal, not a warning.
		_ = golog.SetLogLevel("dht/RtRefreshManager", "error")
		if level <= slog.LevelDebug {
			golog.SetAllLoggers(golog.LevelDebug)
		}
	})
}

type levelHandler struct {
	min  slog.Level
	next slog.Handler
}

func (l *levelHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	return lv >= l.min && l.next.Enabled(ctx, lv)
}
func (l *levelHandler) Handle(ctx context.Context, r slog.Record) error { return l.next.Handle(ctx, r) }
func (l *levelHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return &levelHandler{min: l.min, next: l.next.WithAttrs(a)}
}
func (l *levelHandler) WithGroup(n string) slog.Handler {
	return &levelHandler{min: l.min, next: l.next.WithGroup(n)}
}

// zapToSlog is a zap core that forwards entries to a slog handler.
type zapToSlog struct {
	h      slog.Handler
	min    slog.Level
	fields []zapcore.Field
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (z *zapToSlog) Enabled(l zapcore.Level) bool { return slogLevel(l) >= z.min }
func (z *zapToSlog) With(f []zapcore.Field) zapcore.Core {
	return &zapToSlog{h: z.h, min: z.min, fields: append(append([]zapcore.Field{}, z.fields...), f...)}
}
func (z *zapToSlog) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if z.Enabled(e.Level) {
		return ce.AddCore(e, z)
	}
	return ce
}
func (z *zapToSlog) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range append(append([]zapcore.Field{}, z.fields...), fields...) {
		f.AddTo(enc)
	}
	r := slog.NewRecord(e.Time, slogLevel(e.Level), strings.TrimSpace(e.Message), 0)
	r.AddAttrs(slog.String("logger", e.LoggerName))
	for k, v := range enc.Fields {
		r.AddAttrs(slog.Any(k, v))
	}
	return z.h.Handle(context.Background(), r) //nolint:contextcheck // zap gives no context
}
func (z *zapToSlog) Sync() error { return nil }
