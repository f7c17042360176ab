package feed

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/madang-p2p/madang/api"
	"github.com/madang-p2p/madang/geo"
	"github.com/madang-p2p/madang/store"
)

//go:embed openapi.yaml
var spec []byte

// followWait is how long POST /api/v1/channels/follow waits for the first sync before answering.
const followWait = 20 * time.Second

func writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		api.WriteError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrNotOwner):
		api.WriteError(w, http.StatusForbidden, "not_owner", err.Error())
	case errors.Is(err, ErrNotRelay):
		api.WriteError(w, http.StatusConflict, "not_relay", err.Error())
	case errors.Is(err, ErrOwnChannel):
		api.WriteError(w, http.StatusConflict, "own_channel", err.Error())
	case errors.Is(err, ErrForked):
		api.WriteError(w, http.StatusConflict, "forked", err.Error())
	case errors.Is(err, ErrNoDir):
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	case errors.Is(err, ErrNoPeers):
		api.WriteError(w, http.StatusBadGateway, "unreachable", err.Error())
	case errors.Is(err, ErrBadID), errors.Is(err, ErrBadLink), errors.Is(err, ErrInvalidProfile),
		errors.Is(err, ErrInvalidEntry), errors.Is(err, geo.ErrInvalid), errors.Is(err, errBadInput):
		api.WriteError(w, http.StatusBadRequest, "bad_request", err.Error())
	default:
		api.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
	}
}

var errBadInput = errors.New("bad input")

func pathID(w http.ResponseWriter, r *http.Request) (ChannelID, bool) {
	id := r.PathValue("id")
	if _, err := ParseID(id); err != nil {
		writeError(w, err)
		return "", false
	}
	return ChannelID(id), true
}

func queryInt(w http.ResponseWriter, r *http.Request, name string, def, lo, hi int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		api.WriteError(w, http.StatusBadRequest, "bad_request", name+" must be an integer from "+strconv.Itoa(lo)+" to "+strconv.Itoa(hi))
		return 0, false
	}
	return n, true
}

// ProfileRequest is the body of channel creation and profile updates.
type ProfileRequest struct {
	Name        string   `json:"name"`
	Category    string   `json:"category"`
	Tags        []string `json:"tags"`
	Geohash     string   `json:"geohash"`
	Address     string   `json:"address"`
	Hours       string   `json:"hours"`
	Phone       string   `json:"phone"`
	Description string   `json:"description"`
}

func (p ProfileRequest) fields() ProfileFields {
	return ProfileFields{Name: p.Name, Category: p.Category, Tags: p.Tags, Geohash: p.Geohash, Address: p.Address,
		Hours: p.Hours, Phone: p.Phone, Description: p.Description}
}

// PostRequest is the body of a new entry.
type PostRequest struct {
	Kind       string     `json:"kind"`
	Title      string     `json:"title"`
	Body       string     `json:"body"`
	Price      string     `json:"price"`
	ValidUntil *time.Time `json:"valid_until"`
}

// MerchantChannel is an owned channel with its follower count and link.
type MerchantChannel struct {
	Info
	Followers int    `json:"followers"`
	Link      string `json:"link"`
}

// NearbyCard is a search result.
type NearbyCard struct {
	ChannelID string `json:"channel_id"`
	ProfileView
	Distance  *float64   `json:"distance,omitempty"` // metres from the searched geohash's centre
	LastPost  *time.Time `json:"last_post,omitempty"`
	Seq       uint64     `json:"seq"`
	Following bool       `json:"following"`
}

func (s *Service) merchantView(r *http.Request, id ChannelID) (MerchantChannel, error) {
	if _, err := s.owned(id); err != nil {
		return MerchantChannel{}, err
	}
	in, err := s.Describe(id)
	if err != nil {
		return MerchantChannel{}, err
	}
	n, err := s.Followers(r.Context(), id)
	if err != nil {
		return MerchantChannel{}, err
	}
	link, err := s.Link(id)
	if err != nil {
		return MerchantChannel{}, err
	}
	return MerchantChannel{Info: in, Followers: n, Link: link}, nil
}

// errWritten tells a route helper that the handler already wrote its (error) response.
var errWritten = errors.New("response written")

