package mailbox

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/mailbox/pb"
	"github.com/madang-p2p/madang/store"
)

// Client timeouts.
const (
	dialTimeout      = 10 * time.Second
	depositTimeout   = 20 * time.Second
	requestTimeout   = 30 * time.Second
	lookupTimeout    = 10 * time.Second
	publishTimeout   = 60 * time.Second
	recordCacheTTL   = 10 * time.Minute
	recordMissTTL    = time.Minute
	drainPageItems   = 256
	maxDrainItems    = 1 << 20
	deliveredKeepFor = 60 * 24 * time.Hour
)

// Routing is the part of the DHT the client uses for inbox records.
type Routing interface {
	PutValue(ctx context.Context, key string, value []byte, opts ...routing.Option) error
	GetValue(ctx context.Context, key string, opts ...routing.Option) ([]byte, error)
}

// ClientOptions configure a Client.
type ClientOptions struct {
	Host     host.Host
	Identity *identity.Identity
	// Store and NS (the "inbox" namespace of Store) keep delivered item IDs, revocations and the record seq.
	Store *store.Store
	NS    *store.NS
	// Routing publishes and finds inbox records; nil disables both.
	Routing Routing
	// Relays returns my inbox relays (multiaddrs with /p2p/); at most three are used.
	Relays func() []string
	// Local is this node's own mailbox service when it is a relay: its own mailbox is drained and deposited
	// to without the network.
	Local *Service
	// Lifetime bounds background inbox record refreshes (Close also ends them); nil: records are looked up
	// only when a card names no relays.
	Lifetime context.Context
	Log      *slog.Logger
	Now      func() time.Time
}

// Client is a node's side of the mailbox protocol: it issues cards, deposits into friends' mailboxes and
// drains its own.
type Client struct {
	o    ClientOptions
	keys *Keys
	log  *slog.Logger

	mu         sync.Mutex
	lastSent   int64
	records    map[string]cachedRecord
	refreshing map[string]bool
	lastDrain  DrainResult

	drainMu sync.Mutex

	bg       context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
}

type cachedRecord struct {
	rec     InboxRecord
	ok      bool
	fetched time.Time
}

