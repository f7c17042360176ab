package mailbox

import (
	"context"
	"crypto/ed25519"
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
//	m/<mailbox>             MailboxMeta (absent when the mailbox is empty)
//	i/<mailbox>/<seq>       Item, in arrival order
//	r/<mailbox>/<item id>   <seq>: idempotent deposits and deletes by ID
//	t/<stored ms>/<mailbox>/<seq>  expiry index, oldest first
//	v/<mailbox>/<cap id>    revoked capability
//	seq                     last sequence number
//
// Every deposit and delete is one batch committed with fsync.
type Store struct {
	st  *store.Store
	ns  *store.NS
	lim Limits
	now func() time.Time

	mu     sync.Mutex
	seq    uint64
	metas  map[MailboxID]*pb.MailboxMeta
	items  int64
	bytes  int64
	closed bool
}

// Stats summarise a relay's mailboxes.
type Stats struct {
	Mailboxes int
	Items     int64
	Bytes     int64
	Oldest    time.Time // zero when empty
}

// OpenStore opens the relay-side mailbox store in ns (of st) and loads its totals.
func OpenStore(ctx context.Context, st *store.Store, ns *store.NS, lim Limits, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{st: st, ns: ns, lim: lim.withDefaults(), now: now, metas: map[MailboxID]*pb.MailboxMeta{}}
	if raw, err := ns.Get("seq"); err == nil && len(raw) == 8 {
		s.seq = binary.BigEndian.Uint64(raw)
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	for e, err := range ns.Scan(ctx, store.Range{Prefix: "m/"}) {
		if err != nil {
			return nil, fmt.Errorf("mailbox store: load: %w", err)
		}
		mb, ok := parseMailboxHex(strings.TrimPrefix(e.Key, "m/"))
		if !ok {
			continue
		}
		var m pb.MailboxMeta
		if err := proto.Unmarshal(e.Value, &m); err != nil {
			return nil, fmt.Errorf("mailbox store: meta %s: %w", mb, err)
		}
		s.metas[mb] = &m
		s.items += int64(m.Items)
		s.bytes += int64(m.Bytes)
	}
	return s, nil
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
func metaKey(mb MailboxID) string             { return "m/" + mb.String() }
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
func (s *Store) Put(mb MailboxID, owner ed25519.PublicKey, id, sealed []byte) (Stored, error) {
	if len(sealed) > s.lim.MaxItemBytes {
		return Stored{}, fmt.Errorf("%w: %d > %d bytes", errItemLarge, len(sealed), s.lim.MaxItemBytes)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Stored{}, store.ErrClosed
	}
	if raw, err := s.ns.Get(idKey(mb, id)); err == nil {
		seq, _ := strconv.ParseUint(string(raw), 10, 64)
		itRaw, err := s.ns.Get(itemKey(mb, seq))
		if err != nil {
			return Stored{}, fmt.Errorf("mailbox store: duplicate lookup: %w", err)
		}
		var it pb.Item
		if err := proto.Unmarshal(itRaw, &it); err != nil {
			return Stored{}, fmt.Errorf("mailbox store: duplicate decode: %w", err)
		}
		at := time.UnixMilli(it.StoredUnixMs)
		return Stored{At: at, Expires: at.Add(s.lim.TTL), Sealed: it.Sealed, Duplicate: true}, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return Stored{}, err
	}
	meta := s.metas[mb]
	if meta == nil {
		meta = &pb.MailboxMeta{OwnerKey: owner, CreatedUnix: s.now().Unix()}
	}
	size := int64(len(sealed))
	switch {
	case int(meta.Items)+1 > s.lim.QuotaItems:
		return Stored{}, fmt.Errorf("%w (%d items)", errQuotaItems, s.lim.QuotaItems)
	case int64(meta.Bytes)+size > s.lim.QuotaBytes:
		return Stored{}, fmt.Errorf("%w (%d bytes)", errQuotaBytes, s.lim.QuotaBytes)
	case s.lim.MaxTotalBytes > 0 && s.bytes+size > s.lim.MaxTotalBytes:
		return Stored{}, errRelayFull
	}
	now := s.now()
	seq := s.seq + 1
	it, err := proto.Marshal(&pb.Item{Id: id, Sealed: sealed, StoredUnixMs: now.UnixMilli()})
	if err != nil {
		return Stored{}, fmt.Errorf("mailbox store: %w", err)
	}
	next := proto.Clone(meta).(*pb.MailboxMeta)
	next.Items++
	next.Bytes += uint64(size)
	metaRaw, err := proto.Marshal(next)
	if err != nil {
		return Stored{}, fmt.Errorf("mailbox store: %w", err)
	}
	var seqRaw [8]byte
	binary.BigEndian.PutUint64(seqRaw[:], seq)
	b := s.st.NewBatch()
	for _, kv := range []struct {
		k string
		v []byte
	}{
		{itemKey(mb, seq), it},
		{idKey(mb, id), []byte(strconv.FormatUint(seq, 10))},
		{timeKey(now.UnixMilli(), mb, seq), nil},
		{metaKey(mb), metaRaw},
		{"seq", seqRaw[:]},
	} {
		if err := b.Put(s.ns, kv.k, kv.v); err != nil {
			b.Discard()
			return Stored{}, err
		}
	}
	if err := b.Commit(true); err != nil {
		return Stored{}, err
	}
	s.seq = seq
	s.metas[mb] = next
	s.items++
	s.bytes += size
	return Stored{At: now, Expires: now.Add(s.lim.TTL), Sealed: sealed}, nil
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
	if m := s.metas[mb]; m != nil {
		total = int(m.Items)
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
// it removed.
func (s *Store) Delete(mb MailboxID, ids [][]byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	b := s.st.NewBatch()
	n, freed, err := s.deleteLocked(b, mb, ids)
	if err != nil || n == 0 {
		b.Discard()
		return 0, err
	}
	return n, s.commitDelete(b, mb, n, freed)
}

// deleteLocked adds the deletion of ids to b and returns how many items and bytes it frees.
func (s *Store) deleteLocked(b *store.Batch, mb MailboxID, ids [][]byte) (int, int64, error) {
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
			return 0, 0, err
		}
		seq, _ := strconv.ParseUint(string(raw), 10, 64)
		itRaw, err := s.ns.Get(itemKey(mb, seq))
		if err != nil {
			return 0, 0, fmt.Errorf("mailbox store: delete lookup: %w", err)
		}
		var it pb.Item
		if err := proto.Unmarshal(itRaw, &it); err != nil {
			return 0, 0, fmt.Errorf("mailbox store: delete decode: %w", err)
		}
		for _, k := range []string{itemKey(mb, seq), idKey(mb, id), timeKey(it.StoredUnixMs, mb, seq)} {
			if err := b.Delete(s.ns, k); err != nil {
				return 0, 0, err
			}
		}
		n++
		freed += int64(len(it.Sealed))
	}
	return n, freed, nil
}

// commitDelete updates the mailbox's meta in b, commits it with fsync and updates the totals.
func (s *Store) commitDelete(b *store.Batch, mb MailboxID, n int, freed int64) error {
	meta := proto.Clone(s.metas[mb]).(*pb.MailboxMeta)
	meta.Items -= min(meta.Items, uint64(n))
	meta.Bytes -= min(meta.Bytes, uint64(freed))
	if meta.Items == 0 {
		if err := b.Delete(s.ns, metaKey(mb)); err != nil {
			b.Discard()
			return err
		}
	} else {
		raw, err := proto.Marshal(meta)
		if err != nil {
			b.Discard()
			return fmt.Errorf("mailbox store: %w", err)
		}
		if err := b.Put(s.ns, metaKey(mb), raw); err != nil {
			b.Discard()
			return err
		}
	}
	if err := b.Commit(true); err != nil {
		return err
	}
	if meta.Items == 0 {
		delete(s.metas, mb)
	} else {
		s.metas[mb] = meta
	}
	s.items -= int64(n)
	s.bytes -= freed
	return nil
}

// Sweep deletes every item older than the TTL and reports how many it removed.
func (s *Store) Sweep(ctx context.Context) (int, error) {
	cutoff := s.now().Add(-s.lim.TTL).UnixMilli()
	end := "t/" + store.Uint64Key(uint64(max(cutoff, 0)))
	// Collect expired (mailbox, seq) pairs first, then delete per mailbox in bounded batches.
	type ref struct {
		mb  MailboxID
		seq uint64
	}
	var refs []ref
	for e, err := range s.ns.Scan(ctx, store.Range{Prefix: "t/", End: end, Limit: 10000}) {
		if err != nil {
			return 0, fmt.Errorf("mailbox sweep: %w", err)
		}
		parts := strings.Split(e.Key, "/") // t, ms, mailbox, seq
		if len(parts) != 4 {
			continue
		}
		mb, ok := parseMailboxHex(parts[2])
		seq, err := strconv.ParseUint(parts[3], 10, 64)
		if !ok || err != nil {
			continue
		}
		refs = append(refs, ref{mb, seq})
	}
	byMailbox := map[MailboxID][][]byte{}
	for _, r := range refs {
		raw, err := s.ns.Get(itemKey(r.mb, r.seq))
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return 0, err
		}
		var it pb.Item
		if err := proto.Unmarshal(raw, &it); err != nil {
			return 0, fmt.Errorf("mailbox sweep: decode: %w", err)
		}
		byMailbox[r.mb] = append(byMailbox[r.mb], it.Id)
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
	st := Stats{Mailboxes: len(s.metas), Items: s.items, Bytes: s.bytes}
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
	if m := s.metas[mb]; m != nil {
		return m.Items, m.Bytes
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
