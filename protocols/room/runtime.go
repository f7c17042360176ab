package room

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
)

// Validation bounds.
const (
	// MaxFutureSkew: a message or action stamped further in the future is rejected.
	MaxFutureSkew = 60 * time.Second
	// StaleAfter: an older message is ignored on the live topic (history sync delivers it instead). It
	// equals gossip's seen-cache TTL, so replays after the cache forgot a message are dropped too.
	StaleAfter = gossip.SeenMessagesTTL
	// banGrace: for this long after a ban is known, messages of the banned persona are ignored rather
	// than rejected, since honest forwarders may not have the ban yet.
	banGrace = 30 * time.Second
	// rate limits at validators tolerate a little jitter over what senders enforce on themselves.
	validatorBurstSlack = 2
	validatorSlowFactor = 0.8
)

// Errors of user operations.
var (
	ErrNotJoined    = errors.New("room: not a member of this room")
	ErrRateLimited  = errors.New("room: sending too fast (rate limit)")
	ErrSlowMode     = errors.New("room: slow mode is on, wait before sending again")
	ErrBanned       = errors.New("room: you are banned from this room")
	ErrClosed       = errors.New("room: the room is closed")
	ErrNotModerator = errors.New("room: only the owner or a co-host can do this")
	ErrOwnerOnly    = errors.New("room: only the owner can do this")
	ErrRoomFull     = errors.New("room: the room is full")
	ErrLinkRequired = errors.New("room: this room is joined by link only (ask a member for the link)")
	ErrNoPeers      = errors.New("room: no reachable member or relay has this room")
	ErrBadRequest   = errors.New("room: bad request")
)

// roomRT is a joined or kept room at run time.
type roomRT struct {
	s   *Service
	id  ID
	key string // room ID string, for store keys

	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	events *pubsub.TopicEventHandler
	cancel context.CancelFunc

	state   atomic.Pointer[State]
	lim     *limiter // validators
	sendLim *limiter // our own persona
	secret  []byte   // link rooms
	persona ed25519.PrivateKey
	owner   ed25519.PrivateKey

	mu       sync.Mutex // serialises ingestion and guards the fields below
	rec      *pb.RoomRecord
	log      Log
	banKnown map[pkey]time.Time
	members  map[pkey]*pb.Member
	count    int
	lastSent int64
	mySeq    uint64
	openedAt time.Time
	pruning  atomic.Bool
	flushing atomic.Bool
	pending  int               // messages in the outbox
	live     map[pkey]liveMark // what the live stream last delivered per author

	marksMu sync.Mutex
	marks   map[pkey][]uint64 // seqs accounted for outside the live path (see markAccounted)

	plan      repairPlan // history repair sessions (see schedule.go)
	refusedMu sync.Mutex
	refused   map[MsgID]struct{} // IDs repair does not ask for again (see refuse)

	recentMu   sync.Mutex
	recent     map[MsgID]struct{} // recently stored messages (see remember)
	recentRing []MsgID
	recentPos  int

	topicPeers atomic.Int64 // peers on the topic, as its peer events tell (see peerLoop)

	storedMu sync.Mutex
	stored   *storedFilter // IDs of the stored messages, nil until loaded or the room starts (see has)
}

// liveMark is the last seq the live stream delivered from an author, and when.
type liveMark struct {
	seq uint64
	at  time.Time
}

func (s *Service) newRT(id ID, rec *pb.RoomRecord, genesis *Manifest, log *Log) *roomRT {
	r := &roomRT{
		s: s, id: id, key: id.String(), rec: rec, log: *log, secret: rec.Secret,
		lim:      newLimiter(s.c.RatePerMinute, s.c.Burst+validatorBurstSlack),
		sendLim:  newLimiter(s.c.RatePerMinute, s.c.Burst),
		banKnown: map[pkey]time.Time{}, members: map[pkey]*pb.Member{},
		live:     map[pkey]liveMark{},
		openedAt: s.now(),
		plan:     newRepairPlan(),
	}
	if rec.Joined {
		r.persona = PersonaKey(s.d.Secrets, id)
	}
	if len(rec.OwnerNonce) > 0 {
		r.owner = OwnerKey(s.d.Secrets, rec.OwnerNonce)
	}
	st := Fold(genesis, log)
	now := s.now()
	for p := range st.Bans {
		r.banKnown[p] = now.Add(-banGrace) // known since before this run
	}
	r.state.Store(st)
	return r
}

