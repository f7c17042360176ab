package ratchet

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/cryptotest"
)

// A seeded random driver in the spirit of libsignal's "interaction" fuzzer:
// two parties send, the network delivers in random order, drops, duplicates
// and delays, and either side restarts from its persisted state. Invariants:
//
//   - every delivered message not delivered before decrypts to exactly its
//     plaintext, once;
//   - a message delivered again gives ErrDuplicate (and any replay fails);
//   - a failed Decrypt leaves the persisted state byte-for-byte unchanged;
//   - Marshal/UnmarshalSession round-trips exactly.

const (
	inflightTTL   = 32 // steps a message may stay in flight before it is lost
	recentHistory = 16 // duplicates are drawn from this many latest deliveries
)

type wireMsg struct {
	id     int
	msg    []byte
	pt, ad []byte
	sentAt int
}

type party struct {
	name      string
	dev       device
	sess      *Session
	inbox     []wireMsg // in flight towards this party
	delivered []wireMsg // delivered to this party, oldest first
	got       map[int]bool
}

type world struct {
	t       *testing.T
	rng     *rand.Rand
	step    int
	nextID  int
	p       [2]*party
	stats   map[string]int
	history []string
}

func (w *world) failf(format string, args ...any) {
	w.t.Helper()
	start := max(0, len(w.history)-30)
	w.t.Fatalf("step %d: %s\nlast actions:\n%v", w.step, fmt.Sprintf(format, args...), w.history[start:])
}

func (w *world) note(format string, args ...any) {
	w.history = append(w.history, fmt.Sprintf("%d: ", w.step)+fmt.Sprintf(format, args...))
	if len(w.history) > 200 {
		w.history = w.history[100:]
	}
}

func (w *world) send(from, to *party) {
	id := w.nextID
	w.nextID++
	pt := make([]byte, w.rng.IntN(80))
	for i := range pt {
		pt[i] = byte(w.rng.Uint32())
	}
	pt = append([]byte(fmt.Sprintf("%s#%d:", from.name, id)), pt...)
	var ad []byte
	if w.rng.IntN(2) == 0 {
		ad = []byte(fmt.Sprintf("msg-%d", id))
	}
	msg, err := from.sess.Encrypt(pt, ad)
	if err != nil {
		w.failf("Encrypt: %v", err)
	}
	to.inbox = append(to.inbox, wireMsg{id: id, msg: msg, pt: pt, ad: ad, sentAt: w.step})
	w.stats["send"]++
	w.note("%s sends #%d", from.name, id)
}

func (w *world) deliver(to *party, m wireMsg) {
	if to.sess == nil {
		s, pt, err := AcceptWithAD(to.dev.keys, m.msg, m.ad)
		if err != nil {
			w.failf("%s Accept #%d: %v", to.name, m.id, err)
		}
		if !bytes.Equal(pt, m.pt) {
			w.failf("%s Accept #%d: wrong plaintext", to.name, m.id)
		}
		to.sess = s
		to.got[m.id] = true
		to.delivered = append(to.delivered, m)
		w.stats["accept"]++
		w.note("%s accepts #%d", to.name, m.id)
		return
	}
	if to.got[m.id] {
		w.expectFailure(to, m, ErrDuplicate, "network duplicate")
		return
	}
	pt, err := to.sess.Decrypt(m.msg, m.ad)
	if err != nil {
		w.failf("%s Decrypt #%d (sent at step %d): %v", to.name, m.id, m.sentAt, err)
	}
	if !bytes.Equal(pt, m.pt) {
		w.failf("%s Decrypt #%d: got %q want %q", to.name, m.id, pt, m.pt)
	}
	to.got[m.id] = true
	to.delivered = append(to.delivered, m)
	w.stats["deliver"]++
	w.note("%s receives #%d", to.name, m.id)
}

func (w *world) expectFailure(to *party, m wireMsg, want error, what string) {
	before, err := to.sess.Marshal()
	if err != nil {
		w.failf("Marshal: %v", err)
	}
	pt, err := to.sess.Decrypt(m.msg, m.ad)
	if err == nil {
		w.failf("%s: %s #%d decrypted again: %q", to.name, what, m.id, pt)
	}
	if want != nil && !errors.Is(err, want) {
		w.failf("%s: %s #%d: %v, want %v", to.name, what, m.id, err, want)
	}
	after, _ := to.sess.Marshal()
	if !bytes.Equal(before, after) {
		w.failf("%s: %s #%d: state changed by failed Decrypt", to.name, what, m.id)
	}
	w.stats[what]++
	w.note("%s rejects %s #%d: %v", to.name, what, m.id, err)
}

