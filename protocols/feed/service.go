package feed

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

	"github.com/ipfs/go-cid"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/protocols/directory"
	"github.com/madang-p2p/madang/protocols/feedsync"
	"github.com/madang-p2p/madang/store"
)

// Deadlines of network calls (conventions: Provide 60 s, FindProviders 30 s, NewStream 10 s).
const (
	findTimeout     = 30 * time.Second
	getValueTimeout = 30 * time.Second
	putValueTimeout = 60 * time.Second
	maxClockSkew    = time.Minute
	maxSyncPeers    = 8
	flushBytes      = 8 << 20 // verify and store a page in chunks of at most this many bytes
	liveEventsMax   = 50      // up to this many new entries at once are announced one by one
	followRetry     = 500 * time.Millisecond
)

// Service errors.
var (
	errIncomplete = errors.New("sync incomplete")
	ErrNotFound   = errors.New("channel not found")
	ErrNotOwner   = errors.New("this node does not own the channel")
	ErrNotRelay   = errors.New("only a node with role relay pins channels")
	ErrOwnChannel = errors.New("this node owns the channel")
	ErrNoPeers    = errors.New("no node that keeps the channel could be reached")
	ErrNoDir      = errors.New("the directory is not running on this node")
)

// Routing is the part of the DHT channels use (*dht.IpfsDHT satisfies it).
type Routing interface {
	PutValue(ctx context.Context, key string, value []byte, opts ...routing.Option) error
	GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error)
	Provide(ctx context.Context, c cid.Cid, announce bool) error
	FindProvidersAsync(ctx context.Context, c cid.Cid, count int) <-chan peer.AddrInfo
}

// Directory is the generic card directory (protocols/directory).
type Directory interface {
	RegisterKind(kind string, v directory.Verifier)
	Announce(key, kind string, raw []byte) error
	Withdraw(key, kind, id string) error
	Lookup(ctx context.Context, key string, limit int) ([]directory.Card, error)
}

// Options assemble a Service.
type Options struct {
	Host    host.Host
	Routing Routing
	Gossip  *gossip.Router
	Store   *store.Store
	NS      *store.NS // the "channels" namespace
	Events  *events.Bus
	Secrets SecretSource // the account (customer keys)
	Log     *slog.Logger
	// Directory announces and finds channel cards; nil disables discovery.
	Directory Directory
	// Relay allows pinning (role relay); PinFeeds are pinned at start.
	Relay    bool
	PinFeeds []string
	// Mirror makes followers provide the channels they follow in the DHT (reveals what they follow).
	Mirror bool
	// SyncBatch is the number of entries asked per request.
	SyncBatch int
	// Refresh is how often followed channels are checked for entries missed while offline, pending notices
	// delivered and follower notices collected (default 5 min).
	Refresh time.Duration
	// Republish is how often head records are put and channels provided again (default 6 h).
	Republish time.Duration
	// Now is the clock (tests).
	Now func() time.Time
}

// Service runs a node's channels: the ones it owns, follows and (on a relay) pins.
type Service struct {
	o      Options
	db     *db
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	sync   *feedsync.Server
	prov   *directory.Republisher // provider records of the channels this node keeps for others
	wg     sync.WaitGroup

	mu    sync.Mutex
	chans map[ChannelID]*channel
	ops   uint64

	syncQ   *idQueue                // channels to sync, in order
	queued  map[ChannelID][]peer.ID // channels in syncQ, with peers to try first
	publish *idQueue                // channels whose head record and card to publish now
	heads   *idQueue                // channels whose head record to refresh from the DHT
}

type channel struct {
	log  *Log
	priv ed25519.PrivateKey // set when owned

	postMu sync.Mutex // serialises posts and profile updates
	syncMu sync.Mutex // one sync at a time

	topicMu  sync.Mutex
	topic    *pubsub.Topic
	stopSub  context.CancelFunc
	subLoops *sync.WaitGroup // the topic's subscription and event loops

	dirMu   sync.Mutex
	dirKeys []string // directory keys the card is announced under

	caughtUp    atomic.Bool   // a sync reached the newest known entry since start
	syncing     atomic.Int32  // syncs running or waiting to run
	noticeBusy  atomic.Bool   // a follow notice delivery is running
	syncBackoff time.Duration // wait before retrying a failed sync (guarded by Service.mu)
}