// start joins the topic and starts the room's loops under ctx.
func (r *roomRT) start(ctx context.Context) error {
	r.mu.Lock()
	if r.stored == nil { // not filled by loadLocal: a new room, or its scan did not read to the end
		r.rebuildStoredLocked(ctx)
	}
	r.mu.Unlock()
	t, err := r.s.d.Gossip.Join(r.id.Topic(), r.validate, gossip.TopicScoreParams())
	if err != nil {
		return err
	}
	sub, err := gossip.Subscribe(t)
	if err != nil {
		_ = r.s.d.Gossip.Leave(r.id.Topic())
		return err
	}
	evh, err := t.EventHandler()
	if err != nil {
		sub.Cancel()
		_ = r.s.d.Gossip.Leave(r.id.Topic())
		return fmt.Errorf("room events: %w", err)
	}
	r.topic, r.sub, r.events = t, sub, evh
	ctx, r.cancel = context.WithCancel(ctx)
	r.s.spawn(func() { r.receiveLoop(ctx) })
	r.s.spawn(func() { r.peerLoop(ctx) })
	r.s.spawn(func() { r.discoverLoop(ctx) })
	r.s.spawn(func() { r.repairLoop(ctx) })
	r.provideRendezvous(ctx)
	return nil
}

// rendezvousProviders is about how many members of a large room provide its rendezvous key.
const rendezvousProviders = 20

// provideRendezvous makes this node a provider of the room's rendezvous key: the owner and keeping relays
// at once; members after a random delay of 10–60 s, and in rooms larger than rendezvousProviders only
// with probability rendezvousProviders/members. Joiners find members through those providers and then
// through the topic, so a burst of joins does not become a burst of DHT walks.
func (r *roomRT) provideRendezvous(ctx context.Context) {
	name, c := "room:"+r.key, RendezvousCID(r.id)
	r.mu.Lock()
	now := r.owner != nil || r.rec.Keep
	n := r.memberCountLocked(r.state.Load())
	r.mu.Unlock()
	if now {
		r.s.rep.Add(name, c)
		return
	}
	if n > rendezvousProviders && mrand.Float64() >= float64(rendezvousProviders)/float64(n) {
		return
	}
	delay := 10*time.Second + time.Duration(mrand.Int64N(int64(50*time.Second)))
	r.s.spawn(func() {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
			r.s.rep.Add(name, c)
		}
	})
}

// stop leaves the topic and ends the loops.
func (r *roomRT) stop() {
	r.s.rep.Remove("room:" + r.key)
	if r.cancel != nil {
		r.cancel()
	}
	if r.events != nil {
		r.events.Cancel()
	}
	if r.sub != nil {
		r.sub.Cancel()
	}
	_ = r.s.d.Gossip.Leave(r.id.Topic())
}

// validate is the topic validator. It runs the cheap checks first and verifies the one signature last,
// so that a node verifies each message once; Reject is reserved for what no honest forwarder would pass
// on (bad signature or structure, wrong room, far-future time, bad link proof, a ban known for a while),
// Ignore for what depends on timing or local state (stale, duplicate, rate limit, slow mode, fresh ban).
func (r *roomRT) validate(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	if from == r.s.d.Host.ID() {
		if _, ok := m.ValidatorData.(*decoded); ok {
			return pubsub.ValidationAccept // our own publication, signed and checked by send or moderate
		}
	}
	d, err := parseItem(m.Data)
	if err != nil {
		return pubsub.ValidationReject
	}
	var res pubsub.ValidationResult
	if d.msg != nil {
		res = r.validateMessage(d)
	} else {
		res = r.validateMod(d)
	}
	if res == pubsub.ValidationAccept {
		m.ValidatorData = d
	}
	return res
}

