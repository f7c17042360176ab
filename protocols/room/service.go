// Package room is Open Chat: public interest rooms on gossipsub (/madang/room/1/<roomID>).
//
// A room is described by a manifest signed by its owner key; the owner key is derived from the owner's
// account secret and a nonce, and the room ID from the owner key and the nonce, so a room cannot be linked
// to its owner's account. Members talk under per-room personas (Ed25519 keys derived with HKDF from the
// account secret and the room ID): nothing a member sends in one room can be linked to what it sends in
// another, unless it shows a signed reveal proof to someone of its choosing.
//
// Every node validates every message at the first hop: signature (once per node), room, size, clock
// skew, bans, link proof, a per-persona token bucket and slow mode. Moderation is a signed, sequenced log
// (ban, unban, hide, pin, slow mode, co-hosts, manifest updates, close) that every node folds to the same
// state and that travels with the history (/madang/room-sync/1.0.0 gives a joining node its first page;
// /madang/room-sync/2.0.0 repairs what a member missed by comparing summaries). Open rooms are announced
// in the directory under their tags and the words of their name.
package room

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/protocols/directory"
	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/protocols/roomsync"
	"github.com/madang-p2p/madang/store"
)

// Event types published on the node's event bus.
const (
	EventMessage = "room.message"
	EventUpdated = "room.updated"
)

// CardKind is the directory kind of room cards.
const CardKind = "room"

// Account is what the service needs of the node's identity.
type Account interface {
	Secrets
	AccountPrivate() ed25519.PrivateKey
}

// Deps are the node parts the service runs on.
type Deps struct {
	Host      host.Host
	Routing   directory.Routing
	Gossip    *gossip.Router
	Store     *store.NS    // the "rooms" namespace
	DB        *store.Store // the store of that namespace (atomic batches)
	Events    *events.Bus  // may be nil
	Account   Account
	Secrets   Secrets // defaults to Account
	Directory *directory.Service
	Log       *slog.Logger
}

