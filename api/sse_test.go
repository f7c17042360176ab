package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/madang-p2p/madang/events"
)

// openStream GETs the event stream; the caller closes the body.
func openStream(t *testing.T, client *http.Client, base, query string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/api/v1/events"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func decodeEvent(t *testing.T, data string) events.Event {
	t.Helper()
	var ev events.Event
	if err := json.Unmarshal([]byte(data), &ev); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
	return ev
}

// readSSEIDs reads n events and checks id/event/data agree.
func readSSEIDs(t *testing.T, r *bufio.Reader, n int) []uint64 {
	t.Helper()
	var got []uint64
	for range n {
		sse := nextSSEEvent(t, r)
		ev := decodeEvent(t, sse.Data)
		if strconv.FormatUint(ev.ID, 10) != sse.ID || ev.Type != sse.Event {
			t.Fatalf("SSE id/event %q/%q disagree with data %s", sse.ID, sse.Event, sse.Data)
		}
		got = append(got, ev.ID)
	}
	return got
}

func seq(from, to uint64) string {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return fmt.Sprint(out)
}

func newStreamServer(t *testing.T) (*events.Bus, *Server, *httptest.Server) {
	t.Helper()
	bus := events.NewBus(64, 0)
	s := newTestServer(t, Options{Events: bus})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return bus, s, srv
}

func TestSSEDeliversInOrderAndResumes(t *testing.T) {
	bus, _, srv := newStreamServer(t)
	bus.Publish("old", nil) // before connecting: not sent without since

	resp := openStream(t, srv.Client(), srv.URL, "", nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
	}
	r := bufio.NewReader(resp.Body)
	for i := range 5 {
		bus.Publish("room.message", map[string]int{"n": i})
	}
	if got := fmt.Sprint(readSSEIDs(t, r, 5)); got != seq(2, 6) {
		t.Fatalf("ids = %s, want %s", got, seq(2, 6))
	}
	resp.Body.Close()

	// Events published while disconnected are replayed after Last-Event-ID.
	for range 3 {
		bus.Publish("room.message", nil)
	}
	resp2 := openStream(t, srv.Client(), srv.URL, "", map[string]string{"Last-Event-ID": "6"})
	defer resp2.Body.Close()
	r2 := bufio.NewReader(resp2.Body)
	bus.Publish("room.message", nil)
	if got := fmt.Sprint(readSSEIDs(t, r2, 4)); got != seq(7, 10) {
		t.Fatalf("Last-Event-ID resume: ids = %s, want %s", got, seq(7, 10))
	}
	resp2.Body.Close()

	// ?since= does the same; Last-Event-ID wins over it (EventSource keeps
	// the original URL when it reconnects).
	resp3 := openStream(t, srv.Client(), srv.URL, "?since=8", nil)
	defer resp3.Body.Close()
	if got := fmt.Sprint(readSSEIDs(t, bufio.NewReader(resp3.Body), 2)); got != seq(9, 10) {
		t.Fatalf("since resume: ids = %s", got)
	}
	resp4 := openStream(t, srv.Client(), srv.URL, "?since=1", map[string]string{"Last-Event-ID": "9"})
	defer resp4.Body.Close()
	if got := fmt.Sprint(readSSEIDs(t, bufio.NewReader(resp4.Body), 1)); got != seq(10, 10) {
		t.Fatalf("Last-Event-ID precedence: ids = %s", got)
	}
}

func TestSSEEventPayload(t *testing.T) {
	bus, _, srv := newStreamServer(t)
	resp := openStream(t, srv.Client(), srv.URL, "?since=0", nil)
	defer resp.Body.Close()
	want := bus.Publish("friend.added", map[string]string{"peer": "12D3", "note": "line1\nline2"})
	sse := nextSSEEvent(t, bufio.NewReader(resp.Body))
	got := decodeEvent(t, sse.Data)
	if got.ID != want.ID || got.Type != want.Type || !got.Time.Equal(want.Time) || string(got.Data) != string(want.Data) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if sse.Event != "friend.added" || sse.ID != "1" {
		t.Fatalf("sse = %+v", sse)
	}
}