// NewClient builds a client.
func NewClient(o ClientOptions) (*Client, error) {
	if o.Host == nil || o.Identity == nil || o.Store == nil || o.NS == nil {
		return nil, errors.New("mailbox: client needs a host, an identity and a store namespace")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Relays == nil {
		o.Relays = func() []string { return nil }
	}
	k, err := DeriveKeys(o.Identity)
	if err != nil {
		return nil, err
	}
	c := &Client{o: o, keys: k, log: o.Log.With("component", "mailbox"), records: map[string]cachedRecord{}, refreshing: map[string]bool{}}
	if o.Lifetime != nil {
		c.bg, c.bgCancel = context.WithCancel(o.Lifetime)
	}
	return c, nil
}

// Close ends background record refreshes and waits for them.
func (c *Client) Close() {
	if c.bgCancel != nil {
		c.bgCancel()
	}
	c.bgWG.Wait()
}

// Keys are the client's mailbox keys.
func (c *Client) Keys() *Keys { return c.keys }

// InboxRelays returns my inbox relays (at most three, valid ones only).
func (c *Client) InboxRelays() []string {
	var out []string
	for _, r := range c.o.Relays() {
		if _, err := peer.AddrInfoFromString(r); err == nil && !slices.Contains(out, r) {
			out = append(out, r)
		}
		if len(out) == maxRelays {
			break
		}
	}
	return out
}

// MailboxCard returns the card to give friend: my inbox relays, my mailbox key and a deposit capability for
// that friend, signed by my account key. The card is deterministic: it changes only when my inbox relays do,
// so a friend's copy can be compared by hash. Without inbox relays there is no card (ErrNoRelays).
func (c *Client) MailboxCard(_ context.Context, friend ed25519.PublicKey) ([]byte, error) {
	if len(friend) != ed25519.PublicKeySize {
		return nil, errors.New("mailbox card: friend key must be 32 bytes")
	}
	if len(c.InboxRelays()) == 0 {
		return nil, fmt.Errorf("mailbox card: %w configured", ErrNoRelays)
	}
	capab, err := c.keys.Capability(friend)
	if err != nil {
		return nil, err
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CardBody{
		Version: 1, AccountKey: c.o.Identity.AccountKey(), OwnerKey: c.keys.OwnerKey(), KemId: uint32(kem.ID()),
		HpkePublicKey: c.keys.hpkePub, Relays: c.InboxRelays(), Capability: capab,
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox card: %w", err)
	}
	raw, err := proto.Marshal(&pb.Signed{Body: body, Signature: c.o.Identity.SignAccount(signedMessage(domainCard, body))})
	if err != nil {
		return nil, fmt.Errorf("mailbox card: %w", err)
	}
	return raw, nil
}

// nextSent returns a sender clock in microseconds that strictly increases.
func (c *Client) nextSent() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastSent = max(c.o.Now().UnixMicro(), c.lastSent+1)
	return c.lastSent
}

// Deposit seals payload to the card's owner and deposits it on each of the owner's inbox relays (the ones in
// its DHT record when that is found, else the card's). It returns a ReceiptSet (see VerifyReceiptSet) as soon
// as at least one relay signed a receipt. When none did, the error wraps ErrRefused (and ErrOverQuota,
// ErrRateLimited … by cause) or ErrNoRelays, and the caller should keep the item queued and retry later; a
// retry with the same itemID is idempotent on relays that already took it.
func (c *Client) Deposit(ctx context.Context, rawCard []byte, itemID string, payload []byte) ([]byte, error) {
	card, err := ParseCard(rawCard)
	if err != nil {
		return nil, err
	}
	if itemID == "" {
		return nil, errors.New("mailbox deposit: empty item id")
	}
	relays := card.Relays
	if rec, ok := c.inboxRecord(ctx, card.Account, len(relays) == 0); ok {
		relays = rec.Relays
	}
	if len(relays) == 0 {
		return nil, fmt.Errorf("mailbox deposit: %w for %s", ErrNoRelays, identity.AccountIDFromKey(card.Account))
	}
	sealed, err := seal(card, itemID, payload, c.nextSent())
	if err != nil {
		return nil, err
	}
	if len(sealed) > DefaultMaxItemBytes {
		return nil, fmt.Errorf("mailbox deposit: %w: %d bytes sealed", ErrTooLarge, len(sealed))
	}
	rid := RelayItemID(card.Mailbox, itemID)
	dep := &pb.Deposit{Capability: card.Capability, ItemId: rid, Sealed: sealed}
	receipts := make([][]byte, len(relays))
	errs := make([]error, len(relays))
	var wg sync.WaitGroup
	for i, addr := range relays {
		wg.Go(func() { receipts[i], errs[i] = c.depositOne(ctx, addr, card.Mailbox, dep) })
	}
	wg.Wait()
	var set pb.ReceiptSet
	for _, r := range receipts {
		if r != nil {
			set.Receipts = append(set.Receipts, r)
		}
	}
	if len(set.Receipts) == 0 {
		return nil, fmt.Errorf("mailbox deposit: no relay took the item: %w", errors.Join(errs...))
	}
	for _, err := range errs {
		if err != nil {
			c.log.Debug("Mailbox relay did not take an item", "err", err)
		}
	}
	out, err := proto.Marshal(&set)
	if err != nil {
		return nil, fmt.Errorf("mailbox deposit: %w", err)
	}
	return out, nil
}

// depositOne deposits on one relay and verifies its receipt.
func (c *Client) depositOne(ctx context.Context, addr string, mb MailboxID, dep *pb.Deposit) ([]byte, error) {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return nil, fmt.Errorf("relay %q: %w", addr, err)
	}
	var resp *pb.Response
	if ai.ID == c.o.Host.ID() && c.o.Local != nil {
		resp = c.o.Local.deposit(&session{remote: ai.ID}, dep)
	} else {
		ctx, cancel := context.WithTimeout(ctx, depositTimeout)
		defer cancel()
		s, err := c.stream(ctx, *ai)
		if err != nil {
			return nil, err
		}
		defer func() { _ = s.Close() }()
		if resp, err = roundTrip(s, &pb.Request{Op: &pb.Request_Deposit{Deposit: dep}}); err != nil {
			return nil, fmt.Errorf("relay %s: %w", ai.ID, err)
		}
	}
	if e := resp.GetError(); e != nil {
		return nil, &RefusedError{Relay: ai.ID, Code: e.Code, Message: e.Message, RetryAfter: time.Duration(e.RetryAfterMs) * time.Millisecond}
	}
	raw := resp.GetReceipt()
	rc, err := VerifyReceipt(raw)
	if err != nil {
		return nil, fmt.Errorf("relay %s: %w", ai.ID, err)
	}
	h := sha256.Sum256(dep.Sealed)
	if rc.Relay != ai.ID || rc.Mailbox != mb || !bytes.Equal(rc.ItemID, dep.ItemId) ||
		(!rc.Duplicate && !bytes.Equal(rc.SealedHash, h[:])) {
		return nil, fmt.Errorf("relay %s: %w: does not match the deposit", ai.ID, ErrBadReceipt)
	}
	return raw, nil
}

