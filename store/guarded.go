package store

import (
	"context"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
)

// guarded is the go-datastore view handed to libraries (the DHT): every call runs under the store's life
// lock, so a late call after Close gets ErrClosed instead of crashing pebble. Queries are read in full under
// the lock (the DHT's provider queries are small).
type guarded struct {
	s *Store
	d ds.Batching
}

var _ ds.Batching = guarded{}

func (g guarded) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	if err := g.s.acquire(); err != nil {
		return nil, err
	}
	defer g.s.release()
	return g.d.Get(ctx, k)
}

func (g guarded) Has(ctx context.Context, k ds.Key) (bool, error) {
	if err := g.s.acquire(); err != nil {
		return false, err
	}
	defer g.s.release()
	return g.d.Has(ctx, k)
}

func (g guarded) GetSize(ctx context.Context, k ds.Key) (int, error) {
	if err := g.s.acquire(); err != nil {
		return -1, err
	}
	defer g.s.release()
	return g.d.GetSize(ctx, k)
}

func (g guarded) Query(ctx context.Context, q query.Query) (query.Results, error) {
	if err := g.s.acquire(); err != nil {
		return nil, err
	}
	defer g.s.release()
	res, err := g.d.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	entries, err := res.Rest()
	if err != nil {
		return nil, err
	}
	return query.ResultsWithEntries(q, entries), nil
}

func (g guarded) Put(ctx context.Context, k ds.Key, v []byte) error {
	if err := g.s.acquire(); err != nil {
		return err
	}
	defer g.s.release()
	return g.d.Put(ctx, k, v)
}

func (g guarded) Delete(ctx context.Context, k ds.Key) error {
	if err := g.s.acquire(); err != nil {
		return err
	}
	defer g.s.release()
	return g.d.Delete(ctx, k)
}

func (g guarded) Sync(ctx context.Context, prefix ds.Key) error {
	if err := g.s.acquire(); err != nil {
		return err
	}
	defer g.s.release()
	if g.s.inMemory {
		return nil // nothing to sync to, and no write-ahead log to sync
	}
	return g.d.Sync(ctx, prefix)
}

// Close is a no-op: the store owns the database.
func (g guarded) Close() error { return nil }

func (g guarded) Batch(ctx context.Context) (ds.Batch, error) {
	if err := g.s.acquire(); err != nil {
		return nil, err
	}
	defer g.s.release()
	b, err := g.d.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return guardedBatch{s: g.s, b: b}, nil
}

type guardedBatch struct {
	s *Store
	b ds.Batch
}

func (g guardedBatch) Put(ctx context.Context, k ds.Key, v []byte) error { return g.b.Put(ctx, k, v) }
func (g guardedBatch) Delete(ctx context.Context, k ds.Key) error        { return g.b.Delete(ctx, k) }
func (g guardedBatch) Commit(ctx context.Context) error {
	if err := g.s.acquire(); err != nil {
		return err
	}
	defer g.s.release()
	return g.b.Commit(ctx)
}
