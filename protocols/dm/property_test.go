package dm

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
)

var long = flag.Bool("long", false, "run the long randomised variants")

type flight struct {
	from, to int
	payload  []byte
}

// world drives two parties through a random network: sends, transmissions of outbox copies, deliveries in
// any order (directly with or without the reply, or through a mailbox), drops, duplicates, tampering and
// restarts of either side. After every step: no message is shown twice and every shown message is exactly
// what its sender sent. At the end the network heals and every message must be delivered exactly once, in
// each sender's order, and acknowledged.
type world struct {
	t         *testing.T
	rng       *rand.Rand
	p         [2]*party
	sent      [2][]string // ids in send order
	text      map[string]string
	inflight  []flight
	delivered []flight
	stats     map[string]int
}

func (w *world) name(i int) string { return []string{"a", "b"}[i] }

func (w *world) send(i int) {
	id := fmt.Sprintf("%s-%d", w.name(i), len(w.sent[i]))
	text := fmt.Sprintf("%s says %d %x", w.name(i), len(w.sent[i]), w.rng.Uint64())
	if _, err := w.p[i].svc.Send(w.t.Context(), w.p[1-i].acct(), id, text); err != nil {
		w.t.Fatalf("send %s: %v", id, err)
	}
	w.sent[i] = append(w.sent[i], id)
	w.text[w.name(i)+"/"+id] = text
	w.stats["send"]++
}

// transmit puts copies of some of i's outbox (and its owed acks) on the wire.
func (w *world) transmit(i int) {
	items, acks := w.p[i].outbox(w.p[1-i])
	payloads := w.p[i].svc.ackPayloads(w.p[1-i].id.AccountKey(), acks)
	if len(acks) > 0 {
		w.p[i].svc.dropAcks(acks) // as after a deposit: acks are not retried
	}
	for _, it := range items {
		if w.rng.IntN(3) > 0 {
			payloads = append(payloads, it.item.Payload)
		}
	}
	for _, p := range payloads {
		w.inflight = append(w.inflight, flight{from: i, to: 1 - i, payload: p})
	}
	w.stats["transmit"] += len(payloads)
}

func (w *world) deliver(f flight) {
	from, to := w.p[f.from], w.p[f.to]
	switch w.rng.IntN(3) {
	case 0:
		if err := to.svc.Sink(w.t.Context(), f.payload); err != nil {
			w.t.Fatalf("sink: %v", err)
		}
		w.stats["via mailbox"]++
	case 1:
		deliverDirect(w.t, from, to, [][]byte{f.payload}, true)
		w.stats["reply lost"]++
	default:
		deliverDirect(w.t, from, to, [][]byte{f.payload}, false)
		w.stats["direct"]++
	}
}

func (w *world) pick() (flight, bool) {
	if len(w.inflight) == 0 {
		return flight{}, false
	}
	k := w.rng.IntN(len(w.inflight))
	f := w.inflight[k]
	w.inflight = append(w.inflight[:k], w.inflight[k+1:]...)
	return f, true
}

// check: histories hold no duplicates and only what was sent.
func (w *world) check() {
	for i := range 2 {
		seen := map[string]bool{}
		for _, m := range w.p[i].history(w.p[1-i]) {
			key := string(m.From) + "/" + m.ID
			if seen[key] {
				w.t.Fatalf("%s shows %s twice", w.name(i), key)
			}
			seen[key] = true
			sender := w.name(i)
			if !m.Outgoing {
				sender = w.name(1 - i)
			}
			if want, ok := w.text[sender+"/"+m.ID]; !ok || want != m.Text {
				w.t.Fatalf("%s shows %s/%s = %q, sent %q", w.name(i), sender, m.ID, m.Text, want)
			}
		}
	}
}

func (w *world) step() {
	switch r := w.rng.IntN(100); {
	case r < 25:
		w.send(w.rng.IntN(2))
	case r < 45:
		w.transmit(w.rng.IntN(2))
	case r < 75:
		if f, ok := w.pick(); ok {
			w.deliver(f)
			w.delivered = append(w.delivered, f)
			if w.rng.IntN(5) == 0 {
				w.inflight = append(w.inflight, f) // the network duplicates it
			}
		}
	case r < 82:
		if f, ok := w.pick(); ok {
			bad := bytes.Clone(f.payload)
			bad[w.rng.IntN(len(bad))] ^= byte(1 + w.rng.IntN(255))
			w.deliver(flight{from: f.from, to: f.to, payload: bad})
			w.inflight = append(w.inflight, f)
			w.stats["tampered"]++
		}
	case r < 88:
		if _, ok := w.pick(); ok {
			w.stats["dropped"]++
		}
	case r < 93:
		w.p[w.rng.IntN(2)].restart()
		w.stats["restart"]++
	default:
		if len(w.delivered) > 0 {
			w.deliver(w.delivered[w.rng.IntN(len(w.delivered))])
			w.stats["replayed"]++
		}
	}
	w.check()
}

// heal delivers each side's whole outbox directly, with replies, until nothing is owed.
func (w *world) heal() {
	for round := 0; ; round++ {
		if round > 50 {
			w.t.Fatalf("outboxes do not drain")
		}
		busy := false
		for i := range 2 {
			items, acks := w.p[i].outbox(w.p[1-i])
			if len(items) == 0 && len(acks) == 0 {
				continue
			}
			busy = true
			payloads := w.p[i].svc.ackPayloads(w.p[1-i].id.AccountKey(), acks)
			for _, it := range items {
				payloads = append(payloads, it.item.Payload)
			}
			reply := deliverDirect(w.t, w.p[i], w.p[1-i], payloads, false)
			if len(acks) > 0 {
				w.p[i].svc.dropAcks(acks)
			}
			for _, f := range reply.Failures {
				w.t.Fatalf("%s cannot store %s: %s", w.name(1-i), f.Id, f.Reason)
			}
		}
		if !busy {
			return
		}
	}
}

func runWorld(t *testing.T, seed uint64, steps int) map[string]int {
	w := &world{t: t, rng: rand.New(rand.NewPCG(seed, 7)), text: map[string]string{}, stats: map[string]int{}}
	w.p[0], w.p[1] = newParty(t, "a"), newParty(t, "b")
	befriendParties(t, w.p[0], w.p[1])
	for range steps {
		w.step()
	}
	w.heal()
	w.check()
	for i := range 2 {
		hist := w.p[1-i].history(w.p[i])
		var got []string
		for _, m := range hist {
			if !m.Outgoing {
				got = append(got, m.ID)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(w.sent[i]) {
			t.Fatalf("%s received %v, sent %v", w.name(1-i), got, w.sent[i])
		}
		for _, m := range w.p[i].history(w.p[1-i]) {
			if m.Outgoing && m.State != StateDelivered && m.State != StateRead {
				t.Fatalf("%s's %s ends %s", w.name(i), m.ID, m.State)
			}
		}
	}
	return w.stats
}

// TestPropertyRandomNetwork: every message is stored exactly once with its exact text, whatever the network
// and crashes do; once the network heals, everything is delivered in order and acknowledged.
func TestPropertyRandomNetwork(t *testing.T) {
	seeds, steps := 6, 400
	if *long {
		seeds, steps = 12, 2000
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			stats := runWorld(t, seed, steps)
			t.Logf("seed %d: %v", seed, stats)
		})
	}
}
