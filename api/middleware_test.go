package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAuth(t *testing.T) {
	h := newTestServer(t, Options{}).Handler()
	for _, tc := range []struct {
		name   string
		auth   string
		status int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", "Bearer nope", http.StatusUnauthorized},
		{"token prefix", "Bearer " + testToken[:5], http.StatusUnauthorized},
		{"token with suffix", "Bearer " + testToken + "x", http.StatusUnauthorized},
		{"basic scheme", "Basic " + testToken, http.StatusUnauthorized},
		{"bare token", testToken, http.StatusUnauthorized},
		{"empty bearer", "Bearer ", http.StatusUnauthorized},
		{"ok", "Bearer " + testToken, http.StatusOK},
		{"scheme case-insensitive", "bearer " + testToken, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, h, "GET", "/api/v1/ping", "", withHeader("Authorization", tc.auth))
			if tc.status == http.StatusOK {
				wantStatus(t, rec, http.StatusOK)
				if rec.Body.String() != "{\"pong\":\"yes\"}\n" {
					t.Fatalf("body = %q", rec.Body.String())
				}
				return
			}
			wantError(t, rec, tc.status, "unauthorized")
			if got := rec.Header().Get("WWW-Authenticate"); got != "Bearer" {
				t.Fatalf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestEmptyConfiguredTokenRefusesEverything(t *testing.T) {
	s := New(Options{})
	s.Handle("GET /api/v1/ping", func(w http.ResponseWriter, r *http.Request) {})
	for _, auth := range []string{"", "Bearer ", "Bearer  "} {
		wantError(t, do(t, s.Handler(), "GET", "/api/v1/ping", "", withHeader("Authorization", auth)), 401, "unauthorized")
	}
	// Public routes still work.
	wantStatus(t, do(t, s.Handler(), "GET", "/healthz", ""), http.StatusOK)
}

func TestPublicRoutesNeedNoToken(t *testing.T) {
	h := newTestServer(t, Options{}).Handler()
	rec := do(t, h, "GET", "/healthz", "")
	wantStatus(t, rec, http.StatusOK)
	if rec.Body.String() != "{\"status\":\"ok\"}\n" {
		t.Fatalf("healthz body = %q", rec.Body.String())
	}
	wantStatus(t, do(t, h, "POST", "/api/v1/public", ""), http.StatusOK)
	rec = do(t, h, "GET", "/api/v1/openapi.yaml", "")
	wantStatus(t, rec, http.StatusOK)
	if ct := rec.Header().Get("Content-Type"); ct != "application/yaml" {
		t.Fatalf("spec Content-Type = %q", ct)
	}
	if !strings.Contains(rec.Body.String(), "Madang local API") {
		t.Fatalf("spec body lacks title: %.200s", rec.Body.String())
	}
	// Wrong method on a public path is not public: the token is needed to
	// learn anything about it.
	wantError(t, do(t, h, "DELETE", "/healthz", ""), 401, "unauthorized")
}

func TestHostAllowlist(t *testing.T) {
	s := newTestServer(t, Options{AllowedHosts: []string{"Madang.Local"}})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	otherPort := "1"
	if port == otherPort {
		otherPort = "2"
	}

	get := func(host string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("GET", srv.URL+"/api/v1/ping", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, host := range []string{
		"localhost", "localhost:" + port, "LOCALHOST:" + port,
		"127.0.0.1", "127.0.0.1:" + port,
		"[::1]", "[::1]:" + port,
		"madang.local", "madang.local:" + port,
	} {
		resp := get(host)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Host %q: status %d, want 200", host, resp.StatusCode)
		}
	}
	for _, host := range []string{
		"evil.com", "evil.com:" + port, "127.0.0.1.evil.com", "127.0.0.1.evil.com:" + port,
		"localhost.evil.com", "localhost:" + otherPort, "127.0.0.1:" + otherPort,
		"127.0.0.2", "0.0.0.0", "::1", "[::1]:" + otherPort, "127.0.0.1:" + port + "0",
		"127.0.0.1:abc", "madang.local.evil.com",
	} {
		resp := get(host)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host %q: status %d, want 403", host, resp.StatusCode)
			continue
		}
		if code := errCode(t, resp.Header.Get("Content-Type"), body); code != "forbidden_host" {
			t.Errorf("Host %q: code %q", host, code)
		}
	}
	// Through a recorder there is no connection: ports are not accepted
	// unless Serve is bound to them, names without a port are.
	wantStatus(t, do(t, s.Handler(), "GET", "/healthz", "", withHost("127.0.0.1")), 200)
	wantError(t, do(t, s.Handler(), "GET", "/healthz", "", withHost("127.0.0.1:8080")), 403, "forbidden_host")
	wantError(t, do(t, s.Handler(), "GET", "/healthz", "", withHost("")), 403, "forbidden_host")
}

func TestCrossOriginProtection(t *testing.T) {
	h := newTestServer(t, Options{}).Handler()
	body := `{"name":"x"}`
	for _, tc := range []struct {
		name    string
		opts    []reqOpt
		status  int
		errCode string
	}{
		{"cross-site fetch", []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}, 403, "cross_origin"},
		{"same-site fetch", []reqOpt{withHeader("Sec-Fetch-Site", "same-site")}, 403, "cross_origin"},
		{"hostile origin", []reqOpt{withHeader("Origin", "http://evil.com")}, 403, "cross_origin"},
		{"loopback origin other port", []reqOpt{withHeader("Origin", "http://localhost:3000")}, 403, "cross_origin"},
		{"null origin", []reqOpt{withHeader("Origin", "null")}, 403, "cross_origin"},
		{"same-origin fetch", []reqOpt{withHeader("Sec-Fetch-Site", "same-origin")}, 200, ""},
		{"user-initiated", []reqOpt{withHeader("Sec-Fetch-Site", "none")}, 200, ""},
		{"same origin header", []reqOpt{withHeader("Origin", "http://localhost")}, 200, ""},
		{"no origin (CLI)", nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]reqOpt{authed, jsonCT}, tc.opts...)
			rec := do(t, h, "POST", "/api/v1/echo", body, opts...)
			if tc.errCode != "" {
				wantError(t, rec, tc.status, tc.errCode)
			} else {
				wantStatus(t, rec, tc.status)
			}
			if v := rec.Header().Values("Access-Control-Allow-Origin"); len(v) > 0 {
				t.Fatalf("CORS header sent: %v", v)
			}
		})
	}
	// Cross-site DELETE and PUT too; a cross-site public POST as well.
	wantError(t, do(t, h, "DELETE", "/api/v1/echo", "", authed, withHeader("Sec-Fetch-Site", "cross-site")), 403, "cross_origin")
	wantError(t, do(t, h, "PUT", "/api/v1/echo", "", authed, withHeader("Origin", "http://evil.com")), 403, "cross_origin")
	wantError(t, do(t, h, "POST", "/api/v1/public", "", withHeader("Sec-Fetch-Site", "cross-site")), 403, "cross_origin")
	// Safe methods pass the CSRF check (the token still guards them).
	wantStatus(t, do(t, h, "GET", "/api/v1/ping", "", authed, withHeader("Sec-Fetch-Site", "cross-site")), 200)
}