// Config tunes the service (see config.RoomsConfig).
type Config struct {
	RatePerMinute int // per persona, at every validator
	Burst         int
	HistoryLimit  int // messages kept per room
	HistoryOnJoin int // newest messages fetched when joining
	// Keep lists rooms a relay keeps (joins silently, stores and serves history, announces their cards):
	// room IDs, links, or "#tag" / "tag:<tag>" for every open room found under a tag.
	Keep []string
	// CardInterval is how often an owner re-signs its rooms' directory cards (default 1 h); KeepInterval how
	// often a keeper looks its tags up again (default 10 min).
	CardInterval time.Duration
	KeepInterval time.Duration
	// RepairInterval is the anti-entropy interval: every room compares its history with one room peer
	// this often (± a third; default DefaultRepairInterval), besides the catch-ups that peer arrivals and
	// lost messages start.
	RepairInterval time.Duration
	// Republish tunes provider records of room rendezvous keys.
	Republish directory.Options
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.RatePerMinute <= 0 {
		c.RatePerMinute = 30
	}
	if c.Burst <= 0 {
		c.Burst = 10
	}
	if c.HistoryLimit <= 0 {
		c.HistoryLimit = 5000
	}
	if c.HistoryOnJoin <= 0 {
		c.HistoryOnJoin = 200
	}
	if c.CardInterval <= 0 {
		c.CardInterval = time.Hour
	}
	if c.KeepInterval <= 0 {
		c.KeepInterval = 10 * time.Minute
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = DefaultRepairInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Delivery is a message stored by this node (for Watch).
type Delivery struct {
	Room     ID
	Message  *Message
	Received time.Time
	// Live is false for messages that came through history sync.
	Live bool
}

// Service runs a node's rooms.
type Service struct {
	d   Deps
	c   Config
	log *slog.Logger
	rep *directory.Republisher

	ready  chan struct{}
	runCtx context.Context
	wg     sync.WaitGroup

	joinMu sync.Mutex // one join or create at a time
	mu     sync.Mutex
	rooms  map[ID]*roomRT
	watch  map[*watcher]struct{}

	serving      chan struct{} // repair sessions being served
	hostileMu    sync.Mutex
	hostile      map[peer.ID]time.Time // sync peers that sent invalid answers, until when they are avoided
	repairs      atomic.Int64          // repair sessions started
	repairItems  atomic.Int64          // items received by them
	repairStored atomic.Int64          // messages they stored
	dropLive     atomic.Pointer[func(*Message) bool]
}

type watcher struct{ fn func(Delivery) }

// New builds the service. Nothing runs until Run.
func New(d Deps, c Config) *Service {
	c.defaults()
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Secrets == nil {
		d.Secrets = d.Account
	}
	log := d.Log.With("component", "rooms")
	s := &Service{
		d: d, c: c, log: log, rep: directory.NewRepublisher(d.Routing, log, c.Republish),
		ready: make(chan struct{}), rooms: map[ID]*roomRT{}, watch: map[*watcher]struct{}{},
		serving: make(chan struct{}, maxServeSessions), hostile: map[peer.ID]time.Time{},
	}
	if d.Directory != nil {
		d.Directory.RegisterKind(CardKind, VerifyCard)
	}
	return s
}

func (s *Service) now() time.Time { return s.c.Now() }

// spawn runs fn as a goroutine owned by Run (nothing is started once Run is ending).
func (s *Service) spawn(fn func()) {
	if s.runCtx == nil || s.runCtx.Err() != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Run opens the stored rooms, serves history sync and runs the service's loops until ctx ends; then it
// leaves every topic and waits for its goroutines.
func (s *Service) Run(ctx context.Context) error {
	s.runCtx = ctx
	roomsync.Register(ctx, s.d.Host, s.serveSync)
	defer s.d.Host.RemoveStreamHandler(roomsync.ProtocolID)
	s.d.Host.SetStreamHandler(SyncProtocolID, s.handleSync)
	defer s.d.Host.RemoveStreamHandler(SyncProtocolID)
	s.openStored(ctx)
	close(s.ready)
	s.spawn(func() { _ = s.rep.Run(ctx) })
	s.spawn(func() { s.maintain(ctx) })
	if len(s.c.Keep) > 0 {
		s.spawn(func() { s.keepLoop(ctx) })
	}
	<-ctx.Done()
	s.mu.Lock()
	for _, r := range s.rooms {
		r.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// wait blocks until Run has started (API calls can arrive before).
func (s *Service) wait(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) room(id ID) (*roomRT, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[id]
	if r == nil {
		return nil, ErrNotJoined
	}
	return r, nil
}

func (s *Service) putRecord(id ID, rec *pb.RoomRecord) error {
	raw, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("room record: %w", err)
	}
	return s.d.Store.PutSync("r/"+id.String(), raw)
}

// openStored reopens every room in the store (after a restart).
func (s *Service) openStored(ctx context.Context) {
	for e, err := range s.d.Store.Scan(ctx, store.Range{Prefix: "r/"}) {
		if err != nil {
			s.log.Warn("Rooms load failed", "err", err)
			return
		}
		id, err := ParseID(strings.TrimPrefix(e.Key, "r/"))
		if err != nil {
			continue
		}
		var rec pb.RoomRecord
		if proto.Unmarshal(e.Value, &rec) != nil {
			continue
		}
		if err := s.openRecord(ctx, id, &rec); err != nil {
			s.log.Warn("Room reopen failed", "room", id, "err", err)
		}
	}
}

func (s *Service) openRecord(ctx context.Context, id ID, rec *pb.RoomRecord) error {
	genesis, err := DecodeManifest(rec.Genesis)
	if err != nil || genesis.ID != id {
		return fmt.Errorf("stored genesis: %w", err)
	}
	var log Log
	for e, err := range s.d.Store.Scan(ctx, store.Range{Prefix: "l/" + id.String() + "/"}) {
		if err != nil {
			return err
		}
		if _, a, err := DecodeItem(e.Value); err == nil && a != nil {
			log.Insert(a)
		}
	}
	r := s.newRT(id, rec, genesis, &log)
	r.loadLocal(ctx)
	if err := r.start(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.rooms[id] = r
	s.mu.Unlock()
	if r.owner != nil {
		s.spawn(func() { s.announceCard(r) })
	}
	return nil
}

// loadLocal counts stored messages and loads members.
func (r *roomRT) loadLocal(ctx context.Context) {
	for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: "p/" + r.key + "/"}) {
		if err != nil {
			break
		}
		p, err := ParsePersona(strings.TrimPrefix(e.Key, "p/"+r.key+"/"))
		var m pb.Member
		if err == nil && proto.Unmarshal(e.Value, &m) == nil {
			r.members[pk(p)] = &m
		}
	}
	// Count the messages; the newest ones (parsed, not verified again: they were verified when stored)
	// give each author's latest seq and time, which are not written with every message.
	// The same scan gives the IDs for the stored-message filter (see has), if it reads to the end; if it
	// does not, start rebuilds the filter from the index.
	n := 0
	var ids []MsgID
	complete := true
	for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: "m/" + r.key + "/", Reverse: true}) {
		if err != nil {
			complete = false
			break
		}
		if id, err := ParseMsgID(e.Key[strings.LastIndexByte(e.Key, '/')+1:]); err == nil {
			ids = append(ids, id)
		}
		if n < recentScan {
			if d, err := parseItem(e.Value); err == nil && d.msg != nil {
				b := d.msg.Body
				if m := r.members[pk(b.Persona)]; m != nil {
					m.LastSeq, m.LastMs = max(m.LastSeq, b.Seq), max(m.LastMs, b.TimeMs)
				}
			}
		}
		n++
	}
	r.count = n
	if complete {
		r.stored = filterOf(ids)
	}
	if r.persona != nil {
		if m := r.members[pk(r.persona.Public().(ed25519.PublicKey))]; m != nil {
			r.lastSent = m.LastMs
		}
		if v, err := r.s.d.Store.Get(r.seqKey()); err == nil {
			_, _ = fmt.Sscan(string(v), &r.mySeq)
		}
		r.pending, _ = r.s.d.Store.Count(ctx, "o/"+r.key+"/")
	}
}

// recentScan is how many of a room's newest messages are parsed when it is reopened.
const recentScan = 1000

// CreateOptions describe a new room.
type CreateOptions struct {
	Name        string
	Description string
	Tags        []string
	Language    string
	Capacity    int  // 0: DefaultCapacity
	LinkOnly    bool // joined by link with a secret; not listed in the directory
	SlowMode    time.Duration
	Nick        string
	Avatar      []byte
}

// Create makes a new room owned by this account, joins it and (for open rooms) announces it in the
// directory under its tags and the words of its name.
func (s *Service) Create(ctx context.Context, o CreateOptions) (Info, error) {
	if err := s.wait(ctx); err != nil {
		return Info{}, err
	}
	tags, err := NormalizeTags(o.Tags)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if o.Capacity == 0 {
		o.Capacity = DefaultCapacity
	}
	if err := checkNick(o.Nick, o.Avatar); err != nil {
		return Info{}, err
	}
	nonce := make([]byte, nonceLen)
	_, _ = rand.Read(nonce)
	owner := OwnerKey(s.d.Secrets, nonce)
	now := s.now()
	body := &pb.ManifestBody{
		Version: 1, Owner: owner.Public().(ed25519.PublicKey), Nonce: nonce, Seq: 1,
		Name: strings.TrimSpace(o.Name), Description: o.Description, Tags: tags, Language: o.Language,
		Capacity: uint32(max(o.Capacity, 0)), SlowModeSeconds: uint32(max(o.SlowMode/time.Second, 0)),
		CreatedMs: now.UnixMilli(), UpdatedMs: now.UnixMilli(),
	}
	// The owner's persona in the room is listed as a host, so that members see who runs the room (the
	// persona stays unlinkable to the account, like every persona).
	persona := PersonaKey(s.d.Secrets, DeriveID(owner.Public().(ed25519.PublicKey), nonce))
	body.Moderators = [][]byte{persona.Public().(ed25519.PublicKey)}
	var secret []byte
	if o.LinkOnly {
		secret = make([]byte, 16)
		_, _ = rand.Read(secret)
		body.JoinPolicy, body.LinkCheck = pb.JoinPolicy_JOIN_LINK, linkCheck(secret)
	}
	m, err := SignManifest(owner, body)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	rec := &pb.RoomRecord{
		Genesis: m.Raw, Manifest: m.Raw, Joined: true, Nick: o.Nick, Avatar: o.Avatar, Secret: secret,
		OwnerNonce: nonce, JoinedMs: now.UnixMilli(),
	}
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	if err := s.putRecord(m.ID, rec); err != nil {
		return Info{}, err
	}
	r := s.newRT(m.ID, rec, m, &Log{})
	r.openedAt = time.Time{} // a new room has no peers to wait for: publish at once
	if err := r.start(s.runCtx); err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	s.rooms[m.ID] = r
	s.mu.Unlock()
	if err := s.announceJoin(ctx, r); err != nil {
		return Info{}, err
	}
	s.updated(r, "created", nil)
	s.spawn(func() { s.announceCard(r) })
	return s.info(r), nil
}

func checkNick(nick string, avatar []byte) error {
	if len(nick) > MaxNickBytes || len(avatar) > MaxAvatarBytes {
		return fmt.Errorf("%w: nick over %d bytes or avatar over %d bytes", ErrBadRequest, MaxNickBytes, MaxAvatarBytes)
	}
	return nil
}

// announceJoin sends our JOIN message once per room (nick and avatar for the others).
func (s *Service) announceJoin(ctx context.Context, r *roomRT) error {
	r.mu.Lock()
	done := r.rec.AnnouncedJoin
	r.mu.Unlock()
	if done || r.persona == nil {
		return nil
	}
	if _, _, err := r.send(ctx, pb.Kind_JOIN, "", nil); err != nil {
		return err
	}
	r.mu.Lock()
	r.rec.AnnouncedJoin = true
	err := s.putRecord(r.id, r.rec)
	r.mu.Unlock()
	return err
}

// JoinOptions describe how to join.
type JoinOptions struct {
	Nick   string
	Avatar []byte
}

// Join joins a room by ID or link: it finds room peers in the DHT (and from the link), fetches the
// manifests, moderation log and the newest messages from one of them, subscribes, waits for a topic peer
// so that the first message is not lost, and introduces our persona. Joining a room already joined
// updates nothing and returns it.
func (s *Service) Join(ctx context.Context, ref string, o JoinOptions) (Info, error) {
	if err := s.wait(ctx); err != nil {
		return Info{}, err
	}
	if err := checkNick(o.Nick, o.Avatar); err != nil {
		return Info{}, err
	}
	l, err := ParseLink(ref)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	if r, err := s.room(l.Room); err == nil {
		if r.persona == nil { // kept by this relay; now also joined
			r.mu.Lock()
			r.rec.Joined, r.rec.Nick, r.rec.Avatar = true, o.Nick, o.Avatar
			r.persona = PersonaKey(s.d.Secrets, r.id)
			err := s.putRecord(r.id, r.rec)
			r.mu.Unlock()
			if err != nil {
				return Info{}, err
			}
			if err := s.announceJoin(ctx, r); err != nil {
				return Info{}, err
			}
		}
		return s.info(r), nil
	}
	r, err := s.open(ctx, l, true, o)
	if err != nil {
		return Info{}, err
	}
	r.waitPeers(ctx, 5*time.Second)
	if err := s.announceJoin(ctx, r); err != nil {
		return Info{}, err
	}
	s.updated(r, "joined", nil)
	return s.info(r), nil
}

// open bootstraps a room from its peers and starts it (for a member or a keeper). A room created moments
// ago may not be in the DHT yet, so finding peers is retried for a few seconds.
func (s *Service) open(ctx context.Context, l Link, member bool, o JoinOptions) (*roomRT, error) {
	peers := s.findPeers(ctx, l.Room, l.Peers)
	for wait := 250 * time.Millisecond; len(peers) == 0 && wait < 8*time.Second; wait *= 2 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		peers = s.findPeers(ctx, l.Room, l.Peers)
	}
	var resp *bootstrap
	var lastErr error = ErrNoPeers
	for _, p := range peers {
		b, err := s.fetchBootstrap(ctx, l, p)
		if err == nil {
			resp = b
			break
		}
		lastErr = err
		if errors.Is(err, ErrLinkRequired) {
			break
		}
	}
	if resp == nil {
		if errors.Is(lastErr, ErrLinkRequired) || errors.Is(lastErr, ErrNoPeers) {
			return nil, lastErr
		}
		return nil, fmt.Errorf("%w (last answer: %w)", ErrNoPeers, lastErr)
	}
	now := s.now()
	rec := &pb.RoomRecord{
		Genesis: resp.genesis.Raw, Manifest: resp.genesis.Raw, Joined: member, Keep: !member,
		Nick: o.Nick, Avatar: o.Avatar, Secret: l.Secret, JoinedMs: now.UnixMilli(),
	}
	if resp.card != nil {
		rec.Card = resp.card.Raw
	}
	// A member joining later starts its history at the oldest message it fetched (HistoryOnJoin of them):
	// catch-ups never reach further back.
	// (The oldest fetched message's own millisecond is excluded: other messages of that millisecond that
	// sort before it were not fetched either.)
	rec.FloorMs = now.UnixMilli()
	if len(resp.messages) > 0 {
		rec.FloorMs = resp.messages[0].Body.TimeMs + 1
	}
	// The owner key is derived from the account and the room's nonce: an owner who left (or joins from
	// another device of the same account) gets the room back.
	if member && pub32(OwnerKey(s.d.Secrets, resp.genesis.Body.Nonce)) == pk(resp.genesis.Owner()) {
		rec.OwnerNonce = resp.genesis.Body.Nonce
	}
	r := s.newRT(l.Room, rec, resp.genesis, &resp.log)
	st := r.state.Load()
	rec.Manifest = st.Manifest.Raw
	if member {
		me := r.persona.Public().(ed25519.PublicKey)
		if _, banned := st.Banned(me, now); banned {
			return nil, ErrBanned
		}
		if st.Closed {
			return nil, ErrClosed
		}
	}
	if err := s.putRecord(l.Room, rec); err != nil {
		return nil, err
	}
	b := s.d.DB.NewBatch()
	for _, a := range resp.log.entries {
		_ = b.Put(s.d.Store, r.modKey(a), a.Raw)
	}
	if err := commit(b, true); err != nil {
		return nil, fmt.Errorf("store moderation: %w", err)
	}
	for _, m := range resp.messages {
		if _, err := r.ingestMessage(m, false); err != nil {
			return nil, err
		}
	}
	if member {
		r.mu.Lock()
		full := r.memberCountLocked(st) >= int(st.Manifest.Body.Capacity)
		r.mu.Unlock()
		if full {
			_ = s.d.Store.DeleteSync("r/" + l.Room.String())
			return nil, ErrRoomFull
		}
	}
	if err := r.start(s.runCtx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.rooms[l.Room] = r
	s.mu.Unlock()
	if !member && rec.Card != nil {
		s.spawn(func() { s.announceHeldCard(r) })
	}
	// Catch up on what arrived between the history fetch and the subscription.
	r.catchUpWith(resp.from)
	return r, nil
}

// findPeers connects to room peers: connected peers already on the room's topic, hints (from a link) and
// providers of the room's rendezvous key. It returns the connected ones, in that order.
func (s *Service) findPeers(ctx context.Context, id ID, hints []peer.AddrInfo) []peer.ID {
	for _, p := range s.d.Gossip.PubSub().ListPeers(id.Topic()) {
		hints = append([]peer.AddrInfo{{ID: p}}, hints...)
	}
	ctx, cancel := context.WithTimeout(ctx, directory.FindTimeout)
	defer cancel()
	var mu sync.Mutex
	var out []peer.ID
	seen := map[peer.ID]bool{s.d.Host.ID(): true}
	var wg sync.WaitGroup
	try := func(ai peer.AddrInfo) {
		if seen[ai.ID] {
			return
		}
		seen[ai.ID] = true
		wg.Go(func() {
			if s.d.Host.Network().Connectedness(ai.ID) != network.Connected {
				if len(ai.Addrs) > 0 {
					s.d.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
				}
				cctx, cancel := context.WithTimeout(ctx, directory.StreamTimeout)
				err := s.d.Host.Connect(cctx, peer.AddrInfo{ID: ai.ID})
				cancel()
				if err != nil {
					return
				}
			}
			mu.Lock()
			out = append(out, ai.ID)
			mu.Unlock()
		})
	}
	for _, h := range hints {
		try(h)
	}
	wg.Wait()
	if len(out) == 0 || len(hints) == 0 {
		fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
		for ai := range s.d.Routing.FindProvidersAsync(fctx, RendezvousCID(id), 20) {
			try(ai)
		}
		fcancel()
		wg.Wait()
	}
	return out
}

// Leave sends a LEAVE message, leaves the topic and deletes the room's local data. The owner's directory
// cards are withdrawn.
func (s *Service) Leave(ctx context.Context, id ID) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	r, err := s.room(id)
	if err != nil {
		return err
	}
	if r.persona != nil && !r.state.Load().Closed {
		if _, _, err := r.send(ctx, pb.Kind_LEAVE, "", nil); err != nil && !errors.Is(err, ErrBanned) &&
			!errors.Is(err, ErrRateLimited) && !errors.Is(err, ErrSlowMode) {
			s.log.Debug("Room leave message failed", "err", err)
		}
	}
	s.withdrawCards(r)
	s.mu.Lock()
	delete(s.rooms, id)
	s.mu.Unlock()
	r.stop()
	if err := s.deleteRoom(ctx, id); err != nil {
		return err
	}
	s.updated(r, "left", nil)
	return nil
}