func (w *world) restart(p *party) {
	b, err := p.sess.Marshal()
	if err != nil {
		w.failf("Marshal: %v", err)
	}
	s, err := UnmarshalSession(b)
	if err != nil {
		w.failf("UnmarshalSession: %v", err)
	}
	if b2, _ := s.Marshal(); !bytes.Equal(b, b2) {
		w.failf("%s: session does not round-trip", p.name)
	}
	p.sess = s
	w.stats["restart"]++
	w.note("%s restarts", p.name)
}

func (w *world) expire() {
	for _, p := range w.p {
		kept := p.inbox[:0]
		for _, m := range p.inbox {
			if w.step-m.sentAt < inflightTTL {
				kept = append(kept, m)
			} else {
				w.stats["expired"]++
			}
		}
		p.inbox = kept
	}
}

func runInteraction(t *testing.T, seed uint64, steps int) map[string]int {
	cryptotest.SetGlobalRandom(t, seed)
	w := &world{t: t, rng: rand.New(rand.NewPCG(seed, 0x6d6164616e67)), stats: map[string]int{}}
	a := &party{name: "A", dev: newDevice(t), got: map[int]bool{}}
	b := &party{name: "B", dev: newDevice(t), got: map[int]bool{}}
	w.p = [2]*party{a, b}
	s, err := Initiate(a.dev.keys, b.dev.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	a.sess = s
	for w.step = 0; w.step < steps; w.step++ {
		w.expire()
		i := w.rng.IntN(2)
		p, q := w.p[i], w.p[1-i] // p acts or receives, q is the peer
		switch r := w.rng.IntN(100); {
		case r < 32: // send
			if p.sess == nil {
				p, q = q, p
			}
			w.send(p, q)
		case r < 64: // deliver one in-flight message, in random order
			if len(p.inbox) == 0 {
				continue
			}
			k := w.rng.IntN(len(p.inbox))
			m := p.inbox[k]
			p.inbox = append(p.inbox[:k], p.inbox[k+1:]...)
			w.deliver(p, m)
		case r < 70: // drop
			if len(p.inbox) == 0 {
				continue
			}
			k := w.rng.IntN(len(p.inbox))
			w.note("drop #%d to %s", p.inbox[k].id, p.name)
			p.inbox = append(p.inbox[:k], p.inbox[k+1:]...)
			w.stats["drop"]++
		case r < 76: // network duplicate: the same bytes travel twice
			if len(p.inbox) == 0 {
				continue
			}
			m := p.inbox[w.rng.IntN(len(p.inbox))]
			p.inbox = append(p.inbox, m)
			w.note("duplicate #%d to %s in flight", m.id, p.name)
		case r < 84: // re-deliver a recently delivered message
			if len(p.delivered) == 0 {
				continue
			}
			recent := p.delivered[max(0, len(p.delivered)-recentHistory):]
			w.expectFailure(p, recent[w.rng.IntN(len(recent))], ErrDuplicate, "recent duplicate")
		case r < 88: // replay any old message
			if len(p.delivered) == 0 {
				continue
			}
			w.expectFailure(p, p.delivered[w.rng.IntN(len(p.delivered))], nil, "old replay")
		default: // restart from persisted state
			if p.sess == nil {
				continue
			}
			w.restart(p)
		}
	}
	// Drain: everything still in flight arrives.
	for _, p := range w.p {
		for _, m := range p.inbox {
			w.deliver(p, m)
		}
		p.inbox = nil
	}
	// And a final exchange works both ways.
	if b.sess != nil {
		w.send(a, b)
		w.deliver(b, b.inbox[0])
		w.send(b, a)
		w.deliver(a, a.inbox[0])
	}
	return w.stats
}

func TestInteraction(t *testing.T) {
	seeds, steps := 5, 4000
	if *long {
		seeds, steps = 10, 50000
	}
	total := map[string]int{}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			for k, v := range runInteraction(t, seed, steps) {
				total[k] += v
			}
		})
	}
	t.Logf("%d steps: %v", seeds*steps, total)
	// The driver must actually exercise every path.
	for _, k := range []string{"send", "deliver", "accept", "drop", "expired", "restart", "network duplicate", "recent duplicate", "old replay"} {
		if total[k] == 0 {
			t.Errorf("no %q events", k)
		}
	}
}