// TestMiddlewareOrder checks which layer answers when a request fails
// several: the outermost one.
func TestMiddlewareOrder(t *testing.T) {
	h := newTestServer(t, Options{MaxBodyBytes: 16}).Handler()
	big := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name   string
		method string
		path   string
		opts   []reqOpt
		status int
		code   string
	}{
		{"host before everything", "POST", "/api/v1/echo",
			[]reqOpt{withHost("evil.com"), withHeader("Sec-Fetch-Site", "cross-site")}, 403, "forbidden_host"},
		{"host before panic", "GET", "/api/v1/panic", []reqOpt{withHost("evil.com"), authed}, 403, "forbidden_host"},
		{"csrf before token", "POST", "/api/v1/echo", []reqOpt{withHeader("Sec-Fetch-Site", "cross-site")}, 403, "cross_origin"},
		{"token before size", "POST", "/api/v1/echo", []reqOpt{jsonCT}, 401, "unauthorized"},
		{"token before routing", "GET", "/api/v1/nope", nil, 401, "unauthorized"},
		{"token before 405", "PUT", "/api/v1/ping", nil, 401, "unauthorized"},
		{"size before routing", "POST", "/api/v1/nope", []reqOpt{authed, jsonCT}, 413, "too_large"},
		{"size before content type", "POST", "/api/v1/echo", []reqOpt{authed}, 413, "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, do(t, h, tc.method, tc.path, big, tc.opts...), tc.status, tc.code)
		})
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newTestServer(t, Options{}).Handler()
	for _, rec := range []*httptest.ResponseRecorder{
		do(t, h, "GET", "/api/v1/ping", "", authed),
		do(t, h, "GET", "/api/v1/ping", ""),
		do(t, h, "GET", "/api/v1/ping", "", withHost("evil.com")),
		do(t, h, "GET", "/api/v1/nope", "", authed),
		do(t, h, "GET", "/api/v1/panic", "", authed),
		do(t, h, "GET", "/healthz", "", withHeader("Origin", "http://evil.com")),
	} {
		if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("status %d: X-Content-Type-Options = %q", rec.Code, got)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("status %d: Cache-Control = %q", rec.Code, got)
		}
		for k := range rec.Header() {
			if strings.HasPrefix(strings.ToLower(k), "access-control-") {
				t.Errorf("status %d: CORS header %s sent", rec.Code, k)
			}
		}
	}
}

