package feed

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/store"
)

// ProfileView is a profile as the API shows it.
type ProfileView struct {
	Name        string   `json:"name"`
	Category    string   `json:"category"`
	Tags        []string `json:"tags"`
	Geohash     string   `json:"geohash"`
	Address     string   `json:"address,omitempty"`
	Hours       string   `json:"hours,omitempty"`
	Phone       string   `json:"phone,omitempty"`
	Description string   `json:"description,omitempty"`
}

func profileView(p *Profile) ProfileView {
	v := ProfileView{Tags: []string{}}
	if p != nil {
		v = ProfileView{Name: p.Name, Category: p.Category, Tags: append([]string{}, p.Tags...), Geohash: p.Geohash,
			Address: p.Address, Hours: p.Hours, Phone: p.Phone, Description: p.Description}
	}
	return v
}

// Info describes a channel this node keeps (API shape).
type Info struct {
	ChannelID string `json:"channel_id"`
	ProfileView
	Owned      bool       `json:"owned"`
	Following  bool       `json:"following"`
	Pinned     bool       `json:"pinned"`
	Seq        uint64     `json:"seq"`
	KnownSeq   uint64     `json:"known_seq"`
	LastPost   *time.Time `json:"last_post,omitempty"`
	Unread     uint64     `json:"unread"`
	Forked     bool       `json:"forked"`
	Paused     bool       `json:"paused"`
	Fork       *Fork      `json:"fork,omitempty"`
	FollowedAt *time.Time `json:"followed_at,omitempty"`
	NoticeDue  bool       `json:"notice_pending,omitempty"`
	Syncing    bool       `json:"syncing"`
}

func (s *Service) info(ch *channel) Info {
	st := ch.log.State()
	in := Info{
		ChannelID: string(ch.log.id), ProfileView: profileView(ch.log.Profile()), Owned: st.Owned, Following: st.Following, Pinned: st.Pinned,
		Seq: st.Seq, KnownSeq: max(st.Target, st.Seq), Forked: st.Fork != nil, Paused: st.Fork != nil && st.Following,
		Fork: st.Fork, NoticeDue: s.NoticePending(ch.log.id), Syncing: s.syncBusy(ch),
	}
	if st.Seq > 0 {
		t := st.HeadTime.UTC()
		in.LastPost = &t
	}
	if st.Following || st.Owned {
		in.Unread = st.Seq - min(st.Read, st.Seq)
	}
	if st.Owned {
		in.Unread = 0
	}
	if !st.FollowedAt.IsZero() {
		t := st.FollowedAt.UTC()
		in.FollowedAt = &t
	}
	return in
}

// Describe returns what the node keeps about a channel.
func (s *Service) Describe(id ChannelID) (Info, error) {
	ch, err := s.get(id)
	if err != nil {
		return Info{}, err
	}
	return s.info(ch), nil
}

// List returns the channels this node owns, follows or pins, by name.
func (s *Service) List() []Info {
	var out []Info
	for _, ch := range s.channels() {
		if ch.log.State().Active() {
			out = append(out, s.info(ch))
		}
	}
	slices.SortFunc(out, func(a, b Info) int {
		if c := strings.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)); c != 0 {
			return c
		}
		return strings.Compare(a.ChannelID, b.ChannelID)
	})
	return out
}

// EntryView is an entry as the API shows it.
type EntryView struct {
	ChannelID  string     `json:"channel_id"`
	Name       string     `json:"name,omitempty"`
	Seq        uint64     `json:"seq"`
	ID         string     `json:"id"`
	Prev       string     `json:"prev,omitempty"`
	Kind       string     `json:"kind"`
	Title      string     `json:"title"`
	Body       string     `json:"body"`
	Price      string     `json:"price,omitempty"`
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	Media      []string   `json:"media,omitempty"`
	Time       time.Time  `json:"time"`
	Unread     bool       `json:"unread,omitempty"`
}

// View converts an entry for the API.
func View(e *Entry, name string) EntryView {
	v := EntryView{
		ChannelID: string(IDFromKey(e.Channel)), Name: name, Seq: e.Seq, ID: hex.EncodeToString(e.ID[:]),
		Prev: hex.EncodeToString(e.Prev), Kind: e.Kind, Title: e.Title, Body: e.Body, Price: e.Price, Time: e.Time.UTC(),
	}
	if !e.ValidUntil.IsZero() {
		t := e.ValidUntil.UTC()
		v.ValidUntil = &t
	}
	for _, m := range e.Media {
		v.Media = append(v.Media, hex.EncodeToString(m))
	}
	return v
}

// Entries returns up to limit entries of a channel before seq before (0: newest), newest first.
func (s *Service) Entries(ctx context.Context, id ChannelID, before uint64, limit int) ([]EntryView, error) {
	ch, err := s.get(id)
	if err != nil {
		return nil, err
	}
	es, err := ch.log.Latest(ctx, before, limit)
	if err != nil {
		return nil, err
	}
	name := ""
	if p := ch.log.Profile(); p != nil {
		name = p.Name
	}
	read := ch.log.State().Read
	out := make([]EntryView, 0, len(es))
	for _, e := range es {
		v := View(e, name)
		v.Unread = e.Seq > read && ch.priv == nil
		out = append(out, v)
	}
	return out, nil
}

// Merged returns the newest entries of every channel this node follows or owns, newest first, up to limit,
// older than before (zero: now).
func (s *Service) Merged(ctx context.Context, before time.Time, limit int) ([]EntryView, error) {
	if limit <= 0 {
		limit = 50
	}
	r := store.Range{Prefix: "t/", Reverse: true}
	if !before.IsZero() {
		r.End = "t/" + store.Uint64Key(uint64(max(before.UnixMilli(), 0)))
	}
	out := []EntryView{}
	names := map[ChannelID]string{}
	for ent, err := range s.db.ns.Scan(ctx, r) {
		if err != nil {
			return nil, err
		}
		parts := strings.Split(strings.TrimPrefix(ent.Key, "t/"), "/")
		if len(parts) != 3 {
			continue
		}
		s.mu.Lock()
		ch := s.chans[ChannelID(parts[1])]
		s.mu.Unlock()
		if ch == nil {
			continue
		}
		st := ch.log.State()
		if !st.Following && !st.Owned {
			continue
		}
		e, err := ch.log.Entry(parseSeq(parts[2]))
		if err != nil {
			continue
		}
		name, ok := names[ch.log.id]
		if !ok {
			if p := ch.log.Profile(); p != nil {
				name = p.Name
			}
			names[ch.log.id] = name
		}
		v := View(e, name)
		v.Unread = e.Seq > st.Read && !st.Owned
		out = append(out, v)
		if len(out) >= limit {
			break
		}
	}
	return out, nil
}

// Link returns a shareable link to a kept channel, with this node's addresses as where to fetch it.
func (s *Service) Link(id ChannelID) (string, error) {
	ch, err := s.get(id)
	if err != nil {
		return "", err
	}
	name := ""
	if p := ch.log.Profile(); p != nil {
		name = p.Name
	}
	var addrs []ma.Multiaddr
	self, err := ma.NewMultiaddr("/p2p/" + s.o.Host.ID().String())
	if err != nil {
		return "", fmt.Errorf("link: %w", err)
	}
	for _, a := range s.o.Host.Addrs() {
		addrs = append(addrs, a.Encapsulate(self))
	}
	return FormatLink(ch.log.key, name, addrs)
}
