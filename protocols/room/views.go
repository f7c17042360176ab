package room

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
)

// View is a message as the API shows it.
type View struct {
	ID      string    `json:"id"`
	RoomID  string    `json:"room_id"`
	Kind    string    `json:"kind"` // text, join, leave
	Nick    string    `json:"nick"`
	Persona string    `json:"persona"`
	Text    string    `json:"text"`
	Time    time.Time `json:"time"`
	ReplyTo string    `json:"reply_to,omitempty"`
	Hidden  bool      `json:"hidden,omitempty"`
	Host    bool      `json:"host,omitempty"` // written by a co-host
	Mine    bool      `json:"mine,omitempty"`
	// Pending: ours, stored while no member was reachable; it is sent when one is.
	Pending bool `json:"pending,omitempty"`
}

func kindName(k pb.Kind) string { return strings.ToLower(k.String()) }

func (r *roomRT) view(m *Message, st *State) View {
	v := View{
		ID: m.ID.String(), RoomID: r.key, Kind: kindName(m.Body.Kind), Nick: m.Body.Nick,
		Persona: PersonaString(m.Body.Persona), Text: m.Body.Text, Time: m.Time().UTC(),
		Host: st.IsModerator(m.Body.Persona),
	}
	if len(m.Body.ReplyTo) > 0 {
		v.ReplyTo = fmt.Sprintf("%x", m.Body.ReplyTo)
	}
	if st.Hidden[m.ID] {
		v.Hidden, v.Text = true, ""
	}
	if r.persona != nil && bytes.Equal(m.Body.Persona, r.persona.Public().(ed25519.PublicKey)) {
		v.Mine = true
		v.Pending = r.isPending(m)
	}
	return v
}

