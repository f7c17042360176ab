package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testToken = "s3cret-token"

type echoBody struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
}

// newTestServer returns a Server with a few feature routes registered.
func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Token == "" {
		opts.Token = testToken
	}
	s := New(opts)
	s.Handle("GET /api/v1/ping", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"pong": "yes"})
	})
	s.Handle("POST /api/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		var b echoBody
		if !DecodeJSON(w, r, &b) {
			return
		}
		WriteJSON(w, http.StatusOK, b)
	})
	s.Handle("DELETE /api/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	s.Handle("GET /api/v1/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("boom")
	})
	s.HandlePublic("POST /api/v1/public", func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"public": "yes"})
	})
	return s
}

type reqOpt func(*http.Request)

func withToken(tok string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func withHost(h string) reqOpt { return func(r *http.Request) { r.Host = h } }

var authed = withToken(testToken)

var jsonCT = withHeader("Content-Type", "application/json")

// do runs one request through h with an httptest recorder. The Host defaults
// to localhost.
func do(t *testing.T, h http.Handler, method, target, body string, opts ...reqOpt) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	req.Host = "localhost"
	for _, o := range opts {
		o(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errCode decodes an error response, failing the test if it is not the
// documented JSON shape.
func errCode(t *testing.T, ct string, body []byte) string {
	t.Helper()
	if !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("error Content-Type = %q, want application/json (body %q)", ct, body)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("error body %q lacks code or message", body)
	}
	return e.Error.Code
}

func wantError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %q)", rec.Code, status, rec.Body.String())
	}
	if got := errCode(t, rec.Header().Get("Content-Type"), rec.Body.Bytes()); got != code {
		t.Fatalf("error code = %q, want %q", got, code)
	}
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, status int) {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status = %d, want %d (body %q)", rec.Code, status, rec.Body.String())
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
	Comment         bool
}

// readSSE reads the next event or comment block from r.
func readSSE(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	seen := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading SSE stream: %v (partial %q)", err, line)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return ev
			}
			continue
		}
		seen = true
		switch {
		case strings.HasPrefix(line, ":"):
			ev.Comment = true
		case strings.HasPrefix(line, "id: "):
			ev.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			ev.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.Data = strings.TrimPrefix(line, "data: ")
		case strings.HasPrefix(line, "retry: "):
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
}

// nextSSEEvent skips comments (heartbeats).
func nextSSEEvent(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	for {
		if ev := readSSE(t, r); !ev.Comment {
			return ev
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger on server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// contextWithLimit marks r as size-limited, as the middleware does.
func contextWithLimit(r *http.Request, n int64) context.Context {
	return context.WithValue(r.Context(), bodyLimitKey{}, n)
}