// stream connects to a relay and opens a mailbox stream.
func (c *Client) stream(ctx context.Context, ai peer.AddrInfo) (network.Stream, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if err := c.o.Host.Connect(dctx, ai); err != nil {
		return nil, fmt.Errorf("connect relay %s: %w", ai.ID, err)
	}
	s, err := c.o.Host.NewStream(network.WithAllowLimitedConn(dctx, "mailbox"), ai.ID, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("open mailbox stream to %s: %w", ai.ID, err)
	}
	return s, nil
}

func roundTrip(s network.Stream, req *pb.Request) (*pb.Response, error) {
	_ = s.SetDeadline(time.Now().Add(requestTimeout))
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	var resp pb.Response
	if err := pbio.NewDelimitedReader(s, maxResponseBytes).ReadMsg(&resp); err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return &resp, nil
}

// inboxRecord returns the account's inbox record from the DHT, cached for a while (misses too). A stale or
// missing cache entry is refreshed in the background when wait is false (the card's relays serve meanwhile),
// and looked up at once when it is true.
func (c *Client) inboxRecord(ctx context.Context, account ed25519.PublicKey, wait bool) (InboxRecord, bool) {
	if c.o.Routing == nil {
		return InboxRecord{}, false
	}
	now := c.o.Now()
	key := string(account)
	c.mu.Lock()
	cr, hit := c.records[key]
	fresh := hit && ((cr.ok && now.Sub(cr.fetched) < recordCacheTTL) || (!cr.ok && now.Sub(cr.fetched) < recordMissTTL))
	background := !wait && c.bg != nil && c.bg.Err() == nil
	refreshing := c.refreshing[key]
	if !fresh && background && !refreshing {
		c.refreshing[key] = true
		c.bgWG.Add(1)
	}
	c.mu.Unlock()
	if fresh || (!wait && (refreshing || !background)) {
		return cr.rec, cr.ok
	}
	lookup := func(ctx context.Context) cachedRecord {
		rec, err := c.LookupInboxRecord(ctx, account)
		next := cachedRecord{rec: rec, ok: err == nil, fetched: now}
		c.mu.Lock()
		if next.ok || !cr.ok || now.Sub(cr.fetched) > recordCacheTTL {
			c.records[key] = next
		}
		delete(c.refreshing, key)
		c.mu.Unlock()
		return next
	}
	if wait {
		next := lookup(ctx)
		return next.rec, next.ok
	}
	go func() {
		defer c.bgWG.Done()
		lookup(c.bg)
	}()
	return cr.rec, cr.ok
}

