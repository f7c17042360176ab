// Package api is the local HTTP API server of a Madang node.
//
// It listens on loopback only and is hardened against the browser: Host
// headers other than the loopback names are refused (DNS rebinding),
// cross-site state-changing requests are refused (CSRF), every non-public
// route needs the bearer token, bodies are size-limited and no CORS headers
// are ever sent. Features register their routes with [Server.Handle] and
// document them with [Server.AddSpec]; [Server.CheckSpec] keeps the two in
// step.
package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/madang-p2p/madang/events"
)

// Server timeouts. WriteTimeout is deliberately 0 on the http.Server so that
// event streams can stay open; non-streaming requests get a per-request write
// deadline of defaultWriteTimeout instead.
const (
	readHeaderTimeout   = 5 * time.Second
	readTimeout         = 30 * time.Second
	idleTimeout         = 120 * time.Second
	defaultWriteTimeout = 30 * time.Second
	shutdownTimeout     = 5 * time.Second
	maxHeaderBytes      = 64 << 10
	heartbeatInterval   = 15 * time.Second
)

// Options configures a Server.
type Options struct {
	// Token is the bearer token required on every non-public route. An empty
	// token refuses every non-public request.
	Token string
	// Log receives the server's own log lines; nil discards them.
	Log *slog.Logger
	// Events backs GET /api/v1/events; nil makes that route answer 503.
	Events *events.Bus
	// Gatherer backs GET /metrics; nil makes that route answer 404
	// (prometheus.DefaultGatherer is never used implicitly).
	Gatherer prometheus.Gatherer
	// AllowedHosts are extra Host header values accepted besides localhost,
	// 127.0.0.1 and [::1], each with or without the bound port.
	AllowedHosts []string
	// MaxBodyBytes limits request bodies (DefaultMaxBodyBytes if <= 0).
	MaxBodyBytes int64
}

// registration is one Handle call.
type registration struct {
	route   Route
	pattern string
	h       http.HandlerFunc
	public  bool
}

// Route is a registered route: an HTTP method and a path in OpenAPI form
// ("/api/v1/friends/{id}").
type Route struct {
	Method string
	Path   string
}

func (r Route) String() string { return r.Method + " " + r.Path }

// Server is the local API server. Create it with New, register routes, then
// call Serve (or use Handler with httptest).
type Server struct {
	log          *slog.Logger
	tokenHash    *[sha256.Size]byte // nil: no token configured, refuse all
	bus          *events.Bus
	metrics      http.Handler // nil if no Gatherer
	allowedHosts map[string]bool
	maxBody      int64
	cop          *http.CrossOriginProtection
	handler      http.Handler

	// Adjustable by tests in this package.
	writeTimeout time.Duration
	readTimeout  time.Duration
	heartbeat    time.Duration

	mu     sync.Mutex
	regs   []registration
	public map[string]bool // public patterns; built with mux
	spec   *specDoc

	// mux routes requests. It is built from regs on first use (Handler, Serve
	// or CheckSpec), so that a node that never serves its API (one of hundreds
	// in a simulation) keeps only the registrations; routes registered later
	// go straight into it.
	mux atomic.Pointer[http.ServeMux]

	serving  atomic.Bool
	addr     atomic.Pointer[string]
	stopOnce sync.Once
	stop     chan struct{} // closed when Serve begins shutting down: ends streams
}

// New returns a Server with the built-in routes registered: GET /healthz and
// GET /api/v1/openapi.yaml (public), GET /api/v1/events and GET /metrics.
func New(opts Options) *Server {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "api")
	sp, err := baseDoc()
	if err != nil {
		panic(fmt.Sprintf("api: embedded openapi.yaml: %v", err)) // covered by tests
	}
	s := &Server{
		log:          log,
		bus:          opts.Events,
		allowedHosts: map[string]bool{},
		maxBody:      opts.MaxBodyBytes,
		cop:          http.NewCrossOriginProtection(),
		writeTimeout: defaultWriteTimeout,
		readTimeout:  readTimeout,
		heartbeat:    heartbeatInterval,
		spec:         sp,
		stop:         make(chan struct{}),
	}
	if opts.Token != "" {
		h := sha256.Sum256([]byte(opts.Token))
		s.tokenHash = &h
	} else {
		log.Warn("No API token configured, refusing all authenticated routes")
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	for _, h := range opts.AllowedHosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			s.allowedHosts[h] = true
		}
	}
	if !isNil(opts.Gatherer) {
		s.metrics = promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		})
	}
	s.handler = http.HandlerFunc(s.serveHTTP)

	s.HandlePublic("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.HandlePublic("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(s.Spec())
	})
	s.Handle("GET /api/v1/events", s.serveEvents)
	s.Handle("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		if s.metrics == nil {
			WriteError(w, http.StatusNotFound, "not_found", "metrics are not enabled")
			return
		}
		s.metrics.ServeHTTP(w, r)
	})
	return s
}

