package room

import (
	"context"
	"encoding/binary"
	"math/bits"

	"github.com/madang-p2p/madang/store"
)

// storedFilter answers "is this message stored?" from memory when the answer is no, which it is for
// nearly every message arriving on the topic: without it each one cost a store read, about 5 % of a
// node's CPU in a busy room and a disk read on a cold cache. It is a Bloom filter over the IDs of the
// room's stored messages (IDs are sha256 prefixes, so their bytes serve as the hashes). It errs only
// towards "maybe", and then the store decides; so it must hold every stored ID: ingest adds each before
// writing it, and a rebuild refills it from the message index when the room starts and whenever it has
// taken more IDs than it is sized for (pruned messages stay in it until then). A room reopened after a
// restart fills it from the scan that counts its messages.
type storedFilter struct {
	bits     []uint64
	mask     uint64 // number of bits - 1 (a power of two)
	n        int    // IDs added
	capacity int    // IDs it is sized for
}

const (
	storedFilterMin     = 1024 // smallest capacity: 2 KiB
	storedFilterBits    = 10   // bits per ID of capacity; with 7 probes under 1 % false "maybe" when full
	storedFilterProbes  = 7
	storedFilterHeadway = 2 // a rebuilt filter has room for this many times the IDs it starts with
)

func newStoredFilter(ids int) *storedFilter {
	c := max(ids*storedFilterHeadway, storedFilterMin)
	nbits := uint64(1) << bits.Len64(uint64(c*storedFilterBits)-1)
	return &storedFilter{bits: make([]uint64, nbits/64), mask: nbits - 1, capacity: c}
}

func (f *storedFilter) add(id MsgID) {
	h1, h2 := probeHashes(id)
	for i := range uint64(storedFilterProbes) {
		b := (h1 + i*h2) & f.mask
		f.bits[b>>6] |= 1 << (b & 63)
	}
	f.n++
}

func (f *storedFilter) mayHave(id MsgID) bool {
	h1, h2 := probeHashes(id)
	for i := range uint64(storedFilterProbes) {
		b := (h1 + i*h2) & f.mask
		if f.bits[b>>6]&(1<<(b&63)) == 0 {
			return false
		}
	}
	return true
}

func (f *storedFilter) full() bool { return f.n > f.capacity }

// probeHashes splits an ID into the two hashes of double hashing (the second odd, so that the probes of
// one ID differ).
func probeHashes(id MsgID) (uint64, uint64) {
	return binary.LittleEndian.Uint64(id[:8]), binary.LittleEndian.Uint64(id[8:]) | 1
}

// has reports whether a message is stored. A message the filter has never seen is not.
func (r *roomRT) has(id MsgID) bool {
	r.storedMu.Lock()
	maybe := r.stored == nil || r.stored.mayHave(id)
	r.storedMu.Unlock()
	if !maybe {
		return false
	}
	ok, _ := r.s.d.Store.Has(r.idxKey(id))
	return ok
}

// addStoredLocked records a message about to be stored; r.mu is held. A full filter is first rebuilt
// (from the index, which does not hold this message yet).
func (r *roomRT) addStoredLocked(ctx context.Context, id MsgID) {
	r.storedMu.Lock()
	full := r.stored != nil && r.stored.full()
	r.storedMu.Unlock()
	if full {
		r.rebuildStoredLocked(ctx)
	}
	r.storedMu.Lock()
	if r.stored != nil {
		r.stored.add(id)
	}
	r.storedMu.Unlock()
}

// filterOf is a filter holding ids, sized for more.
func filterOf(ids []MsgID) *storedFilter {
	f := newStoredFilter(len(ids))
	for _, id := range ids {
		f.add(id)
	}
	return f
}

// rebuildStoredLocked refills the filter from the room's message index. r.mu is held (or the room is not
// started), so nothing is stored meanwhile. If the index cannot be read to the end the filter is dropped
// and every lookup goes to the store.
func (r *roomRT) rebuildStoredLocked(ctx context.Context) {
	var ids []MsgID
	prefix := "x/" + r.key + "/"
	ok := true
	for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: prefix}) {
		if err != nil {
			ok = false
			break
		}
		if id, err := ParseMsgID(e.Key[len(prefix):]); err == nil {
			ids = append(ids, id)
		}
	}
	var f *storedFilter
	if ok {
		f = filterOf(ids)
	}
	r.storedMu.Lock()
	r.stored = f
	r.storedMu.Unlock()
}
