package store

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	"go.uber.org/goleak"
)

// syncCountingFS is a disk stand-in that counts syncs of write-ahead log files.
type syncCountingFS struct {
	vfs.FS
	walSyncs atomic.Int64
}

func (f *syncCountingFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return file, err
	}
	return &syncCountingFile{File: file, n: &f.walSyncs}, nil
}

func (f *syncCountingFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, c)
	return f.wrap(name, file, err)
}

func (f *syncCountingFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.ReuseForWrite(oldname, newname, c)
	return f.wrap(newname, file, err)
}

type syncCountingFile struct {
	vfs.File
	n *atomic.Int64
}

func (f *syncCountingFile) Sync() error     { f.n.Add(1); return f.File.Sync() }
func (f *syncCountingFile) SyncData() error { f.n.Add(1); return f.File.SyncData() }
func (f *syncCountingFile) SyncTo(length int64) (bool, error) {
	f.n.Add(1)
	return f.File.SyncTo(length)
}

// On disk the *Sync writes and synced batches still fsync the write-ahead log; plain writes do not.
func TestDiskStoreSyncsDurableWrites(t *testing.T) {
	fs := &syncCountingFS{FS: vfs.NewMem()}
	s, err := open("db", Options{}, fs)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := s.Namespace("dm")
	before := fs.walSyncs.Load()
	for i := range 5 {
		if err := ns.Put(fmt.Sprint("plain", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := fs.walSyncs.Load() - before; got != 0 {
		t.Fatalf("plain puts synced the WAL %d times", got)
	}
	steps := map[string]func() error{
		"PutSync":    func() error { return ns.PutSync("a", []byte("1")) },
		"DeleteSync": func() error { return ns.DeleteSync("a") },
		"Commit(true)": func() error {
			b := s.NewBatch()
			_ = b.Put(ns, "b", []byte("2"))
			return b.Commit(true)
		},
		"Datastore Sync": func() error { return s.Datastore("dht").Sync(t.Context(), ds.NewKey("/")) },
	}
	for name, step := range steps {
		n := fs.walSyncs.Load()
		if err := step(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fs.walSyncs.Load() == n {
			t.Errorf("%s did not sync the WAL", name)
		}
	}
}

// In memory there is no log: every write variant works and the data is there.
func TestInMemoryStoreWritesAllVariants(t *testing.T) {
	s, err := Open("", Options{InMemory: true, CacheMiB: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ns := s.Namespace("dm")
	if err := ns.PutSync("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := ns.PutSync("gone", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := ns.DeleteSync("gone"); err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	_ = b.Put(ns, "b", []byte("2"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	view := s.Datastore("dht")
	if err := view.Put(t.Context(), ds.NewKey("/k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := view.Sync(t.Context(), ds.NewKey("/")); err != nil {
		t.Fatal(err)
	}
	// Enough data to fill several (small) memtables, so that reads also go through flushed tables.
	val := make([]byte, 1024)
	for i := range 2000 {
		if err := ns.Put("bulk/"+Uint64Key(uint64(i)), val); err != nil {
			t.Fatal(err)
		}
	}
	for k, want := range map[string]string{"a": "1", "b": "2"} {
		if v, err := ns.Get(k); err != nil || string(v) != want {
			t.Fatalf("%s = %q, %v", k, v, err)
		}
	}
	if _, err := ns.Get("gone"); err != ErrNotFound {
		t.Fatalf("deleted key: %v", err)
	}
	if n, err := ns.Count(t.Context(), "bulk/"); err != nil || n != 2000 {
		t.Fatalf("count = %d, %v", n, err)
	}
	if v, err := view.Get(t.Context(), ds.NewKey("/k")); err != nil || string(v) != "v" {
		t.Fatalf("view get = %q, %v", v, err)
	}
}

// BenchmarkInMemoryStoreHeap reports the live heap of one in-memory store (many are opened in one simulation
// process). They share caches and keep no log, so each costs pebble's fixed per-DB structures: the WAL writer
// and its sync queue, the commit queue and the manifest writer, ≈ 225 KiB.
func BenchmarkInMemoryStoreHeap(b *testing.B) {
	open := func() *Store {
		s, err := Open("", Options{InMemory: true, CacheMiB: 32})
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	open().Close() // the shared caches
	const n = 20
	var per float64
	for b.Loop() {
		stores := make([]*Store, 0, n)
		before := heapAlloc()
		for range n {
			stores = append(stores, open())
		}
		per = float64(heapAlloc()-min(heapAlloc(), before)) / n
		for _, s := range stores {
			_ = s.Close()
		}
	}
	b.ReportMetric(per/1024, "KiB/store")
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The shared caches live only while an in-memory store is open: closing the last one stops their goroutines.
func TestInMemoryCachesReleased(t *testing.T) {
	var stores []*Store
	for range 3 {
		s, err := Open("", Options{InMemory: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Namespace("dm").Put("k", []byte("v")); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	if memCaches.stores != 3 {
		t.Fatalf("%d stores share the caches, want 3", memCaches.stores)
	}
	for _, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_ = s.Close() // a second Close must not release twice
	}
	if memCaches.stores != 0 || memCaches.files != nil {
		t.Fatalf("caches still held by %d stores", memCaches.stores)
	}
	goleak.VerifyNone(t)
}