// New loads the node's channels and starts serving feed sync and follow notices. ctx bounds everything the
// service starts; Run runs its loops, Close stops it.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SyncBatch <= 0 {
		o.SyncBatch = 256
	}
	o.SyncBatch = min(o.SyncBatch, feedsync.MaxLimit)
	if o.Refresh <= 0 {
		o.Refresh = 5 * time.Minute
	}
	if o.Republish <= 0 {
		o.Republish = 6 * time.Hour
	}
	cctx, cancel := context.WithCancel(ctx)
	s := &Service{
		o: o, db: &db{st: o.Store, ns: o.NS}, log: o.Log.With("component", "channels"), ctx: cctx, cancel: cancel,
		chans: map[ChannelID]*channel{}, syncQ: newIDQueue(), queued: map[ChannelID][]peer.ID{},
		publish: newIDQueue(), heads: newIDQueue(),
	}
	s.prov = directory.NewRepublisher(o.Routing, s.log, directory.Options{Republish: o.Republish})
	if o.Directory != nil {
		o.Directory.RegisterKind(CardKind, VerifyCard)
	}
	if err := s.load(); err != nil {
		cancel()
		return nil, err
	}
	for _, id := range o.PinFeeds {
		if _, err := ParseID(id); err != nil {
			cancel()
			return nil, fmt.Errorf("relay.pin_feeds: %w", err)
		}
		if err := s.setPinned(ChannelID(id), true); err != nil {
			cancel()
			return nil, err
		}
	}
	s.sync = feedsync.NewServer(cctx, o.Host, syncSource{s}, o.Log)
	o.Host.SetStreamHandler(NoticeProtocolID, s.handleNotice)
	return s, nil
}

// load opens every channel the store knows.
func (s *Service) load() error {
	ids := map[ChannelID]bool{}
	for ent, err := range s.db.ns.Scan(s.ctx, store.Range{Prefix: "c/"}) {
		if err != nil {
			return fmt.Errorf("load channels: %w", err)
		}
		rest := strings.TrimPrefix(ent.Key, "c/")
		if id, tail, ok := strings.Cut(rest, "/"); ok && tail == "m" {
			ids[ChannelID(id)] = true
		}
	}
	for id := range ids {
		l, err := openLog(s.db, id, s.o.Now)
		if err != nil {
			return err
		}
		ch := &channel{log: l}
		if l.State().Owned {
			seed, err := s.db.ns.Get(keyKey(id))
			if err != nil || len(seed) != ed25519.SeedSize {
				return fmt.Errorf("load channel %s: private key missing: %v", id, err)
			}
			ch.priv = ed25519.NewKeyFromSeed(seed)
		}
		s.chans[id] = ch
	}
	return nil
}

func keyKey(id ChannelID) string { return chanPrefix(id) + "k" }

// Run starts the live topics of the node's channels and runs the sync workers, the publisher and the
// periodic refresh until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	for _, ch := range s.channels() {
		st := ch.log.State()
		if st.Active() && st.Fork == nil {
			if err := s.joinTopic(ch); err != nil {
				s.log.Warn("Channel topic join failed", "channel", ch.log.id, "err", err)
			}
		}
		if st.Owned || st.Pinned || (st.Following && s.o.Mirror) {
			s.kickPublish(ch.log.id)
		}
		if (st.Following || st.Pinned) && st.Fork == nil {
			s.requestSync(ch.log.id)
		}
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { s.syncWorker(ctx) })
	}
	wg.Go(func() { s.publisher(ctx) })
	wg.Go(func() { _ = s.prov.Run(ctx) })
	wg.Go(func() { s.headRefresher(ctx) })
	wg.Go(func() { s.refresher(ctx) })
	wg.Wait()
	return nil
}

