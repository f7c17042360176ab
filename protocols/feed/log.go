package feed

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/madang-p2p/madang/store"
)

// Log errors.
var (
	// ErrForked is returned when entries are offered to a log whose channel has been caught forking: following
	// is paused and nothing more is appended.
	ErrForked = errors.New("channel forked: following paused")
	// ErrWrongChannel is returned for an entry signed by another channel.
	ErrWrongChannel = fmt.Errorf("%w: signed by another channel", ErrInvalidEntry)
)

// Fork kinds.
const (
	// ForkSameSeq: two valid entries with one seq.
	ForkSameSeq = "same_seq"
	// ForkBrokenLink: a valid entry whose prev is not the id of the valid entry before it (the channel signed
	// another entry with that seq).
	ForkBrokenLink = "broken_link"
)

// maxPending bounds the valid entries held in memory while an earlier one is missing.
const maxPending = 1024

// Fork describes a detected fork; the proof entries are kept in the store.
type Fork struct {
	Seq      uint64    `json:"seq"`
	Kind     string    `json:"kind"`
	Kept     string    `json:"kept_id"`  // hex id of the entry the log holds (same_seq) or the log's entry seq-1 (broken_link)
	Conflict string    `json:"other_id"` // hex id of the conflicting entry
	Detected time.Time `json:"detected"`
}

// State is what a node keeps about one channel besides its entries.
type State struct {
	Owned      bool      `json:"owned,omitempty"`
	Following  bool      `json:"following,omitempty"`
	Pinned     bool      `json:"pinned,omitempty"`
	Seq        uint64    `json:"seq"`                // last entry of the contiguous, verified log
	HeadID     []byte    `json:"head_id,omitempty"`  // its id
	HeadTime   time.Time `json:"head_time,omitzero"` // its time
	Profile    []byte    `json:"profile,omitempty"`  // newest signed profile
	HeadRecord []byte    `json:"head_rec,omitempty"` // newest signed head record
	Target     uint64    `json:"target,omitempty"`   // highest seq known to exist
	Read       uint64    `json:"read,omitempty"`     // entries up to this seq are read
	Fork       *Fork     `json:"fork,omitempty"`     // set when the channel was caught forking
	FollowedAt time.Time `json:"followed_at,omitzero"`
}

// Active reports whether the node keeps the channel for any reason.
func (st State) Active() bool { return st.Owned || st.Following || st.Pinned }

// Result reports what Apply did.
type Result struct {
	Appended   []*Entry // entries added to the log, in seq order
	Duplicates int      // entries the log already held
	Held       int      // valid entries held until the entries before them arrive
	Fork       *Fork    // set if this call detected a fork
}

// Log is one channel's verified, append-only log in the store. All methods are safe for concurrent use.
type Log struct {
	db  *db
	id  ChannelID
	key ed25519.PublicKey
	now func() time.Time

	mu      sync.Mutex
	st      State
	pending map[uint64]*Entry
}

// db is the feed's view of the "channels" namespace.
//
//	c/<id>/m                 State (JSON)
//	c/<id>/e/<seq>           entry: id (32) ‖ index time (8, Unix ms) ‖ signed entry
//	c/<id>/x/<seq>/<id hex>  fork proof: a conflicting signed entry
//	c/<id>/n/<customer hex>  newest follow notice of a customer (owner and pinning nodes)
//	c/<id>/k                 channel private key seed (owner)
//	t/<ms>/<id>/<seq>        merged-feed index
//	q/<id>                   follow notice waiting for delivery
type db struct {
	st *store.Store
	ns *store.NS
}

func chanPrefix(id ChannelID) string         { return "c/" + string(id) + "/" }
func metaKey(id ChannelID) string            { return chanPrefix(id) + "m" }
func entryKey(id ChannelID, s uint64) string { return chanPrefix(id) + "e/" + store.Uint64Key(s) }
func forkKey(id ChannelID, s uint64, eid [32]byte) string {
	return chanPrefix(id) + "x/" + store.Uint64Key(s) + "/" + hex.EncodeToString(eid[:])
}
func indexKey(ms int64, id ChannelID, s uint64) string {
	return "t/" + store.Uint64Key(uint64(max(ms, 0))) + "/" + string(id) + "/" + store.Uint64Key(s)
}

// openLog loads (or starts) the log of a channel.
func openLog(d *db, id ChannelID, now func() time.Time) (*Log, error) {
	key, err := ParseID(string(id))
	if err != nil {
		return nil, err
	}
	l := &Log{db: d, id: id, key: key, now: now, pending: map[uint64]*Entry{}}
	raw, err := d.ns.Get(metaKey(id))
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("open log %s: %w", id, err)
	default:
		if err := json.Unmarshal(raw, &l.st); err != nil {
			return nil, fmt.Errorf("open log %s: corrupt state: %w", id, err)
		}
	}
	return l, nil
}