// Handle registers h for a Go ServeMux pattern that names a method, e.g.
// "GET /api/v1/friends/{id}". The route requires the bearer token. It panics
// on a malformed pattern, on a pattern without a method or with a host, and
// on a duplicate registration (also one that differs only in wildcard names).
// Patterns that overlap without either being more specific (ServeMux's
// conflict rule) make Handler panic and Serve and CheckSpec fail, or panic
// here once the server is in use.
func (s *Server) Handle(pattern string, h http.HandlerFunc) { s.handle(pattern, h, false) }

// HandlePublic is Handle for routes that need no token. They are still
// subject to the Host allowlist and cross-origin protection, and must be
// documented with `security: []` in the spec.
func (s *Server) HandlePublic(pattern string, h http.HandlerFunc) { s.handle(pattern, h, true) }

func (s *Server) handle(pattern string, h http.HandlerFunc, public bool) {
	if h == nil {
		panic("api: nil handler for " + pattern)
	}
	rt, err := patternRoute(pattern)
	if err != nil {
		panic("api: " + err.Error())
	}
	// The pattern alone, checked by a throwaway mux: it panics on bad syntax.
	http.NewServeMux().Handle(pattern, h)
	shape := rt.shape()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.regs {
		if r.route.shape() == shape {
			panic(fmt.Sprintf("api: duplicate route %s (pattern %q, registered as %q)", rt, pattern, r.pattern))
		}
	}
	if m := s.mux.Load(); m != nil {
		m.Handle(pattern, h) // panics on conflicting patterns
		if public {
			s.public[pattern] = true
		}
	}
	s.regs = append(s.regs, registration{route: rt, pattern: pattern, h: h, public: public})
}

// shape is the route with its wildcard names erased: two routes of the same
// shape match the same requests.
func (r Route) shape() string {
	if !strings.Contains(r.Path, "{") {
		return r.String()
	}
	segs := strings.Split(r.Path, "/")
	for i, seg := range segs {
		if strings.HasPrefix(seg, "{") {
			segs[i] = "{}"
		}
	}
	return r.Method + " " + strings.Join(segs, "/")
}

// routing returns the mux, building it from the registrations on first use.
// It panics on conflicting patterns, as http.ServeMux does.
func (s *Server) routing() *http.ServeMux {
	if m := s.mux.Load(); m != nil {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.mux.Load(); m != nil {
		return m
	}
	m := http.NewServeMux()
	public := map[string]bool{}
	for _, r := range s.regs {
		m.Handle(r.pattern, r.h)
		if r.public {
			public[r.pattern] = true
		}
	}
	s.public = public
	s.mux.Store(m)
	return m
}

// buildRouting is routing with the conflict panic as an error.
func (s *Server) buildRouting() (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("routes conflict: %v", v)
		}
	}()
	s.routing()
	return nil
}

// patternRoute converts "GET /a/{id}/{rest...}" to {GET /a/{id}/{rest}}.
func patternRoute(pattern string) (Route, error) {
	method, path, ok := strings.Cut(strings.TrimSpace(pattern), " ")
	path = strings.TrimLeft(path, " \t")
	if !ok || method == "" {
		return Route{}, fmt.Errorf("pattern %q must start with a method, e.g. \"GET /api/v1/x\"", pattern)
	}
	if !slices.Contains(operationMethods, strings.ToLower(method)) || method != strings.ToUpper(method) {
		return Route{}, fmt.Errorf("pattern %q: unsupported method %q", pattern, method)
	}
	if !strings.HasPrefix(path, "/") {
		return Route{}, fmt.Errorf("pattern %q: path must start with / (no host patterns)", pattern)
	}
	if !strings.Contains(path, "{$}") && !strings.Contains(path, "...}") {
		return Route{Method: method, Path: path}, nil // shares the pattern's bytes
	}
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if seg == "{$}" && i == len(segs)-1 {
			segs[i] = ""
			continue
		}
		if name, ok := strings.CutSuffix(seg, "...}"); ok && strings.HasPrefix(name, "{") {
			segs[i] = name + "}"
		}
	}
	return Route{Method: method, Path: strings.Join(segs, "/")}, nil
}

