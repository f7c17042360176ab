package room

import (
	"bytes"
	"crypto/ed25519"
	"slices"
	"time"

	"github.com/madang-p2p/madang/protocols/room/pb"
)

// Ban is an applied ban.
type Ban struct {
	Seq    uint64
	Since  time.Time // the ban action's time
	Until  time.Time // zero: until unbanned
	Reason string
}

// State is a room's moderation state: the result of folding its moderation log, in (seq, ID) order, over
// its genesis manifest. Every node folds the same log to the same state, whatever order the entries
// arrived in. A State is never modified after Fold returns; readers share it without locks.
type State struct {
	Genesis  *Manifest
	Manifest *Manifest // current (after manifest updates)
	Mods     map[pkey]bool
	Bans     map[pkey]Ban
	Hidden   map[MsgID]bool
	Pinned   string
	PinnedAt time.Time
	Slow     time.Duration
	Closed   bool
	MaxSeq   uint64
	// Applied and Skipped count authorised and unauthorised entries.
	Applied, Skipped int
}

// Banned reports whether persona is banned at now.
func (s *State) Banned(persona []byte, now time.Time) (Ban, bool) {
	b, ok := s.Bans[pk(persona)]
	if !ok || (!b.Until.IsZero() && now.After(b.Until)) {
		return Ban{}, false
	}
	return b, true
}

// IsModerator reports whether key is a co-host (the owner key is not a persona and is checked apart).
func (s *State) IsModerator(key []byte) bool { return s.Mods[pk(key)] }

// IsOwner reports whether key is the room's owner key.
func (s *State) IsOwner(key []byte) bool { return bytes.Equal(key, s.Genesis.Owner()) }

// Log is a room's moderation log, kept sorted by (seq, ID).
type Log struct {
	entries []*ModAction
	ids     map[MsgID]*ModAction
}

// Has reports whether the action is in the log.
func (l *Log) Has(id MsgID) bool { return l.ids[id] != nil }

// Get returns the action with this ID, or nil.
func (l *Log) Get(id MsgID) *ModAction { return l.ids[id] }

// Len is the number of entries.
func (l *Log) Len() int { return len(l.entries) }

// Insert adds an action (false if it was already there).
func (l *Log) Insert(a *ModAction) bool {
	if l.ids == nil {
		l.ids = map[MsgID]*ModAction{}
	}
	if l.ids[a.ID] != nil {
		return false
	}
	l.ids[a.ID] = a
	i, _ := slices.BinarySearchFunc(l.entries, a, compareActions)
	l.entries = slices.Insert(l.entries, i, a)
	return true
}