// Close stops the live topics and the protocol handlers.
func (s *Service) Close() error {
	s.o.Host.RemoveStreamHandler(NoticeProtocolID)
	s.sync.Close()
	s.cancel()
	for _, ch := range s.channels() {
		s.leaveTopic(ch)
	}
	s.wg.Wait()
	return nil
}

func (s *Service) channels() []*channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*channel, 0, len(s.chans))
	for _, ch := range s.chans {
		out = append(out, ch)
	}
	return out
}

func (s *Service) get(id ChannelID) (*channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.chans[id]
	if !ok || !ch.log.State().Active() {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return ch, nil
}

// getOrOpen returns the channel, opening its log if the node does not keep it yet.
func (s *Service) getOrOpen(id ChannelID) (*channel, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ch, ok := s.chans[id]; ok {
		return ch, nil
	}
	l, err := openLog(s.db, id, s.o.Now)
	if err != nil {
		return nil, err
	}
	ch := &channel{log: l}
	s.chans[id] = ch
	return ch, nil
}

// forget drops a channel the node no longer keeps for any reason.
func (s *Service) forget(ch *channel) error {
	s.leaveTopic(ch)
	s.withdrawCard(ch)
	s.prov.Remove(string(ch.log.id))
	s.mu.Lock()
	delete(s.chans, ch.log.id)
	s.mu.Unlock()
	return ch.log.drop(s.ctx)
}

// PinnedCount is the number of channels this node pins (relay status page).
func (s *Service) PinnedCount() int {
	n := 0
	for _, ch := range s.channels() {
		if ch.log.State().Pinned {
			n++
		}
	}
	return n
}

// Create makes a new channel owned by this node: a fresh channel key (not the account key), a signed
// profile, an empty log and a head record.
func (s *Service) Create(ctx context.Context, f ProfileFields) (Info, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Info{}, fmt.Errorf("create channel: %w", err)
	}
	now := s.o.Now()
	prof, err := SignProfile(priv, 1, now, f)
	if err != nil {
		return Info{}, err
	}
	head, err := SignHead(priv, 0, nil, now, prof.Revision)
	if err != nil {
		return Info{}, err
	}
	id := IDFromKey(pub)
	ch, err := s.getOrOpen(id)
	if err != nil {
		return Info{}, err
	}
	if err := s.db.ns.PutSync(keyKey(id), priv.Seed()); err != nil {
		return Info{}, fmt.Errorf("create channel: %w", err)
	}
	ch.priv = priv
	if err := ch.log.Update(func(st *State) {
		st.Owned, st.Profile, st.HeadRecord = true, prof.Raw, head.Raw
	}); err != nil {
		return Info{}, err
	}
	if err := s.joinTopic(ch); err != nil {
		return Info{}, err
	}
	s.kickPublish(id)
	s.log.Info("Channel created", "channel", id)
	return s.info(ch), nil
}

// UpdateProfile changes an owned channel's profile; empty fields keep their value.
func (s *Service) UpdateProfile(ctx context.Context, id ChannelID, patch ProfileFields) (Info, error) {
	ch, err := s.owned(id)
	if err != nil {
		return Info{}, err
	}
	ch.postMu.Lock()
	defer ch.postMu.Unlock()
	cur := ch.log.Profile()
	if cur == nil {
		return Info{}, fmt.Errorf("channel %s has no profile", id)
	}
	f := cur.ProfileFields
	for dst, src := range map[*string]string{&f.Name: patch.Name, &f.Category: patch.Category, &f.Geohash: patch.Geohash,
		&f.Address: patch.Address, &f.Hours: patch.Hours, &f.Phone: patch.Phone, &f.Description: patch.Description} {
		if src != "" {
			*dst = src
		}
	}
	if patch.Tags != nil {
		f.Tags = patch.Tags
	}
	prof, err := SignProfile(ch.priv, cur.Revision+1, s.o.Now(), f)
	if err != nil {
		return Info{}, err
	}
	st := ch.log.State()
	head, err := SignHead(ch.priv, st.Seq, st.HeadID, s.headTime(st), prof.Revision)
	if err != nil {
		return Info{}, err
	}
	if err := ch.log.Update(func(st *State) { st.Profile, st.HeadRecord = prof.Raw, head.Raw }); err != nil {
		return Info{}, err
	}
	s.kickPublish(id)
	return s.info(ch), nil
}