// Info describes a joined or kept room.
type Info struct {
	RoomID      string    `json:"room_id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Tags        []string  `json:"tags"`
	Language    string    `json:"language,omitempty"`
	Capacity    int       `json:"capacity"`
	JoinPolicy  string    `json:"join_policy"` // open or link
	SlowMode    int       `json:"slow_mode_seconds"`
	Pinned      string    `json:"pinned,omitempty"`
	Closed      bool      `json:"closed,omitempty"`
	Members     int       `json:"members"`
	Messages    int       `json:"messages"`
	Moderators  []string  `json:"moderators"`
	Role        string    `json:"role"` // owner, moderator, member, keeper
	Persona     string    `json:"persona,omitempty"`
	Nick        string    `json:"nick,omitempty"`
	Peers       int       `json:"peers"`
	ModSeq      uint64    `json:"moderation_seq"`
	Joined      time.Time `json:"joined"`
	Created     time.Time `json:"created"`
}

func policyName(p pb.JoinPolicy) string {
	if p == pb.JoinPolicy_JOIN_LINK {
		return "link"
	}
	return "open"
}

func (s *Service) info(r *roomRT) Info {
	st := r.state.Load()
	m := st.Manifest.Body
	r.mu.Lock()
	defer r.mu.Unlock()
	in := Info{
		RoomID: r.key, Name: m.Name, Description: m.Description, Tags: slices.Clone(m.Tags), Language: m.Language,
		Capacity: int(m.Capacity), JoinPolicy: policyName(m.JoinPolicy), SlowMode: int(st.Slow / time.Second),
		Pinned: st.Pinned, Closed: st.Closed, Members: r.memberCountLocked(st), Messages: r.count,
		Nick: r.rec.Nick, ModSeq: st.MaxSeq, Joined: time.UnixMilli(r.rec.JoinedMs).UTC(),
		Created: time.UnixMilli(st.Genesis.Body.CreatedMs).UTC(), Moderators: []string{},
	}
	if in.Tags == nil {
		in.Tags = []string{}
	}
	for k := range st.Mods {
		in.Moderators = append(in.Moderators, PersonaString(k[:]))
	}
	slices.Sort(in.Moderators)
	if r.topic != nil {
		in.Peers = len(r.topic.ListPeers())
	}
	switch {
	case r.owner != nil:
		in.Role = "owner"
	case r.persona != nil && st.IsModerator(r.persona.Public().(ed25519.PublicKey)):
		in.Role = "moderator"
	case r.persona != nil:
		in.Role = "member"
	default:
		in.Role = "keeper"
	}
	if r.persona != nil {
		in.Persona = PersonaString(r.persona.Public().(ed25519.PublicKey))
	}
	return in
}

// Rooms lists the joined and kept rooms.
func (s *Service) Rooms() []Info {
	rs := s.snapshot()
	out := make([]Info, 0, len(rs))
	for _, r := range rs {
		out = append(out, s.info(r))
	}
	return out
}

// Room describes one room.
func (s *Service) Room(id ID) (Info, error) {
	r, err := s.room(id)
	if err != nil {
		return Info{}, err
	}
	return s.info(r), nil
}

// Messages returns up to limit stored messages older than before (a message ID; "" for the newest),
// oldest first.
func (s *Service) Messages(ctx context.Context, id ID, limit int, before string) ([]View, error) {
	r, err := s.room(id)
	if err != nil {
		return nil, err
	}
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	prefix := "m/" + r.key + "/"
	rng := store.Range{Prefix: prefix, Reverse: true, Limit: limit}
	if before != "" {
		mid, err := ParseMsgID(before)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		ts, err := s.d.Store.Get(r.idxKey(mid))
		if err != nil {
			return nil, fmt.Errorf("%w: unknown message %s", ErrBadRequest, before)
		}
		rng.End = prefix + string(ts) + "/" + mid.String()
	}
	st := r.state.Load()
	var out []View
	for e, err := range s.d.Store.Scan(ctx, rng) {
		if err != nil {
			return nil, err
		}
		// Stored items were verified when they came in: parse them, do not verify them again.
		d, err := parseItem(e.Value)
		if err != nil || d.msg == nil {
			continue
		}
		out = append(out, r.view(d.msg, st))
	}
	slices.Reverse(out)
	if out == nil {
		out = []View{}
	}
	return out, nil
}

// MemberView is a persona known in a room.
type MemberView struct {
	Persona string    `json:"persona"`
	Nick    string    `json:"nick"`
	Host    bool      `json:"host,omitempty"`
	Banned  bool      `json:"banned,omitempty"`
	Left    bool      `json:"left,omitempty"`
	Last    time.Time `json:"last_seen"`
}

// Members lists the personas this node has seen in a room.
func (s *Service) Members(id ID) ([]MemberView, error) {
	r, err := s.room(id)
	if err != nil {
		return nil, err
	}
	st := r.state.Load()
	now := s.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]MemberView, 0, len(r.members))
	for p, m := range r.members {
		_, banned := st.Banned(p[:], now)
		out = append(out, MemberView{
			Persona: PersonaString(p[:]), Nick: m.Nick, Host: st.IsModerator(p[:]), Banned: banned,
			Left: m.Left, Last: time.UnixMilli(m.LastMs).UTC(),
		})
	}
	slices.SortFunc(out, func(a, b MemberView) int { return b.Last.Compare(a.Last) })
	return out, nil
}

// resolvePersona accepts a persona key or the nick of exactly one known member.
func (r *roomRT) resolvePersona(s string) ([]byte, error) {
	if p, err := ParsePersona(s); err == nil {
		return p, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var found []byte
	for p, m := range r.members {
		if m.Nick == s {
			if found != nil {
				return nil, fmt.Errorf("%w: several members are called %q, give the persona", ErrBadRequest, s)
			}
			found = bytes.Clone(p[:])
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: no member %q", ErrBadRequest, s)
	}
	return found, nil
}

// Link returns a link to the room: with the secret for link-only rooms, and this node's addresses as hints.
func (s *Service) Link(id ID) (string, error) {
	r, err := s.room(id)
	if err != nil {
		return "", err
	}
	l := Link{Room: id, Secret: r.secret}
	if addrs := s.d.Host.Addrs(); len(addrs) > 0 {
		l.Peers = []peer.AddrInfo{{ID: s.d.Host.ID(), Addrs: addrs[:1]}}
	}
	return l.String(), nil
}

// Action is a moderation request.
type Action struct {
	Action    string `json:"action"`               // ban, unban, hide, pin, slow, add, rm, close, update
	Persona   string `json:"persona,omitempty"`    // ban, unban, add, rm: persona key or a member's nick
	MessageID string `json:"message_id,omitempty"` // hide
	Text      string `json:"text,omitempty"`       // pin (empty unpins)
	Seconds   int    `json:"seconds,omitempty"`    // slow; ban: duration (0 = until unbanned)
	Reason    string `json:"reason,omitempty"`     // ban
	// update: the fields to change in the manifest.
	Name        *string  `json:"name,omitempty"`
	Description *string  `json:"description,omitempty"`
	Tags        []string `json:"tags,omitempty"`
	Capacity    int      `json:"capacity,omitempty"`
}

// ModResult is the answer of Moderate.
type ModResult struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
}

func actionName(b *pb.ModBody) string {
	switch b.Action.(type) {
	case *pb.ModBody_Ban:
		return "ban"
	case *pb.ModBody_Unban:
		return "unban"
	case *pb.ModBody_Hide:
		return "hide"
	case *pb.ModBody_Pin:
		return "pin"
	case *pb.ModBody_Slow:
		return "slow"
	case *pb.ModBody_AddModerator:
		return "add"
	case *pb.ModBody_RemoveModerator:
		return "rm"
	case *pb.ModBody_UpdateManifest:
		return "update"
	case *pb.ModBody_Close:
		return "close"
	}
	return ""
}

// Moderate signs and publishes a moderation action as the owner or a co-host.
func (s *Service) Moderate(ctx context.Context, id ID, a Action) (ModResult, error) {
	r, err := s.room(id)
	if err != nil {
		return ModResult{}, err
	}
	b := &pb.ModBody{}
	persona := func() ([]byte, error) { return r.resolvePersona(a.Persona) }
	switch a.Action {
	case "ban", "unban", "add", "rm":
		p, err := persona()
		if err != nil {
			return ModResult{}, err
		}
		switch a.Action {
		case "ban":
			ban := &pb.Ban{Persona: p, Reason: a.Reason}
			if a.Seconds > 0 {
				ban.UntilMs = s.now().Add(time.Duration(a.Seconds) * time.Second).UnixMilli()
			}
			b.Action = &pb.ModBody_Ban{Ban: ban}
		case "unban":
			b.Action = &pb.ModBody_Unban{Unban: &pb.Unban{Persona: p}}
		case "add":
			b.Action = &pb.ModBody_AddModerator{AddModerator: &pb.AddModerator{Persona: p}}
		default:
			b.Action = &pb.ModBody_RemoveModerator{RemoveModerator: &pb.RemoveModerator{Persona: p}}
		}
	case "hide":
		mid, err := ParseMsgID(a.MessageID)
		if err != nil {
			return ModResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		b.Action = &pb.ModBody_Hide{Hide: &pb.Hide{MessageId: mid[:]}}
	case "pin":
		b.Action = &pb.ModBody_Pin{Pin: &pb.Pin{Text: a.Text}}
	case "slow":
		if a.Seconds < 0 || a.Seconds > MaxSlowMode {
			return ModResult{}, fmt.Errorf("%w: slow mode between 0 and %d seconds", ErrBadRequest, MaxSlowMode)
		}
		b.Action = &pb.ModBody_Slow{Slow: &pb.Slow{Seconds: uint32(a.Seconds)}}
	case "close":
		b.Action = &pb.ModBody_Close{Close: &pb.Close{}}
	case "update":
		if r.owner == nil {
			return ModResult{}, ErrOwnerOnly
		}
		m, err := s.updatedManifest(r, a)
		if err != nil {
			return ModResult{}, err
		}
		b.Action = &pb.ModBody_UpdateManifest{UpdateManifest: &pb.UpdateManifest{Manifest: m.Raw}}
	default:
		return ModResult{}, fmt.Errorf("%w: unknown action %q", ErrBadRequest, a.Action)
	}
	if _, err := checkMod(&pb.ModBody{Version: 1, Room: id[:], Signer: make([]byte, 32), Seq: 1, TimeMs: 1, Action: b.Action}); err != nil {
		return ModResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	act, err := r.moderate(ctx, b)
	if err != nil {
		return ModResult{}, err
	}
	return ModResult{ID: act.ID.String(), Seq: act.Body.Seq}, nil
}

func (s *Service) updatedManifest(r *roomRT, a Action) (*Manifest, error) {
	cur := r.state.Load().Manifest.Body
	nb := &pb.ManifestBody{
		Version: 1, Owner: cur.Owner, Nonce: cur.Nonce, Seq: cur.Seq + 1, Name: cur.Name,
		Description: cur.Description, Tags: cur.Tags, Language: cur.Language, Capacity: cur.Capacity,
		JoinPolicy: cur.JoinPolicy, LinkCheck: cur.LinkCheck, SlowModeSeconds: cur.SlowModeSeconds,
		Moderators: cur.Moderators, CreatedMs: cur.CreatedMs, UpdatedMs: s.now().UnixMilli(),
	}
	if a.Name != nil {
		nb.Name = strings.TrimSpace(*a.Name)
	}
	if a.Description != nil {
		nb.Description = *a.Description
	}
	if a.Tags != nil {
		tags, err := NormalizeTags(a.Tags)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		nb.Tags = tags
	}
	if a.Capacity > 0 {
		nb.Capacity = uint32(a.Capacity)
	}
	// The current co-hosts (including those added by actions) carry over into the new manifest.
	nb.Moderators = nil
	for k := range r.state.Load().Mods {
		nb.Moderators = append(nb.Moderators, bytes.Clone(k[:]))
	}
	slices.SortFunc(nb.Moderators, bytes.Compare)
	m, err := SignManifest(r.owner, nb)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	return m, nil
}

// ModEntry is one moderation log entry as the API shows it.
type ModEntry struct {
	ID      string    `json:"id"`
	Seq     uint64    `json:"seq"`
	Action  string    `json:"action"`
	Signer  string    `json:"signer"` // "owner" or the co-host's persona
	Target  string    `json:"target,omitempty"`
	Text    string    `json:"text,omitempty"`
	Seconds int       `json:"seconds,omitempty"`
	Time    time.Time `json:"time"`
}

// ModLog lists a room's moderation log.
func (s *Service) ModLog(id ID) ([]ModEntry, error) {
	r, err := s.room(id)
	if err != nil {
		return nil, err
	}
	st := r.state.Load()
	r.mu.Lock()
	entries := r.log.Entries()
	r.mu.Unlock()
	out := make([]ModEntry, 0, len(entries))
	for _, a := range entries {
		e := ModEntry{ID: a.ID.String(), Seq: a.Body.Seq, Action: actionName(a.Body), Time: time.UnixMilli(a.Body.TimeMs).UTC()}
		e.Signer = PersonaString(a.Body.Signer)
		if st.IsOwner(a.Body.Signer) {
			e.Signer = "owner"
		}
		switch x := a.Body.Action.(type) {
		case *pb.ModBody_Ban:
			e.Target, e.Text = PersonaString(x.Ban.Persona), x.Ban.Reason
		case *pb.ModBody_Unban:
			e.Target = PersonaString(x.Unban.Persona)
		case *pb.ModBody_AddModerator:
			e.Target = PersonaString(x.AddModerator.Persona)
		case *pb.ModBody_RemoveModerator:
			e.Target = PersonaString(x.RemoveModerator.Persona)
		case *pb.ModBody_Hide:
			e.Target = fmt.Sprintf("%x", x.Hide.MessageId)
		case *pb.ModBody_Pin:
			e.Text = x.Pin.Text
		case *pb.ModBody_Slow:
			e.Seconds = int(x.Slow.Seconds)
		}
		out = append(out, e)
	}
	return out, nil
}

// Reveal makes a proof, signed by our persona in the room and by our account, that the persona is ours. It
// is for friends the user chooses; it is never sent anywhere by the node itself.
func (s *Service) Reveal(id ID) ([]byte, error) {
	r, err := s.room(id)
	if err != nil {
		return nil, err
	}
	if r.persona == nil || s.d.Account == nil {
		return nil, ErrNotJoined
	}
	return SignReveal(id, r.persona, s.d.Account.AccountPrivate(), s.now())
}

// errStatus maps the service's errors to HTTP statuses.
func errStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrNotJoined):
		return 404, "not_found"
	case errors.Is(err, ErrBadRequest), errors.Is(err, ErrBadID), errors.Is(err, ErrNoQuery), errors.Is(err, ErrInvalid):
		return 400, "bad_request"
	case errors.Is(err, ErrRateLimited), errors.Is(err, ErrSlowMode):
		return 429, "rate_limited"
	case errors.Is(err, ErrBanned), errors.Is(err, ErrNotModerator), errors.Is(err, ErrOwnerOnly), errors.Is(err, ErrLinkRequired):
		return 403, "forbidden"
	case errors.Is(err, ErrClosed), errors.Is(err, ErrRoomFull):
		return 409, "conflict"
	case errors.Is(err, ErrNoPeers):
		return 502, "unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return 504, "timeout"
	}
	return 500, "internal"
}
