package mailbox

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/mailbox/pb"
	"github.com/madang-p2p/madang/store"
)

// Limits bound what a relay keeps.
type Limits struct {
	QuotaBytes    int64         // sealed bytes per mailbox
	QuotaItems    int           // items per mailbox
	TTL           time.Duration // how long an item is kept
	MaxItemBytes  int           // largest sealed item
	MaxTotalBytes int64         // all mailboxes together; 0: no cap
}

func (l Limits) withDefaults() Limits {
	if l.QuotaBytes <= 0 {
		l.QuotaBytes = 64 << 20
	}
	if l.QuotaItems <= 0 {
		l.QuotaItems = 10000
	}
	if l.TTL <= 0 {
		l.TTL = 7 * 24 * time.Hour
	}
	if l.MaxItemBytes <= 0 || l.MaxItemBytes > DefaultMaxItemBytes {
		l.MaxItemBytes = DefaultMaxItemBytes
	}
	return l
}

// Store errors (relay side). Put returns them wrapped; the service maps them to refusal codes.
var (
	errQuotaItems = errors.New("mailbox quota of items reached")
	errQuotaBytes = errors.New("mailbox quota of bytes reached")
	errRelayFull  = errors.New("relay storage full")
	errItemLarge  = errors.New("item too large")
)

// Store keeps the mailboxes of a relay in its store namespace. Keys:
//
//	i/<mailbox>/<seq>              Item, in arrival order
//	r/<mailbox>/<item id>          seq (8) | size (4) | stored ms (8): dedup, deletes by ID and the totals
//	t/<stored ms>/<mailbox>/<seq>  item ID: expiry index, oldest first
//	v/<mailbox>/<cap id>           revoked capability
//
// Every deposit and delete is one batch committed with fsync. Deposits reserve their quota under the lock
// and commit outside it, so that concurrent deposits share WAL syncs; the totals are rebuilt from the small
// r/ records at start, so no counter on disk can drift.
type Store struct {
	st  *store.Store
	ns  *store.NS
	lim Limits
	now func() time.Time

	mu       sync.Mutex
	seq      uint64
	boxes    map[MailboxID]*boxState
	inflight map[string][]byte // mailbox+id → sealed bytes of deposits being committed
	items    int64
	bytes    int64
	closed   bool
}

type boxState struct{ items, bytes int64 }

// Stats summarise a relay's mailboxes.
type Stats struct {
	Mailboxes int
	Items     int64
	Bytes     int64
	Oldest    time.Time // zero when empty
}

// OpenStore opens the relay-side mailbox store in ns (of st) and rebuilds its totals.
func OpenStore(ctx context.Context, st *store.Store, ns *store.NS, lim Limits, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{st: st, ns: ns, lim: lim.withDefaults(), now: now, boxes: map[MailboxID]*boxState{}, inflight: map[string][]byte{}}
	for e, err := range ns.Scan(ctx, store.Range{Prefix: "r/"}) {
		if err != nil {
			return nil, fmt.Errorf("mailbox store: load: %w", err)
		}
		mb, ok := parseMailboxHex(strings.SplitN(strings.TrimPrefix(e.Key, "r/"), "/", 2)[0])
		ref, okRef := decodeRef(e.Value)
		if !ok || !okRef {
			continue
		}
		b := s.boxes[mb]
		if b == nil {
			b = &boxState{}
			s.boxes[mb] = b
		}
		b.items++
		b.bytes += int64(ref.size)
		s.items++
		s.bytes += int64(ref.size)
		s.seq = max(s.seq, ref.seq)
	}
	return s, nil
}

// itemRef is the value of an r/ record.
type itemRef struct {
	seq  uint64
	size uint32
	ms   int64
}

func (r itemRef) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, r.seq)
	b = binary.BigEndian.AppendUint32(b, r.size)
	return binary.BigEndian.AppendUint64(b, uint64(r.ms))
}

func decodeRef(b []byte) (itemRef, bool) {
	if len(b) != 20 {
		return itemRef{}, false
	}
	return itemRef{seq: binary.BigEndian.Uint64(b), size: binary.BigEndian.Uint32(b[8:]), ms: int64(binary.BigEndian.Uint64(b[12:]))}, true
}

// Limits returns the store's effective limits.
func (s *Store) Limits() Limits { return s.lim }

func parseMailboxHex(h string) (MailboxID, bool) {
	var mb MailboxID
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != len(mb) {
		return mb, false
	}
	copy(mb[:], raw)
	return mb, true
}

func itemKey(mb MailboxID, seq uint64) string { return "i/" + mb.String() + "/" + store.Uint64Key(seq) }
func idKey(mb MailboxID, id []byte) string    { return "r/" + mb.String() + "/" + hex.EncodeToString(id) }
func revokedKey(mb MailboxID, capID []byte) string {
	return "v/" + mb.String() + "/" + hex.EncodeToString(capID)
}
func timeKey(ms int64, mb MailboxID, seq uint64) string {
	return "t/" + store.Uint64Key(uint64(ms)) + "/" + mb.String() + "/" + store.Uint64Key(seq)
}