func compareActions(a, b *ModAction) int {
	switch {
	case a.Body.Seq < b.Body.Seq:
		return -1
	case a.Body.Seq > b.Body.Seq:
		return 1
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// From returns the entries with seq >= from, at most limit.
func (l *Log) From(from uint64, limit int) []*ModAction {
	i, _ := slices.BinarySearchFunc(l.entries, from, func(a *ModAction, s uint64) int {
		switch {
		case a.Body.Seq < s:
			return -1
		case a.Body.Seq > s:
			return 1
		}
		return 0
	})
	out := l.entries[i:]
	if len(out) > limit {
		out = out[:limit]
	}
	return slices.Clone(out)
}

// Entries returns the whole log in order.
func (l *Log) Entries() []*ModAction { return slices.Clone(l.entries) }

// MaxSeq is the highest seq in the log.
func (l *Log) MaxSeq() uint64 {
	if len(l.entries) == 0 {
		return 0
	}
	return l.entries[len(l.entries)-1].Body.Seq
}

// Fold computes the state of a room from its genesis manifest and log. Entries that their signer was not
// authorised to make at their place in the log are skipped.
func Fold(genesis *Manifest, log *Log) *State {
	s := &State{
		Genesis: genesis, Manifest: genesis, Mods: map[pkey]bool{}, Bans: map[pkey]Ban{},
		Hidden: map[MsgID]bool{}, Slow: time.Duration(genesis.Body.SlowModeSeconds) * time.Second,
	}
	for _, m := range genesis.Body.Moderators {
		s.Mods[pk(m)] = true
	}
	for _, a := range log.entries {
		if a.Body.Seq > s.MaxSeq {
			s.MaxSeq = a.Body.Seq
		}
		if s.apply(a) {
			s.Applied++
		} else {
			s.Skipped++
		}
	}
	return s
}

// ownerOnly reports whether only the owner may take the action.
func ownerOnly(b *pb.ModBody) bool {
	switch b.Action.(type) {
	case *pb.ModBody_AddModerator, *pb.ModBody_RemoveModerator, *pb.ModBody_UpdateManifest, *pb.ModBody_Close:
		return true
	}
	return false
}

// target is the persona an action is about (nil if none).
func target(b *pb.ModBody) []byte {
	switch a := b.Action.(type) {
	case *pb.ModBody_Ban:
		return a.Ban.Persona
	case *pb.ModBody_Unban:
		return a.Unban.Persona
	}
	return nil
}

// authorised reports whether the signer may take the action in state s.
func (s *State) authorised(b *pb.ModBody) bool {
	if s.IsOwner(b.Signer) {
		return true
	}
	if s.Closed || ownerOnly(b) || !s.Mods[pk(b.Signer)] {
		return false
	}
	// A co-host cannot ban or unban another co-host.
	if t := target(b); t != nil && s.Mods[pk(t)] {
		return false
	}
	return true
}

func (s *State) apply(a *ModAction) bool {
	b := a.Body
	if !s.authorised(b) {
		return false
	}
	at := time.UnixMilli(b.TimeMs)
	switch x := b.Action.(type) {
	case *pb.ModBody_Ban:
		ban := Ban{Seq: b.Seq, Since: at, Reason: x.Ban.Reason}
		if x.Ban.UntilMs > 0 {
			ban.Until = time.UnixMilli(x.Ban.UntilMs)
		}
		s.Bans[pk(x.Ban.Persona)] = ban
	case *pb.ModBody_Unban:
		delete(s.Bans, pk(x.Unban.Persona))
	case *pb.ModBody_Hide:
		var id MsgID
		copy(id[:], x.Hide.MessageId)
		s.Hidden[id] = true
	case *pb.ModBody_Pin:
		s.Pinned, s.PinnedAt = x.Pin.Text, at
	case *pb.ModBody_Slow:
		s.Slow = time.Duration(x.Slow.Seconds) * time.Second
	case *pb.ModBody_AddModerator:
		if len(s.Mods) >= MaxModerators && !s.Mods[pk(x.AddModerator.Persona)] {
			return false
		}
		s.Mods[pk(x.AddModerator.Persona)] = true
		delete(s.Bans, pk(x.AddModerator.Persona))
	case *pb.ModBody_RemoveModerator:
		delete(s.Mods, pk(x.RemoveModerator.Persona))
	case *pb.ModBody_UpdateManifest:
		m, err := DecodeManifest(x.UpdateManifest.Manifest)
		if err != nil || m.ID != s.Genesis.ID || m.Body.Seq <= s.Manifest.Body.Seq {
			return false
		}
		s.Manifest = m
		s.Slow = time.Duration(m.Body.SlowModeSeconds) * time.Second
		s.Mods = map[pkey]bool{}
		for _, k := range m.Body.Moderators {
			s.Mods[pk(k)] = true
		}
	case *pb.ModBody_Close:
		s.Closed = true
	default:
		return false
	}
	return true
}

// authorityFor checks a moderation action's claimed authority: the owner-signed item that made the signer
// a co-host of this room (an AddModerator Item, or a Signed manifest listing the signer). It returns the
// AddModerator action to insert into the log (nil for a manifest) and whether the authority holds.
func authorityFor(genesis *Manifest, b *pb.ModBody) (*ModAction, bool) {
	if len(b.Authority) == 0 {
		return nil, false
	}
	if msg, mod, err := DecodeItem(b.Authority); err == nil && msg == nil {
		add, ok := mod.Body.Action.(*pb.ModBody_AddModerator)
		if ok && mod.Room == genesis.ID && bytes.Equal(mod.Body.Signer, genesis.Owner()) &&
			bytes.Equal(add.AddModerator.Persona, b.Signer) && mod.Body.Seq < b.Seq {
			return mod, true
		}
		return nil, false
	}
	m, err := DecodeManifest(b.Authority)
	if err != nil || m.ID != genesis.ID {
		return nil, false
	}
	return nil, slices.ContainsFunc(m.Body.Moderators, func(k []byte) bool { return bytes.Equal(k, b.Signer) })
}

// authorityOf finds, for a co-host key, the item to attach as authority to its actions.
func authorityOf(s *State, log *Log, key ed25519.PublicKey) []byte {
	for i := len(log.entries) - 1; i >= 0; i-- {
		a := log.entries[i]
		if add, ok := a.Body.Action.(*pb.ModBody_AddModerator); ok && s.IsOwner(a.Body.Signer) &&
			bytes.Equal(add.AddModerator.Persona, key) {
			return a.Raw
		}
	}
	if slices.ContainsFunc(s.Manifest.Body.Moderators, func(k []byte) bool { return bytes.Equal(k, key) }) {
		return s.Manifest.Raw
	}
	return nil
}