// LookupInboxRecord finds an account's inbox record in the DHT.
func (c *Client) LookupInboxRecord(ctx context.Context, account ed25519.PublicKey) (InboxRecord, error) {
	if c.o.Routing == nil {
		return InboxRecord{}, errors.New("inbox record: no routing")
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	raw, err := c.o.Routing.GetValue(ctx, InboxKey(account))
	if err != nil {
		return InboxRecord{}, fmt.Errorf("inbox record lookup: %w", err)
	}
	return ParseInboxRecord(raw)
}

// PublishInboxRecord signs and publishes my inbox record with the next sequence number. It does nothing
// without relays or routing.
func (c *Client) PublishInboxRecord(ctx context.Context) error {
	relays := c.InboxRelays()
	if len(relays) == 0 || c.o.Routing == nil {
		return nil
	}
	seq := uint64(1)
	if raw, err := c.o.NS.Get("seq"); err == nil {
		prev, _ := strconv.ParseUint(string(raw), 10, 64)
		seq = prev + 1
	}
	// Time-based floor: a lost store never publishes a lower seq than before.
	seq = max(seq, uint64(c.o.Now().Unix()))
	rec, err := NewInboxRecord(c.o.Identity, seq, relays, c.o.Now())
	if err != nil {
		return err
	}
	if err := c.o.NS.PutSync("seq", []byte(strconv.FormatUint(seq, 10))); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	if err := c.o.Routing.PutValue(ctx, InboxKey(c.o.Identity.AccountKey()), rec); err != nil {
		return fmt.Errorf("publish inbox record: %w", err)
	}
	return nil
}

// Revoke revokes friend's capability on my inbox relays (for example when the friend is blocked) and
// remembers it, so that every later drain repeats it on relays that missed it.
func (c *Client) Revoke(ctx context.Context, friend ed25519.PublicKey) error {
	id := c.keys.capID(friend)
	if err := c.o.NS.PutSync("rv/"+hex.EncodeToString(id), []byte{1}); err != nil {
		return err
	}
	var errs []error
	for _, addr := range c.InboxRelays() {
		ms, err := c.openSession(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, ms.revoke([][]byte{id}))
		ms.close()
	}
	return errors.Join(errs...)
}

func (c *Client) revokedCaps(ctx context.Context) [][]byte {
	var out [][]byte
	for e, err := range c.o.NS.Scan(ctx, store.Range{Prefix: "rv/"}) {
		if err != nil {
			break
		}
		if id, err := hex.DecodeString(strings.TrimPrefix(e.Key, "rv/")); err == nil {
			out = append(out, id)
		}
	}
	return out
}

// Sink receives the payload of each item drained from my mailboxes. It must persist what it needs before
// returning nil: the item is deleted on the relays afterwards. An error stops the drain; the item stays.
type Sink func(ctx context.Context, payload []byte) error

// Progress reports a drain's progress: items handled so far of those found.
type Progress func(done, total int)

// DrainResult summarises a drain.
type DrainResult struct {
	At         time.Time `json:"at"`
	Relays     int       `json:"relays"`     // relays drained
	Found      int       `json:"found"`      // items the relays held when the drain began
	Delivered  int       `json:"delivered"`  // handed to the sink
	Duplicates int       `json:"duplicates"` // already delivered (from another relay or before)
	Discarded  int       `json:"discarded"`  // not openable: tampered, truncated or not for me
	Errors     []string  `json:"errors"`     // relays that could not be drained, and why
}

// LastDrain returns the result of the last drain.
func (c *Client) LastDrain() DrainResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastDrain
}

// fetched is one item of a drain round.
type fetched struct {
	ms   int // session index
	id   []byte
	item *pb.SealedItem // nil: discarded
}

