package directory

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
)

// Republisher keeps a set of DHT keys provided: a key added is provided at once, then again every Republish
// interval (well inside the 48 h lifetime of provider records); a failed Provide is retried with
// exponential backoff between RetryMin and RetryMax. Every Provide is bounded by ProvideTimeout. The
// directory uses one for its keys; rooms and channels use one for their rendezvous keys.
type Republisher struct {
	r    Routing
	log  *slog.Logger
	opts Options

	mu      sync.Mutex
	keys    map[string]cid.Cid
	due     map[string]time.Time
	backoff map[string]time.Duration
	kick    chan struct{}
}

// NewRepublisher returns a republisher over r; zero options take the defaults.
func NewRepublisher(r Routing, log *slog.Logger, o Options) *Republisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Republish <= 0 {
		o.Republish = 22 * time.Hour
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 2 * time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Minute
	}
	return &Republisher{
		r: r, log: log, opts: o, keys: map[string]cid.Cid{}, due: map[string]time.Time{},
		backoff: map[string]time.Duration{}, kick: make(chan struct{}, 1),
	}
}

// Add starts providing c under the name key (no-op if the key is already kept).
func (p *Republisher) Add(key string, c cid.Cid) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.keys[key]; ok {
		return
	}
	p.keys[key] = c
	p.due[key] = time.Time{}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Remove stops providing key (records already in the DHT expire on their own).
func (p *Republisher) Remove(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.keys, key)
	delete(p.due, key)
	delete(p.backoff, key)
}

// Provided reports whether key's last Provide succeeded and is not yet due again.
func (p *Republisher) Provided(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.due[key]
	return ok && !d.IsZero() && p.backoff[key] == 0 && time.Until(d) > 0
}

// Len is the number of keys kept.
func (p *Republisher) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// Run provides keys when they are due until ctx ends.
func (p *Republisher) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-p.kick:
		}
		p.provideDue(ctx)
		p.mu.Lock()
		next := time.Hour
		now := time.Now()
		for _, d := range p.due {
			if w := d.Sub(now); w < next {
				next = max(w, 10*time.Millisecond)
			}
		}
		p.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (p *Republisher) provideDue(ctx context.Context) {
	now := time.Now()
	p.mu.Lock()
	type job struct {
		key string
		c   cid.Cid
	}
	var jobs []job
	for k, d := range p.due {
		if !d.After(now) {
			jobs = append(jobs, job{k, p.keys[k]})
		}
	}
	p.mu.Unlock()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p.provideOne(ctx, j.key, j.c)
		})
	}
	wg.Wait()
}

func (p *Republisher) provideOne(ctx context.Context, key string, c cid.Cid) {
	pctx, cancel := context.WithTimeout(ctx, ProvideTimeout)
	err := p.r.Provide(pctx, c, true)
	cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.keys[key]; !ok {
		return // removed meanwhile
	}
	if err != nil {
		b := min(max(2*p.backoff[key], p.opts.RetryMin), p.opts.RetryMax)
		p.backoff[key] = b
		p.due[key] = time.Now().Add(b)
		if ctx.Err() == nil {
			p.log.Debug("Provide failed", "retryIn", b, "err", err)
		}
		return
	}
	delete(p.backoff, key)
	p.due[key] = time.Now().Add(p.opts.Republish)
}
