package kafka

import (
	"context"
	"log/slog"
)

// TraceHandler adds the trace id of the event being handled (WithTrace) to every log line
// written with its context, so each line about a booking can be found by its trace.
func TraceHandler(h slog.Handler) slog.Handler { return traceHandler{h} }

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if tp := TraceFrom(ctx); tp != "" {
		r.AddAttrs(slog.String("trace_id", TraceID(tp)))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