func TestBodyLimit(t *testing.T) {
	h := newTestServer(t, Options{MaxBodyBytes: 32}).Handler()
	fits := `{"name":"` + strings.Repeat("a", 21) + `"}` // 32 bytes
	if len(fits) != 32 {
		t.Fatalf("test body is %d bytes", len(fits))
	}
	wantStatus(t, do(t, h, "POST", "/api/v1/echo", fits, authed, jsonCT), 200)
	over := `{"name":"` + strings.Repeat("a", 22) + `"}`
	wantError(t, do(t, h, "POST", "/api/v1/echo", over, authed, jsonCT), 413, "too_large")

	// Without Content-Length (chunked) the limit is enforced while reading.
	chunked := func(r *http.Request) { r.ContentLength = -1 }
	wantError(t, do(t, h, "POST", "/api/v1/echo", over, authed, jsonCT, chunked), 413, "too_large")
	// A complete JSON value followed by padding over the limit is too large
	// too, not "trailing data".
	padded := fits[:len(fits)-2] + `"}` + strings.Repeat(" ", 40)
	wantError(t, do(t, h, "POST", "/api/v1/echo", padded, authed, jsonCT, chunked), 413, "too_large")

	// Default limit is 1 MiB.
	hd := newTestServer(t, Options{}).Handler()
	huge := `{"name":"` + strings.Repeat("a", 1<<20) + `"}`
	wantError(t, do(t, hd, "POST", "/api/v1/echo", huge, authed, jsonCT, chunked), 413, "too_large")
}

func TestDecodeJSONErrors(t *testing.T) {
	h := newTestServer(t, Options{}).Handler()
	for _, tc := range []struct {
		name, ct, body string
		status         int
		code, msgPart  string
	}{
		{"no content type", "", `{"name":"a"}`, 415, "unsupported_media_type", ""},
		{"text/plain", "text/plain", `{"name":"a"}`, 415, "unsupported_media_type", ""},
		{"form", "application/x-www-form-urlencoded", `name=a`, 415, "unsupported_media_type", ""},
		{"json-ish", "application/jsonx", `{"name":"a"}`, 415, "unsupported_media_type", ""},
		{"latin1", "application/json; charset=latin1", `{"name":"a"}`, 415, "unsupported_media_type", ""},
		{"unknown field", "application/json", `{"name":"a","extra":1}`, 400, "bad_request", `unknown field "extra"`},
		{"trailing object", "application/json", `{"name":"a"}{"name":"b"}`, 400, "bad_request", "after the JSON value"},
		{"trailing garbage", "application/json", `{"name":"a"} x`, 400, "bad_request", "after the JSON value"},
		{"empty", "application/json", ``, 400, "bad_request", "empty"},
		{"truncated", "application/json", `{"name":`, 400, "bad_request", ""},
		{"wrong type", "application/json", `{"name":5}`, 400, "bad_request", "name"},
		{"not an object", "application/json", `[1,2]`, 400, "bad_request", ""},
		{"syntax", "application/json", `{name:"a"}`, 400, "bad_request", "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := []reqOpt{authed}
			if tc.ct != "" {
				opts = append(opts, withHeader("Content-Type", tc.ct))
			}
			rec := do(t, h, "POST", "/api/v1/echo", tc.body, opts...)
			wantError(t, rec, tc.status, tc.code)
			var e map[string]map[string]string
			_ = json.Unmarshal(rec.Body.Bytes(), &e)
			if msg := e["error"]["message"]; !strings.Contains(msg, tc.msgPart) {
				t.Fatalf("message %q lacks %q", msg, tc.msgPart)
			}
		})
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"} {
		rec := do(t, h, "POST", "/api/v1/echo", " {\"name\":\"a\",\"count\":2}\n ", authed, withHeader("Content-Type", ct))
		wantStatus(t, rec, 200)
		if rec.Body.String() != "{\"name\":\"a\",\"count\":2}\n" {
			t.Fatalf("%s: echo = %q", ct, rec.Body.String())
		}
	}
}

