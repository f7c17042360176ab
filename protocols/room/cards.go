package room

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/madang-p2p/madang/protocols/directory"
	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
)

// cardKeys are the directory keys of a manifest: one per tag and one per word of the name.
func cardKeys(m *pb.ManifestBody) []string {
	var keys []string
	for _, t := range m.Tags {
		keys = append(keys, tagKey(t))
	}
	for _, w := range NameWords(m.Name) {
		if k := wordKey(w); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// announceCard re-signs the room's card (owner only) with fresh counts and announces it under the
// manifest's keys; closed and link-only rooms are withdrawn instead.
func (s *Service) announceCard(r *roomRT) {
	if s.d.Directory == nil || r.owner == nil {
		return
	}
	st := r.state.Load()
	if st.Closed || st.Manifest.Body.JoinPolicy != pb.JoinPolicy_JOIN_OPEN {
		s.withdrawCards(r)
		return
	}
	r.mu.Lock()
	members := r.memberCountLocked(st)
	r.mu.Unlock()
	c, err := SignCard(r.owner, &pb.CardBody{
		Version: 1, Manifest: st.Manifest.Raw, Members: uint32(members),
		Messages_24H: uint32(r.countSince(s.now().Add(-24 * time.Hour))), TimeMs: s.now().UnixMilli(),
	})
	if err != nil {
		s.log.Warn("Room card signing failed", "err", err)
		return
	}
	r.mu.Lock()
	r.rec.Card = c.Raw
	err = s.putRecord(r.id, r.rec)
	r.mu.Unlock()
	if err != nil {
		s.log.Warn("Room record update failed", "err", err)
	}
	s.publishCard(r, c)
}

// cardStale reports whether the member count moved away from the one on the room's card.
func (r *roomRT) cardStale() bool {
	st := r.state.Load()
	if st.Closed || st.Manifest.Body.JoinPolicy != pb.JoinPolicy_JOIN_OPEN {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := DecodeCard(r.rec.Card)
	return err != nil || int(c.Body.Members) != r.memberCountLocked(st)
}

// announceHeldCard announces the owner's card that a keeping relay holds.
func (s *Service) announceHeldCard(r *roomRT) {
	r.mu.Lock()
	raw := r.rec.Card
	r.mu.Unlock()
	if c, err := DecodeCard(raw); err == nil && s.d.Directory != nil {
		s.publishCard(r, c)
	}
}

func (s *Service) publishCard(r *roomRT, c *Card) {
	keys := cardKeys(c.Manifest.Body)
	if c.Manifest.Body.JoinPolicy != pb.JoinPolicy_JOIN_OPEN {
		keys = nil
	}
	for _, k := range keys {
		if err := s.d.Directory.Announce(k, CardKind, c.Raw); err != nil {
			s.log.Warn("Room card announce failed", "err", err)
		}
	}
	s.withdrawStale(r, keys)
}

// withdrawStale withdraws this room's card from keys it is no longer listed under.
func (s *Service) withdrawStale(r *roomRT, keep []string) {
	for _, k := range s.d.Directory.Keys() {
		if !strings.HasPrefix(k, "room/") || slices.Contains(keep, k) {
			continue
		}
		for _, c := range s.d.Directory.Held(k) {
			if c.Kind == CardKind && c.ID == r.key {
				_ = s.d.Directory.Withdraw(k, CardKind, r.key)
			}
		}
	}
}

func (s *Service) withdrawCards(r *roomRT) {
	if s.d.Directory != nil {
		s.withdrawStale(r, nil)
	}
}

// takeCard keeps a newer owner card received through sync; a keeping relay announces it.
func (s *Service) takeCard(r *roomRT, raw []byte) {
	c, err := DecodeCard(raw)
	if err != nil || c.Manifest.ID != r.id {
		return
	}
	r.mu.Lock()
	if old, err := DecodeCard(r.rec.Card); err == nil && old.Body.TimeMs >= c.Body.TimeMs {
		r.mu.Unlock()
		return
	}
	r.rec.Card = raw
	keep := r.rec.Keep && r.owner == nil
	err = s.putRecord(r.id, r.rec)
	r.mu.Unlock()
	if err != nil {
		s.log.Warn("Room record update failed", "err", err)
	}
	if keep && s.d.Directory != nil {
		s.publishCard(r, c)
	}
}

// countSince counts stored messages newer than t.
func (r *roomRT) countSince(t time.Time) int {
	n := 0
	prefix := "m/" + r.key + "/"
	for _, err := range r.s.d.Store.Scan(r.s.runCtx, store.Range{Prefix: prefix, Start: prefix + store.Uint64Key(uint64(max(t.UnixMilli(), 0)))}) {
		if err != nil {
			break
		}
		n++
	}
	return n
}

// CardView is a room found in the directory.
type CardView struct {
	RoomID      string    `json:"room_id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Tags        []string  `json:"tags"`
	Language    string    `json:"language,omitempty"`
	Members     int       `json:"members"`
	Messages24h int       `json:"messages_24h"`
	Capacity    int       `json:"capacity"`
	SlowMode    int       `json:"slow_mode_seconds,omitempty"`
	Updated     time.Time `json:"updated"`
	Score       float64   `json:"score"`
	Joined      bool      `json:"joined"`
}

// SearchResult is the answer of Search.
type SearchResult struct {
	Cards []CardView `json:"cards"`
	// TookMS is how long the directory lookups took.
	TookMS int64 `json:"took_ms"`
}

// ErrNoQuery is returned by Search without tags or words.
var ErrNoQuery = errors.New("room: search needs a tag or a word")

// Search finds open rooms by tags and by words of their names, looking every tag and word up in the
// directory at once, and ranks them on this device: rooms matching more of the tags and words first, then
// livelier and larger ones.
func (s *Service) Search(ctx context.Context, tags []string, words string, limit int) (SearchResult, error) {
	if s.d.Directory == nil {
		return SearchResult{}, errors.New("room: no directory")
	}
	var ntags []string
	for _, t := range tags {
		if n, ok := NormalizeTag(t); ok && !slices.Contains(ntags, n) {
			ntags = append(ntags, n)
		}
	}
	nwords := NameWords(words)
	if len(ntags)+len(nwords) == 0 {
		return SearchResult{}, ErrNoQuery
	}
	if limit <= 0 || limit > directory.MaxResponseCards {
		limit = directory.DefaultLimit
	}
	var keys []string
	for _, t := range ntags {
		keys = append(keys, tagKey(t))
	}
	for _, w := range nwords {
		keys = append(keys, wordKey(w), tagKey(w)) // a word may also be someone's tag
	}
	start := time.Now()
	var mu sync.Mutex
	best := map[string]*Card{}
	var wg sync.WaitGroup
	var errs []error
	for _, k := range keys {
		wg.Go(func() {
			cards, err := s.d.Directory.Lookup(ctx, k, directory.MaxResponseCards)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			for _, dc := range cards {
				c, err := DecodeCard(dc.Raw) // verified by the directory; decoded for the fields
				if err != nil {
					continue
				}
				if old := best[dc.ID]; old == nil || c.Body.TimeMs > old.Body.TimeMs {
					best[dc.ID] = c
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if len(best) == 0 && len(errs) > 0 {
		return SearchResult{}, fmt.Errorf("room search: %w", errors.Join(errs...))
	}
	out := make([]CardView, 0, len(best))
	for _, c := range best {
		v := s.cardView(c)
		v.Score = score(c, ntags, nwords)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b CardView) int {
		switch {
		case a.Score != b.Score:
			if a.Score > b.Score {
				return -1
			}
			return 1
		case a.Members != b.Members:
			return b.Members - a.Members
		}
		return strings.Compare(a.RoomID, b.RoomID)
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return SearchResult{Cards: out, TookMS: took.Milliseconds()}, nil
}

func (s *Service) cardView(c *Card) CardView {
	m := c.Manifest.Body
	_, err := s.room(c.Manifest.ID)
	return CardView{
		RoomID: c.Manifest.ID.String(), Name: m.Name, Description: m.Description, Tags: m.Tags,
		Language: m.Language, Members: int(c.Body.Members), Messages24h: int(c.Body.Messages_24H),
		Capacity: int(m.Capacity), SlowMode: int(m.SlowModeSeconds), Updated: time.UnixMilli(c.Body.TimeMs),
		Joined: err == nil,
	}
}

// score ranks a card for a query: 3 per matching tag, 2 per matching name word, plus a little for
// activity and size (logarithmic, so big rooms do not bury small matching ones).
func score(c *Card, tags, words []string) float64 {
	m := c.Manifest.Body
	nameWords := NameWords(m.Name)
	sc := 0.0
	for _, t := range tags {
		if slices.Contains(m.Tags, t) {
			sc += 3
		}
		if slices.Contains(nameWords, t) {
			sc++
		}
	}
	for _, w := range words {
		if slices.Contains(nameWords, w) {
			sc += 2
		}
		if slices.Contains(m.Tags, w) {
			sc++
		}
	}
	sc += 0.3*math.Log1p(float64(c.Body.Messages_24H)) + 0.2*math.Log1p(float64(c.Body.Members))
	if c.Body.Members >= m.Capacity {
		sc -= 1 // full rooms rank below open ones with the same match
	}
	return math.Round(sc*1000) / 1000
}
