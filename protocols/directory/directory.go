// Package directory is Madang's serverless directory of signed cards: a card (a room's summary, a channel's
// profile) is announced under one or more plain keys ("room/tag/golang", "chan/cell/wydm9"); each key is
// provided in the DHT as CID(sha256("madang/dir/v1:"+key)), and whoever looks a key up asks every provider
// over /madang/directory/1.0.0 for the cards it holds under it, verifies each card with the verifier of its
// kind, and keeps the newest card per id.
//
// The directory is generic: it stores and serves raw signed bytes and knows nothing of rooms or channels.
// Each kind registers a verifier that checks the card's own signature and returns its id and update time.
// A node may announce cards it does not own (a relay that keeps a room announces the owner's card), since
// every card is self-verifying.
package directory

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-msgio/pbio"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/directory/pb"
	"github.com/madang-p2p/madang/store"
)

// ProtocolID is the stream protocol that returns the cards a provider holds under a key.
const ProtocolID = "/madang/directory/1.0.0"

// Limits of the wire format and of one lookup.
const (
	MaxKeyBytes      = 256      // a directory key
	MaxKindBytes     = 32       // a kind name
	MaxCardBytes     = 16 << 10 // one card's raw bytes
	MaxResponseCards = 100      // cards in one response (and per lookup)
	MaxResponseBytes = 1 << 20  // one response on the wire
	maxRequestBytes  = 1 << 10  // one request on the wire
	DefaultLimit     = 50       // cards per lookup when the caller passes 0
	MaxProviders     = 20       // providers asked per lookup
	fetchConcurrency = 8        // providers asked at once
	keyDomain        = "madang/dir/v1:"
	idHashLen        = 16 // bytes of sha256(id) in store keys
)

// Deadlines (conventions: Provide 60 s, FindProviders 30 s, NewStream 10 s).
const (
	ProvideTimeout = 60 * time.Second
	FindTimeout    = 30 * time.Second
	StreamTimeout  = 10 * time.Second
)

// Errors.
var (
	ErrUnknownKind = errors.New("directory: unknown card kind")
	ErrBadCard     = errors.New("directory: invalid card")
	ErrBadKey      = errors.New("directory: invalid key")
)

// Verifier checks a card of one kind (its signature over the raw bytes) and returns the card's id (cards
// with the same kind and id replace each other, newest wins) and its update time.
type Verifier func(raw []byte) (id string, updated time.Time, err error)

// Card is a verified card.
type Card struct {
	Key     string
	Kind    string
	ID      string
	Updated time.Time
	Raw     []byte
	// From is the peer that served it (empty for cards held locally).
	From peer.ID
}

// Routing is the part of the DHT the directory uses (*dht.IpfsDHT satisfies it).
type Routing interface {
	Provide(ctx context.Context, c cid.Cid, announce bool) error
	FindProvidersAsync(ctx context.Context, c cid.Cid, count int) <-chan peer.AddrInfo
}

// Options tune timers (tests shorten them); zero values take the defaults.
type Options struct {
	// Republish is how often every announced key is provided again (default 22 h, well inside the 48 h
	// lifetime of provider records).
	Republish time.Duration
	// RetryMin and RetryMax bound the backoff after a failed Provide (default 2 s and 10 min).
	RetryMin, RetryMax time.Duration
	// LookupGrace is the longest a lookup that already holds a verified card still waits for slower
	// providers (default DefaultLookupGrace).
	LookupGrace time.Duration
}

// DefaultLookupGrace bounds how long one silent or slow provider can hold up a lookup that already has
// an answer: without it a single hostile provider of a popular key would delay every search by a whole
// StreamTimeout. Within it, the wait is three times as long as the first answer took, at least
// minLookupGrace: on a fast network stragglers get little time, on a slow one more.
const (
	DefaultLookupGrace = 2 * time.Second
	minLookupGrace     = 250 * time.Millisecond
)