func TestDecodeJSONOutsideServerIsLimited(t *testing.T) {
	// Called on a request that did not pass the middleware (no limit set),
	// DecodeJSON still applies the default limit.
	huge := `{"name":"` + strings.Repeat("a", int(DefaultMaxBodyBytes)) + `"}`
	req := httptest.NewRequest("POST", "/", strings.NewReader(huge))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	var v echoBody
	if DecodeJSON(rec, req, &v) {
		t.Fatal("DecodeJSON accepted a body over the default limit")
	}
	wantError(t, rec, 413, "too_large")

	// A non-pointer target is the handler's bug: 500, not 400.
	req = httptest.NewRequest("POST", "/", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	rec = httptest.NewRecorder()
	if DecodeJSON(rec, req, v) {
		t.Fatal("DecodeJSON into a non-pointer succeeded")
	}
	wantError(t, rec, 500, "internal")
}

func TestNotFoundAndMethodNotAllowedAreJSON(t *testing.T) {
	h := newTestServer(t, Options{}).Handler()
	wantError(t, do(t, h, "GET", "/api/v1/nope", "", authed), 404, "not_found")
	wantError(t, do(t, h, "GET", "/", "", authed), 404, "not_found")
	rec := do(t, h, "PUT", "/api/v1/echo", "", authed)
	wantError(t, rec, 405, "method_not_allowed")
	if allow := rec.Header().Get("Allow"); !strings.Contains(allow, "POST") || !strings.Contains(allow, "DELETE") {
		t.Fatalf("Allow = %q", allow)
	}
	wantError(t, do(t, h, "POST", "/api/v1/ping", "", authed), 405, "method_not_allowed")
	// HEAD on a GET route is served.
	wantStatus(t, do(t, h, "HEAD", "/api/v1/ping", "", authed), 200)
	// A registered route's own 404 passes through untouched.
	s := newTestServer(t, Options{})
	s.Handle("GET /api/v1/friends/{id}", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no_such_friend", "friend "+r.PathValue("id")+" not found")
	})
	rec = do(t, s.Handler(), "GET", "/api/v1/friends/bob", "", authed)
	wantError(t, rec, 404, "no_such_friend")
	if !strings.Contains(rec.Body.String(), "friend bob not found") {
		t.Fatalf("body = %q", rec.Body.String())
	}
}

