package feed

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

func TestIDQueue(t *testing.T) {
	q := newIDQueue()
	if _, ok := q.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	// More than the 1024 the old channels held, none dropped, duplicates kept once, in order.
	const n = 3000
	for i := range n {
		q.push(ChannelID(fmt.Sprint(i)))
		q.push(ChannelID(fmt.Sprint(i / 2)))
	}
	<-q.ready
	for i := range n {
		id, ok := q.pop()
		if !ok || id != ChannelID(fmt.Sprint(i)) {
			t.Fatalf("pop %d = %q, %v", i, id, ok)
		}
	}
	if _, ok := q.pop(); ok {
		t.Fatal("queue not empty after popping everything")
	}
	if q.ids != nil || q.has != nil {
		t.Fatal("an empty queue keeps its buffers")
	}
	// An ID popped may be queued again.
	q.push("a")
	q.push("b")
	if id, _ := q.pop(); id != "a" {
		t.Fatalf("pop = %q", id)
	}
	q.push("a")
	if got := q.drain(); !slices.Equal(got, []ChannelID{"b", "a"}) {
		t.Fatalf("drain = %v", got)
	}
}

// Two consumers waiting on ready (the sync workers) both get work and nothing is lost.
func TestIDQueueConsumers(t *testing.T) {
	q := newIDQueue()
	const n = 2000
	got := make(chan ChannelID, n)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-q.ready:
					if id, ok := q.pop(); ok {
						got <- id
					}
				}
			}
		})
	}
	for i := range n {
		q.push(ChannelID(fmt.Sprint(i)))
	}
	seen := map[ChannelID]bool{}
	for len(seen) < n {
		id := <-got
		if seen[id] {
			t.Fatalf("%s delivered twice", id)
		}
		seen[id] = true
	}
	close(done)
	wg.Wait()
}