func (r *roomRT) validateMessage(d *decoded) pubsub.ValidationResult {
	b := d.msg.Body
	if d.msg.Room != r.id {
		return pubsub.ValidationReject
	}
	now := r.s.now()
	t := time.UnixMilli(b.TimeMs)
	switch {
	case t.After(now.Add(MaxFutureSkew)):
		return pubsub.ValidationReject
	case t.Before(now.Add(-StaleAfter)):
		return pubsub.ValidationIgnore
	}
	st := r.state.Load()
	if st.Closed {
		return pubsub.ValidationIgnore
	}
	if _, banned := st.Banned(b.Persona, now); banned {
		r.mu.Lock()
		known, ok := r.banKnown[pk(b.Persona)]
		r.mu.Unlock()
		if ok && now.Sub(known) > banGrace {
			return pubsub.ValidationReject
		}
		return pubsub.ValidationIgnore
	}
	if st.Genesis.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK && !hmac.Equal(b.JoinProof, joinProof(r.secret, r.id, b.Persona)) {
		return pubsub.ValidationReject
	}
	if r.seenRecently(d.msg.ID) {
		return pubsub.ValidationIgnore // stored already (through sync, or another encoding of it)
	}
	if !d.verify() {
		return pubsub.ValidationReject
	}
	if b.Kind == pb.Kind_JOIN && r.full(b.Persona, st) {
		r.markAccounted(b.Persona, b.Seq)
		r.refuse(d.msg.ID)
		return pubsub.ValidationIgnore
	}
	slow := time.Duration(float64(st.Slow) * validatorSlowFactor)
	if st.IsModerator(b.Persona) {
		slow = 0
	}
	if r.lim.allow(pk(b.Persona), now, slow) != allowed {
		r.markAccounted(b.Persona, b.Seq)
		r.refuse(d.msg.ID) // repair does not bring back what this node's limits dropped
		return pubsub.ValidationIgnore
	}
	return pubsub.ValidationAccept
}

func (r *roomRT) validateMod(d *decoded) pubsub.ValidationResult {
	b := d.mod.Body
	if d.mod.Room != r.id {
		return pubsub.ValidationReject
	}
	if time.UnixMilli(b.TimeMs).After(r.s.now().Add(MaxFutureSkew)) {
		return pubsub.ValidationReject
	}
	r.mu.Lock()
	dup := r.log.Has(d.mod.ID)
	r.mu.Unlock()
	if dup {
		return pubsub.ValidationIgnore
	}
	if !d.verify() || !modAllowed(r.state.Load(), b) {
		return pubsub.ValidationReject
	}
	return pubsub.ValidationAccept
}

// modAllowed reports whether a moderation action's signer may make it: the owner, a current co-host (not
// for owner-only actions), or a signer carrying the owner-signed item that made it a co-host (the fold
// decides whether that still holds).
func modAllowed(st *State, b *pb.ModBody) bool {
	switch {
	case st.IsOwner(b.Signer):
		return true
	case ownerOnly(b):
		return false
	case st.IsModerator(b.Signer):
		return true
	}
	_, ok := authorityFor(st.Genesis, b)
	return ok
}

// full reports whether a new persona would exceed the room's capacity.
func (r *roomRT) full(persona []byte, st *State) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.members[pk(persona)]; ok && !m.Left {
		return false
	}
	return r.memberCountLocked(st) >= int(st.Manifest.Body.Capacity)
}

func (r *roomRT) memberCountLocked(st *State) int {
	n := 0
	now := r.s.now()
	for p, m := range r.members {
		if _, banned := st.Banned(p[:], now); !m.Left && !banned {
			n++
		}
	}
	return n
}

// recentCap bounds the in-memory set of recently stored message IDs that validators consult instead of
// the store (a store lookup per message costs about half a signature check).
const recentCap = 4096

func (r *roomRT) remember(id MsgID) {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	if r.recent == nil {
		r.recent = make(map[MsgID]struct{})
	}
	// The ring grows with the room's traffic up to recentCap and only then starts overwriting, so a
	// quiet room does not hold recentCap slots (and their map) from its first message.
	if len(r.recentRing) < recentCap {
		r.recentRing = append(r.recentRing, id)
	} else {
		delete(r.recent, r.recentRing[r.recentPos])
		r.recentRing[r.recentPos] = id
		r.recentPos = (r.recentPos + 1) % recentCap
	}
	r.recent[id] = struct{}{}
}

