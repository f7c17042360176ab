package contact

import (
	_ "embed"
	"errors"
	"net/http"
	"time"

	"github.com/madang-p2p/madang/api"
	"github.com/madang-p2p/madang/graph"
)

//go:embed openapi.yaml
var spec []byte

// FriendView is a contact as the API shows it.
type FriendView struct {
	AccountID string        `json:"account_id"`
	Name      string        `json:"name"`
	Alias     string        `json:"alias,omitempty"`
	State     string        `json:"state"`
	Favourite bool          `json:"favourite"`
	Profile   graph.Profile `json:"profile"`
	Devices   []string      `json:"devices"`
	Mailbox   bool          `json:"mailbox"`
	Created   time.Time     `json:"created"`
	Updated   time.Time     `json:"updated"`
}

// View converts a contact; a contact with an empty state was removed.
func View(c graph.Contact) FriendView {
	v := FriendView{
		AccountID: string(c.AccountID), Name: c.Name(), Alias: c.Alias, State: string(c.State), Favourite: c.Favourite,
		Profile: c.Profile, Devices: []string{}, Mailbox: len(c.MailboxCard) > 0, Created: c.Created, Updated: c.Updated,
	}
	if v.State == "" {
		v.State = "removed"
	}
	if v.Profile.DisplayName == "" {
		v.Profile.DisplayName = c.InviteName
	}
	for _, p := range c.PeerIDs() {
		v.Devices = append(v.Devices, p.String())
	}
	return v
}