func (s *Service) headTime(st State) time.Time {
	if st.Seq == 0 {
		return s.o.Now()
	}
	return st.HeadTime
}

func (s *Service) owned(id ChannelID) (*channel, error) {
	ch, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if ch.priv == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotOwner, id)
	}
	return ch, nil
}

// Owned lists the IDs of the channels this node owns.
func (s *Service) Owned() []ChannelID {
	var out []ChannelID
	for _, ch := range s.channels() {
		if ch.priv != nil {
			out = append(out, ch.log.id)
		}
	}
	slices.Sort(out)
	return out
}

// Post appends a new entry to an owned channel, publishes it live and updates the head record.
func (s *Service) Post(ctx context.Context, id ChannelID, d Draft) (*Entry, error) {
	ch, err := s.owned(id)
	if err != nil {
		return nil, err
	}
	ch.postMu.Lock()
	defer ch.postMu.Unlock()
	st := ch.log.State()
	at := s.o.Now()
	if !st.HeadTime.IsZero() && at.Before(st.HeadTime) {
		at = st.HeadTime // keep the feed's times in order even if the clock stepped back
	}
	e, err := SignEntry(ch.priv, st.Seq+1, st.HeadID, at, d)
	if err != nil {
		return nil, err
	}
	res, err := ch.log.Apply(e)
	if err != nil {
		return nil, err
	}
	if len(res.Appended) != 1 {
		return nil, fmt.Errorf("post to %s: entry %d not appended", id, e.Seq)
	}
	rev := uint64(0)
	if p := ch.log.Profile(); p != nil {
		rev = p.Revision
	}
	head, err := SignHead(ch.priv, e.Seq, e.ID[:], e.Time, rev)
	if err != nil {
		return nil, err
	}
	if _, err := ch.log.NoteHead(head); err != nil {
		return nil, err
	}
	s.announce(ch, res.Appended, true)
	if t := ch.currentTopic(); t != nil {
		if err := t.Publish(ctx, e.Raw); err != nil {
			// The entry is stored and served by sync; followers catch up.
			s.log.Warn("Channel live publish failed", "channel", id, "seq", e.Seq, "err", err)
		}
	}
	s.kickPublish(id)
	return e, nil
}

// announce publishes events for new entries: channel.post for each (live or a short catch-up), or one
// channel.synced for a long catch-up.
func (s *Service) announce(ch *channel, es []*Entry, live bool) {
	if len(es) == 0 || s.o.Events == nil {
		return
	}
	name := ""
	if p := ch.log.Profile(); p != nil {
		name = p.Name
	}
	if len(es) > liveEventsMax {
		s.o.Events.Publish("channel.synced", map[string]any{
			"channel_id": ch.log.id, "name": name, "from_seq": es[0].Seq, "to_seq": es[len(es)-1].Seq, "count": len(es),
		})
		return
	}
	for _, e := range es {
		s.o.Events.Publish("channel.post", map[string]any{
			"channel_id": ch.log.id, "name": name, "seq": e.Seq, "kind": e.Kind, "title": e.Title, "time": e.Time.UTC(), "live": live,
		})
	}
}

// noteFork tells the user that a channel was caught forking and pauses following it.
func (s *Service) noteFork(ch *channel, f *Fork) {
	s.log.Warn("Channel forked, following paused", "channel", ch.log.id, "seq", f.Seq, "kind", f.Kind)
	if s.o.Events != nil {
		s.o.Events.Publish("channel.fork", map[string]any{"channel_id": ch.log.id, "seq": f.Seq, "kind": f.Kind, "detected": f.Detected})
	}
	s.wg.Go(func() { s.leaveTopic(ch) }) // not from inside the topic's own delivery loop
}

