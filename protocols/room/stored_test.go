package room

import (
	"crypto/rand"
	"testing"

	"github.com/madang-p2p/madang/store"
)

func randomMsgID(t testing.TB) MsgID {
	var id MsgID
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestStoredFilter(t *testing.T) {
	empty := newStoredFilter(0)
	if empty.capacity != storedFilterMin || len(empty.bits)*8 != 2048 {
		t.Fatalf("empty filter: capacity %d, %d bytes; want %d and 2 KiB", empty.capacity, len(empty.bits)*8, storedFilterMin)
	}
	f := newStoredFilter(2500)
	if f.capacity != 5000 {
		t.Fatalf("capacity %d, want 5000", f.capacity)
	}
	ids := make([]MsgID, f.capacity)
	for i := range ids {
		ids[i] = randomMsgID(t)
		if f.full() {
			t.Fatalf("full after %d of %d", i, f.capacity)
		}
		f.add(ids[i])
	}
	for i, id := range ids {
		if !f.mayHave(id) {
			t.Fatalf("added ID %d reported absent", i)
		}
	}
	// Filled to capacity, fewer than 2 % of other IDs may be answered "maybe" (expected about 0.8 %).
	maybe := 0
	const tries = 100000
	for range tries {
		if f.mayHave(randomMsgID(t)) {
			maybe++
		}
	}
	if maybe > tries/50 {
		t.Fatalf("%d of %d absent IDs answered maybe", maybe, tries)
	}
	t.Logf("false maybe at capacity: %.2f %%", 100*float64(maybe)/tries)
	f.add(randomMsgID(t))
	if !f.full() {
		t.Fatal("not full past capacity")
	}
}

func BenchmarkStoredFilterAbsent(b *testing.B) {
	f := newStoredFilter(5000)
	for range 5000 {
		f.add(randomMsgID(b))
	}
	ids := make([]MsgID, 1024)
	for i := range ids {
		ids[i] = randomMsgID(b)
	}
	b.ResetTimer()
	for i := range b.N {
		f.mayHave(ids[i%len(ids)])
	}
}

// BenchmarkStoredFilterRebuild rebuilds the filter of a full room (5,500 messages: the default history
// limit and the tenth it may run over before pruning) from its index on disk, as a room does under its lock
// when it starts and when the filter is full.
func BenchmarkStoredFilterRebuild(b *testing.B) {
	st, err := store.Open(b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	r := &roomRT{s: &Service{d: Deps{Store: st.Namespace("rooms"), DB: st}}, key: "bench"}
	batch := st.NewBatch()
	for range 5500 {
		_ = batch.Put(r.s.d.Store, r.idxKey(randomMsgID(b)), []byte(store.Uint64Key(1)))
	}
	if err := batch.Commit(true); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		r.rebuildStoredLocked(b.Context())
	}
	if r.stored == nil || r.stored.n != 5500 {
		b.Fatalf("rebuilt filter: %+v", r.stored)
	}
}
