package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/madang-p2p/madang/events"
)

const (
	maxEventTypes   = 32
	maxEventTypeLen = 64
	maxEventBatch   = 64 // events written between flushes
)

// serveEvents is GET /api/v1/events: Server-Sent Events, or NDJSON when the
// client accepts application/x-ndjson.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if s.bus == nil {
		WriteError(w, http.StatusServiceUnavailable, "unavailable", "the event stream is not available")
		return
	}
	since, resume, err := eventsSince(r)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	types, err := eventTypes(r)
	if err != nil {
		WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	if !resume {
		// Live only. Anything published between Last and Subscribe has a
		// greater ID and is replayed, so nothing falls in between.
		since = s.bus.Last()
	}
	sub := s.bus.Subscribe(since, types)
	defer sub.Close()
	if errors.Is(sub.Err(), events.ErrGap) {
		WriteError(w, http.StatusGone, "gap",
			fmt.Sprintf("events after %d are no longer retained; resynchronise and reconnect without since", since))
		return
	}

	ndjson := acceptsNDJSON(r)
	if ndjson {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "text/event-stream")
	}
	w.Header().Set("X-Accel-Buffering", "no")
	// No overall write deadline: each write gets a fresh one instead (see
	// send), so a client that stops reading is dropped.
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := s.send(w, rc, nil); err != nil {
		return
	}

	heartbeat := time.NewTicker(s.heartbeat)
	defer heartbeat.Stop()
	hb := []byte(": heartbeat\n\n")
	if ndjson {
		hb = []byte("\n")
	}
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stop:
			return
		case <-heartbeat.C:
			if err := s.send(w, rc, hb); err != nil {
				return
			}
		case ev, ok := <-sub.C():
			if !ok {
				if err := sub.Err(); err != nil {
					s.log.Debug("Event stream ended", "reason", err)
				}
				return
			}
			// Batch whatever is already queued into one write and flush.
			buf = appendEvent(buf[:0], ev, ndjson)
			for range maxEventBatch {
				select {
				case ev, ok = <-sub.C():
				default:
					ok = false
				}
				if !ok {
					break
				}
				buf = appendEvent(buf, ev, ndjson)
			}
			if err := s.send(w, rc, buf); err != nil {
				return
			}
		}
	}
}

// send writes b and flushes it under a fresh write deadline.
func (s *Server) send(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	if err := rc.SetWriteDeadline(time.Now().Add(s.writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

func appendEvent(buf []byte, ev events.Event, ndjson bool) []byte {
	js, err := json.Marshal(ev)
	if err != nil { // Data is valid JSON produced by the bus
		return buf
	}
	if ndjson {
		return append(append(buf, js...), '\n')
	}
	buf = append(buf, "id: "...)
	buf = strconv.AppendUint(buf, ev.ID, 10)
	buf = append(buf, '\n')
	if typ := strings.Map(dropNewlines, ev.Type); typ != "" {
		buf = append(buf, "event: "...)
		buf = append(buf, typ...)
		buf = append(buf, '\n')
	}
	buf = append(buf, "data: "...)
	buf = append(buf, js...) // json.Marshal never emits raw newlines
	return append(buf, '\n', '\n')
}

func dropNewlines(r rune) rune {
	if r == '\n' || r == '\r' {
		return -1
	}
	return r
}

// eventsSince returns the ID to resume after: Last-Event-ID (sent by
// EventSource on reconnect) takes precedence over ?since=.
func eventsSince(r *http.Request) (since uint64, resume bool, err error) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	name := "Last-Event-ID"
	if v == "" {
		v = r.URL.Query().Get("since")
		name = "since"
	}
	if v == "" {
		return 0, false, nil
	}
	since, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s must be a non-negative integer", name)
	}
	return since, true, nil
}

func eventTypes(r *http.Request) ([]string, error) {
	var types []string
	for _, v := range r.URL.Query()["types"] {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if len(t) > maxEventTypeLen || strings.IndexFunc(t, badTypeRune) >= 0 {
				return nil, fmt.Errorf("invalid event type %q", t)
			}
			types = append(types, t)
		}
	}
	if len(types) > maxEventTypes {
		return nil, fmt.Errorf("at most %d event types", maxEventTypes)
	}
	return types, nil
}

func badTypeRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-*", r))
}

func acceptsNDJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "application/x-ndjson" {
				continue
			}
			if q, err := strconv.ParseFloat(params["q"], 64); err == nil && q == 0 {
				continue
			}
			return true
		}
	}
	return false
}