// Drain fetches every item from my inbox relays, hands each one once, oldest first, to sink, and deletes
// items on the relays only after sink returned nil. Items are deduplicated across relays and against
// earlier drains by their sender's item ID; items that do not open (tampered, truncated, forged) are
// dropped and deleted.
func (c *Client) Drain(ctx context.Context, sink Sink, progress Progress) (DrainResult, error) {
	c.drainMu.Lock()
	defer c.drainMu.Unlock()
	res := DrainResult{At: c.o.Now(), Errors: []string{}}
	var sessions []mailboxSession
	revoked := c.revokedCaps(ctx)
	for _, addr := range c.InboxRelays() {
		ms, err := c.openSession(ctx, addr)
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			continue
		}
		defer ms.close()
		if len(revoked) > 0 {
			if err := ms.revoke(revoked); err != nil {
				c.log.Debug("Mailbox revocation not repeated", "err", err)
			}
		}
		sessions = append(sessions, ms)
		res.Found += int(ms.total())
	}
	res.Relays = len(sessions)
	done := 0
	report := func() {
		if progress != nil {
			progress(done, max(res.Found, done))
		}
	}
	report()
	exhausted := make([]bool, len(sessions))
	pages := make([]int, len(sessions))
	var drainErr error
	for drainErr == nil && slices.Contains(exhausted, false) {
		var batch []fetched
		for i, ms := range sessions {
			if exhausted[i] {
				continue
			}
			page, err := ms.fetch(drainPageItems, maxPageBytes)
			if err != nil {
				res.Errors = append(res.Errors, err.Error())
				exhausted[i] = true
				continue
			}
			pages[i]++
			// A relay that keeps answering "more" beyond what it said it held is cut off; the next drain
			// picks up whatever is really left.
			limit := 2 + int(min(ms.total(), maxDrainItems))/drainPageItems
			if !page.More || len(page.Items) == 0 || pages[i] >= limit {
				exhausted[i] = true
			}
			for _, it := range page.Items {
				batch = append(batch, c.open(i, it))
			}
		}
		acks := make([][][]byte, len(sessions))
		delivered, err := c.deliver(ctx, batch, sink, &res, func(f fetched) {
			acks[f.ms] = append(acks[f.ms], f.id)
			done++
			report()
		})
		if err != nil {
			drainErr = err
		}
		if err := c.markDelivered(delivered); err != nil {
			// Without the markers a replay would reach the sink again; keep the items on the relays.
			return c.finish(res), err
		}
		for i, ids := range acks {
			if len(ids) == 0 {
				continue
			}
			if _, err := sessions[i].ack(ids); err != nil {
				res.Errors = append(res.Errors, err.Error())
				exhausted[i] = true
			}
		}
	}
	c.gcDelivered(ctx)
	return c.finish(res), drainErr
}

func (c *Client) finish(res DrainResult) DrainResult {
	c.mu.Lock()
	c.lastDrain = res
	c.mu.Unlock()
	return res
}

// open decrypts one fetched item; a failure marks it discarded.
func (c *Client) open(ms int, it *pb.Item) fetched {
	f := fetched{ms: ms, id: it.Id}
	sealed, err := c.keys.openItem(it.Sealed)
	if err != nil {
		return f
	}
	// The relay-side ID must be the one the sender derived: a relay cannot relabel items.
	if !bytes.Equal(RelayItemID(c.keys.MailboxID(), sealed.ItemId), it.Id) {
		return f
	}
	f.item = sealed
	return f
}

