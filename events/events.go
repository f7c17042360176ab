// Package events is the in-process event bus behind the local API's live
// stream (GET /api/v1/events).
//
// Publishers call [Bus.Publish]; it never blocks. Consumers call
// [Bus.Subscribe] with the last event ID they have seen and receive the
// retained events after it, then live events, on a buffered channel. A
// consumer that falls behind by more than its buffer is cut off with
// [ErrSlowConsumer] rather than slowing the publisher down; it reconnects
// with the ID of the last event it processed and continues without loss, as
// long as the ring buffer still holds the events it missed ([ErrGap]
// otherwise).
package events

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"
)

// DefaultCapacity is the ring size used when NewBus is given a capacity <= 0.
const DefaultCapacity = 4096

// DefaultMaxBytes bounds the JSON the ring retains when NewBus is given maxBytes <= 0: 4,096 events of
// 1 KiB room messages fit, while a run of large ones (a 4 KiB text is up to 24 KiB of escaped JSON) cannot
// hold tens of MB of a desktop node's memory for replay.
const DefaultMaxBytes = 8 << 20

// subscriptionBuffer is how many live events a subscriber may lag behind
// before it is closed with ErrSlowConsumer.
const subscriptionBuffer = 256

var (
	// ErrSlowConsumer is reported by Subscription.Err when the subscription
	// was closed because its buffer was full. Reconnect with since set to the
	// ID of the last event received.
	ErrSlowConsumer = errors.New("events: slow consumer: subscription buffer full")
	// ErrGap is reported by Subscription.Err when the requested since is no
	// longer (or was never) covered by the bus's ring buffer: events were
	// missed and the consumer must resynchronise its state.
	ErrGap = errors.New("events: requested events are no longer retained")
)

// Event is one published event. Data is the JSON encoding of the value given
// to Publish.
type Event struct {
	ID   uint64          `json:"id"`
	Type string          `json:"type"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data,omitempty"`
}

// Bus is a publish/subscribe event bus with a replay ring buffer. The zero
// value is not usable; call NewBus. All methods are safe for concurrent use.
type Bus struct {
	mu       sync.Mutex
	ring     []Event // ring[(id-1)%len(ring)] holds event id while retained; grows up to max
	max      int     // retained events at most
	maxBytes int     // retained Data bytes at most (the newest event is always retained)
	bytes    int     // Data bytes of the retained events
	oldest   uint64  // ID of the oldest retained event; last+1 when none is
	last     uint64  // ID of the last published event, 0 if none
	subs     map[*Subscription]struct{}
}

// NewBus returns a bus that retains the last capacity events for replay
// (DefaultCapacity if capacity <= 0), fewer if their data adds up to more than
// maxBytes (DefaultMaxBytes if maxBytes <= 0).
func NewBus(capacity, maxBytes int) *Bus {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	// The ring grows on demand (append): an idle node (or one of hundreds in a simulation) does not pay
	// for empty slots. Until it is full, len(ring) == last, so the indexing below holds.
	return &Bus{
		max:      capacity,
		maxBytes: maxBytes,
		oldest:   1,
		subs:     make(map[*Subscription]struct{}),
	}
}