func (s *Service) deleteRoom(ctx context.Context, id ID) error {
	b := s.d.DB.NewBatch()
	for _, prefix := range []string{"m/", "x/", "l/", "p/", "o/"} {
		for e, err := range s.d.Store.Scan(ctx, store.Range{Prefix: prefix + id.String() + "/"}) {
			if err != nil {
				b.Discard()
				return err
			}
			_ = b.Delete(s.d.Store, e.Key)
		}
	}
	_ = b.Delete(s.d.Store, "r/"+id.String())
	_ = b.Delete(s.d.Store, "q/"+id.String())
	return commit(b, true)
}

// commit commits b and releases it whether or not the commit succeeds (store.Batch.Commit releases it only
// on success).
func commit(b *store.Batch, sync bool) error {
	if err := b.Commit(sync); err != nil {
		b.Discard()
		return err
	}
	return nil
}

// Send posts a text message.
func (s *Service) Send(ctx context.Context, id ID, text string, replyTo string) (View, bool, error) {
	r, err := s.room(id)
	if err != nil {
		return View{}, false, err
	}
	var reply []byte
	if replyTo != "" {
		m, err := ParseMsgID(replyTo)
		if err != nil {
			return View{}, false, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		reply = m[:]
	}
	m, published, err := r.send(ctx, pb.Kind_TEXT, text, reply)
	if err != nil {
		return View{}, false, err
	}
	return r.view(m, r.state.Load()), published, nil
}

// KeptCount is the number of rooms this node keeps for others (relay status page).
func (s *Service) KeptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.rooms {
		r.mu.Lock()
		if r.rec.Keep {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

// Watch calls fn with every message this node stores from now on (live or synced), for simulations and
// tests. fn runs synchronously on the storing goroutine and must return quickly without calling back into
// the service; nothing is buffered, so nothing is lost. Call the returned function to stop.
func (s *Service) Watch(fn func(Delivery)) (stop func()) {
	w := &watcher{fn: fn}
	s.mu.Lock()
	s.watch[w] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.watch, w)
		s.mu.Unlock()
	}
}

// delivered tells watchers and the event bus about a stored message.
func (s *Service) delivered(r *roomRT, m *Message, st *State, mine, live bool) {
	now := s.now()
	s.mu.Lock()
	for w := range s.watch {
		w.fn(Delivery{Room: r.id, Message: m, Received: now, Live: live})
	}
	s.mu.Unlock()
	if s.d.Events != nil {
		v := r.view(m, st)
		v.Mine = mine
		s.d.Events.Publish(EventMessage, MessageEvent{RoomID: r.key, Message: v, Live: live})
	}
}

// MessageEvent is the data of a room.message event.
type MessageEvent struct {
	RoomID  string `json:"room_id"`
	Message View   `json:"message"`
	Live    bool   `json:"live"`
}

// UpdateEvent is the data of a room.updated event.
type UpdateEvent struct {
	RoomID string `json:"room_id"`
	// Reason: created, joined, left, manifest, moderation, closed.
	Reason string `json:"reason"`
	Seq    uint64 `json:"seq,omitempty"`
	Action string `json:"action,omitempty"`
}

func (s *Service) updated(r *roomRT, reason string, a *ModAction) {
	if s.d.Events == nil {
		return
	}
	ev := UpdateEvent{RoomID: r.key, Reason: reason}
	if a != nil {
		ev.Seq, ev.Action = a.Body.Seq, actionName(a.Body)
	}
	s.d.Events.Publish(EventUpdated, ev)
}

// maintain refreshes the owner's cards: every CardInterval, and within a minute of a change in the member
// count.
func (s *Service) maintain(ctx context.Context) {
	check := time.NewTicker(time.Minute)
	defer check.Stop()
	cards := time.NewTicker(s.c.CardInterval)
	defer cards.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check.C:
			for _, r := range s.snapshot() {
				if r.owner != nil && r.cardStale() {
					s.announceCard(r)
				}
			}
		case <-cards.C:
			for _, r := range s.snapshot() {
				if r.owner != nil {
					s.announceCard(r)
				}
			}
		}
	}
}

func (s *Service) snapshot() []*roomRT {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*roomRT, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *roomRT) int { return strings.Compare(a.key, b.key) })
	return out
}

// prune deletes the oldest messages beyond the history limit (ingestion starts it when the room holds
// 10% more than the limit, so it runs rarely and storage stays bounded).
func (r *roomRT) prune(ctx context.Context) {
	limit := r.s.c.HistoryLimit
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.count <= limit+limit/10 {
		return
	}
	drop := r.count - limit
	b := r.s.d.DB.NewBatch()
	n := 0
	for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: "m/" + r.key + "/", Limit: drop}) {
		if err != nil {
			b.Discard()
			return
		}
		_ = b.Delete(r.s.d.Store, e.Key)
		if i := strings.LastIndexByte(e.Key, '/'); i >= 0 {
			_ = b.Delete(r.s.d.Store, "x/"+r.key+"/"+e.Key[i+1:])
		}
		n++
	}
	if err := commit(b, false); err != nil {
		r.s.log.Warn("Room prune failed", "err", err)
		return
	}
	r.count -= n
}
