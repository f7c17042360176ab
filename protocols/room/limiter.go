package room

import (
	"sync"
	"time"
)

// limiter is the per-persona token bucket of one room (rate per minute, burst) plus its slow mode: every
// node applies it to every message it validates, so a flooding member is throttled at the first hop.
type limiter struct {
	mu      sync.Mutex
	perSec  float64
	burst   float64
	buckets map[pkey]*bucket
	adds    int
}

type bucket struct {
	tokens float64
	last   time.Time // last refill
	sent   time.Time // last accepted message (slow mode)
}

// limit outcomes
const (
	allowed = iota
	rateLimited
	slowMode
)

func newLimiter(perMinute, burst int) *limiter {
	return &limiter{perSec: float64(perMinute) / 60, burst: float64(burst), buckets: map[pkey]*bucket{}}
}

// allow takes one token for persona at now, unless the bucket is empty or slow mode forbids a message
// this soon after the previous one.
func (l *limiter) allow(p pkey, now time.Time, slow time.Duration) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[p]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[p] = b
		if l.adds++; l.adds%1024 == 0 {
			l.sweep(now)
		}
	}
	if slow > 0 && !b.sent.IsZero() && now.Sub(b.sent) < slow {
		return slowMode
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = min(l.burst, b.tokens+el*l.perSec)
		b.last = now
	}
	if b.tokens < 1 {
		return rateLimited
	}
	b.tokens--
	b.sent = now
	return allowed
}

// sweep forgets buckets that are full again and idle (bounded memory with many personas).
func (l *limiter) sweep(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last).Seconds()*l.perSec+b.tokens >= l.burst && now.Sub(b.sent) > time.Hour {
			delete(l.buckets, k)
		}
	}
}