func (r *roomRT) seenRecently(id MsgID) bool {
	r.recentMu.Lock()
	defer r.recentMu.Unlock()
	_, ok := r.recent[id]
	return ok
}

func (r *roomRT) hasMod(id MsgID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.Has(id)
}

func (r *roomRT) msgKey(t int64, id MsgID) string {
	return "m/" + r.key + "/" + store.Uint64Key(uint64(t)) + "/" + id.String()
}
func (r *roomRT) idxKey(id MsgID) string { return "x/" + r.key + "/" + id.String() }
func (r *roomRT) modKey(a *ModAction) string {
	return "l/" + r.key + "/" + store.Uint64Key(a.Body.Seq) + "/" + a.ID.String()
}
func (r *roomRT) memberKey(p []byte) string { return "p/" + r.key + "/" + PersonaString(p) }
func (r *roomRT) seqKey() string            { return "q/" + r.key }

// ingestMessage stores a verified message once and tells the node. History sync passes live=false: its
// messages from personas banned at their time are dropped.
func (r *roomRT) ingestMessage(m *Message, live bool) (bool, error) {
	st := r.state.Load()
	if !live {
		if ban, ok := st.Banned(m.Body.Persona, r.s.now()); ok && !m.Time().Before(ban.Since) {
			return false, nil
		}
	}
	r.mu.Lock()
	if r.has(m.ID) {
		r.mu.Unlock()
		return false, nil
	}
	r.addStoredLocked(r.s.runCtx, m.ID)
	b := r.s.d.DB.NewBatch()
	_ = b.Put(r.s.d.Store, r.msgKey(m.Body.TimeMs, m.ID), m.Raw)
	_ = b.Put(r.s.d.Store, r.idxKey(m.ID), []byte(store.Uint64Key(uint64(m.Body.TimeMs))))
	if mem := r.memberUpdateLocked(m); mem != nil {
		raw, _ := proto.Marshal(mem)
		_ = b.Put(r.s.d.Store, r.memberKey(m.Body.Persona), raw)
	}
	if err := commit(b, false); err != nil {
		r.mu.Unlock()
		return false, fmt.Errorf("store message: %w", err)
	}
	r.count++
	r.remember(m.ID)
	if limit := r.s.c.HistoryLimit; r.count > limit+limit/10 && r.pruning.CompareAndSwap(false, true) {
		r.s.spawn(func() {
			defer r.pruning.Store(false)
			r.prune(r.s.runCtx)
		})
	}
	if !live {
		r.markAccounted(m.Body.Persona, m.Body.Seq)
	}
	mine := r.persona != nil && string(m.Body.Persona) == string(r.persona.Public().(ed25519.PublicKey))
	r.mu.Unlock()
	r.s.delivered(r, m, st, mine, live)
	return true, nil
}

// memberUpdateLocked records what a message says about its persona; it returns the member record to
// write, or nil if nothing durable changed.
func (r *roomRT) memberUpdateLocked(m *Message) *pb.Member {
	b := m.Body
	k := pk(b.Persona)
	mem := r.members[k]
	changed := false
	if mem == nil {
		mem = &pb.Member{JoinedMs: b.TimeMs}
		r.members[k] = mem
		changed = true
	}
	mem.LastSeq = max(mem.LastSeq, b.Seq)
	if b.TimeMs >= mem.LastMs {
		mem.LastMs = b.TimeMs
		if b.Nick != "" && b.Nick != mem.Nick {
			mem.Nick, changed = b.Nick, true
		}
		switch b.Kind {
		case pb.Kind_JOIN:
			if len(b.Avatar) > 0 {
				mem.Avatar = b.Avatar
			}
			mem.Left, changed = false, true
		case pb.Kind_LEAVE:
			mem.Left, changed = true, true
		}
	}
	if !changed {
		return nil
	}
	return proto.Clone(mem).(*pb.Member)
}