// deliver hands the openable, new items of a batch to sink in sender order and calls handled for every item
// it is done with (delivered, duplicate or discarded). It returns the item IDs it delivered and stops at the
// first sink error.
func (c *Client) deliver(ctx context.Context, batch []fetched, sink Sink, res *DrainResult, handled func(fetched)) ([]string, error) {
	slices.SortStableFunc(batch, func(a, b fetched) int {
		if a.item == nil || b.item == nil {
			return cmp.Compare(boolInt(a.item != nil), boolInt(b.item != nil))
		}
		if d := cmp.Compare(a.item.SentMicros, b.item.SentMicros); d != 0 {
			return d
		}
		return strings.Compare(a.item.ItemId, b.item.ItemId)
	})
	var delivered []string
	seen := map[string]bool{}
	for _, f := range batch {
		if f.item == nil {
			res.Discarded++
			handled(f)
			continue
		}
		id := f.item.ItemId
		if seen[id] || c.wasDelivered(id) {
			res.Duplicates++
			handled(f)
			continue
		}
		if err := sink(ctx, f.item.Payload); err != nil {
			return delivered, fmt.Errorf("mailbox drain: sink: %w", err)
		}
		seen[id] = true
		delivered = append(delivered, id)
		res.Delivered++
		handled(f)
	}
	return delivered, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func deliveredKey(itemID string) string {
	h := sha256.Sum256([]byte(itemID))
	return hex.EncodeToString(h[:16])
}

func (c *Client) wasDelivered(itemID string) bool {
	ok, _ := c.o.NS.Has("d/" + deliveredKey(itemID))
	return ok
}

// markDelivered records delivered item IDs durably, with a time index for garbage collection.
func (c *Client) markDelivered(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	now := c.o.Now().UnixMilli()
	b := c.o.Store.NewBatch()
	for _, id := range ids {
		k := deliveredKey(id)
		if err := b.Put(c.o.NS, "d/"+k, []byte(strconv.FormatInt(now, 10))); err != nil {
			b.Discard()
			return err
		}
		if err := b.Put(c.o.NS, "dt/"+store.Uint64Key(uint64(now))+"/"+k, nil); err != nil {
			b.Discard()
			return err
		}
	}
	return b.Commit(true)
}

// gcDelivered forgets delivered IDs older than any relay keeps items.
func (c *Client) gcDelivered(ctx context.Context) {
	cutoff := c.o.Now().Add(-deliveredKeepFor).UnixMilli()
	b := c.o.Store.NewBatch()
	for e, err := range c.o.NS.Scan(ctx, store.Range{Prefix: "dt/", End: "dt/" + store.Uint64Key(uint64(max(cutoff, 0))), Limit: 10000}) {
		if err != nil {
			break
		}
		parts := strings.Split(e.Key, "/")
		_ = b.Delete(c.o.NS, e.Key)
		_ = b.Delete(c.o.NS, "d/"+parts[len(parts)-1])
	}
	if b.Len() == 0 {
		b.Discard()
		return
	}
	if err := b.Commit(false); err != nil {
		c.log.Debug("Mailbox delivered-ID cleanup failed", "err", err)
	}
}

// mailboxSession is an authenticated owner session on one relay.
type mailboxSession interface {
	total() uint64
	fetch(limit, maxBytes int) (*pb.Items, error)
	ack(ids [][]byte) (int, error)
	revoke(capIDs [][]byte) error
	close()
}

// openSession authenticates as the owner of my mailbox on a relay (or on this node's own service).
func (c *Client) openSession(ctx context.Context, addr string) (mailboxSession, error) {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return nil, fmt.Errorf("relay %q: %w", addr, err)
	}
	if ai.ID == c.o.Host.ID() {
		if c.o.Local == nil {
			return nil, fmt.Errorf("relay %s is this node, which runs no mailbox service", ai.ID)
		}
		return &localSession{ctx: ctx, svc: c.o.Local, mb: c.keys.MailboxID()}, nil
	}
	s, err := c.stream(ctx, *ai)
	if err != nil {
		return nil, err
	}
	rs := &remoteSession{relay: ai.ID, s: s,
		r: pbio.NewDelimitedReader(s, maxResponseBytes), w: pbio.NewDelimitedWriter(s)}
	resp, err := rs.do(&pb.Request{Op: &pb.Request_Open{Open: &pb.Open{OwnerKey: c.keys.OwnerKey()}}})
	if err != nil {
		rs.close()
		return nil, err
	}
	ch := resp.GetChallenge()
	if ch == nil || len(ch.Nonce) != nonceLen {
		rs.close()
		return nil, fmt.Errorf("relay %s: %w: no challenge", ai.ID, ErrUnauthorized)
	}
	resp, err = rs.do(&pb.Request{Op: &pb.Request_Auth{Auth: &pb.Auth{Signature: c.keys.authSignature(ai.ID, ch.Nonce)}}})
	if err != nil {
		rs.close()
		return nil, err
	}
	sess := resp.GetSession()
	if sess == nil {
		rs.close()
		return nil, fmt.Errorf("relay %s: %w", ai.ID, ErrUnauthorized)
	}
	rs.items = sess.Items
	return rs, nil
}