// Routes returns every registered route, sorted by path then method.
func (s *Server) Routes() []Route {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Route, 0, len(s.regs))
	for _, r := range s.regs {
		out = append(out, r.route)
	}
	slices.SortFunc(out, func(a, b Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return out
}

// AddSpec merges an OpenAPI 3.0 YAML fragment into the served document. The
// fragment may contain `paths`, `components` (schemas, responses, parameters,
// …) and `tags`; `openapi` and `info` are accepted and ignored. Documenting a
// path+method twice, or defining a component twice with different content,
// is an error, and then nothing of the fragment is merged.
func (s *Server) AddSpec(fragment []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := s.spec.merge(fragment)
	if err != nil {
		return fmt.Errorf("api: add spec: %w", err)
	}
	s.spec = d
	return nil
}

// Spec returns the merged OpenAPI document as YAML.
func (s *Server) Spec() []byte {
	s.mu.Lock()
	d := s.spec
	s.mu.Unlock()
	return slices.Clone(d.marshal())
}

// CheckSpec reports, as one joined error, every registered route that the
// spec does not document, every documented operation that is not
// registered, every public route not marked `security: []` (and every token
// route that is), every local $ref that does not resolve, and routes whose
// patterns conflict. Call it in a test after registering all features.
func (s *Server) CheckSpec() error {
	var errs []error
	if err := s.buildRouting(); err != nil {
		errs = append(errs, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := s.spec.operations()
	registered := make(map[Route]bool, len(s.regs))
	for _, r := range s.regs {
		rt, public := r.route, r.public
		registered[rt] = true
		op, ok := ops[rt]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: registered but not documented in the spec", rt))
			continue
		}
		sec, hasSec := op["security"].([]any)
		openOp := hasSec && len(sec) == 0
		switch {
		case public && !openOp:
			errs = append(errs, fmt.Errorf("%s: public route must be documented with `security: []`", rt))
		case !public && openOp:
			errs = append(errs, fmt.Errorf("%s: route requires the token but is documented with `security: []`", rt))
		}
	}
	for rt := range ops {
		if !registered[rt] {
			errs = append(errs, fmt.Errorf("%s: documented in the spec but not registered", rt))
		}
	}
	for _, ref := range s.spec.danglingRefs() {
		errs = append(errs, fmt.Errorf("$ref %q does not resolve", ref))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("api: spec and routes disagree:\n%w", errors.Join(sortErrors(errs)...))
}

// Handler returns the server's complete handler, middleware included. It
// panics if registered patterns conflict.
func (s *Server) Handler() http.Handler {
	s.routing()
	return s.handler
}

// Addr returns the address Serve is listening on, or "" before Serve.
func (s *Server) Addr() string {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Serve serves on ln until ctx is done, then ends open event streams and
// shuts down gracefully, waiting at most 5 s for in-flight requests. It
// returns nil after a clean shutdown. ln must be a loopback (or unix)
// listener. Serve may be called once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := checkLoopback(ln.Addr()); err != nil {
		return fmt.Errorf("api: serve: %w", err)
	}
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("api: serve: already serving")
	}
	if err := s.buildRouting(); err != nil {
		return fmt.Errorf("api: serve: %w", err)
	}
	addr := ln.Addr().String()
	s.addr.Store(&addr)

	base := context.WithoutCancel(ctx)
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       s.readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.stopStreams)
	s.log.Info("Serving local API", "addr", addr)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		s.stopStreams()
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	s.stopStreams()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}

// isNil reports whether v is nil or a nil pointer in an interface (a nil
// *prometheus.Registry passed as a Gatherer).
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func (s *Server) stopStreams() { s.stopOnce.Do(func() { close(s.stop) }) }

func checkLoopback(a net.Addr) error {
	switch a := a.(type) {
	case *net.UnixAddr:
		return nil
	case *net.TCPAddr:
		if a.IP.IsLoopback() {
			return nil
		}
	default:
		if host, _, err := net.SplitHostPort(a.String()); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				return nil
			}
		}
	}
	return fmt.Errorf("refusing to serve on non-loopback address %s", a)
}