// Service announces, serves and looks up cards.
type Service struct {
	h   host.Host
	r   Routing
	ns  *store.NS
	log *slog.Logger

	rep   *Republisher
	grace time.Duration

	mu    sync.Mutex
	kinds map[string]Verifier
	held  map[string]map[string]*pb.Held // key → kind/id → card
}

// New builds the directory service and registers its stream handler on h. Cards announced before a restart
// are loaded from ns (ctx bounds that read) and provided again once Run starts.
func New(ctx context.Context, h host.Host, r Routing, ns *store.NS, log *slog.Logger, opts ...Options) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	log = log.With("component", "directory")
	s := &Service{
		h: h, r: r, ns: ns, log: log, rep: NewRepublisher(r, log, o), grace: cmp.Or(o.LookupGrace, DefaultLookupGrace),
		kinds: map[string]Verifier{}, held: map[string]map[string]*pb.Held{},
	}
	s.load(ctx)
	h.SetStreamHandler(ProtocolID, s.handle)
	return s
}

// KeyCID is the DHT key under which providers of a directory key are recorded.
func KeyCID(key string) cid.Cid {
	sum, _ := mh.Sum([]byte(keyDomain+key), mh.SHA2_256, -1) // sha2-256 never fails
	return cid.NewCidV1(cid.Raw, sum)
}

func storeKey(key, kind, id string) string {
	k := sha256.Sum256([]byte(key))
	i := sha256.Sum256([]byte(kind + "\x00" + id))
	return "c/" + hex.EncodeToString(k[:]) + "/" + hex.EncodeToString(i[:idHashLen])
}

func heldID(kind, id string) string { return kind + "\x00" + id }

func (s *Service) load(ctx context.Context) {
	for e, err := range s.ns.Scan(ctx, store.Range{Prefix: "c/"}) {
		if err != nil {
			s.log.Warn("Directory load failed", "err", err)
			return
		}
		var h pb.Held
		if proto.Unmarshal(e.Value, &h) != nil || h.Card == nil {
			continue
		}
		m := s.held[h.Key]
		if m == nil {
			m = map[string]*pb.Held{}
			s.held[h.Key] = m
		}
		m[heldID(h.Card.Kind, h.Id)] = &h
		s.rep.Add(h.Key, KeyCID(h.Key))
	}
}

// RegisterKind sets the verifier of a card kind. Cards of unregistered kinds are neither announced nor
// accepted from lookups.
func (s *Service) RegisterKind(kind string, v Verifier) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kinds[kind] = v
}

func (s *Service) verify(kind string, raw []byte) (string, time.Time, error) {
	s.mu.Lock()
	v := s.kinds[kind]
	s.mu.Unlock()
	if v == nil {
		return "", time.Time{}, fmt.Errorf("%w %q", ErrUnknownKind, kind)
	}
	if len(raw) == 0 || len(raw) > MaxCardBytes {
		return "", time.Time{}, fmt.Errorf("%w: %d bytes", ErrBadCard, len(raw))
	}
	id, upd, err := v(raw)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrBadCard, err)
	}
	if id == "" {
		return "", time.Time{}, fmt.Errorf("%w: empty id", ErrBadCard)
	}
	return id, upd, nil
}

func checkKey(key string) error {
	if key == "" || len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes", ErrBadKey, len(key))
	}
	return nil
}

// Announce verifies a card, holds it under key (durably) and makes sure the key is provided in the DHT: now
// if the key is new, then every Republish interval. A card with the same kind and id as a held one
// replaces it unless it is older.
func (s *Service) Announce(key, kind string, raw []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	id, upd, err := s.verify(kind, raw)
	if err != nil {
		return err
	}
	h := &pb.Held{Key: key, Id: id, UpdatedUnixMs: upd.UnixMilli(), Card: &pb.Card{Kind: kind, Raw: raw}}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.held[key]
	if old := m[heldID(kind, id)]; old != nil && old.UpdatedUnixMs > h.UpdatedUnixMs {
		return nil
	}
	val, err := proto.Marshal(h)
	if err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	if err := s.ns.PutSync(storeKey(key, kind, id), val); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	if m == nil {
		m = map[string]*pb.Held{}
		s.held[key] = m
		s.rep.Add(key, KeyCID(key))
	}
	m[heldID(kind, id)] = h
	return nil
}