// InviteView is an invite as the API shows it.
type InviteView struct {
	ID      string    `json:"id"`
	Link    string    `json:"link"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Used    int       `json:"used"`
	Live    bool      `json:"live"`
}

func inviteView(r graph.InviteRecord) InviteView {
	return InviteView{ID: r.ID, Link: r.Link, Created: r.Created, Expires: r.Expires, Uses: r.Uses, Used: r.Used, Live: r.Live(time.Now())}
}

// WriteError answers err with the matching status and code.
func WriteError(w http.ResponseWriter, err error) {
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, graph.ErrNotFound):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, graph.ErrAmbiguous):
		status, code = http.StatusConflict, "ambiguous"
	case errors.Is(err, graph.ErrInvalid):
		status, code = http.StatusBadRequest, "bad_request"
	case errors.Is(err, graph.ErrBadInvite):
		status, code = http.StatusBadRequest, "bad_invite"
	case errors.Is(err, graph.ErrInviteExpired):
		status, code = http.StatusGone, "invite_expired"
	case errors.Is(err, graph.ErrInviteUsed):
		status, code = http.StatusGone, "invite_used"
	case errors.Is(err, graph.ErrInviteUnknown):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, ErrOwnInvite):
		status, code = http.StatusBadRequest, "own_invite"
	case errors.Is(err, ErrBlocked):
		status, code = http.StatusConflict, "blocked"
	case errors.Is(err, ErrRefused):
		status, code = http.StatusForbidden, "refused"
	case errors.Is(err, ErrWrongState):
		status, code = http.StatusConflict, "wrong_state"
	}
	api.WriteError(w, status, code, err.Error())
}

// Resolve finds the contact named by the {friend} path value of r, answering an error itself on failure.
func (s *Service) Resolve(w http.ResponseWriter, r *http.Request) (graph.Contact, bool) {
	c, err := s.o.Graph.Resolve(r.Context(), r.PathValue("friend"))
	if err != nil {
		WriteError(w, err)
		return c, false
	}
	return c, true
}

// RegisterAPI adds the profile, invite and friend routes and their spec.
func (s *Service) RegisterAPI(srv *api.Server) error {
	if err := srv.AddSpec(spec); err != nil {
		return err
	}
	srv.Handle("GET /api/v1/profile", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, s.o.Graph.Profile())
	})
	srv.Handle("PUT /api/v1/profile", func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			DisplayName string   `json:"display_name"`
			Status      string   `json:"status"`
			Tags        []string `json:"tags"`
			Avatar      string   `json:"avatar"`
		}
		if !api.DecodeJSON(w, r, &p) {
			return
		}
		out, err := s.SetProfile(graph.Profile{DisplayName: p.DisplayName, Status: p.Status, Tags: p.Tags, Avatar: p.Avatar})
		if err != nil {
			WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, out)
	})
	srv.Handle("GET /api/v1/invites", func(w http.ResponseWriter, r *http.Request) {
		all, err := s.o.Graph.Invites(r.Context(), r.URL.Query().Get("all") != "true")
		if err != nil {
			WriteError(w, err)
			return
		}
		out := []InviteView{}
		for _, rec := range all {
			out = append(out, inviteView(rec))
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"invites": out})
	})
	srv.Handle("POST /api/v1/invites", func(w http.ResponseWriter, r *http.Request) {
		req := struct {
			Expires string `json:"expires"`
			Uses    int    `json:"uses"`
		}{Uses: 1}
		if r.ContentLength != 0 && !api.DecodeJSON(w, r, &req) {
			return
		}
		ttl, err := s.o.InviteTTL, error(nil)
		if req.Expires != "" {
			ttl, err = time.ParseDuration(req.Expires)
		}
		if err != nil {
			api.WriteError(w, http.StatusBadRequest, "bad_request", "expires must be a duration such as 24h or 30m")
			return
		}
		rec, err := s.CreateInvite(ttl, req.Uses)
		if err != nil {
			WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusCreated, inviteView(rec))
	})
	srv.Handle("DELETE /api/v1/invites/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.o.Graph.RevokeInvite(r.PathValue("id")); err != nil {
			WriteError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv.Handle("POST /api/v1/invites:accept", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Link string `json:"link"`
		}
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		c, err := s.AcceptInvite(r.Context(), req.Link)
		if err != nil {
			WriteError(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, View(c))
	})
	srv.Handle("GET /api/v1/friends", func(w http.ResponseWriter, r *http.Request) {
		var states []graph.State
		if st := r.URL.Query().Get("state"); st != "" {
			states = append(states, graph.State(st))
		}
		all, err := s.o.Graph.Contacts(r.Context(), states...)
		if err != nil {
			WriteError(w, err)
			return
		}
		out := []FriendView{}
		for _, c := range all {
			out = append(out, View(c))
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"friends": out})
	})
	srv.Handle("GET /api/v1/friends/{friend}", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := s.Resolve(w, r); ok {
			api.WriteJSON(w, http.StatusOK, View(c))
		}
	})
	srv.Handle("DELETE /api/v1/friends/{friend}", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := s.Resolve(w, r); ok {
			if err := s.Remove(r.Context(), c.AccountID); err != nil {
				WriteError(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	srv.Handle("POST /api/v1/friends/{friend}/decline", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := s.Resolve(w, r); ok {
			if err := s.Decline(r.Context(), c.AccountID); err != nil {
				WriteError(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	})
	actions := map[string]func(http.ResponseWriter, *http.Request, graph.Contact) (graph.Contact, error){
		"POST /api/v1/friends/{friend}/accept": func(_ http.ResponseWriter, r *http.Request, c graph.Contact) (graph.Contact, error) {
			return s.AcceptRequest(r.Context(), c.AccountID)
		},
		"POST /api/v1/friends/{friend}/block": func(_ http.ResponseWriter, r *http.Request, c graph.Contact) (graph.Contact, error) {
			return s.Block(r.Context(), c.AccountID)
		},
		"POST /api/v1/friends/{friend}/unblock": func(_ http.ResponseWriter, r *http.Request, c graph.Contact) (graph.Contact, error) {
			return s.Unblock(r.Context(), c.AccountID)
		},
	}
	for pattern, act := range actions {
		srv.Handle(pattern, func(w http.ResponseWriter, r *http.Request) {
			if c, ok := s.Resolve(w, r); ok {
				c, err := act(w, r, c)
				s.answer(w, c, err)
			}
		})
	}
	srv.Handle("PUT /api/v1/friends/{friend}/alias", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Alias string `json:"alias"`
		}
		if c, ok := s.Resolve(w, r); ok && api.DecodeJSON(w, r, &req) {
			c, err := s.SetAlias(r.Context(), c.AccountID, req.Alias)
			s.answer(w, c, err)
		}
	})
	srv.Handle("PUT /api/v1/friends/{friend}/favourite", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Favourite bool `json:"favourite"`
		}
		if c, ok := s.Resolve(w, r); ok && api.DecodeJSON(w, r, &req) {
			c, err := s.SetFavourite(r.Context(), c.AccountID, req.Favourite)
			s.answer(w, c, err)
		}
	})
	return nil
}

func (s *Service) answer(w http.ResponseWriter, c graph.Contact, err error) {
	if err != nil {
		WriteError(w, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, View(c))
}