// ID is the channel's ID.
func (l *Log) ID() ChannelID { return l.id }

// Key is the channel's public key.
func (l *Log) Key() ed25519.PublicKey { return l.key }

// State returns a copy of the channel's state.
func (l *Log) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

// Flush makes everything applied so far durable (after applies that did not wait for the disk).
func (l *Log) Flush() error { return l.Update(func(*State) {}) }

// Update changes the state durably.
func (l *Log) Update(fn func(*State)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	next := l.st
	fn(&next)
	b := l.db.st.NewBatch()
	if err := l.putState(b, &next); err != nil {
		b.Discard()
		return err
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("update channel %s: %w", l.id, err)
	}
	l.st = next
	return nil
}

func (l *Log) putState(b *store.Batch, st *State) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode channel state: %w", err)
	}
	return b.Put(l.db.ns, metaKey(l.id), raw)
}

// ApplyRaw verifies signed entries (signatures in parallel) and applies the valid ones in order. It stops at
// the first invalid entry and returns its error together with the result of the entries before it.
func (l *Log) ApplyRaw(raws [][]byte) (Result, error) { return l.applyRaw(raws, true) }

// applyRaw is ApplyRaw with a choice of durability: a catch-up sync commits most pages without waiting for
// the disk (they survive a crash of the process, not of the machine, and are simply fetched again) and
// makes the log durable with Flush when it ends.
func (l *Log) applyRaw(raws [][]byte, durable bool) (Result, error) {
	es, verr := verifyAll(raws)
	if len(es) == 0 && verr != nil {
		return Result{}, verr
	}
	res, err := l.apply(durable, es...)
	if err != nil {
		return res, err
	}
	return res, verr
}

// verifyAll decodes and verifies entries, spreading signature checks over the CPUs. It returns the valid
// prefix and the error of the first invalid entry.
func verifyAll(raws [][]byte) ([]*Entry, error) {
	es := make([]*Entry, len(raws))
	errs := make([]error, len(raws))
	workers := min(runtime.GOMAXPROCS(0), (len(raws)+15)/16)
	if workers <= 1 {
		for i, r := range raws {
			es[i], errs[i] = VerifyEntry(r)
		}
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(raws); i += workers {
					es[i], errs[i] = VerifyEntry(raws[i])
				}
			})
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			return es[:i], fmt.Errorf("entry %d of %d: %w", i+1, len(raws), err)
		}
	}
	return es, nil
}

// Apply adds verified entries (from VerifyEntry) to the log, SSB-style: an entry is appended when its seq is
// one past the head and its prev is the head's id; an entry the log already holds is a duplicate; an entry
// further ahead is held until the entries before it arrive; a second valid entry for a seq (or an entry whose
// prev contradicts the log) is a fork: the conflicting entry is kept as proof, the channel is flagged and the
// log accepts nothing more (ErrForked). Everything of one call is committed in one synced batch.
func (l *Log) Apply(es ...*Entry) (Result, error) { return l.apply(true, es...) }

func (l *Log) apply(durable bool, es ...*Entry) (Result, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Fork != nil {
		return Result{}, ErrForked
	}
	a := &applier{l: l, b: l.db.st.NewBatch(), st: l.st, fresh: map[uint64][32]byte{}}
	fail := func(err error) (Result, error) {
		a.b.Discard()
		for _, s := range a.held {
			delete(l.pending, s)
		}
		return Result{}, err
	}
	for _, e := range es {
		if !e.Channel.Equal(l.key) {
			return fail(ErrWrongChannel)
		}
		if err := a.apply(e); err != nil {
			return fail(err)
		}
		if a.res.Fork != nil {
			break
		}
	}
	if len(a.res.Appended) == 0 && a.res.Fork == nil && a.st.Target == l.st.Target {
		a.b.Discard()
		return a.res, nil
	}
	if err := l.putState(a.b, &a.st); err != nil {
		return fail(err)
	}
	if err := a.b.Commit(durable); err != nil {
		return fail(fmt.Errorf("apply to channel %s: %w", l.id, err))
	}
	l.st = a.st
	if a.res.Fork != nil {
		clear(l.pending)
	}
	return a.res, nil
}

// applier is the state of one Apply call.
type applier struct {
	l     *Log
	b     *store.Batch
	st    State
	res   Result
	held  []uint64            // seqs put into pending by this call
	fresh map[uint64][32]byte // ids appended by this call (not yet readable from the store)
}

