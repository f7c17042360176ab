package feed

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/geo"
	"github.com/madang-p2p/madang/protocols/feed/pb"
)

// CardKind is the directory kind of channel cards.
const CardKind = "channel"

// Directory keys of channel cards.
const (
	cellKeyPrefix = "chan/cell/"
	tagKeyPrefix  = "chan/tag/"
)

// CellKey is the directory key of a precision-5 cell.
func CellKey(cell string) string { return cellKeyPrefix + cell }

// CellCategoryKey is the directory key of a precision-5 cell and a category.
func CellCategoryKey(cell, category string) string { return cellKeyPrefix + cell + "/" + category }

// TagKey is the directory key of a tag.
func TagKey(tag string) string { return tagKeyPrefix + tag }

// Card is a verified channel card: the signed profile and, if known, the signed head record.
type Card struct {
	Profile *Profile
	Head    *Head // may be nil
	Raw     []byte
}

// Updated is the card's update time: the later of the profile's update and the newest entry.
func (c *Card) Updated() time.Time {
	t := c.Profile.Updated
	if c.Head != nil && c.Head.Time.After(t) {
		t = c.Head.Time
	}
	return t
}

// LastPost is the time of the newest entry (zero if none).
func (c *Card) LastPost() time.Time {
	if c.Head == nil || c.Head.Seq == 0 {
		return time.Time{}
	}
	return c.Head.Time
}

// MakeCard builds a card from a signed profile and an optional signed head record of the same channel.
func MakeCard(profile, head []byte) (*Card, error) {
	raw, err := proto.Marshal(&pb.DirectoryCard{Profile: profile, Head: head})
	if err != nil {
		return nil, fmt.Errorf("make card: %w", err)
	}
	return DecodeCard(raw)
}

// DecodeCard verifies a channel card: the profile's and head's signatures and that both name one channel.
func DecodeCard(raw []byte) (*Card, error) {
	var dc pb.DirectoryCard
	if err := proto.Unmarshal(raw, &dc); err != nil {
		return nil, fmt.Errorf("%w: card: %v", ErrInvalidProfile, err)
	}
	p, err := VerifyProfile(dc.Profile)
	if err != nil {
		return nil, err
	}
	c := &Card{Profile: p, Raw: raw}
	if len(dc.Head) > 0 {
		h, err := VerifyHead(dc.Head)
		if err != nil {
			return nil, err
		}
		if !h.Channel.Equal(p.Channel) {
			return nil, fmt.Errorf("%w: card head of another channel", ErrInvalidHead)
		}
		c.Head = h
	}
	return c, nil
}

// VerifyCard is the directory verifier of channel cards.
func VerifyCard(raw []byte) (string, time.Time, error) {
	c, err := DecodeCard(raw)
	if err != nil {
		return "", time.Time{}, err
	}
	return string(c.Profile.ID()), c.Updated(), nil
}

// cardKeys are the directory keys a profile is announced under: its cell, its cell and category, its tags.
func cardKeys(p *Profile) []string {
	keys := []string{CellKey(p.Cell()), CellCategoryKey(p.Cell(), p.Category)}
	for _, t := range p.Tags {
		keys = append(keys, TagKey(t))
	}
	return keys
}

// announceCard announces the channel's current card under its keys and withdraws keys it left.
func (s *Service) announceCard(ch *channel) {
	if s.o.Directory == nil {
		return
	}
	st := ch.log.State()
	if st.Profile == nil {
		return
	}
	c, err := MakeCard(st.Profile, st.HeadRecord)
	if err != nil {
		s.log.Warn("Channel card invalid", "channel", ch.log.id, "err", err)
		return
	}
	keys := cardKeys(c.Profile)
	ch.dirMu.Lock()
	old := ch.dirKeys
	ch.dirKeys = keys
	ch.dirMu.Unlock()
	for _, k := range old {
		if !slices.Contains(keys, k) {
			_ = s.o.Directory.Withdraw(k, CardKind, string(ch.log.id))
		}
	}
	for _, k := range keys {
		if err := s.o.Directory.Announce(k, CardKind, c.Raw); err != nil {
			s.log.Warn("Channel card not announced", "channel", ch.log.id, "err", err)
		}
	}
}