// Stored describes an item the store holds.
type Stored struct {
	At        time.Time
	Expires   time.Time
	Sealed    []byte // the stored bytes (on a duplicate, the first deposit's)
	Duplicate bool
}

// Put stores an item durably. A second Put of the same ID is a no-op that reports Duplicate. It fails with
// errQuotaItems, errQuotaBytes, errRelayFull or errItemLarge.
func (s *Store) Put(mb MailboxID, id, sealed []byte) (Stored, error) {
	if len(sealed) > s.lim.MaxItemBytes {
		return Stored{}, fmt.Errorf("%w: %d > %d bytes", errItemLarge, len(sealed), s.lim.MaxItemBytes)
	}
	size := int64(len(sealed))
	now := s.now()
	flight := string(mb[:]) + string(id)

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Stored{}, store.ErrClosed
	}
	if first, ok := s.inflight[flight]; ok {
		s.mu.Unlock()
		return Stored{At: now, Expires: now.Add(s.lim.TTL), Sealed: first, Duplicate: true}, nil
	}
	if raw, err := s.ns.Get(idKey(mb, id)); err == nil {
		s.mu.Unlock()
		return s.duplicate(mb, raw)
	} else if !errors.Is(err, store.ErrNotFound) {
		s.mu.Unlock()
		return Stored{}, err
	}
	b := s.boxes[mb]
	if b == nil {
		b = &boxState{}
	}
	switch {
	case b.items+1 > int64(s.lim.QuotaItems):
		s.mu.Unlock()
		return Stored{}, fmt.Errorf("%w (%d items)", errQuotaItems, s.lim.QuotaItems)
	case b.bytes+size > s.lim.QuotaBytes:
		s.mu.Unlock()
		return Stored{}, fmt.Errorf("%w (%d bytes)", errQuotaBytes, s.lim.QuotaBytes)
	case s.lim.MaxTotalBytes > 0 && s.bytes+size > s.lim.MaxTotalBytes:
		s.mu.Unlock()
		return Stored{}, errRelayFull
	}
	s.seq++
	seq := s.seq
	s.boxes[mb] = b
	s.account(mb, b, 1, size)
	s.inflight[flight] = sealed
	s.mu.Unlock()

	err := s.commitPut(mb, id, sealed, seq, now)
	s.mu.Lock()
	delete(s.inflight, flight)
	if err != nil {
		s.account(mb, b, -1, -size)
	}
	s.mu.Unlock()
	if err != nil {
		return Stored{}, err
	}
	return Stored{At: now, Expires: now.Add(s.lim.TTL), Sealed: sealed}, nil
}

// account changes the totals of a mailbox and of the store, forgetting empty mailboxes; the caller holds
// s.mu.
func (s *Store) account(mb MailboxID, b *boxState, items, bytes int64) {
	b.items += items
	b.bytes += bytes
	s.items += items
	s.bytes += bytes
	if b.items <= 0 && s.boxes[mb] == b {
		delete(s.boxes, mb)
	}
}

func (s *Store) commitPut(mb MailboxID, id, sealed []byte, seq uint64, now time.Time) error {
	it, err := proto.Marshal(&pb.Item{Id: id, Sealed: sealed, StoredUnixMs: now.UnixMilli()})
	if err != nil {
		return fmt.Errorf("mailbox store: %w", err)
	}
	ref := itemRef{seq: seq, size: uint32(len(sealed)), ms: now.UnixMilli()}
	b := s.st.NewBatch()
	for _, kv := range []struct {
		k string
		v []byte
	}{
		{itemKey(mb, seq), it},
		{idKey(mb, id), ref.encode()},
		{timeKey(ref.ms, mb, seq), id},
	} {
		if err := b.Put(s.ns, kv.k, kv.v); err != nil {
			b.Discard()
			return err
		}
	}
	return b.Commit(true)
}

// duplicate describes an item already stored under the deposit's ID.
func (s *Store) duplicate(mb MailboxID, rawRef []byte) (Stored, error) {
	ref, ok := decodeRef(rawRef)
	if !ok {
		return Stored{}, errors.New("mailbox store: corrupt item reference")
	}
	itRaw, err := s.ns.Get(itemKey(mb, ref.seq))
	if err != nil {
		return Stored{}, fmt.Errorf("mailbox store: duplicate lookup: %w", err)
	}
	var it pb.Item
	if err := proto.Unmarshal(itRaw, &it); err != nil {
		return Stored{}, fmt.Errorf("mailbox store: duplicate decode: %w", err)
	}
	at := time.UnixMilli(it.StoredUnixMs)
	return Stored{At: at, Expires: at.Add(s.lim.TTL), Sealed: it.Sealed, Duplicate: true}, nil
}

// Page is one page of a mailbox, oldest first.
type Page struct {
	Items  []*pb.Item
	More   bool
	Total  int
	Cursor []byte
}

