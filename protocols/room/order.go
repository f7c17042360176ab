package room

import (
	"slices"
	"time"
)

// Live messages can overtake each other between two nodes (pubsub validates concurrently, and copies
// travel several paths). Each author numbers its messages; the orderer hands a persona's messages to
// ingestion in that order, holding one that arrives early while the gap fills. Seqs accounted for
// elsewhere (stored by history sync, or dropped by this node's rate limit or slow mode after their
// signature verified) close gaps at once; any other gap (a message lost on the way) is skipped after
// reorderWait, and history sync repairs it later. Messages without a seq, and late ones, pass at once.
//
// The first message heard from a persona nothing is stored from normally starts its queue. While a
// catch-up is under way (this node just joined or came back, or a peer just appeared), the persona's
// earlier messages may be on their way through it: the message then waits, as behind a gap, until the
// catch-ups are done (what they stored closes the gap) or reorderWait has passed.
const (
	reorderWait    = 2 * time.Second
	reorderPending = 512 // per persona; beyond it the queue is flushed
)

type orderer struct {
	q    map[pkey]*orderQ
	gaps int // gaps skipped so far (messages lost on the way, for history repair)
	// gapUntil is the latest time of a message released after a gap: the lost ones are older (an
	// author's times increase with its seqs).
	gapUntil int64
}

// gap notes a skipped gap before the pending message at seq.
func (o *orderer) gap(q *orderQ, seq uint64) {
	o.gaps++
	if p, ok := q.pending[seq]; ok {
		o.gapUntil = max(o.gapUntil, p.m.Body.TimeMs)
	}
}

// history is what the orderer asks of the room.
type history interface {
	lastSeq(k pkey) uint64     // the highest seq stored from the persona (0: none)
	accounted(k pkey) []uint64 // seqs of the persona that will not come live (each returned once)
	catchingUp() bool          // a catch-up session is planned for now or running
}

type orderQ struct {
	last    uint64
	unsure  bool // started while catching up: the persona's earlier messages may still come
	pending map[uint64]pendingMsg
	gone    map[uint64]bool // accounted for outside the live path
}

type pendingMsg struct {
	m  *Message
	at time.Time
}

func newOrderer() *orderer { return &orderer{q: map[pkey]*orderQ{}} }

// push takes a live message and returns the messages now ready, in order.
func (o *orderer) push(m *Message, now time.Time, h history) []*Message {
	seq := m.Body.Seq
	k := pk(m.Body.Persona)
	q := o.q[k]
	var out []*Message
	if q == nil {
		q = &orderQ{last: h.lastSeq(k)}
		if q.last == 0 && seq > 1 {
			if h.catchingUp() {
				q.unsure = true
			} else {
				q.last = seq - 1 // first message seen from this persona: start here
			}
		}
		o.q[k] = q
	} else if q.unsure {
		out = q.raise(h.lastSeq(k), nil)
	}
	if seq == 0 || seq <= q.last {
		return append(out, m)
	}
	accounted := h.accounted(k)
	if seq == q.last+1 && len(q.pending) == 0 && len(q.gone) == 0 && len(accounted) == 0 {
		// The usual case: the author's next message, nothing held. No queue: a map that held even one
		// message keeps its storage, for every author a node has heard.
		q.last = seq
		q.unsure = false
		o.forget(k, q)
		return append(out, m)
	}
	if q.pending == nil {
		q.pending = map[uint64]pendingMsg{}
	}
	q.pending[seq] = pendingMsg{m: m, at: now}
	q.account(accounted)
	out = q.drain(out)
	if len(q.pending) > reorderPending {
		o.gap(q, q.first())
		out = q.skip(out)
	}
	o.forget(k, q)
	return out
}

// waiting reports whether any message is held.
func (o *orderer) waiting() bool {
	for _, q := range o.q {
		if len(q.pending) > 0 {
			return true
		}
	}
	return false
}

// expired releases, in order, what is no longer waited for: gaps accounted for meanwhile, and gaps older
// than reorderWait.
func (o *orderer) expired(now time.Time, h history) []*Message {
	var out []*Message
	catchingUp := h.catchingUp()
	for k, q := range o.q {
		if q.unsure {
			// What the catch-ups stored from the persona comes before what waits here.
			out = q.raise(h.lastSeq(k), out)
			if len(q.pending) == 0 || !catchingUp || now.Sub(q.pending[q.first()].at) >= reorderWait {
				// Caught up: what is still missing of a persona nothing was stored from is older history,
				// not a gap.
				q.unsure = false
				if q.last == 0 && len(q.pending) > 0 {
					q.last = q.first() - 1
				}
			}
		}
		if len(q.pending) > 0 {
			q.account(h.accounted(k))
			out = q.drain(out)
		}
		for len(q.pending) > 0 && !q.unsure {
			first := q.first()
			if now.Sub(q.pending[first].at) < reorderWait {
				break
			}
			o.gap(q, first)
			q.last = first - 1
			out = q.drain(out)
		}
		o.forget(k, q)
	}
	return out
}

func (o *orderer) forget(k pkey, q *orderQ) {
	if len(q.pending) == 0 && len(o.q) > 4096 {
		delete(o.q, k) // bounded memory; its next message starts a new queue
	}
}

func (q *orderQ) first() uint64 {
	keys := make([]uint64, 0, len(q.pending))
	for s := range q.pending {
		keys = append(keys, s)
	}
	return slices.Min(keys)
}

// raise moves last up to a seq stored meanwhile, releasing in order what waited at or below it (late
// now: storage dedupes), then what follows it.
func (q *orderQ) raise(last uint64, out []*Message) []*Message {
	if last <= q.last {
		return out
	}
	for len(q.pending) > 0 {
		first := q.first()
		if first > last {
			break
		}
		out = append(out, q.pending[first].m)
		delete(q.pending, first)
	}
	q.last = last
	return q.drain(out)
}

// account remembers seqs that will not come live, so that they do not hold the queue up.
func (q *orderQ) account(seqs []uint64) {
	for _, s := range seqs {
		if s > q.last {
			if q.gone == nil {
				q.gone = map[uint64]bool{}
			}
			q.gone[s] = true
		}
	}
}

// drain releases consecutive pending messages after last, stepping over accounted seqs.
func (q *orderQ) drain(out []*Message) []*Message {
	for {
		next := q.last + 1
		if p, ok := q.pending[next]; ok {
			delete(q.pending, next)
			delete(q.gone, next)
			q.last = next
			out = append(out, p.m)
			continue
		}
		if q.gone[next] {
			delete(q.gone, next)
			q.last = next
			continue
		}
		for s := range q.gone {
			if s <= q.last {
				delete(q.gone, s)
			}
		}
		return out
	}
}

// skip releases everything pending, in order, jumping the gaps.
func (q *orderQ) skip(out []*Message) []*Message {
	for len(q.pending) > 0 {
		q.last = q.first() - 1
		out = q.drain(out)
	}
	return out
}