type remoteSession struct {
	relay  peer.ID
	s      network.Stream
	r      pbio.Reader
	w      pbio.Writer
	items  uint64
	cursor []byte
}

func (rs *remoteSession) do(req *pb.Request) (*pb.Response, error) {
	_ = rs.s.SetDeadline(time.Now().Add(requestTimeout))
	if err := rs.w.WriteMsg(req); err != nil {
		return nil, fmt.Errorf("relay %s: send: %w", rs.relay, err)
	}
	var resp pb.Response
	if err := rs.r.ReadMsg(&resp); err != nil {
		return nil, fmt.Errorf("relay %s: read: %w", rs.relay, err)
	}
	if e := resp.GetError(); e != nil {
		return nil, fmt.Errorf("relay %s: %s (%s)", rs.relay, e.Message, codeName(e.Code))
	}
	return &resp, nil
}

func (rs *remoteSession) total() uint64 { return rs.items }

func (rs *remoteSession) fetch(limit, maxBytes int) (*pb.Items, error) {
	resp, err := rs.do(&pb.Request{Op: &pb.Request_Fetch{Fetch: &pb.Fetch{Limit: uint32(limit), MaxBytes: uint64(maxBytes), After: rs.cursor}}})
	if err != nil {
		return nil, err
	}
	items := resp.GetItems()
	if items == nil {
		return nil, fmt.Errorf("relay %s: fetch: unexpected answer", rs.relay)
	}
	if len(items.Items) > limit {
		items.Items = items.Items[:limit]
	}
	if len(items.Cursor) > 0 {
		rs.cursor = items.Cursor
	}
	return items, nil
}

func (rs *remoteSession) ack(ids [][]byte) (int, error) {
	n := 0
	for chunk := range slices.Chunk(ids, maxFetchLimit) {
		resp, err := rs.do(&pb.Request{Op: &pb.Request_Ack{Ack: &pb.Ack{Ids: chunk}}})
		if err != nil {
			return n, err
		}
		n += int(resp.GetAcked().GetDeleted())
	}
	return n, nil
}

func (rs *remoteSession) revoke(capIDs [][]byte) error {
	for chunk := range slices.Chunk(capIDs, maxFetchLimit) {
		if _, err := rs.do(&pb.Request{Op: &pb.Request_Revoke{Revoke: &pb.Revoke{CapIds: chunk}}}); err != nil {
			return err
		}
	}
	return nil
}

func (rs *remoteSession) close() { _ = rs.s.Close() }

// localSession drains this relay's own mailbox without the network.
type localSession struct {
	ctx    context.Context
	svc    *Service
	mb     MailboxID
	cursor []byte
}

func (ls *localSession) total() uint64 {
	n, _ := ls.svc.st.MailboxStats(ls.mb)
	return n
}

func (ls *localSession) fetch(limit, maxBytes int) (*pb.Items, error) {
	p, err := ls.svc.st.List(ls.ctx, ls.mb, ls.cursor, limit, maxBytes)
	if err != nil {
		return nil, err
	}
	if len(p.Cursor) > 0 {
		ls.cursor = p.Cursor
	}
	return &pb.Items{Items: p.Items, More: p.More, Total: uint64(p.Total), Cursor: p.Cursor}, nil
}

func (ls *localSession) ack(ids [][]byte) (int, error) {
	n, err := ls.svc.st.Delete(ls.mb, ids)
	if err == nil && n > 0 && ls.svc.o.OnDelete != nil {
		ls.svc.o.OnDelete(n, 0)
	}
	return n, err
}

func (ls *localSession) revoke(capIDs [][]byte) error { return ls.svc.st.Revoke(ls.mb, capIDs) }

func (ls *localSession) close() {}