// ingestMod adds a verified moderation action (and the AddModerator it carries as authority) to the log,
// folds the log again and tells the node.
func (r *roomRT) ingestMod(a *ModAction) (bool, error) {
	r.mu.Lock()
	if r.log.Has(a.ID) {
		r.mu.Unlock()
		return false, nil
	}
	st := r.state.Load()
	var add []*ModAction
	if auth, ok := authorityFor(st.Genesis, a.Body); ok && auth != nil && !r.log.Has(auth.ID) {
		add = append(add, auth)
	}
	add = append(add, a)
	b := r.s.d.DB.NewBatch()
	for _, x := range add {
		r.log.Insert(x)
		_ = b.Put(r.s.d.Store, r.modKey(x), x.Raw)
	}
	if err := commit(b, true); err != nil {
		r.mu.Unlock()
		return false, fmt.Errorf("store moderation: %w", err)
	}
	nst := Fold(st.Genesis, &r.log)
	now := r.s.now()
	for p := range nst.Bans {
		if _, ok := r.banKnown[p]; !ok {
			r.banKnown[p] = now
		}
	}
	manifestChanged := nst.Manifest != st.Manifest
	if manifestChanged {
		r.rec.Manifest = nst.Manifest.Raw
		if err := r.s.putRecord(r.id, r.rec); err != nil {
			r.s.log.Warn("Room record update failed", "err", err)
		}
	}
	r.state.Store(nst)
	r.mu.Unlock()
	reason := "moderation"
	switch {
	case nst.Closed && !st.Closed:
		reason = "closed"
	case manifestChanged:
		reason = "manifest"
	}
	r.s.updated(r, reason, a)
	if r.owner != nil && (manifestChanged || nst.Closed) {
		r.s.spawn(func() { r.s.announceCard(r) })
	}
	return true, nil
}

// receiveLoop hands every accepted topic message to ingestion, each author's messages in the author's
// order (see orderer).
func (r *roomRT) receiveLoop(ctx context.Context) {
	in := make(chan *decoded, 1024)
	r.s.spawn(func() {
		defer close(in)
		for {
			m, err := r.sub.Next(ctx)
			if err != nil {
				return
			}
			d, _ := m.ValidatorData.(*decoded)
			// pubsub keeps m in its message cache for gossip a few more seconds; the decoded copy (about
			// twice the message's size) need not live that long.
			m.ValidatorData = nil
			if d != nil {
				if drop := r.s.dropLive.Load(); drop != nil && d.msg != nil && (*drop)(d.msg) {
					continue // tests: a message lost on the way
				}
				select {
				case in <- d:
				case <-ctx.Done():
					return
				}
			}
		}
	})
	ord := newOrderer()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	armed := false
	gaps := 0
	ingest := func(ms []*Message) {
		if ord.gaps != gaps {
			gaps = ord.gaps
			r.noteGap(ord.gapUntil) // a message of an author was lost on the way: repair soon
		}
		for _, m := range ms {
			if _, err := r.ingestMessage(m, true); err != nil {
				r.s.log.Warn("Room ingest failed", "err", err)
			}
			r.mu.Lock()
			if len(r.live) > 4096 {
				clear(r.live)
			}
			r.live[pk(m.Body.Persona)] = liveMark{seq: m.Body.Seq, at: r.s.now()}
			r.mu.Unlock()
		}
	}
	for {
		select {
		case d, ok := <-in:
			if !ok {
				return
			}
			if d.mod != nil {
				if _, err := r.ingestMod(d.mod); err != nil {
					r.s.log.Warn("Room ingest failed", "err", err)
				}
				continue
			}
			ingest(ord.push(d.msg, r.s.now(), r))
		case <-timer.C:
			armed = false
			ingest(ord.expired(r.s.now(), r))
		}
		if !armed && ord.waiting() {
			timer.Reset(reorderTick)
			armed = true
		}
	}
}

// aheadOfLive reports whether m is ahead of what the live stream, currently delivering its author,
// has handed on (and of what is stored from the author, e.g. by the same repair): sync then leaves it to
// the live path, which keeps the author's order.
func (r *roomRT) aheadOfLive(m *Message) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := pk(m.Body.Persona)
	l, ok := r.live[k]
	if !ok || r.s.now().Sub(l.at) >= inFlight {
		return false
	}
	last := l.seq
	if mem := r.members[k]; mem != nil {
		last = max(last, mem.LastSeq)
	}
	return m.Body.Seq > last+1
}

