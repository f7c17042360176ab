package api

import (
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
)

// secondFragment documents a route no other fragment in these tests has.
const secondFragment = `
paths:
  /api/v1/second:
    get:
      responses: {"200": {description: ok}}
`

func specServer(t *testing.T, frags ...string) *Server {
	t.Helper()
	s := New(Options{Token: testToken})
	for _, f := range frags {
		if err := s.AddSpec([]byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// Servers that add the same fragments in the same order share one merged
// document, and one server's later AddSpec (failed or not) never shows in
// another's document.
func TestSpecSharedAndIsolated(t *testing.T) {
	a := specServer(t, friendsFragment)
	b := specServer(t, friendsFragment)
	if a.spec != b.spec {
		t.Fatal("two servers with the same fragments hold different documents")
	}
	before := string(a.Spec())
	if !strings.Contains(before, "listFriends") {
		t.Fatal("merged document lacks the fragment")
	}

	if err := b.AddSpec([]byte("paths:\n  /api/v1/friends:\n    get:\n      responses: {}\n")); err == nil {
		t.Fatal("duplicate operation accepted")
	}
	if err := b.AddSpec([]byte(secondFragment)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b.Spec()), "/api/v1/second") {
		t.Fatal("b lacks its own fragment")
	}
	if got := string(a.Spec()); got != before {
		t.Fatal("b's AddSpec changed a's document")
	}
	// A third server on the same path reaches b's document.
	c := specServer(t, friendsFragment, secondFragment)
	if c.spec != b.spec {
		t.Fatal("c did not pick up the shared document")
	}
	// Order matters: the other order is another document (same content).
	d := specServer(t, secondFragment, friendsFragment)
	if d.spec == b.spec || string(d.Spec()) != string(b.Spec()) {
		t.Fatal("merging in the other order gave a shared or different document")
	}
	// The base document itself is never changed.
	if strings.Contains(string(New(Options{}).Spec()), "listFriends") {
		t.Fatal("the base document was modified")
	}
}

// Documents nobody uses any more are collected; merging again rebuilds them.
func TestSpecRebuiltAfterCollection(t *testing.T) {
	want := string(specServer(t, friendsFragment, secondFragment).Spec())
	for range 3 {
		runtime.GC()
	}
	s := specServer(t, friendsFragment, secondFragment)
	if got := string(s.Spec()); got != want {
		t.Fatalf("rebuilt document differs:\n%s\nwant\n%s", got, want)
	}
	s.Handle("GET /api/v1/friends", noop)
	s.Handle("GET /api/v1/friends/{id}", noop)
	s.Handle("GET /api/v1/second", noop)
	if err := s.CheckSpec(); err != nil {
		t.Fatal(err)
	}
}

// Routes registered after the handler is in use are served too.
func TestLateRoutesServed(t *testing.T) {
	s := New(Options{Token: testToken})
	h := s.Handler()
	wantStatus(t, do(t, h, "GET", "/healthz", ""), http.StatusOK)
	wantError(t, do(t, h, "GET", "/api/v1/late", "", authed), http.StatusNotFound, "not_found")
	s.Handle("GET /api/v1/late", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"late": "yes"})
	})
	s.HandlePublic("GET /api/v1/late-public", noop)
	wantStatus(t, do(t, h, "GET", "/api/v1/late", "", authed), http.StatusOK)
	wantError(t, do(t, h, "GET", "/api/v1/late", ""), http.StatusUnauthorized, "unauthorized")
	wantStatus(t, do(t, h, "GET", "/api/v1/late-public", ""), http.StatusOK)
	s.Handle("GET /api/v1/{x}", noop)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("conflicting late route: no panic")
			}
		}()
		s.Handle("GET /{y}/v1/late", noop) // /api/v1/late-ish paths match both
	}()
	wantStatus(t, do(t, h, "GET", "/api/v1/late", "", authed), http.StatusOK)
}

// Patterns that overlap without either being more specific are reported by
// CheckSpec and refused by Serve and Handler, even though the mux is built
// lazily.
func TestConflictingPatternsReported(t *testing.T) {
	s := New(Options{Token: testToken})
	s.Handle("GET /api/v1/a/{x}/b", noop)
	s.Handle("GET /api/v1/a/c/{y}", noop) // conflicts: /api/v1/a/c/b matches both
	err := s.CheckSpec()
	if err == nil || !strings.Contains(err.Error(), "routes conflict") {
		t.Fatalf("CheckSpec = %v, want a routes conflict", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := s.Serve(t.Context(), ln); err == nil || !strings.Contains(err.Error(), "routes conflict") {
		t.Fatalf("Serve = %v, want a routes conflict", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Handler: no panic")
		}
	}()
	s.Handler()
}

// Malformed patterns still panic at Handle, before any mux is built.
func TestMalformedPatternPanicsAtHandle(t *testing.T) {
	s := New(Options{Token: testToken})
	for _, bad := range []string{"GET /api/v1/{x", "GET /api/v1/{x}/{x}", "GET /api/v1/{$}/x", "GET /api/v1/{a...}/b"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%q): no panic", bad)
				}
			}()
			s.Handle(bad, noop)
		}()
	}
	if got := len(s.Routes()); got != 4 {
		t.Fatalf("%d routes after failed registrations, want the 4 built-ins", got)
	}
}

// A node's API server costs little when many are built in one process (a
// simulation): the parsed spec is shared and no mux is built until used.
func TestServerHeapPerInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("heap measurement")
	}
	build := func() *Server {
		s := specServer(t, friendsFragment, secondFragment)
		s.Handle("GET /api/v1/friends", noop)
		s.Handle("GET /api/v1/friends/{id}", noop)
		s.Handle("GET /api/v1/second", noop)
		return s
	}
	build() // parse and share the fragments once
	const n = 200
	servers := make([]*Server, 0, n)
	before := heapAlloc()
	for range n {
		servers = append(servers, build())
	}
	per := float64(heapAlloc()-min(heapAlloc(), before)) / n
	runtime.KeepAlive(servers)
	t.Logf("%.0f bytes per server", per)
	// Each server keeps its options, middleware state and 7 registrations,
	// not its own parse of the spec (≈ 50 KiB here) or a mux (≈ 4 KiB).
	if per > 8<<10 {
		t.Fatalf("%.0f bytes per server, want ≤ 8 KiB", per)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