func TestSSETypeFilter(t *testing.T) {
	bus, _, srv := newStreamServer(t)
	resp := openStream(t, srv.Client(), srv.URL, "?types=room.*,friend.added&since=0", nil)
	defer resp.Body.Close()
	for _, typ := range []string{"room.created", "presence", "friend.added", "friend.removed", "room.msg"} {
		bus.Publish(typ, nil)
	}
	r := bufio.NewReader(resp.Body)
	var got []string
	for range 3 {
		got = append(got, nextSSEEvent(t, r).Event)
	}
	if fmt.Sprint(got) != "[room.created friend.added room.msg]" {
		t.Fatalf("filtered types = %v", got)
	}
}

func TestEventsBadRequests(t *testing.T) {
	bus := events.NewBus(4, 0)
	h := newTestServer(t, Options{Events: bus}).Handler()
	for range 10 {
		bus.Publish("t", nil)
	}
	wantError(t, do(t, h, "GET", "/api/v1/events", ""), 401, "unauthorized")
	wantError(t, do(t, h, "GET", "/api/v1/events?since=abc", "", authed), 400, "bad_request")
	wantError(t, do(t, h, "GET", "/api/v1/events?since=-1", "", authed), 400, "bad_request")
	wantError(t, do(t, h, "GET", "/api/v1/events", "", authed, withHeader("Last-Event-ID", "x")), 400, "bad_request")
	wantError(t, do(t, h, "GET", "/api/v1/events?types=a%0Ab", "", authed), 400, "bad_request")
	wantError(t, do(t, h, "GET", "/api/v1/events?types="+strings.Repeat("a,", 40), "", authed), 400, "bad_request")
	// Ring holds 7..10: since=2 cannot be served without loss.
	wantError(t, do(t, h, "GET", "/api/v1/events?since=2", "", authed), 410, "gap")
	wantError(t, do(t, h, "GET", "/api/v1/events?since=11", "", authed), 410, "gap")

	noBus := newTestServer(t, Options{}).Handler()
	wantError(t, do(t, noBus, "GET", "/api/v1/events", "", authed), 503, "unavailable")
}

func TestNDJSONStream(t *testing.T) {
	bus, _, srv := newStreamServer(t)
	bus.Publish("a", 1)
	resp := openStream(t, srv.Client(), srv.URL, "?since=0", map[string]string{"Accept": "application/x-ndjson"})
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Fatalf("Content-Type = %q", ct)
	}
	bus.Publish("b", 2)
	bus.Publish("c", 3)
	r := bufio.NewReader(resp.Body)
	var got []string
	for len(got) < 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\n" {
			continue // heartbeat
		}
		ev := decodeEvent(t, line)
		got = append(got, fmt.Sprintf("%d:%s:%s", ev.ID, ev.Type, ev.Data))
	}
	if fmt.Sprint(got) != "[1:a:1 2:b:2 3:c:3]" {
		t.Fatalf("ndjson events = %v", got)
	}
	// q=0 means "not acceptable": SSE then.
	resp2 := openStream(t, srv.Client(), srv.URL, "", map[string]string{"Accept": "application/x-ndjson;q=0, text/event-stream"})
	defer resp2.Body.Close()
	if ct := resp2.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("q=0 Content-Type = %q", ct)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	bus := events.NewBus(0, 0)
	s := newTestServer(t, Options{Events: bus})
	s.heartbeat = 10 * time.Millisecond
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	resp := openStream(t, srv.Client(), srv.URL, "", nil)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	if ev := readSSE(t, r); !ev.Comment {
		t.Fatalf("first block %+v, want a heartbeat comment", ev)
	}
	bus.Publish("x", nil)
	if got := fmt.Sprint(readSSEIDs(t, r, 1)); got != "[1]" {
		t.Fatalf("ids = %s", got)
	}
}

// serveReal runs s.Serve on a real loopback listener. wait returns Serve's
// result, or fails the test if Serve has not returned within 10 s.
func serveReal(t *testing.T, s *Server) (base string, cancel context.CancelFunc, wait func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	var once sync.Once
	var serveErr error
	wait = func() error {
		once.Do(func() {
			select {
			case serveErr = <-errc:
			case <-time.After(10 * time.Second):
				serveErr = errors.New("Serve did not return within 10 s of cancellation")
			}
		})
		return serveErr
	}
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), cancel, wait
}