// Publish assigns the next ID (IDs start at 1 and increase by one), records
// the event in the ring buffer and hands it to every matching subscription.
// data is marshalled to JSON once; nil data leaves Event.Data empty. Data
// that cannot be marshalled is a programming error: the event is still
// published (IDs stay gapless) with Data set to JSON null. Publish never
// blocks on subscribers.
func (b *Bus) Publish(typ string, data any) Event {
	var raw json.RawMessage
	if data != nil {
		if enc, err := json.Marshal(data); err == nil {
			raw = enc
		} else {
			raw = json.RawMessage("null")
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	b.last++
	ev := Event{ID: b.last, Type: typ, Time: time.Now().UTC(), Data: raw}
	if len(b.ring) < b.max {
		b.ring = append(b.ring, ev)
	} else {
		if b.oldest+uint64(len(b.ring)) == ev.ID { // the slot still holds the oldest retained event
			b.evictOldestLocked()
		}
		b.ring[(ev.ID-1)%uint64(len(b.ring))] = ev
	}
	b.bytes += len(raw)
	for b.bytes > b.maxBytes && b.oldest < b.last {
		b.evictOldestLocked()
	}
	for s := range b.subs {
		if !s.matches(ev.Type) {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			s.closeLocked(ErrSlowConsumer)
		}
	}
	return ev
}

// evictOldestLocked drops the oldest retained event from the ring.
func (b *Bus) evictOldestLocked() {
	i := (b.oldest - 1) % uint64(len(b.ring))
	b.bytes -= len(b.ring[i].Data)
	b.ring[i] = Event{}
	b.oldest++
}

// Last returns the ID of the last published event (0 if none).
func (b *Bus) Last() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Subscribe returns a subscription that first delivers the retained events
// with ID > since, then live events, in ID order. If types is non-empty only
// events whose type equals one of them are delivered; an entry ending in ".*"
// ("room.*") matches every type with that prefix ("room.created"), and "*"
// matches everything.
//
// since == 0 means "everything still retained". A since that is older than
// the oldest retained event (so events after it were dropped from the ring),
// or newer than Last (an ID from another bus, for example before a restart),
// yields a subscription whose channel is already closed and whose Err is
// ErrGap. To receive only new events, pass Last().
func (b *Bus) Subscribe(since uint64, types []string) *Subscription {
	s := &Subscription{bus: b, types: normaliseTypes(types)}

	b.mu.Lock()
	defer b.mu.Unlock()

	oldest := b.oldest
	if since > b.last || (since > 0 && since+1 < oldest) {
		s.ch = make(chan Event)
		s.closeLocked(ErrGap)
		return s
	}
	from := max(since+1, oldest)
	var replay []Event
	for id := from; id <= b.last; id++ {
		ev := b.ring[(id-1)%uint64(len(b.ring))]
		if s.matches(ev.Type) {
			replay = append(replay, ev)
		}
	}
	s.ch = make(chan Event, len(replay)+subscriptionBuffer)
	for _, ev := range replay {
		s.ch <- ev
	}
	b.subs[s] = struct{}{}
	return s
}

// Subscription is a consumer's view of the bus; see Bus.Subscribe.
type Subscription struct {
	bus    *Bus
	ch     chan Event
	types  []string
	closed bool  // guarded by bus.mu
	err    error // guarded by bus.mu
}

// C returns the channel events are delivered on. It is closed when the
// subscription ends: by Close, or by the bus (see Err). Buffered events
// remain readable after the bus closed it.
func (s *Subscription) C() <-chan Event { return s.ch }

// Close ends the subscription and closes its channel. It is idempotent and
// leaves Err unchanged.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.closeLocked(nil)
}

// Err reports why the bus ended the subscription: ErrSlowConsumer or ErrGap.
// It is nil while the subscription is open and after Close.
func (s *Subscription) Err() error {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.err
}

func (s *Subscription) closeLocked(err error) {
	if s.closed {
		return
	}
	s.closed = true
	s.err = err
	delete(s.bus.subs, s)
	close(s.ch)
}

func (s *Subscription) matches(typ string) bool {
	if len(s.types) == 0 {
		return true
	}
	for _, t := range s.types {
		if MatchType(t, typ) {
			return true
		}
	}
	return false
}

// MatchType reports whether the event type typ matches pattern: an exact
// type, "prefix.*" (matches "prefix.anything"), or "*".
func MatchType(pattern, typ string) bool {
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok && strings.HasSuffix(prefix, ".") {
		return strings.HasPrefix(typ, prefix)
	}
	return pattern == typ
}

func normaliseTypes(types []string) []string {
	var out []string
	for _, t := range types {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}