// reorderTick is how often a waiting orderer looks for gaps closed elsewhere or expired.
const reorderTick = 50 * time.Millisecond

// markAccounted notes that an author's seq will not come through the live path (stored by sync, or
// dropped here after its signature verified), so that the orderer does not wait for it.
func (r *roomRT) markAccounted(persona []byte, seq uint64) {
	if seq == 0 {
		return
	}
	r.marksMu.Lock()
	defer r.marksMu.Unlock()
	if r.marks == nil || len(r.marks) > 4096 {
		r.marks = map[pkey][]uint64{}
	}
	k := pk(persona)
	if len(r.marks[k]) < 1024 {
		r.marks[k] = append(r.marks[k], seq)
	}
}

func (r *roomRT) accounted(k pkey) []uint64 {
	r.marksMu.Lock()
	defer r.marksMu.Unlock()
	s := r.marks[k]
	delete(r.marks, k)
	return s
}

func (r *roomRT) lastSeq(k pkey) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.members[k]; m != nil {
		return m.LastSeq
	}
	return 0
}

// peerLoop keeps the count of topic peers (see publish), plans a catch-up with each room peer that
// appears on the topic (we or they came back online, or a new member joined; see catchUpWith) and sends
// the outbox.
func (r *roomRT) peerLoop(ctx context.Context) {
	peers := map[peer.ID]struct{}{}
	for {
		ev, err := r.events.NextPeerEvent(ctx)
		if err != nil {
			return
		}
		if ev.Type != pubsub.PeerJoin {
			delete(peers, ev.Peer)
			r.topicPeers.Store(int64(len(peers)))
			continue
		}
		peers[ev.Peer] = struct{}{}
		r.topicPeers.Store(int64(len(peers)))
		r.catchUpWith(ev.Peer)
		if r.hasPending() {
			r.s.spawn(func() { r.flushOutbox(ctx) })
		}
	}
}

// discoverLoop looks for room peers in the DHT whenever the room has no topic peers (at start, after a
// restart, after losing them), with backoff.
func (r *roomRT) discoverLoop(ctx context.Context) {
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if len(r.topic.ListPeers()) == 0 {
			r.s.findPeers(ctx, r.id, nil)
			wait = min(max(2*wait, 2*time.Second), time.Minute)
		} else {
			r.flushOutbox(ctx) // what the rate limit held back at the last flush
			wait = 30 * time.Second
		}
	}
}

// send signs and publishes one of our messages. It is stored (and shown) at once; it is published when the
// room has peers (waiting a little for the mesh right after joining), and otherwise reaches the room
// through history sync when peers come back.
func (r *roomRT) send(ctx context.Context, kind pb.Kind, text string, replyTo []byte) (*Message, bool, error) {
	return r.sendSeq(ctx, kind, text, replyTo, 0)
}

