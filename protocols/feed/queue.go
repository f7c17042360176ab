package feed

import "sync"

// idQueue is a FIFO of distinct channel IDs that grows on demand: an idle service holds no buffer, and a burst
// (a relay pinning thousands of channels) is never dropped, since it can hold each channel at most once.
// push never blocks.
type idQueue struct {
	mu    sync.Mutex
	ids   []ChannelID
	has   map[ChannelID]bool
	ready chan struct{} // holds a token while ids is not empty
}

func newIDQueue() *idQueue { return &idQueue{ready: make(chan struct{}, 1)} }

// push appends id unless it is already waiting.
func (q *idQueue) push(id ChannelID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.has[id] {
		return
	}
	if q.has == nil {
		q.has = map[ChannelID]bool{}
	}
	q.has[id] = true
	q.ids = append(q.ids, id)
	q.signal()
}

// pop takes the oldest ID; ok is false when another consumer emptied the queue first.
func (q *idQueue) pop() (id ChannelID, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.ids) == 0 {
		return "", false
	}
	id = q.ids[0]
	q.ids[0] = ""
	q.ids = q.ids[1:]
	delete(q.has, id)
	if len(q.ids) == 0 {
		q.ids, q.has = nil, nil
	} else {
		q.signal() // for the next consumer
	}
	return id, true
}

// drain takes every waiting ID, oldest first.
func (q *idQueue) drain() []ChannelID {
	q.mu.Lock()
	defer q.mu.Unlock()
	ids := q.ids
	q.ids, q.has = nil, nil
	return ids
}

func (q *idQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}