// List returns up to limit items (and at most maxBytes of them, but always at least one) after cursor.
func (s *Store) List(ctx context.Context, mb MailboxID, after []byte, limit int, maxBytes int) (Page, error) {
	s.mu.Lock()
	total := 0
	if b := s.boxes[mb]; b != nil {
		total = int(b.items)
	}
	s.mu.Unlock()
	prefix := "i/" + mb.String() + "/"
	r := store.Range{Prefix: prefix}
	if len(after) == 8 {
		r.Start = prefix + store.Uint64Key(binary.BigEndian.Uint64(after)+1)
	}
	p := Page{Total: total}
	size := 0
	var last uint64
	for e, err := range s.ns.Scan(ctx, r) {
		if err != nil {
			return Page{}, fmt.Errorf("mailbox store: list: %w", err)
		}
		var it pb.Item
		if err := proto.Unmarshal(e.Value, &it); err != nil {
			return Page{}, fmt.Errorf("mailbox store: list decode: %w", err)
		}
		if len(p.Items) >= limit || (len(p.Items) > 0 && size+len(it.Sealed) > maxBytes) {
			p.More = true
			break
		}
		seq, _ := strconv.ParseUint(strings.TrimPrefix(e.Key, prefix), 10, 64)
		last = seq
		size += len(it.Sealed)
		p.Items = append(p.Items, &it)
	}
	if last > 0 {
		p.Cursor = binary.BigEndian.AppendUint64(nil, last)
	}
	return p, nil
}

// Delete removes the items with the given IDs from a mailbox (unknown IDs are ignored) and reports how many
// it removed. Deletes are serialised: an owner acks whole pages at once.
func (s *Store) Delete(mb MailboxID, ids [][]byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	b := s.st.NewBatch()
	n, freed := 0, int64(0)
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[string(id)] {
			continue
		}
		seen[string(id)] = true
		raw, err := s.ns.Get(idKey(mb, id))
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			b.Discard()
			return 0, err
		}
		ref, ok := decodeRef(raw)
		if !ok {
			continue
		}
		for _, k := range []string{itemKey(mb, ref.seq), idKey(mb, id), timeKey(ref.ms, mb, ref.seq)} {
			if err := b.Delete(s.ns, k); err != nil {
				b.Discard()
				return 0, err
			}
		}
		n++
		freed += int64(ref.size)
	}
	if n == 0 {
		b.Discard()
		return 0, nil
	}
	if err := b.Commit(true); err != nil {
		return 0, err
	}
	if box := s.boxes[mb]; box != nil {
		s.account(mb, box, -int64(n), -freed)
	}
	return n, nil
}

// Sweep deletes every item older than the TTL and reports how many it removed.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-s.lim.TTL).UnixMilli()
	end := "t/" + store.Uint64Key(uint64(max(cutoff, 0)))
	byMailbox := map[MailboxID][][]byte{}
	for e, err := range s.ns.Scan(ctx, store.Range{Prefix: "t/", End: end, Limit: 10000}) {
		if err != nil {
			return 0, fmt.Errorf("mailbox sweep: %w", err)
		}
		parts := strings.Split(e.Key, "/") // t, ms, mailbox, seq
		if len(parts) != 4 {
			continue
		}
		if mb, ok := parseMailboxHex(parts[2]); ok {
			byMailbox[mb] = append(byMailbox[mb], e.Value)
		}
	}
	total := 0
	for mb, ids := range byMailbox {
		n, err := s.Delete(mb, ids)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// Stats returns the store's totals and the time of its oldest item.
func (s *Store) Stats(ctx context.Context) Stats {
	s.mu.Lock()
	st := Stats{Mailboxes: len(s.boxes), Items: s.items, Bytes: s.bytes}
	s.mu.Unlock()
	for e, err := range s.ns.Scan(ctx, store.Range{Prefix: "t/", Limit: 1}) {
		if err != nil {
			break
		}
		parts := strings.Split(e.Key, "/")
		if len(parts) == 4 {
			if ms, err := strconv.ParseInt(parts[1], 10, 64); err == nil {
				st.Oldest = time.UnixMilli(ms)
			}
		}
	}
	return st
}

// MailboxStats returns the items and bytes of one mailbox.
func (s *Store) MailboxStats(mb MailboxID) (items, bytes uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.boxes[mb]; b != nil {
		return uint64(b.items), uint64(b.bytes)
	}
	return 0, 0
}

// Revoke records revoked capability IDs of a mailbox durably.
func (s *Store) Revoke(mb MailboxID, capIDs [][]byte) error {
	b := s.st.NewBatch()
	for _, id := range capIDs {
		if len(id) != capIDLen {
			continue
		}
		if err := b.Put(s.ns, revokedKey(mb, id), []byte{1}); err != nil {
			b.Discard()
			return err
		}
	}
	return b.Commit(true)
}

// Revoked reports whether a capability was revoked.
func (s *Store) Revoked(mb MailboxID, capID []byte) (bool, error) {
	return s.ns.Has(revokedKey(mb, capID))
}

// Close makes further writes fail; the underlying store is closed by its owner.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}