// sendSeq is send with a given seq (0: the next one). The outbox resends a pending message under the seq
// it was first given, which nobody received, so that receivers see no gap in the author's sequence.
func (r *roomRT) sendSeq(ctx context.Context, kind pb.Kind, text string, replyTo []byte, reuse uint64) (*Message, bool, error) {
	if r.persona == nil {
		return nil, false, ErrNotJoined
	}
	st := r.state.Load()
	me := r.persona.Public().(ed25519.PublicKey)
	now := r.s.now()
	switch {
	case st.Closed:
		return nil, false, ErrClosed
	case kind == pb.Kind_TEXT && strings.TrimSpace(text) == "":
		return nil, false, fmt.Errorf("%w: empty message", ErrBadRequest)
	case len(text) > MaxTextBytes:
		return nil, false, fmt.Errorf("%w: text over %d bytes", ErrBadRequest, MaxTextBytes)
	}
	if _, banned := st.Banned(me, now); banned {
		return nil, false, ErrBanned
	}
	slow := st.Slow
	if st.IsModerator(me) || r.owner != nil {
		slow = 0
	}
	switch r.sendLim.allow(pk(me), now, slow) {
	case rateLimited:
		return nil, false, ErrRateLimited
	case slowMode:
		return nil, false, ErrSlowMode
	}
	r.mu.Lock()
	t := max(now.UnixMilli(), r.lastSent+1)
	r.lastSent = t
	seq := reuse
	if seq == 0 {
		r.mySeq++
		seq = r.mySeq
	}
	nick, avatar := r.rec.Nick, r.rec.Avatar
	r.mu.Unlock()
	if reuse == 0 {
		// Not fsynced: after a crash the seq may repeat, which receivers treat as late (delivered at once).
		_ = r.s.d.Store.Put(r.seqKey(), []byte(store.Uint64Key(seq)))
	}
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	body := &pb.MessageBody{
		Version: 1, Room: r.id[:], Persona: me, TimeMs: t, Nonce: nonce, Kind: kind, Text: text,
		ReplyTo: replyTo, Nick: nick, Seq: seq,
	}
	if kind == pb.Kind_JOIN {
		body.Avatar = avatar
	}
	if st.Genesis.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK {
		body.JoinProof = joinProof(r.secret, r.id, me)
	}
	msg, err := SignMessage(r.persona, body)
	if err != nil {
		return nil, false, err
	}
	if _, err := r.ingestMessage(msg, true); err != nil {
		return nil, false, err
	}
	published := r.publish(ctx, msg.Raw, &decoded{msg: msg})
	if !published && kind == pb.Kind_TEXT && !r.flushing.Load() {
		r.addPending(msg)
	}
	return msg, published, nil
}

// publish sends raw on the topic. Flood publishing reaches every topic peer at once; with no topic peer
// right after joining, it waits up to publishWait for one so that no first message is silently lost.
// Whether the topic has peers comes from the topic's peer events: asking pubsub (ListPeers) is a round trip
// through its event loop, which in a busy room held a send up for tens of milliseconds. Only when the
// events say none does it ask.
func (r *roomRT) publish(ctx context.Context, raw []byte, d *decoded) bool {
	opts := []pubsub.PubOpt{pubsub.WithValidatorData(d)}
	if r.topicPeers.Load() == 0 && len(r.topic.ListPeers()) == 0 {
		if r.s.now().Sub(r.openedAt) > publishWait*10 {
			return false // alone: history sync delivers it when peers come back
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishWait)
		defer cancel()
		opts = append(opts, pubsub.WithReadiness(pubsub.MinTopicSize(1)))
	}
	if err := r.topic.Publish(ctx, raw, opts...); err != nil {
		r.s.log.Debug("Room publish failed", "err", err)
		return false
	}
	return true
}

// publishWait bounds the wait for a first topic peer when publishing right after joining.
const publishWait = 3 * time.Second

// waitPeers waits until the topic has a peer (mesh ready for flood publishing) or d passes.
func (r *roomRT) waitPeers(ctx context.Context, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(r.topic.ListPeers()) == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// moderate signs and publishes a moderation action with the owner key or our co-host persona.
func (r *roomRT) moderate(ctx context.Context, b *pb.ModBody) (*ModAction, error) {
	st := r.state.Load()
	var key ed25519.PrivateKey
	switch {
	case r.owner != nil:
		key = r.owner
	case r.persona != nil && st.IsModerator(r.persona.Public().(ed25519.PublicKey)):
		if ownerOnly(b) {
			return nil, ErrOwnerOnly
		}
		key = r.persona
	default:
		return nil, ErrNotModerator
	}
	if st.Closed {
		return nil, ErrClosed
	}
	r.mu.Lock()
	b.Version, b.Room, b.Signer = 1, r.id[:], key.Public().(ed25519.PublicKey)
	b.Seq = r.log.MaxSeq() + 1
	b.TimeMs = max(r.s.now().UnixMilli(), 1)
	if r.owner == nil {
		b.Authority = authorityOf(st, &r.log, b.Signer)
	}
	r.mu.Unlock()
	if t := target(b); t != nil && r.owner == nil && st.IsModerator(t) {
		return nil, ErrOwnerOnly
	}
	a, err := SignModAction(key, b)
	if err != nil {
		return nil, err
	}
	if _, err := r.ingestMod(a); err != nil {
		return nil, err
	}
	r.publish(ctx, a.Raw, &decoded{mod: a})
	return a, nil
}
