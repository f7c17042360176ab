package api

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// bodyLimitKey marks a request whose body the middleware already limited.
type bodyLimitKey struct{}

// serveHTTP is the whole middleware chain, in this order:
//
//  1. recover panics → 500 JSON (security headers are set first, so every
//     response carries them);
//  2. Host allowlist → 403 forbidden_host (DNS rebinding);
//  3. cross-origin protection → 403 cross_origin (CSRF);
//  4. bearer token unless the matched route is public → 401 unauthorized
//     (unknown routes need the token too, so they reveal nothing);
//  5. body size limit → 413 too_large;
//  6. routing, with the mux's 404/405 answers rewritten as JSON.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w}
	var pattern string
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.log.Error("Handler panicked", "method", r.Method, "pattern", pattern, "panic", v, "stack", string(debug.Stack()))
			if rw.wroteHeader {
				// Too late for a clean error: abort the connection so the
				// client sees a broken response rather than a short one.
				panic(http.ErrAbortHandler)
			}
			WriteError(rw, http.StatusInternalServerError, "internal", "internal server error")
		}
		s.log.Debug("Request", "method", r.Method, "pattern", pattern, "status", cmp.Or(rw.status, http.StatusOK), "duration", time.Since(start))
	}()

	h := rw.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")

	if !s.hostAllowed(r) {
		WriteError(rw, http.StatusForbidden, "forbidden_host", "Host header not allowed")
		return
	}
	if err := s.cop.Check(r); err != nil {
		WriteError(rw, http.StatusForbidden, "cross_origin", "cross-origin request refused")
		return
	}
	mux := s.routing()
	_, pattern = mux.Handler(r)
	if !s.isPublic(pattern) && !s.authorized(r) {
		h.Set("WWW-Authenticate", "Bearer")
		WriteError(rw, http.StatusUnauthorized, "unauthorized", "missing or invalid bearer token")
		return
	}
	if r.ContentLength > s.maxBody {
		h.Set("Connection", "close")
		WriteError(rw, http.StatusRequestEntityTooLarge, "too_large", "request body too large")
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(rw, r.Body, s.maxBody)
	}
	r = r.WithContext(context.WithValue(r.Context(), bodyLimitKey{}, s.maxBody))
	// Streaming handlers clear this deadline themselves.
	_ = http.NewResponseController(rw).SetWriteDeadline(time.Now().Add(s.writeTimeout))
	if pattern == "" {
		rw.jsonErrors = true // the mux will answer 404 or 405
	}
	mux.ServeHTTP(rw, r)
}

func (s *Server) isPublic(pattern string) bool {
	if pattern == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.public[pattern]
}

// authorized reports whether r carries the configured bearer token. The
// comparison is of SHA-256 digests in constant time, so neither the token's
// content nor its length leaks through timing.
func (s *Server) authorized(r *http.Request) bool {
	if s.tokenHash == nil {
		return false
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// hostAllowed implements the DNS-rebinding defence: the Host header must name
// the loopback interface (or an AllowedHosts entry), optionally with the port
// the request arrived on or the port Serve is bound to.
func (s *Server) hostAllowed(r *http.Request) bool {
	host := strings.ToLower(r.Host)
	if host == "" {
		return false
	}
	if s.allowedHosts[host] {
		return true
	}
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
		if strings.Contains(name, ":") {
			name = "[" + name + "]" // IPv6 literal; compare in bracketed form
		}
	}
	switch name {
	case "localhost", "127.0.0.1", "[::1]":
	default:
		if !s.allowedHosts[name] {
			return false
		}
	}
	return port == "" || s.portAllowed(r, port)
}

func (s *Server) portAllowed(r *http.Request, port string) bool {
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return false
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(a.String()); err == nil && p == port {
			return true
		}
	}
	if _, p, err := net.SplitHostPort(s.Addr()); err == nil && p == port {
		return true
	}
	return false
}

// responseWriter records whether and with what status the response was
// started, and for unrouted requests turns the mux's plain-text 404/405
// answers into JSON errors. It unwraps for http.ResponseController.
type responseWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	jsonErrors  bool
	swallow     bool // the mux's plain-text body is being replaced
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 100 && code < 200 {
		w.ResponseWriter.WriteHeader(code) // informational: not final
		return
	}
	if w.jsonErrors && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.jsonErrors = false
		if code == http.StatusNotFound {
			WriteError(w, code, "not_found", "no such route")
		} else {
			WriteError(w, code, "method_not_allowed", "method not allowed on this route")
		}
		w.swallow = true
		return
	}
	w.wroteHeader = true
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.swallow {
		return len(p), nil
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// FlushError flushes the underlying writer; http.ResponseController.Flush
// uses it, so write errors reach streaming handlers.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush lets handlers that type-assert http.Flusher keep working.
func (w *responseWriter) Flush() { _ = w.FlushError() }

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