// withdrawCard stops announcing the channel's card.
func (s *Service) withdrawCard(ch *channel) {
	if s.o.Directory == nil {
		return
	}
	ch.dirMu.Lock()
	keys := ch.dirKeys
	ch.dirKeys = nil
	ch.dirMu.Unlock()
	if p := ch.log.Profile(); p != nil {
		keys = append(keys, cardKeys(p)...)
	}
	for _, k := range keys {
		_ = s.o.Directory.Withdraw(k, CardKind, string(ch.log.id))
	}
}

// Found is one channel found by a directory search.
type Found struct {
	Card     *Card
	Distance float64 // metres from the searched point; NaN without one
}

// distanceBucket is the resolution at which distances rank: below it, the channel with the newer post
// comes first (a geohash-7 location is only good to ≈150 m anyway).
const distanceBucket = 100.0

// Nearby searches the directory for channels around a geohash (its precision-5 cell and the 8 neighbouring
// cells), optionally of one category and with one tag, nearest first and, at the same distance, the most
// recently posting first. With an empty geohash it searches by tag alone.
func (s *Service) Nearby(ctx context.Context, geohash, category, tag string, limit int) ([]Found, error) {
	if s.o.Directory == nil {
		return nil, ErrNoDir
	}
	if limit <= 0 {
		limit = 20
	}
	if category != "" && !slices.Contains(Categories, category) {
		return nil, fmt.Errorf("%w: category %q is not one of %v", ErrInvalidProfile, category, Categories)
	}
	tag = NormalizeTag(tag)
	var keys []string
	var lat, lon float64
	haveCenter := false
	switch {
	case geohash != "":
		gh, err := geo.Normalize(geohash)
		if err != nil || len(gh) < AnnouncePrecision {
			return nil, fmt.Errorf("%w: geohash %q must have at least %d characters", geo.ErrInvalid, geohash, AnnouncePrecision)
		}
		box, _ := geo.Decode(gh)
		lat, lon = box.Center()
		haveCenter = true
		cell := gh[:AnnouncePrecision]
		ns, _ := geo.Neighbours(cell)
		for _, c := range append([]string{cell}, ns...) {
			if category != "" {
				keys = append(keys, CellCategoryKey(c, category))
			} else {
				keys = append(keys, CellKey(c))
			}
		}
	case tag != "":
		keys = []string{TagKey(tag)}
	default:
		return nil, fmt.Errorf("%w: search needs a geohash or a tag", errBadInput)
	}

	var mu sync.Mutex
	best := map[ChannelID]*Card{}
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Go(func() {
			cards, err := s.o.Directory.Lookup(ctx, k, 100)
			if err != nil {
				s.log.Debug("Directory lookup failed", "key", k, "err", err)
				return
			}
			for _, dc := range cards {
				if dc.Kind != CardKind {
					continue
				}
				c, err := DecodeCard(dc.Raw)
				if err != nil {
					continue
				}
				mu.Lock()
				if old := best[c.Profile.ID()]; old == nil || c.Updated().After(old.Updated()) {
					best[c.Profile.ID()] = c
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil && len(best) == 0 {
		return nil, err
	}
	out := make([]Found, 0, len(best))
	for _, c := range best {
		if category != "" && c.Profile.Category != category {
			continue
		}
		if tag != "" && !slices.Contains(c.Profile.Tags, tag) {
			continue
		}
		f := Found{Card: c, Distance: math.NaN()}
		if haveCenter {
			if b, err := geo.Decode(c.Profile.Geohash); err == nil {
				clat, clon := b.Center()
				f.Distance = geo.Distance(lat, lon, clat, clon)
			}
		}
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Found) int {
		if haveCenter {
			da, db := math.Floor(a.Distance/distanceBucket), math.Floor(b.Distance/distanceBucket)
			if da != db {
				if da < db {
					return -1
				}
				return 1
			}
		}
		if c := b.Card.LastPost().Compare(a.Card.LastPost()); c != 0 {
			return c
		}
		if c := b.Card.Updated().Compare(a.Card.Updated()); c != 0 {
			return c
		}
		return strings.Compare(string(a.Card.Profile.ID()), string(b.Card.Profile.ID()))
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
