package room

import (
	_ "embed"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"

	"github.com/madang-p2p/madang/api"
	"github.com/madang-p2p/madang/identity"
)

//go:embed openapi.yaml
var apiSpec []byte

// RegisterAPI adds the rooms routes (/api/v1/rooms…, /api/v1/directory/rooms) and their spec.
func (s *Service) RegisterAPI(a *api.Server) error {
	if err := a.AddSpec(apiSpec); err != nil {
		return err
	}
	a.Handle("GET /api/v1/rooms", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"rooms": s.Rooms()})
	})
	a.Handle("POST /api/v1/rooms", s.handleCreate)
	a.Handle("POST /api/v1/rooms/join", s.handleJoin)
	a.Handle("POST /api/v1/rooms/reveal/verify", s.handleVerifyReveal)
	a.Handle("GET /api/v1/rooms/{id}", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		in, err := s.Room(id)
		reply(w, in, err)
	}))
	a.Handle("POST /api/v1/rooms/{id}/leave", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		if err := s.Leave(r.Context(), id); err != nil {
			writeErr(w, err)
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"room_id": id.String(), "status": "left"})
	}))
	a.Handle("GET /api/v1/rooms/{id}/messages", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		msgs, err := s.Messages(r.Context(), id, limit, r.URL.Query().Get("before"))
		reply(w, map[string]any{"messages": msgs}, err)
	}))
	a.Handle("POST /api/v1/rooms/{id}/messages", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		var req struct {
			Text    string `json:"text"`
			ReplyTo string `json:"reply_to"`
		}
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		v, published, err := s.Send(r.Context(), id, req.Text, req.ReplyTo)
		if err != nil {
			writeErr(w, err)
			return
		}
		api.WriteJSON(w, http.StatusCreated, map[string]any{"message": v, "published": published})
	}))
	a.Handle("GET /api/v1/rooms/{id}/members", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		ms, err := s.Members(id)
		reply(w, map[string]any{"members": ms}, err)
	}))
	a.Handle("GET /api/v1/rooms/{id}/link", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		l, err := s.Link(id)
		reply(w, map[string]string{"room_id": id.String(), "link": l}, err)
	}))
	a.Handle("GET /api/v1/rooms/{id}/moderation", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		log, err := s.ModLog(id)
		reply(w, map[string]any{"entries": log}, err)
	}))
	a.Handle("POST /api/v1/rooms/{id}/moderation", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		var req Action
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		res, err := s.Moderate(r.Context(), id, req)
		reply(w, res, err)
	}))
	a.Handle("GET /api/v1/rooms/{id}/reveal", s.withRoom(func(w http.ResponseWriter, r *http.Request, id ID) {
		p, err := s.Reveal(id)
		reply(w, map[string]string{"proof": base64.RawURLEncoding.EncodeToString(p)}, err)
	}))
	a.Handle("GET /api/v1/directory/rooms", s.handleSearch)
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeErr(w, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, v)
}

func writeErr(w http.ResponseWriter, err error) {
	status, code := errStatus(err)
	api.WriteError(w, status, code, err.Error())
}

func (s *Service) withRoom(h func(http.ResponseWriter, *http.Request, ID)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := ParseID(r.PathValue("id"))
		if err != nil {
			writeErr(w, err)
			return
		}
		h(w, r, id)
	}
}

type createRequest struct {
	Name            string   `json:"name"`
	Description     string   `json:"description"`
	Tags            []string `json:"tags"`
	Language        string   `json:"language"`
	Capacity        int      `json:"capacity"`
	JoinPolicy      string   `json:"join_policy"`
	SlowModeSeconds int      `json:"slow_mode_seconds"`
	Nick            string   `json:"nick"`
	Avatar          []byte   `json:"avatar"`
}

func (s *Service) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if !api.DecodeJSON(w, r, &req) {
		return
	}
	var linkOnly bool
	switch req.JoinPolicy {
	case "", "open":
	case "link":
		linkOnly = true
	default:
		api.WriteError(w, http.StatusBadRequest, "bad_request", "join_policy must be open or link")
		return
	}
	if req.Capacity < 0 || req.SlowModeSeconds < 0 {
		api.WriteError(w, http.StatusBadRequest, "bad_request", "capacity and slow_mode_seconds must not be negative")
		return
	}
	in, err := s.Create(r.Context(), CreateOptions{
		Name: req.Name, Description: req.Description, Tags: req.Tags, Language: req.Language,
		Capacity: req.Capacity, LinkOnly: linkOnly, SlowMode: time.Duration(req.SlowModeSeconds) * time.Second,
		Nick: req.Nick, Avatar: req.Avatar,
	})
	if err != nil {
		writeErr(w, err)
		return
	}
	link, _ := s.Link(mustID(in.RoomID))
	api.WriteJSON(w, http.StatusCreated, map[string]any{"room_id": in.RoomID, "link": link, "room": in})
}

func mustID(s string) ID {
	id, _ := ParseID(s)
	return id
}

func (s *Service) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Room   string `json:"room"`
		Nick   string `json:"nick"`
		Avatar []byte `json:"avatar"`
	}
	if !api.DecodeJSON(w, r, &req) {
		return
	}
	in, err := s.Join(r.Context(), req.Room, JoinOptions{Nick: req.Nick, Avatar: req.Avatar})
	if err != nil {
		writeErr(w, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"room_id": in.RoomID, "room": in})
}

func (s *Service) handleVerifyReveal(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Proof string `json:"proof"`
	}
	if !api.DecodeJSON(w, r, &req) {
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(req.Proof)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, "bad_request", "proof is not base64url")
		return
	}
	ri, err := VerifyReveal(raw)
	if err != nil {
		writeErr(w, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{
		"room_id": ri.Room.String(), "persona": PersonaString(ri.Persona),
		"account_id": string(identity.AccountIDFromKey(ri.Account)), "time": ri.Time.UTC(),
	})
}

func (s *Service) handleSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	res, err := s.Search(r.Context(), q["tag"], q.Get("q"), limit)
	reply(w, res, err)
}
