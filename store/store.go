// Package store is the node's embedded key-value store: one pebble database in the node's home, shared by the
// DHT (through a go-datastore view) and by every feature (through namespaces).
//
// The store is the one owner of key namespaces: every namespace is declared in namespaces.go, and a feature
// asks for its namespace by name. Writes are NoSync by default (fast, survive a process crash but not a power
// loss); durable state (outbox, ratchet state, spent coupons, feed heads, mailbox items) uses the *Sync
// variants or a batch committed with sync, which fsyncs the WAL before returning.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/namespace"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// ErrNotFound is returned by Get when a key does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// Options tune the store.
type Options struct {
	// CacheMiB is the size of pebble's block cache; 0 uses pebble's default. In-memory stores ignore it and
	// share one block cache of memCacheSize.
	CacheMiB int
	// InMemory keeps everything in memory (simulations, benchmarks); dir is ignored. There is no disk to make
	// writes durable on, so the store runs without a write-ahead log and the *Sync variants are the plain
	// ones.
	InMemory bool
}

// In-memory stores (hundreds in one simulation process) share one block cache and one file cache instead of
// each building its own, and keep small memtables: their data lives in memory either way.
const (
	memCacheSize     = 32 << 20
	memFileCacheSize = 4096
	memTableSize     = 256 << 10
)

// memCaches are the shared caches, alive while an in-memory store is open (the file cache runs goroutines).
var memCaches struct {
	sync.Mutex
	stores int
	cache  *pebble.Cache
	files  *pebble.FileCache
}

// acquireMemCaches returns the shared caches for one more in-memory store; pebble.Open takes its own
// references, the store's is dropped by releaseMemCaches.
func acquireMemCaches() (*pebble.Cache, *pebble.FileCache) {
	memCaches.Lock()
	defer memCaches.Unlock()
	if memCaches.stores == 0 {
		memCaches.cache = pebble.NewCache(memCacheSize)
		memCaches.files = pebble.NewFileCache(runtime.GOMAXPROCS(0), memFileCacheSize)
	}
	memCaches.stores++
	return memCaches.cache, memCaches.files
}

func releaseMemCaches() {
	memCaches.Lock()
	defer memCaches.Unlock()
	if memCaches.stores--; memCaches.stores == 0 {
		memCaches.files.Unref()
		memCaches.cache.Unref()
		memCaches.files, memCaches.cache = nil, nil
	}
}

// Store is the node's database.
type Store struct {
	db    *pebble.DB
	dsv   *pebbleds.Datastore
	mu    sync.Mutex
	taken map[string]bool
	// durable are the write options of the *Sync variants: pebble.Sync on disk, pebble.NoSync in memory.
	durable  *pebble.WriteOptions
	inMemory bool

	// life guards every use of db against Close: pebble panics when used after Close, and late callers
	// (a stream handler still finishing while the node shuts down) must get ErrClosed instead.
	life   sync.RWMutex
	closed bool
}

// acquire marks an operation in progress; it fails once the store is closed.
func (s *Store) acquire() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) release() { s.life.RUnlock() }

// Open opens (creating if needed) the store in dir.
func Open(dir string, o Options) (*Store, error) { return open(dir, o, nil) }

// open is Open; a non-nil diskFS replaces the real disk (tests count syncs with it).
func open(dir string, o Options, diskFS vfs.FS) (_ *Store, err error) {
	po := &pebble.Options{Logger: quietLogger{}, FS: diskFS}
	durable := pebble.Sync
	switch {
	case o.InMemory:
		po.FS = vfs.NewMem()
		po.DisableWAL = true
		po.MemTableSize = memTableSize
		po.Cache, po.FileCache = acquireMemCaches()
		defer func() {
			if err != nil {
				releaseMemCaches()
			}
		}()
		durable = pebble.NoSync
		dir = ""
	case o.CacheMiB > 0:
		po.Cache = pebble.NewCache(int64(o.CacheMiB) << 20)
		defer po.Cache.Unref() // pebble.Open takes its own reference
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	dsv, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleDB(db))
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open datastore view: %w", err)
	}
	return &Store{db: db, dsv: dsv, taken: map[string]bool{}, durable: durable, inMemory: o.InMemory}, nil
}

// Close flushes and closes the database.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.dsv.Close()
	if s.inMemory {
		releaseMemCaches()
	}
	if err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// Datastore returns a go-datastore view of a namespace, for libraries that want one (the DHT).
func (s *Store) Datastore(name string) ds.Batching {
	mustKnow(name)
	return namespace.Wrap(guarded{s: s, d: s.dsv}, ds.NewKey("/"+name))
}

// Namespace returns the key space of one feature. Each namespace may be taken once per store, so two
// components can never write the same keys by accident; asking twice panics (a programming error).
func (s *Store) Namespace(name string) *NS {
	mustKnow(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken[name] {
		panic(fmt.Sprintf("store: namespace %q taken twice", name))
	}
	s.taken[name] = true
	return &NS{s: s, prefix: []byte("/" + name + "/")}
}

// NS is one namespace of the store. Keys are arbitrary strings below the namespace; use fixed-width
// encodings (see Uint64Key) for anything that must sort.
type NS struct {
	s      *Store
	prefix []byte
}

func (n *NS) key(k string) []byte {
	b := make([]byte, 0, len(n.prefix)+len(k))
	b = append(b, n.prefix...)
	return append(b, k...)
}

// Get returns a copy of the value at k, or ErrNotFound.
func (n *NS) Get(k string) ([]byte, error) {
	if err := n.s.acquire(); err != nil {
		return nil, err
	}
	defer n.s.release()
	v, closer, err := n.s.db.Get(n.key(k))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("store get: %w", err)
	}
	out := bytes.Clone(v)
	_ = closer.Close()
	return out, nil
}

