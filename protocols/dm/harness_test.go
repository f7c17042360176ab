package dm

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"testing"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/dm/pb"
	"github.com/madang-p2p/madang/store"
)

// party is one side of a conversation without a network: a store, a graph and a Service that can be
// rebuilt on the same store (a restart).
type party struct {
	t     testing.TB
	id    *identity.Identity
	st    *store.Store
	graph *graph.Graph
	ns    *store.NS
	bus   *events.Bus
	svc   *Service
	mb    Mailbox
}

func newParty(t testing.TB, name string) *party {
	t.Helper()
	id, err := identity.New(name)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	g, err := graph.New(st.Namespace("graph"), st.Namespace("invites"), id, name)
	if err != nil {
		t.Fatal(err)
	}
	p := &party{t: t, id: id, st: st, graph: g, ns: st.Namespace("dm"), bus: events.NewBus(1<<16, 0)}
	p.restart()
	return p
}

// restart rebuilds the service from the store, as after a crash: only what was committed survives.
func (p *party) restart() {
	p.t.Helper()
	svc, err := New(p.t.Context(), Options{Graph: p.graph, Identity: p.id, Store: p.st, NS: p.ns, Events: p.bus,
		Mailbox: p.mb, ReadReceipts: true})
	if err != nil {
		p.t.Fatal(err)
	}
	p.svc = svc
}

func (p *party) acct() identity.AccountID { return p.id.AccountID() }

// befriendParties stores each as the other's friend, with device and prekey bundle, as the contact
// protocol would.
func befriendParties(t testing.TB, a, b *party) {
	t.Helper()
	add := func(self, other *party) {
		_, _, err := self.graph.Update(other.id.AccountKey(), true, func(c *graph.Contact) error {
			c.State = graph.StateFriend
			c.Profile.DisplayName = other.graph.Profile().DisplayName
			c.Devices = []graph.Device{{PeerID: other.id.PeerID(), Bundle: other.svc.Bundle()}}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add(a, b)
	add(b, a)
}

func (p *party) setCard(friend *party, card []byte) {
	_, _, err := p.graph.Update(friend.id.AccountKey(), false, func(c *graph.Contact) error {
		c.MailboxCard = card
		return nil
	})
	if err != nil {
		p.t.Fatal(err)
	}
}

// outbox returns the payloads queued from p to friend, in order, with their ids.
func (p *party) outbox(friend *party) ([]outItem, []owedAck) {
	p.t.Helper()
	items, acks, err := p.svc.pending(p.t.Context(), friend.acct())
	if err != nil {
		p.t.Fatal(err)
	}
	return items, acks
}

// history returns all messages of p's conversation with friend, oldest first.
func (p *party) history(friend *party) []Message { return p.historyOf(friend.acct()) }

func (p *party) historyOf(friend identity.AccountID) []Message {
	p.t.Helper()
	var all []Message
	before := ""
	for {
		msgs, next, err := p.svc.History(p.t.Context(), friend, before, 1000)
		if err != nil {
			p.t.Fatal(err)
		}
		all = append(all, msgs...)
		if next == "" {
			break
		}
		before = next
	}
	for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
		all[i], all[j] = all[j], all[i]
	}
	return all
}

// deliverDirect hands payloads from `from` to `to` as the stream handler would and the reply back.
func deliverDirect(t testing.TB, from, to *party, payloads [][]byte, replyLost bool) *pb.Reply {
	t.Helper()
	reply, err := to.svc.process(t.Context(), from.id.AccountKey(), payloads, false)
	if err != nil {
		t.Fatal(err)
	}
	if !replyLost {
		c, err := from.graph.Contact(to.acct())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := from.svc.applyReply(c, reply, len(payloads)); err != nil {
			t.Fatal(err)
		}
	}
	return reply
}

// fakeMailbox is a hand-written mailbox: a card names its owner; Deposit appends the payload to the owner's
// queue; Drain hands queued payloads to the owner's Sink.
type fakeMailbox struct {
	mu     sync.Mutex
	queues map[string][][]byte
	ids    map[string]bool
	down   bool
}

func newFakeMailbox() *fakeMailbox {
	return &fakeMailbox{queues: map[string][][]byte{}, ids: map[string]bool{}}
}

func (m *fakeMailbox) MailboxCard(_ context.Context, _ ed25519.PublicKey) ([]byte, error) {
	return nil, errors.New("fake: cards are set by the test")
}

func (m *fakeMailbox) Deposit(_ context.Context, card []byte, itemID string, payload []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return nil, errors.New("fake: relay unreachable")
	}
	if !m.ids[string(card)+itemID] { // relays dedupe by item id
		m.ids[string(card)+itemID] = true
		m.queues[string(card)] = append(m.queues[string(card)], payload)
	}
	return []byte("receipt"), nil
}

// drain hands the owner's items to sink; items whose sink fails stay queued.
func (m *fakeMailbox) drain(ctx context.Context, card []byte, sink func(context.Context, []byte) error) int {
	m.mu.Lock()
	q := m.queues[string(card)]
	m.queues[string(card)] = nil
	m.mu.Unlock()
	var keep [][]byte
	for _, p := range q {
		if err := sink(ctx, p); err != nil {
			keep = append(keep, p)
		}
	}
	m.mu.Lock()
	m.queues[string(card)] = append(keep, m.queues[string(card)]...)
	m.mu.Unlock()
	return len(q) - len(keep)
}