// handler answers a route with a JSON value and a status, or an error.
type handler func(w http.ResponseWriter, r *http.Request) (any, error)

func route(srv *api.Server, pattern string, status int, h handler) {
	srv.Handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		v, err := h(w, r)
		switch {
		case errors.Is(err, errWritten):
		case err != nil:
			writeError(w, err)
		default:
			api.WriteJSON(w, status, v)
		}
	})
}

// idRoute is route for paths with a {id} channel ID.
func idRoute(srv *api.Server, pattern string, status int, h func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error)) {
	route(srv, pattern, status, func(w http.ResponseWriter, r *http.Request) (any, error) {
		id, ok := pathID(w, r)
		if !ok {
			return nil, errWritten
		}
		return h(w, r, id)
	})
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if !api.DecodeJSON(w, r, v) {
		return errWritten
	}
	return nil
}

// RegisterAPI adds the channel routes (/api/v1/channels…, /api/v1/merchant/…) and their spec.
func (s *Service) RegisterAPI(srv *api.Server) error {
	if err := srv.AddSpec(spec); err != nil {
		return err
	}
	// --- following ---
	route(srv, "GET /api/v1/channels", http.StatusOK, func(w http.ResponseWriter, r *http.Request) (any, error) {
		return map[string]any{"channels": nonNil(s.List())}, nil
	})
	route(srv, "POST /api/v1/channels/follow", http.StatusOK, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req struct {
			Target string `json:"target"`
			Wait   *bool  `json:"wait"`
		}
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		wait := followWait
		if req.Wait != nil && !*req.Wait {
			wait = 0
		}
		return s.Follow(r.Context(), req.Target, wait)
	})
	route(srv, "GET /api/v1/channels/feed", http.StatusOK, func(w http.ResponseWriter, r *http.Request) (any, error) {
		limit, ok := queryInt(w, r, "limit", 50, 1, 1000)
		if !ok {
			return nil, errWritten
		}
		var before time.Time
		if v := r.URL.Query().Get("before"); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, fmt.Errorf("%w: before must be an RFC 3339 time", errBadInput)
			}
			before = t
		}
		es, err := s.Merged(r.Context(), before, limit)
		return map[string]any{"entries": es}, err
	})
	route(srv, "GET /api/v1/channels/nearby", http.StatusOK, func(w http.ResponseWriter, r *http.Request) (any, error) {
		limit, ok := queryInt(w, r, "limit", 20, 1, 100)
		if !ok {
			return nil, errWritten
		}
		q := r.URL.Query()
		found, err := s.Nearby(r.Context(), q.Get("geohash"), q.Get("category"), q.Get("tag"), limit)
		if err != nil {
			return nil, err
		}
		out := make([]NearbyCard, 0, len(found))
		for _, f := range found {
			out = append(out, s.nearbyCard(f))
		}
		return map[string]any{"channels": out}, nil
	})
	idRoute(srv, "GET /api/v1/channels/{id}", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		return s.Describe(id)
	})
	idRoute(srv, "DELETE /api/v1/channels/{id}/follow", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		return map[string]any{"channel_id": id, "following": false}, s.Unfollow(r.Context(), id)
	})
	idRoute(srv, "GET /api/v1/channels/{id}/entries", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		limit, ok := queryInt(w, r, "limit", 50, 1, 1000)
		if !ok {
			return nil, errWritten
		}
		before, ok := queryInt(w, r, "before", 0, 0, math.MaxInt)
		if !ok {
			return nil, errWritten
		}
		es, err := s.Entries(r.Context(), id, uint64(before), limit)
		return map[string]any{"entries": es}, err
	})
	idRoute(srv, "POST /api/v1/channels/{id}/read", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		var req struct {
			Seq uint64 `json:"seq"`
		}
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		return s.MarkRead(id, req.Seq)
	})
	idRoute(srv, "POST /api/v1/channels/{id}/sync", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		in, err := s.Sync(r.Context(), id)
		if errors.Is(err, ErrNoPeers) || errors.Is(err, errIncomplete) {
			err = nil // the answer's seq and known_seq tell how far it got
		}
		return in, err
	})
	idRoute(srv, "GET /api/v1/channels/{id}/link", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		link, err := s.Link(id)
		return map[string]string{"channel_id": string(id), "link": link}, err
	})
	idRoute(srv, "GET /api/v1/channels/{id}/fork", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		l, err := s.Log(id)
		if err != nil {
			return nil, err
		}
		st := l.State()
		if st.Fork == nil {
			return nil, fmt.Errorf("%w: the channel has not forked", ErrNotFound)
		}
		proof, err := l.ForkProof(r.Context())
		if err != nil {
			return nil, err
		}
		var views []EntryView
		for _, raw := range proof {
			if e, err := VerifyEntry(raw); err == nil {
				views = append(views, View(e, ""))
			}
		}
		return map[string]any{"fork": st.Fork, "proof": proof, "entries": views}, nil
	})
	idRoute(srv, "POST /api/v1/channels/{id}/pin", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		return s.Pin(r.Context(), id)
	})
	idRoute(srv, "DELETE /api/v1/channels/{id}/pin", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		return map[string]any{"channel_id": id, "pinned": false}, s.Unpin(r.Context(), id)
	})

	// --- merchant ---
	route(srv, "GET /api/v1/merchant/channels", http.StatusOK, func(w http.ResponseWriter, r *http.Request) (any, error) {
		out := []MerchantChannel{}
		for _, id := range s.Owned() {
			mc, err := s.merchantView(r, id)
			if err != nil {
				return nil, err
			}
			out = append(out, mc)
		}
		return map[string]any{"channels": out}, nil
	})
	route(srv, "POST /api/v1/merchant/channels", http.StatusCreated, func(w http.ResponseWriter, r *http.Request) (any, error) {
		var req ProfileRequest
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		in, err := s.Create(r.Context(), req.fields())
		if err != nil {
			return nil, err
		}
		return s.merchantView(r, ChannelID(in.ChannelID))
	})
	idRoute(srv, "GET /api/v1/merchant/channels/{id}", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		return s.merchantView(r, id)
	})
	idRoute(srv, "PATCH /api/v1/merchant/channels/{id}", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		var req ProfileRequest
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		if _, err := s.UpdateProfile(r.Context(), id, req.fields()); err != nil {
			return nil, err
		}
		return s.merchantView(r, id)
	})
	idRoute(srv, "POST /api/v1/merchant/channels/{id}/posts", http.StatusCreated, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		var req PostRequest
		if err := decode(w, r, &req); err != nil {
			return nil, err
		}
		d := Draft{Kind: req.Kind, Title: req.Title, Body: req.Body, Price: req.Price}
		if req.ValidUntil != nil {
			d.ValidUntil = *req.ValidUntil
		}
		if _, err := ParseKind(d.Kind); err != nil {
			return nil, fmt.Errorf("%w: %w", errBadInput, err)
		}
		e, err := s.Post(r.Context(), id, d)
		if err != nil {
			return nil, err
		}
		in, _ := s.Describe(id)
		return View(e, in.Name), nil
	})
	idRoute(srv, "GET /api/v1/merchant/channels/{id}/stats", http.StatusOK, func(w http.ResponseWriter, r *http.Request, id ChannelID) (any, error) {
		if r.URL.Query().Get("collect") == "true" {
			if err := s.CollectNotices(r.Context(), id); err != nil {
				return nil, err
			}
		}
		mc, err := s.merchantView(r, id)
		return map[string]any{"channel_id": id, "followers": mc.Followers, "entries": mc.Seq}, err
	})
	return nil
}

func (s *Service) nearbyCard(f Found) NearbyCard {
	p := f.Card.Profile
	c := NearbyCard{ChannelID: string(p.ID()), ProfileView: profileView(p)}
	if !math.IsNaN(f.Distance) {
		d := math.Round(f.Distance)
		c.Distance = &d
	}
	if lp := f.Card.LastPost(); !lp.IsZero() {
		t := lp.UTC()
		c.LastPost = &t
	}
	if f.Card.Head != nil {
		c.Seq = f.Card.Head.Seq
	}
	if in, err := s.Describe(p.ID()); err == nil {
		c.Following = in.Following
	}
	return c
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
