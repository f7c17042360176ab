package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// drain reads everything currently buffered on s without blocking.
func drain(s *Subscription) []Event {
	var out []Event
	for {
		select {
		case ev, ok := <-s.C():
			if !ok {
				return out
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func ids(evs []Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func wantIDs(t *testing.T, got []Event, want ...uint64) {
	t.Helper()
	if g := ids(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("ids = %v, want %v", g, want)
	}
}

func TestPublishAssignsMonotonicIDsAndMarshalsData(t *testing.T) {
	b := NewBus(0, 0)
	if b.Last() != 0 {
		t.Fatalf("Last on empty bus = %d", b.Last())
	}
	e1 := b.Publish("room.created", map[string]string{"room": "r1"})
	e2 := b.Publish("ping", nil)
	e3 := b.Publish("bad", func() {}) // cannot be marshalled
	if e1.ID != 1 || e2.ID != 2 || e3.ID != 3 || b.Last() != 3 {
		t.Fatalf("ids %d %d %d last %d", e1.ID, e2.ID, e3.ID, b.Last())
	}
	if string(e1.Data) != `{"room":"r1"}` {
		t.Errorf("data = %s", e1.Data)
	}
	if e2.Data != nil {
		t.Errorf("nil data encoded as %q", e2.Data)
	}
	if string(e3.Data) != "null" {
		t.Errorf("unmarshallable data = %q, want null", e3.Data)
	}
	if e1.Time.IsZero() || e1.Time.Location().String() != "UTC" {
		t.Errorf("time = %v", e1.Time)
	}
	enc, err := json.Marshal(e2)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(enc, &back); err != nil {
		t.Fatal(err)
	}
	if _, ok := back["data"]; ok {
		t.Errorf("empty data not omitted: %s", enc)
	}
	if back["type"] != "ping" || back["id"] != float64(2) {
		t.Errorf("encoded = %s", enc)
	}
}

func TestSubscribeReplaysAfterSinceThenLive(t *testing.T) {
	b := NewBus(16, 0)
	for i := range 5 {
		b.Publish("t", i)
	}
	s := b.Subscribe(2, nil)
	defer s.Close()
	b.Publish("t", 5)
	wantIDs(t, drain(s), 3, 4, 5, 6)

	all := b.Subscribe(0, nil)
	defer all.Close()
	wantIDs(t, drain(all), 1, 2, 3, 4, 5, 6)

	live := b.Subscribe(b.Last(), nil)
	defer live.Close()
	if got := drain(live); len(got) != 0 {
		t.Fatalf("Subscribe(Last()) replayed %v", ids(got))
	}
	b.Publish("t", 6)
	wantIDs(t, drain(live), 7)
}

func TestSubscribeTypeFilter(t *testing.T) {
	b := NewBus(0, 0)
	exact := b.Subscribe(0, []string{"friend.added"})
	prefix := b.Subscribe(0, []string{"room.*", " "})
	star := b.Subscribe(0, []string{"*"})
	none := b.Subscribe(0, []string{"", " "})
	for _, s := range []*Subscription{exact, prefix, star, none} {
		defer s.Close()
	}
	for _, typ := range []string{"room.created", "friend.added", "roomy", "room.msg.new", "friend.added.x"} {
		b.Publish(typ, nil)
	}
	wantIDs(t, drain(exact), 2)
	wantIDs(t, drain(prefix), 1, 4)
	wantIDs(t, drain(star), 1, 2, 3, 4, 5)
	wantIDs(t, drain(none), 1, 2, 3, 4, 5)

	// Replay is filtered too.
	late := b.Subscribe(0, []string{"room.*"})
	defer late.Close()
	wantIDs(t, drain(late), 1, 4)
}

func TestMatchType(t *testing.T) {
	for _, tc := range []struct {
		pattern, typ string
		want         bool
	}{
		{"a.b", "a.b", true},
		{"a.b", "a.bc", false},
		{"a.*", "a.b", true},
		{"a.*", "a.b.c", true},
		{"a.*", "a", false},
		{"a.*", "ab", false},
		{"*", "anything", true},
		{"a*", "ab", false}, // only ".*" suffixes are prefix patterns
		{"a*", "a*", true},
	} {
		if got := MatchType(tc.pattern, tc.typ); got != tc.want {
			t.Errorf("MatchType(%q, %q) = %v, want %v", tc.pattern, tc.typ, got, tc.want)
		}
	}
}

func TestSubscribeGap(t *testing.T) {
	b := NewBus(4, 0)
	for range 10 {
		b.Publish("t", nil)
	}
	// Ring holds 7..10.
	for _, since := range []uint64{1, 5, 11, 100} {
		s := b.Subscribe(since, nil)
		if _, ok := <-s.C(); ok {
			t.Errorf("since=%d: channel open, want closed", since)
		}
		if !errors.Is(s.Err(), ErrGap) {
			t.Errorf("since=%d: Err = %v, want ErrGap", since, s.Err())
		}
		s.Close()
		if !errors.Is(s.Err(), ErrGap) {
			t.Errorf("since=%d: Close cleared Err", since)
		}
	}
	for since, want := range map[uint64][]uint64{6: {7, 8, 9, 10}, 9: {10}, 10: nil, 0: {7, 8, 9, 10}} {
		s := b.Subscribe(since, nil)
		got := drain(s)
		if fmt.Sprint(ids(got)) != fmt.Sprint(want) {
			t.Errorf("since=%d: ids %v, want %v", since, ids(got), want)
		}
		if s.Err() != nil {
			t.Errorf("since=%d: Err = %v", since, s.Err())
		}
		s.Close()
	}
}

// TestRingBoundedByBytes: events past the byte budget leave the ring oldest first, also while it still has
// free slots and after it wrapped; the newest event stays even when it alone is over the budget.
func TestRingBoundedByBytes(t *testing.T) {
	const size = 100 // `"` + 98 x + `"`
	data := strings.Repeat("x", size-2)
	b := NewBus(8, 3*size)
	check := func(step string, want []uint64, gapSince uint64) {
		t.Helper()
		s := b.Subscribe(0, nil)
		if got := ids(drain(s)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: retained %v, want %v", step, got, want)
		}
		s.Close()
		if g := b.Subscribe(gapSince, nil); !errors.Is(g.Err(), ErrGap) {
			t.Errorf("%s: since=%d: Err = %v, want ErrGap", step, gapSince, g.Err())
		}
		if s := b.Subscribe(want[0]-1, nil); s.Err() != nil || len(drain(s)) != len(want) {
			t.Errorf("%s: since=%d does not replay the retained events", step, want[0]-1)
		}
	}
	for range 5 {
		b.Publish("t", data)
	}
	check("before the ring is full", []uint64{3, 4, 5}, 1)
	for range 10 {
		b.Publish("t", data)
	}
	check("after it wrapped", []uint64{13, 14, 15}, 11)
	b.Publish("t", strings.Repeat("y", 5*size))
	check("one event over the budget", []uint64{16}, 14)
	for range 3 {
		b.Publish("t", nil) // no data: only the count bounds these; the first one pushes the big event out
	}
	check("events without data", []uint64{17, 18, 19}, 15)
	for range 8 {
		b.Publish("t", nil)
	}
	check("the count bound", []uint64{20, 21, 22, 23, 24, 25, 26, 27}, 18)
	if b.bytes != 0 {
		t.Errorf("accounted %d bytes with only empty events retained", b.bytes)
	}
}

func TestSlowConsumerIsClosedWithoutBlockingPublish(t *testing.T) {
	b := NewBus(0, 0)
	slow := b.Subscribe(0, nil)
	fast := b.Subscribe(0, nil)
	defer fast.Close()

	var fastGot []Event
	for range subscriptionBuffer + 10 {
		b.Publish("t", nil) // would deadlock here if Publish blocked on slow
		fastGot = append(fastGot, drain(fast)...)
	}
	got := drain(slow)
	if len(got) != subscriptionBuffer {
		t.Fatalf("slow consumer got %d events, want the %d buffered", len(got), subscriptionBuffer)
	}
	for i, ev := range got {
		if ev.ID != uint64(i+1) {
			t.Fatalf("slow consumer event %d has id %d", i, ev.ID)
		}
	}
	if _, ok := <-slow.C(); ok {
		t.Fatal("slow consumer channel still open")
	}
	if !errors.Is(slow.Err(), ErrSlowConsumer) {
		t.Fatalf("Err = %v, want ErrSlowConsumer", slow.Err())
	}
	slow.Close() // idempotent after the bus closed it
	if len(fastGot) != subscriptionBuffer+10 || fast.Err() != nil {
		t.Fatalf("fast consumer got %d events, err %v", len(fastGot), fast.Err())
	}

	// Reconnecting with the last ID received resumes without loss.
	again := b.Subscribe(got[len(got)-1].ID, nil)
	defer again.Close()
	rest := drain(again)
	if len(rest) != 10 || rest[0].ID != subscriptionBuffer+1 {
		t.Fatalf("resume got %v", ids(rest))
	}
}

func TestCloseStopsDelivery(t *testing.T) {
	b := NewBus(0, 0)
	s := b.Subscribe(0, nil)
	s.Close()
	s.Close()
	b.Publish("t", nil)
	if _, ok := <-s.C(); ok {
		t.Fatal("closed subscription received an event")
	}
	if s.Err() != nil {
		t.Fatalf("Err after Close = %v", s.Err())
	}
	b.mu.Lock()
	n := len(b.subs)
	b.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d subscriptions still registered", n)
	}
}

// TestConcurrentPublishersAndSubscribers runs under -race: every subscriber
// must see every event exactly once, in ID order, reconnecting with since
// whenever it is cut off as a slow consumer.
func TestConcurrentPublishersAndSubscribers(t *testing.T) {
	const publishers, perPublisher, subscribers = 8, 500, 6
	total := uint64(publishers * perPublisher)
	b := NewBus(int(total), 0)

	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for i := range subscribers {
		wg.Go(func() {
			var last uint64
			var types []string
			if i%2 == 1 {
				types = []string{"*"}
			}
			for last < total {
				s := b.Subscribe(last, types)
				for ev := range s.C() {
					if ev.ID != last+1 {
						errs <- fmt.Errorf("subscriber %d: got id %d after %d", i, ev.ID, last)
						s.Close()
						return
					}
					last = ev.ID
					if last == total {
						break
					}
				}
				if err := s.Err(); err != nil && !errors.Is(err, ErrSlowConsumer) {
					errs <- fmt.Errorf("subscriber %d: %w", i, err)
					return
				}
				s.Close()
			}
		})
	}
	var pubWG sync.WaitGroup
	for p := range publishers {
		pubWG.Go(func() {
			for n := range perPublisher {
				b.Publish(fmt.Sprintf("p%d", p), n)
				if n%50 == 0 {
					_ = b.Last()
				}
			}
		})
	}
	pubWG.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if b.Last() != total {
		t.Fatalf("Last = %d, want %d", b.Last(), total)
	}
}

func BenchmarkPublish(b *testing.B) {
	payload := map[string]any{"room": "r1", "from": "12D3KooW", "n": 42}
	for _, subs := range []int{0, 1, 16} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			bus := NewBus(0, 0)
			var wg sync.WaitGroup
			ss := make([]*Subscription, subs)
			for i := range ss {
				ss[i] = bus.Subscribe(0, nil)
				s := ss[i]
				wg.Go(func() {
					for range s.C() {
					}
				})
			}
			b.ReportAllocs()
			for b.Loop() {
				bus.Publish("room.message", payload)
			}
			b.StopTimer()
			for _, s := range ss {
				s.Close()
			}
			wg.Wait()
		})
	}
}