// applied handles the result of applying entries: events, fork handling.
func (s *Service) applied(ch *channel, res Result, live bool) {
	s.announce(ch, res.Appended, live)
	if res.Fork != nil {
		s.noteFork(ch, res.Fork)
	}
}

// Follow starts following a channel given by ID or link: the node joins its live topic, fetches its feed
// from any node that keeps it, and tells the merchant (through a per-channel customer key) that one more
// customer follows. It waits up to wait for the first sync.
func (s *Service) Follow(ctx context.Context, target string, wait time.Duration) (Info, error) {
	link, err := ParseLink(target)
	if err != nil {
		return Info{}, err
	}
	id := IDFromKey(link.Channel)
	ch, err := s.getOrOpen(id)
	if err != nil {
		return Info{}, err
	}
	if ch.priv != nil {
		return Info{}, fmt.Errorf("%w: %s", ErrOwnChannel, id)
	}
	if err := ch.log.Update(func(st *State) {
		if !st.Following {
			st.Following, st.FollowedAt = true, s.o.Now().UTC()
		}
	}); err != nil {
		return Info{}, err
	}
	if ch.log.State().Fork != nil {
		return s.info(ch), nil // paused: the user has been told
	}
	var hints []peer.ID
	for _, ai := range link.Peers {
		if ai.ID == s.o.Host.ID() {
			continue
		}
		s.o.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		hints = append(hints, ai.ID)
	}
	if err := s.joinTopic(ch); err != nil {
		return Info{}, err
	}
	if s.o.Mirror {
		s.kickPublish(id)
	}
	if wait > 0 {
		// Right after connecting, the peers that keep the channel may not be known yet (topic
		// subscriptions, routing table): try again until the wait is over.
		wctx, cancel := context.WithTimeout(ctx, wait)
		var err error
		for {
			if err = s.syncChannel(wctx, ch, hints); err == nil || wctx.Err() != nil {
				break
			}
			select {
			case <-wctx.Done():
			case <-time.After(followRetry):
			}
		}
		cancel()
		if err != nil {
			s.log.Info("Channel first sync incomplete", "channel", id, "err", err)
			s.requestSync(id, hints...)
		}
	} else {
		s.requestSync(id, hints...)
	}
	// Told after the first sync, when the peers on the topic (the merchant among them) are known.
	if err := s.queueNotice(id, true); err != nil {
		s.log.Warn("Follow notice not queued", "channel", id, "err", err)
	}
	return s.info(ch), nil
}

// Unfollow stops following a channel; unless the node pins it, its feed is deleted.
func (s *Service) Unfollow(ctx context.Context, id ChannelID) error {
	ch, err := s.get(id)
	if err != nil || !ch.log.State().Following {
		return fmt.Errorf("%w: not following %s", ErrNotFound, id)
	}
	if err := s.queueNotice(id, false); err != nil {
		s.log.Warn("Unfollow notice not queued", "channel", id, "err", err)
	}
	if ch.log.State().Pinned {
		return ch.log.Update(func(st *State) { st.Following, st.Read = false, 0 })
	}
	return s.forget(ch)
}

// Pin makes a relay keep a channel: it mirrors the feed, serves it, republishes its head record, announces
// its card and provides it in the DHT.
func (s *Service) Pin(ctx context.Context, id ChannelID) (Info, error) {
	if !s.o.Relay {
		return Info{}, ErrNotRelay
	}
	if err := s.setPinned(id, true); err != nil {
		return Info{}, err
	}
	ch, err := s.get(id)
	if err != nil {
		return Info{}, err
	}
	if ch.log.State().Fork == nil {
		if err := s.joinTopic(ch); err != nil {
			return Info{}, err
		}
	}
	s.requestSync(id)
	s.kickPublish(id)
	return s.info(ch), nil
}