func TestServeShutsDownWithOpenStream(t *testing.T) {
	bus := events.NewBus(0, 0)
	s := newTestServer(t, Options{Events: bus})
	if s.Addr() != "" {
		t.Fatalf("Addr before Serve = %q", s.Addr())
	}
	base, cancel, wait := serveReal(t, s)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	resp0, err := client.Get(base + "/healthz") // Serve is accepting once this answers
	if err != nil {
		t.Fatal(err)
	}
	resp0.Body.Close()
	if s.Addr() != strings.TrimPrefix(base, "http://") {
		t.Fatalf("Addr = %q, want %q", s.Addr(), base)
	}
	resp := openStream(t, client, base, "", nil)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	bus.Publish("x", nil)
	readSSEIDs(t, r, 1) // the stream is live

	cancel()
	// nil means Shutdown completed within its 5 s budget: a stream that
	// held the connection open would make it fail.
	if err := wait(); err != nil {
		t.Fatalf("Serve = %v, want nil after a clean shutdown", err)
	}
	// The client sees the stream end.
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Logf("stream ended with %v", err)
	}
}

// TestStreamOutlivesReadTimeout guards against the server's ReadTimeout
// cancelling long-lived streams.
func TestStreamOutlivesReadTimeout(t *testing.T) {
	bus := events.NewBus(0, 0)
	s := newTestServer(t, Options{Events: bus})
	s.readTimeout = 100 * time.Millisecond
	s.heartbeat = 20 * time.Millisecond
	base, _, _ := serveReal(t, s)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	resp := openStream(t, client, base, "", nil)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	start := time.Now()
	for time.Since(start) < 4*s.readTimeout {
		if ev := readSSE(t, r); !ev.Comment {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	bus.Publish("late", nil)
	if got := fmt.Sprint(readSSEIDs(t, r, 1)); got != "[1]" {
		t.Fatalf("ids = %s", got)
	}
}

func TestServeRealListenerAuthAndHost(t *testing.T) {
	s := newTestServer(t, Options{})
	base, _, _ := serveReal(t, s)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	port := base[strings.LastIndex(base, ":")+1:]

	get := func(host, token string) int {
		req, _ := http.NewRequest("GET", base+"/api/v1/ping", nil)
		req.Host = host
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		host, token string
		want        int
	}{
		{"127.0.0.1:" + port, testToken, 200},
		{"localhost:" + port, testToken, 200},
		{"localhost", testToken, 200},
		{"127.0.0.1:" + port, "", 401},
		{"127.0.0.1:" + port, "wrong", 401},
		{"evil.com:" + port, testToken, 403},
		{"127.0.0.1.evil.com:" + port, testToken, 403},
	} {
		if got := get(tc.host, tc.token); got != tc.want {
			t.Errorf("Host %q token %q: %d, want %d", tc.host, tc.token, got, tc.want)
		}
	}
}

type fakeListener struct {
	net.Listener
	addr net.Addr
}

func (l fakeListener) Addr() net.Addr { return l.addr }

func TestServeRefusesNonLoopbackAndSecondCall(t *testing.T) {
	s := New(Options{Token: testToken})
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 80},
		&net.TCPAddr{IP: net.IPv4zero, Port: 80},
		&net.TCPAddr{IP: net.IPv6unspecified, Port: 80},
	} {
		if err := s.Serve(t.Context(), fakeListener{addr: a}); err == nil || !strings.Contains(err.Error(), "non-loopback") {
			t.Errorf("Serve on %v: err = %v", a, err)
		}
	}
	if s.Addr() != "" {
		t.Fatalf("Addr after refused Serve = %q", s.Addr())
	}

	base, cancel, wait := serveReal(t, s)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get(base + "/healthz") // the first Serve is up
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done, stop := context.WithCancel(t.Context())
	stop() // a wrongly accepted second Serve returns at once
	if err := s.Serve(done, ln); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("second Serve: err = %v", err)
	}
	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}
