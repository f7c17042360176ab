package room

import (
	"crypto/rand"
	"testing"
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