// Unpin stops keeping a pinned channel (its feed is kept if the node also follows it).
func (s *Service) Unpin(ctx context.Context, id ChannelID) error {
	ch, err := s.get(id)
	if err != nil || !ch.log.State().Pinned {
		return fmt.Errorf("%w: not pinned: %s", ErrNotFound, id)
	}
	st := ch.log.State()
	if st.Following || st.Owned {
		s.withdrawCard(ch)
		if !st.Owned && !s.o.Mirror {
			s.prov.Remove(string(id))
		}
		return ch.log.Update(func(st *State) { st.Pinned = false })
	}
	return s.forget(ch)
}

func (s *Service) setPinned(id ChannelID, on bool) error {
	ch, err := s.getOrOpen(id)
	if err != nil {
		return err
	}
	return ch.log.Update(func(st *State) { st.Pinned = on })
}

// MarkRead marks the entries up to seq (0: all) of a channel as read.
func (s *Service) MarkRead(id ChannelID, seq uint64) (Info, error) {
	ch, err := s.get(id)
	if err != nil {
		return Info{}, err
	}
	if err := ch.log.Update(func(st *State) {
		if seq == 0 || seq > st.Seq {
			seq = st.Seq
		}
		st.Read = max(st.Read, seq)
	}); err != nil {
		return Info{}, err
	}
	return s.info(ch), nil
}

// Log returns a kept channel's log.
func (s *Service) Log(id ChannelID) (*Log, error) {
	ch, err := s.get(id)
	if err != nil {
		return nil, err
	}
	return ch.log, nil
}

// --- head records, providing, cards ---

func (s *Service) kickPublish(id ChannelID) { s.publish.push(id) }

// publisher puts head records and announces cards: for each kicked channel at once, and for all of them
// every Republish interval.
func (s *Service) publisher(ctx context.Context) {
	t := time.NewTicker(s.o.Republish)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.publish.ready:
			for _, id := range s.publish.drain() {
				s.mu.Lock()
				ch := s.chans[id]
				s.mu.Unlock()
				if ch != nil {
					s.publishChannel(ctx, ch)
				}
			}
		case <-t.C:
			for _, ch := range s.channels() {
				s.publishChannel(ctx, ch)
			}
		}
	}
}

// publishChannel puts the head record in the DHT, announces the card and keeps the channel provided,
// according to what the node is for the channel.
func (s *Service) publishChannel(ctx context.Context, ch *channel) {
	st := ch.log.State()
	keeper := st.Owned || st.Pinned
	if !keeper && !(st.Following && s.o.Mirror) {
		return
	}
	s.prov.Add(string(ch.log.id), ProviderCID(ch.log.key))
	if !keeper {
		return
	}
	if st.HeadRecord != nil {
		pctx, cancel := context.WithTimeout(ctx, putValueTimeout)
		err := s.o.Routing.PutValue(pctx, HeadKey(ch.log.id), st.HeadRecord)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Debug("Channel head put failed", "channel", ch.log.id, "err", err)
		}
	}
	s.announceCard(ch)
}

// refresher periodically checks kept channels for entries missed while offline, refreshes pinned head
// records, delivers queued follow notices and collects follow notices for owned channels.
func (s *Service) refresher(ctx context.Context) {
	t := time.NewTicker(s.o.Refresh)
	defer t.Stop()
	first := true
	for {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		first = false
		s.deliverNotices(ctx)
		for _, ch := range s.channels() {
			if ctx.Err() != nil {
				return
			}
			st := ch.log.State()
			switch {
			case st.Owned:
				s.collectNotices(ctx, ch)
			case st.Fork != nil:
			case st.Following || st.Pinned:
				h, err := s.resolveHead(ctx, ch.log.id)
				if err != nil {
					continue
				}
				if newer, _ := ch.log.NoteHead(h); newer {
					s.keeperChanged(ch.log)
				}
				// Missed entries, or a profile update (the sync answer carries the newest profile).
				p := ch.log.Profile()
				if h.Seq > ch.log.State().Seq || p == nil || h.ProfileRevision > p.Revision {
					s.requestSync(ch.log.id)
				}
			}
		}
	}
}
