package dm

import (
	_ "embed"
	"errors"
	"net/http"
	"strconv"

	"github.com/madang-p2p/madang/api"
	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/contact"
	"github.com/madang-p2p/madang/store"
)

//go:embed openapi.yaml
var spec []byte

func writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFriend):
		api.WriteError(w, http.StatusConflict, "not_friend", err.Error())
	case errors.Is(err, ErrConflict):
		api.WriteError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrNoKeys):
		api.WriteError(w, http.StatusConflict, "no_keys", err.Error())
	case errors.Is(err, ErrInvalid):
		api.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, store.ErrNotFound):
		api.WriteError(w, http.StatusNotFound, "not_found", "no such message")
	default:
		contact.WriteError(w, err)
	}
}

// conversation resolves the {friend} path value: a contact's alias, unique display name or account ID, or the
// account ID of someone no longer in the graph (their history stays readable).
func (s *Service) conversation(w http.ResponseWriter, r *http.Request) (identity.AccountID, bool) {
	q := r.PathValue("friend")
	c, err := s.o.Graph.Resolve(r.Context(), q)
	if err == nil {
		return c.AccountID, true
	}
	if errors.Is(err, graph.ErrNotFound) {
		if _, perr := identity.ParseAccountID(q); perr == nil {
			return identity.AccountID(q), true
		}
	}
	writeError(w, err)
	return "", false
}

// RegisterAPI adds the conversation routes and their spec.
func (s *Service) RegisterAPI(srv *api.Server) error {
	if err := srv.AddSpec(spec); err != nil {
		return err
	}
	srv.Handle("GET /api/v1/conversations", func(w http.ResponseWriter, r *http.Request) {
		cs, err := s.Conversations(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"conversations": cs})
	})
	srv.Handle("GET /api/v1/conversations/{friend}/messages", func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.conversation(w, r)
		if !ok {
			return
		}
		limit := 50
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				api.WriteError(w, http.StatusBadRequest, "bad_request", "limit must be 1–1000")
				return
			}
			limit = n
		}
		msgs, next, err := s.History(r.Context(), a, r.URL.Query().Get("before"), limit)
		if err != nil {
			writeError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"messages": msgs, "next": next})
	})
	srv.Handle("POST /api/v1/conversations/{friend}/messages", func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.conversation(w, r)
		if !ok {
			return
		}
		var req struct {
			ID   string `json:"id"`
			Text string `json:"text"`
		}
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		m, err := s.Send(r.Context(), a, req.ID, req.Text)
		if err != nil {
			writeError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusAccepted, m)
	})
	srv.Handle("GET /api/v1/conversations/{friend}/messages/{id}", func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.conversation(w, r)
		if !ok {
			return
		}
		m, err := s.Message(a, "", r.PathValue("id"))
		if errors.Is(err, store.ErrNotFound) {
			m, err = s.Message(a, a, r.PathValue("id"))
		}
		if err != nil {
			writeError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, m)
	})
	srv.Handle("POST /api/v1/conversations/{friend}/read", func(w http.ResponseWriter, r *http.Request) {
		a, ok := s.conversation(w, r)
		if !ok {
			return
		}
		var req struct {
			UpTo string `json:"up_to"`
		}
		if r.ContentLength != 0 && !api.DecodeJSON(w, r, &req) {
			return
		}
		n, err := s.MarkRead(r.Context(), a, req.UpTo)
		if err != nil {
			writeError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]int{"read": n})
	})
	return nil
}