// Withdraw stops holding the card kind/id under key. When no card is left under the key, the key is no
// longer provided (existing provider records expire; this node then answers with no cards).
func (s *Service) Withdraw(key, kind, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.held[key]
	if _, ok := m[heldID(kind, id)]; !ok {
		return nil
	}
	if err := s.ns.DeleteSync(storeKey(key, kind, id)); err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	delete(m, heldID(kind, id))
	if len(m) == 0 {
		delete(s.held, key)
		s.rep.Remove(key)
	}
	return nil
}

// Held returns the cards this node holds under key, newest first.
func (s *Service) Held(key string) []Card {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Card, 0, len(s.held[key]))
	for _, h := range s.held[key] {
		out = append(out, Card{Key: key, Kind: h.Card.Kind, ID: h.Id, Updated: time.UnixMilli(h.UpdatedUnixMs), Raw: h.Card.Raw})
	}
	sortCards(out)
	return out
}

// Keys lists the keys this node announces.
func (s *Service) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.held))
	for k := range s.held {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortCards(cs []Card) {
	slices.SortStableFunc(cs, func(a, b Card) int {
		if c := b.Updated.Compare(a.Updated); c != 0 {
			return c
		}
		return compareStr(a.ID, b.ID)
	})
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Run provides every announced key when it is due (new keys at once, then every Republish interval, with
// backoff after failures) until ctx ends.
func (s *Service) Run(ctx context.Context) error { return s.rep.Run(ctx) }

// Provided reports whether key has been provided successfully since it was announced (tests and status).
func (s *Service) Provided(key string) bool { return s.rep.Provided(key) }

// Lookup finds the cards announced under key: the cards held locally plus those of up to MaxProviders DHT
// providers, each verified with its kind's verifier, deduplicated by kind and id (newest kept), newest
// first, at most limit (DefaultLimit if 0, at most MaxResponseCards). The whole lookup is bounded by
// FindTimeout and each provider by StreamTimeout; once the provider search has ended and a verified card is
// in hand, providers still answering get the lookup grace (Options.LookupGrace) and are then dropped. It
// fails only if the key is invalid or ctx ends before anything was found.
func (s *Service) Lookup(ctx context.Context, key string, limit int) ([]Card, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxResponseCards)
	start := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, FindTimeout)
	defer cancel()

	var mu sync.Mutex
	best := map[string]Card{}
	have := make(chan struct{})
	var haveOnce sync.Once
	add := func(c Card) {
		mu.Lock()
		defer mu.Unlock()
		k := heldID(c.Kind, c.ID)
		if old, ok := best[k]; !ok || c.Updated.After(old.Updated) {
			best[k] = c
		}
		haveOnce.Do(func() { close(have) })
	}
	for _, c := range s.Held(key) {
		add(c)
	}
	fetchCtx, stopFetches := context.WithCancel(ctx)
	defer stopFetches()
	sem := make(chan struct{}, fetchConcurrency)
	var wg sync.WaitGroup
	for ai := range s.r.FindProvidersAsync(ctx, KeyCID(key), MaxProviders) { // drained until closed
		if ai.ID == s.h.ID() || ai.ID == "" {
			continue
		}
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-fetchCtx.Done():
				return
			}
			defer func() { <-sem }()
			cards, err := s.fetch(fetchCtx, ai, key, limit)
			if err != nil {
				s.log.Debug("Directory fetch failed", "peer", ai.ID, "err", err)
			}
			for _, c := range cards {
				add(c)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }() // ends once every fetch has; awaited below
	select {
	case <-done:
	case <-ctx.Done():
	case <-have:
		t := time.NewTimer(min(s.grace, max(minLookupGrace, 3*time.Since(start))))
		select {
		case <-done:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	stopFetches()
	<-done
	mu.Lock()
	out := make([]Card, 0, len(best))
	for _, c := range best {
		out = append(out, c)
	}
	mu.Unlock()
	sortCards(out)
	if len(out) > limit {
		out = out[:limit]
	}
	if err := parent.Err(); len(out) == 0 && err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("directory lookup: %w", err)
	}
	return out, nil
}

// Fetch asks one peer for the cards it holds under key and verifies them.
func (s *Service) Fetch(ctx context.Context, p peer.AddrInfo, key string, limit int) ([]Card, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return s.fetch(ctx, p, key, min(max(limit, 1), MaxResponseCards))
}

func (s *Service) fetch(ctx context.Context, ai peer.AddrInfo, key string, limit int) ([]Card, error) {
	ctx, cancel := context.WithTimeout(ctx, StreamTimeout)
	defer cancel()
	if len(ai.Addrs) > 0 {
		s.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	}
	st, err := s.h.NewStream(ctx, ai.ID, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("directory fetch: %w", err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(StreamTimeout))
	// Not every transport honours deadlines (and a lookup may give up sooner): the context ends the stream.
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	if err := pbio.NewDelimitedWriter(st).WriteMsg(&pb.Request{Key: key, Limit: uint32(limit)}); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("directory fetch: write: %w", err)
	}
	_ = st.CloseWrite()
	var resp pb.Response
	if err := pbio.NewDelimitedReader(st, MaxResponseBytes).ReadMsg(&resp); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("directory fetch: read: %w", err)
	}
	return s.verifyResponse(&resp, key, ai.ID, limit), nil
}

// verifyResponse keeps the valid cards of a response (at most limit, each verified by its kind).
func (s *Service) verifyResponse(resp *pb.Response, key string, from peer.ID, limit int) []Card {
	var out []Card
	for i, c := range resp.Cards {
		if i >= limit || c == nil || len(c.Kind) > MaxKindBytes {
			break
		}
		id, upd, err := s.verify(c.Kind, c.Raw)
		if err != nil {
			continue
		}
		out = append(out, Card{Key: key, Kind: c.Kind, ID: id, Updated: upd, Raw: c.Raw, From: from})
	}
	return out
}

// DecodeResponse decodes and verifies a response as Lookup does (exported for fuzzing and tools).
func (s *Service) DecodeResponse(raw []byte, key string) ([]Card, error) {
	if len(raw) > MaxResponseBytes {
		return nil, fmt.Errorf("%w: response of %d bytes", ErrBadCard, len(raw))
	}
	var resp pb.Response
	if err := proto.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("decode response: %w", err)
	}
	return s.verifyResponse(&resp, key, "", MaxResponseCards), nil
}

func (s *Service) handle(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(StreamTimeout))
	var req pb.Request
	if err := pbio.NewDelimitedReader(st, maxRequestBytes).ReadMsg(&req); err != nil {
		_ = st.Reset()
		return
	}
	if checkKey(req.Key) != nil {
		_ = st.Reset()
		return
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > MaxResponseCards {
		limit = MaxResponseCards
	}
	resp := &pb.Response{}
	size := 0
	for _, c := range s.Held(req.Key) {
		if len(resp.Cards) >= limit || size+len(c.Raw)+64 > MaxResponseBytes-1024 {
			break
		}
		size += len(c.Raw) + 64
		resp.Cards = append(resp.Cards, &pb.Card{Kind: c.Kind, Raw: c.Raw})
	}
	if err := pbio.NewDelimitedWriter(st).WriteMsg(resp); err != nil {
		_ = st.Reset()
	}
}