func (a *applier) apply(e *Entry) error {
	l, st := a.l, &a.st
	st.Target = max(st.Target, e.Seq)
	switch {
	case e.Seq <= st.Seq:
		kept, err := a.entryID(e.Seq)
		if err != nil {
			return err
		}
		if kept == e.ID {
			a.res.Duplicates++
			return nil
		}
		return a.fork(e, ForkSameSeq, kept)
	case e.Seq == st.Seq+1:
		if err := a.link(e); err != nil || a.res.Fork != nil {
			return err
		}
		// Entries held for later may now follow.
		for a.res.Fork == nil {
			p, ok := l.pending[st.Seq+1]
			if !ok {
				return nil
			}
			delete(l.pending, p.Seq)
			if err := a.link(p); err != nil {
				return err
			}
		}
		return nil
	default:
		if p, ok := l.pending[e.Seq]; ok {
			if p.ID == e.ID {
				a.res.Duplicates++
				return nil
			}
			// Two valid entries for one future seq: keep both as proof.
			if err := a.b.Put(l.db.ns, forkKey(l.id, p.Seq, p.ID), p.Raw); err != nil {
				return err
			}
			return a.fork(e, ForkSameSeq, p.ID)
		}
		if len(l.pending) < maxPending {
			l.pending[e.Seq] = e
			a.held = append(a.held, e.Seq)
			a.res.Held++
		}
		return nil
	}
}

// link appends e (seq one past the head) if its prev is the head's id, else records a broken-link fork.
func (a *applier) link(e *Entry) error {
	st := &a.st
	if e.Seq > 1 && !bytes.Equal(e.Prev, st.HeadID) {
		var kept [32]byte
		copy(kept[:], st.HeadID)
		return a.fork(e, ForkBrokenLink, kept)
	}
	l := a.l
	ms := min(e.Time.UnixMilli(), l.now().UnixMilli())
	v := make([]byte, 0, 40+len(e.Raw))
	v = append(v, e.ID[:]...)
	v = binary.BigEndian.AppendUint64(v, uint64(max(ms, 0)))
	v = append(v, e.Raw...)
	if err := a.b.Put(l.db.ns, entryKey(l.id, e.Seq), v); err != nil {
		return err
	}
	if err := a.b.Put(l.db.ns, indexKey(ms, l.id, e.Seq), nil); err != nil {
		return err
	}
	st.Seq, st.HeadID, st.HeadTime = e.Seq, e.ID[:], e.Time
	st.Target = max(st.Target, e.Seq)
	a.fresh[e.Seq] = e.ID
	a.res.Appended = append(a.res.Appended, e)
	return nil
}

func (a *applier) fork(e *Entry, kind string, kept [32]byte) error {
	l := a.l
	if err := a.b.Put(l.db.ns, forkKey(l.id, e.Seq, e.ID), e.Raw); err != nil {
		return err
	}
	a.st.Fork = &Fork{Seq: e.Seq, Kind: kind, Kept: hex.EncodeToString(kept[:]), Conflict: hex.EncodeToString(e.ID[:]), Detected: l.now().UTC()}
	a.res.Fork = a.st.Fork
	return nil
}

// entryID returns the id of entry seq, appended by this call or stored before.
func (a *applier) entryID(seq uint64) ([32]byte, error) {
	if id, ok := a.fresh[seq]; ok {
		return id, nil
	}
	var id [32]byte
	v, err := a.l.db.ns.Get(entryKey(a.l.id, seq))
	if err != nil {
		return id, fmt.Errorf("channel %s entry %d: %w", a.l.id, seq, err)
	}
	copy(id[:], v)
	return id, nil
}

// Raw returns the stored signed entry seq.
func (l *Log) Raw(seq uint64) ([]byte, error) {
	v, err := l.db.ns.Get(entryKey(l.id, seq))
	if err != nil {
		return nil, err
	}
	if len(v) < 40 {
		return nil, fmt.Errorf("channel %s entry %d: corrupt", l.id, seq)
	}
	return v[40:], nil
}

// Entry returns the stored entry seq, decoded (it was verified when appended).
func (l *Log) Entry(seq uint64) (*Entry, error) {
	raw, err := l.Raw(seq)
	if err != nil {
		return nil, err
	}
	e, _, _, err := DecodeEntry(raw)
	return e, err
}

