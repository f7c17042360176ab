package store

import (
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"
)

func TestPutGetScanReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.Namespace("rooms")
	other := s.Namespace("dm")
	for i := range 100 {
		if err := ns.Put("r1/"+Uint64Key(uint64(i)), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ns.Put("r10/x", []byte("neighbour")); err != nil {
		t.Fatal(err)
	}
	if err := other.PutSync("r1/"+Uint64Key(5), []byte("other ns")); err != nil {
		t.Fatal(err)
	}
	var got []string
	for e, err := range ns.Scan(t.Context(), Range{Prefix: "r1/", Reverse: true, Limit: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(e.Value))
	}
	if fmt.Sprint(got) != "[99 98 97]" {
		t.Fatalf("reverse scan = %v", got)
	}
	got = nil
	for e, err := range ns.Scan(t.Context(), Range{Prefix: "r1/", End: "r1/" + Uint64Key(50), Reverse: true, Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(e.Value))
	}
	if fmt.Sprint(got) != "[49 48]" {
		t.Fatalf("cursor scan = %v", got)
	}
	if n, _ := ns.Count(t.Context(), "r1/"); n != 100 {
		t.Fatalf("count r1/ = %d, want 100 (prefix must stop at the boundary)", n)
	}
	b := s.NewBatch()
	_ = b.Put(ns, "a", []byte("1"))
	_ = b.Delete(ns, "r1/"+Uint64Key(0))
	_ = b.Put(other, "b", []byte("2"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns = s.Namespace("rooms")
	if v, err := ns.Get("a"); err != nil || string(v) != "1" {
		t.Fatalf("after reopen a = %q %v", v, err)
	}
	if _, err := ns.Get("r1/" + Uint64Key(0)); err != ErrNotFound {
		t.Fatalf("deleted key: %v", err)
	}
	if v, err := s.Namespace("dm").Get("r1/" + Uint64Key(5)); err != nil || string(v) != "other ns" {
		t.Fatalf("namespaces must not mix: %q %v", v, err)
	}
}

func TestNamespaceRules(t *testing.T) {
	s, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Namespace("graph")
	for _, name := range []string{"graph", "nope"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Namespace(%q) did not panic", name)
				}
			}()
			s.Namespace(name)
		}()
	}
}

// BenchmarkLast50 measures reading the newest 50 of many room messages (goal: < 1 ms for 1M messages; run
// with -benchtime and MADANG_BENCH_N to change the size).
func BenchmarkLast50(b *testing.B) {
	const n = 200_000
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ns := s.Namespace("rooms")
	val := make([]byte, 300)
	batch := s.NewBatch()
	for i := range n {
		_ = batch.Put(ns, "room/"+Uint64Key(uint64(i)), val)
		if batch.Len() == 10_000 {
			_ = batch.Commit(false)
			batch = s.NewBatch()
		}
	}
	_ = batch.Commit(false)
	b.ResetTimer()
	for b.Loop() {
		c := 0
		for _, err := range ns.Scan(b.Context(), Range{Prefix: "room/", Reverse: true, Limit: 50}) {
			if err != nil {
				b.Fatal(err)
			}
			c++
		}
		if c != 50 {
			b.Fatal(c)
		}
	}
}

func BenchmarkPut(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ns := s.Namespace("dm")
			val := make([]byte, 512)
			i := 0
			for b.Loop() {
				i++
				k := Uint64Key(uint64(i))
				if sync {
					err = ns.PutSync(k, val)
				} else {
					err = ns.Put(k, val)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestUseAfterClose: late callers (a stream handler finishing during shutdown) get ErrClosed, never a
// pebble panic.
func TestUseAfterClose(t *testing.T) {
	s, err := Open("", Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	ns := s.Namespace("rooms")
	view := s.Datastore("dht")
	if err := ns.Put("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Get("k"); err != ErrClosed {
		t.Fatalf("Get after close: %v", err)
	}
	if err := ns.PutSync("k", nil); err != ErrClosed {
		t.Fatalf("Put after close: %v", err)
	}
	for _, err := range ns.Scan(t.Context(), Range{}) {
		if err != ErrClosed {
			t.Fatalf("Scan after close: %v", err)
		}
	}
	if _, err := view.Get(t.Context(), ds.NewKey("/x")); err == nil {
		t.Fatal("datastore view Get after close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