// Has reports whether k exists.
func (n *NS) Has(k string) (bool, error) {
	_, err := n.Get(k)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Put writes k without waiting for the disk.
func (n *NS) Put(k string, v []byte) error { return n.set(k, v, pebble.NoSync) }

// PutSync writes k and fsyncs the write-ahead log before returning (in an in-memory store, which has neither
// disk nor log, it is Put).
func (n *NS) PutSync(k string, v []byte) error { return n.set(k, v, n.s.durable) }

func (n *NS) set(k string, v []byte, wo *pebble.WriteOptions) error {
	if err := n.s.acquire(); err != nil {
		return err
	}
	defer n.s.release()
	if err := n.s.db.Set(n.key(k), v, wo); err != nil {
		return fmt.Errorf("store put: %w", err)
	}
	return nil
}

// Delete removes k (no error if absent).
func (n *NS) Delete(k string) error { return n.del(k, pebble.NoSync) }

// DeleteSync removes k durably.
func (n *NS) DeleteSync(k string) error { return n.del(k, n.s.durable) }

func (n *NS) del(k string, wo *pebble.WriteOptions) error {
	if err := n.s.acquire(); err != nil {
		return err
	}
	defer n.s.release()
	if err := n.s.db.Delete(n.key(k), wo); err != nil {
		return fmt.Errorf("store delete: %w", err)
	}
	return nil
}

// Entry is one key-value pair yielded by a scan. Key is relative to the namespace; both are copies.
type Entry struct {
	Key   string
	Value []byte
}

// Range describes a scan: keys with Prefix, optionally bounded by Start (inclusive) and End (exclusive), both
// relative to the namespace and compared after the prefix is applied. Reverse scans newest-first.
type Range struct {
	Prefix  string
	Start   string
	End     string
	Reverse bool
	Limit   int
}

// Scan iterates over a range with a native pebble iterator: a reverse scan with a limit costs O(limit), never
// O(offset). Stop early by breaking out of the loop.
func (n *NS) Scan(ctx context.Context, r Range) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		lower := n.key(r.Prefix)
		upper := prefixEnd(lower)
		if r.Start != "" {
			if s := n.key(r.Start); bytes.Compare(s, lower) > 0 {
				lower = s
			}
		}
		if r.End != "" {
			if e := n.key(r.End); upper == nil || bytes.Compare(e, upper) < 0 {
				upper = e
			}
		}
		if err := n.s.acquire(); err != nil {
			yield(Entry{}, err)
			return
		}
		defer n.s.release()
		it, err := n.s.db.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
		if err != nil {
			yield(Entry{}, fmt.Errorf("store scan: %w", err))
			return
		}
		defer it.Close()
		count := 0
		valid := it.First()
		step := it.Next
		if r.Reverse {
			valid = it.Last()
			step = it.Prev
		}
		for ; valid; valid = step() {
			if err := ctx.Err(); err != nil {
				yield(Entry{}, err)
				return
			}
			v, err := it.ValueAndErr()
			if err != nil {
				yield(Entry{}, fmt.Errorf("store scan value: %w", err))
				return
			}
			e := Entry{Key: string(it.Key()[len(n.prefix):]), Value: bytes.Clone(v)}
			if !yield(e, nil) {
				return
			}
			count++
			if r.Limit > 0 && count >= r.Limit {
				return
			}
		}
		if err := it.Error(); err != nil {
			yield(Entry{}, fmt.Errorf("store scan: %w", err))
		}
	}
}

// Count returns the number of keys with prefix (a full scan of that prefix).
func (n *NS) Count(ctx context.Context, prefix string) (int, error) {
	c := 0
	for _, err := range n.Scan(ctx, Range{Prefix: prefix}) {
		if err != nil {
			return 0, err
		}
		c++
	}
	return c, nil
}

func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Batch groups writes to any namespaces of one store into one atomic commit.
type Batch struct {
	s *Store
	b *pebble.Batch
}

// NewBatch starts an atomic batch.
func (s *Store) NewBatch() *Batch { return &Batch{s: s, b: s.db.NewBatch()} }

// Put adds a write to the batch.
func (b *Batch) Put(n *NS, k string, v []byte) error {
	if n.s != b.s {
		return errors.New("store: batch across stores")
	}
	return b.b.Set(n.key(k), v, nil)
}

// Delete adds a deletion to the batch.
func (b *Batch) Delete(n *NS, k string) error {
	if n.s != b.s {
		return errors.New("store: batch across stores")
	}
	return b.b.Delete(n.key(k), nil)
}

// Len is the number of operations in the batch.
func (b *Batch) Len() int { return int(b.b.Count()) }

// Commit applies the batch atomically; with sync the WAL is fsynced before returning (on disk).
func (b *Batch) Commit(sync bool) error {
	wo := pebble.NoSync
	if sync {
		wo = b.s.durable
	}
	if err := b.s.acquire(); err != nil {
		_ = b.b.Close()
		return err
	}
	defer b.s.release()
	if err := b.b.Commit(wo); err != nil {
		return fmt.Errorf("store commit: %w", err)
	}
	return b.b.Close()
}

// Discard drops an uncommitted batch.
func (b *Batch) Discard() { _ = b.b.Close() }

// Uint64Key encodes n as a fixed-width, lexically sortable key component.
func Uint64Key(n uint64) string { return fmt.Sprintf("%020d", n) }

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