// Range calls fn with the stored signed entries from seq from on, at most limit (0: all), in order.
func (l *Log) Range(ctx context.Context, from uint64, limit int, fn func(seq uint64, raw []byte) error) error {
	p := chanPrefix(l.id) + "e/"
	for ent, err := range l.db.ns.Scan(ctx, store.Range{Prefix: p, Start: p + store.Uint64Key(from), Limit: limit}) {
		if err != nil {
			return err
		}
		if len(ent.Value) < 40 {
			return fmt.Errorf("channel %s: corrupt entry %s", l.id, ent.Key)
		}
		seq := parseSeq(strings.TrimPrefix(ent.Key, p))
		if err := fn(seq, ent.Value[40:]); err != nil {
			return err
		}
	}
	return nil
}

// Latest returns up to limit entries before seq before (0: from the head), newest first.
func (l *Log) Latest(ctx context.Context, before uint64, limit int) ([]*Entry, error) {
	p := chanPrefix(l.id) + "e/"
	r := store.Range{Prefix: p, Reverse: true, Limit: limit}
	if before > 0 {
		r.End = p + store.Uint64Key(before)
	}
	var out []*Entry
	for ent, err := range l.db.ns.Scan(ctx, r) {
		if err != nil {
			return nil, err
		}
		if len(ent.Value) < 40 {
			return nil, fmt.Errorf("channel %s: corrupt entry %s", l.id, ent.Key)
		}
		e, _, _, err := DecodeEntry(ent.Value[40:])
		if err != nil {
			return nil, fmt.Errorf("channel %s: stored entry %s: %w", l.id, ent.Key, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// ForkProof returns the signed entries that prove the channel's fork: the entry the log holds at the fork's
// seq (or, for a broken link, at seq-1) and the conflicting ones.
func (l *Log) ForkProof(ctx context.Context) ([][]byte, error) {
	st := l.State()
	if st.Fork == nil {
		return nil, nil
	}
	var out [][]byte
	keptSeq := st.Fork.Seq
	if st.Fork.Kind == ForkBrokenLink {
		keptSeq--
	}
	if raw, err := l.Raw(keptSeq); err == nil {
		out = append(out, raw)
	}
	p := chanPrefix(l.id) + "x/"
	for ent, err := range l.db.ns.Scan(ctx, store.Range{Prefix: p}) {
		if err != nil {
			return nil, err
		}
		out = append(out, ent.Value)
	}
	return out, nil
}

// NoteHead records a verified head record of this channel if it is newer than the one held, and raises the
// target seq. It reports whether the record was newer.
func (l *Log) NoteHead(h *Head) (bool, error) {
	if !h.Channel.Equal(l.key) {
		return false, ErrWrongChannel
	}
	l.mu.Lock()
	cur := l.st.HeadRecord
	l.mu.Unlock()
	if cur != nil {
		if old, err := VerifyHead(cur); err == nil && !h.Newer(old) {
			return false, nil
		}
	}
	err := l.Update(func(st *State) {
		st.HeadRecord = h.Raw
		st.Target = max(st.Target, h.Seq)
	})
	return err == nil, err
}

// NoteProfile records a verified profile of this channel if its revision is newer.
func (l *Log) NoteProfile(p *Profile) (bool, error) {
	if !p.Channel.Equal(l.key) {
		return false, ErrWrongChannel
	}
	st := l.State()
	if st.Profile != nil {
		if old, err := VerifyProfile(st.Profile); err == nil && old.Revision >= p.Revision {
			return false, nil
		}
	}
	err := l.Update(func(st *State) { st.Profile = p.Raw })
	return err == nil, err
}

// Profile returns the newest verified profile, or nil.
func (l *Log) Profile() *Profile {
	st := l.State()
	if st.Profile == nil {
		return nil
	}
	p, err := VerifyProfile(st.Profile)
	if err != nil {
		return nil
	}
	return p
}

// drop deletes everything the node keeps about the channel.
func (l *Log) drop(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.db.st.NewBatch()
	for ent, err := range l.db.ns.Scan(ctx, store.Range{Prefix: chanPrefix(l.id)}) {
		if err != nil {
			b.Discard()
			return err
		}
		if rest, ok := strings.CutPrefix(ent.Key, chanPrefix(l.id)+"e/"); ok && len(ent.Value) >= 40 {
			ms := int64(binary.BigEndian.Uint64(ent.Value[32:40]))
			if err := b.Delete(l.db.ns, indexKey(ms, l.id, parseSeq(rest))); err != nil {
				b.Discard()
				return err
			}
		}
		if err := b.Delete(l.db.ns, ent.Key); err != nil {
			b.Discard()
			return err
		}
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("drop channel %s: %w", l.id, err)
	}
	l.st = State{}
	clear(l.pending)
	return nil
}

func parseSeq(s string) uint64 {
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	return n
}