func TestPanicRecovered(t *testing.T) {
	var logs syncBuffer
	s := newTestServer(t, Options{Log: newTestLogger(&logs)})
	h := s.Handler()
	wantError(t, do(t, h, "GET", "/api/v1/panic", "", authed), 500, "internal")
	if !strings.Contains(logs.String(), "Handler panicked") || !strings.Contains(logs.String(), "boom") {
		t.Fatalf("panic not logged: %s", logs.String())
	}
	wantStatus(t, do(t, h, "GET", "/api/v1/ping", "", authed), 200)

	// A panic after the response started cannot become a clean 500: the
	// connection is aborted instead, so the client sees an error, not a
	// truncated success.
	s.Handle("GET /api/v1/halfway", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"partial":`))
		_ = http.NewResponseController(w).Flush()
		panic("late boom")
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/halfway", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("reading a response whose handler panicked midway succeeded")
	}
}

func TestMetrics(t *testing.T) {
	wantError(t, do(t, newTestServer(t, Options{}).Handler(), "GET", "/metrics", "", authed), 404, "not_found")
	var nilReg *prometheus.Registry
	wantError(t, do(t, newTestServer(t, Options{Gatherer: nilReg}).Handler(), "GET", "/metrics", "", authed), 404, "not_found")

	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "madang_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	h := newTestServer(t, Options{Gatherer: reg}).Handler()
	wantError(t, do(t, h, "GET", "/metrics", ""), 401, "unauthorized")
	rec := do(t, h, "GET", "/metrics", "", authed)
	wantStatus(t, rec, 200)
	if !strings.Contains(rec.Body.String(), "madang_test_total 3") {
		t.Fatalf("metrics body = %q", rec.Body.String())
	}
	// The default registry's Go collector metrics must not leak in.
	if strings.Contains(rec.Body.String(), "go_goroutines") {
		t.Fatal("default gatherer used")
	}
}

func TestNonStreamingWriteDeadline(t *testing.T) {
	s := newTestServer(t, Options{})
	s.writeTimeout = 50 * time.Millisecond
	s.Handle("GET /api/v1/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond) // outlive the write deadline
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<20))
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/slow", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err == nil {
		n, rerr := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if rerr == nil && n == 1<<20 {
			t.Fatal("write after the per-request deadline succeeded")
		}
	}
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	WriteJSON(rec, http.StatusCreated, map[string]int{"a": 1})
	wantStatus(t, rec, 201)
	if rec.Header().Get("Content-Type") != "application/json" || rec.Body.String() != "{\"a\":1}\n" {
		t.Fatalf("got %q %q", rec.Header().Get("Content-Type"), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	WriteJSON(rec, http.StatusOK, func() {})
	wantError(t, rec, 500, "internal")
	rec = httptest.NewRecorder()
	WriteJSON(rec, http.StatusNoContent, map[string]int{"a": 1})
	if rec.Code != 204 || rec.Body.Len() != 0 {
		t.Fatalf("204 wrote %q", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	WriteError(rec, http.StatusConflict, "conflict", `a "quoted" <message>`)
	wantError(t, rec, 409, "conflict")
	var e map[string]map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["error"]["message"] != `a "quoted" <message>` {
		t.Fatalf("message round trip: %v %v", e, err)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"name":"a","count":1}`},
		{"application/json", `{"name":"a","extra":true}`},
		{"application/json", `{"name":"a"} {}`},
		{"application/json", `{"name":"a"`},
		{"application/json", ``},
		{"application/json", `null`},
		{"application/json", `[{"name":1}]`},
		{"application/json", "{\"name\":\"\xff\xfe\"}"},
		{"application/json", `{"count":1e999}`},
		{"application/json; charset=utf-8", `{"count":-1}`},
		{"text/plain", `{}`},
		{"", `{}`},
		{"application/json; charset", `{}`},
		{"application/json", strings.Repeat("[", 200)},
		{"application/json", `{"name":"` + strings.Repeat("a", 300) + `"}`},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		req := httptest.NewRequest("POST", "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		// Limit the body as the middleware would, small enough for fuzzing
		// to reach it.
		rec := httptest.NewRecorder()
		req.Body = http.MaxBytesReader(rec, req.Body, 256)
		req = req.WithContext(contextWithLimit(req, 256))
		var v echoBody
		ok := DecodeJSON(rec, req, &v)
		if ok {
			if rec.Body.Len() != 0 || rec.Code != 200 {
				t.Fatalf("success wrote a response: %d %q", rec.Code, rec.Body.String())
			}
			return
		}
		switch rec.Code {
		case 400, 413, 415:
		default:
			t.Fatalf("status %d for %q %q", rec.Code, ct, body)
		}
		errCode(t, rec.Header().Get("Content-Type"), rec.Body.Bytes())
	})
}
