package dm

import (
	"testing"

	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/ratchet"
)

func (p *party) state(t *testing.T, friend *party, id string) string {
	t.Helper()
	m, err := p.svc.Message(friend.acct(), "", id)
	if err != nil {
		t.Fatal(err)
	}
	return m.State
}

// TestMailboxPathHonestStates: when the friend's device cannot be reached the outbox deposits into their
// mailbox and the message is "sent", never "delivered"; it becomes delivered only when the friend's signed
// ack comes back (here through the sender's own mailbox), and read with their read receipt. Relay duplicates
// are recognised.
func TestMailboxPathHonestStates(t *testing.T) {
	fm := newFakeMailbox()
	a, b := newParty(t, "a"), newParty(t, "b")
	a.mb, b.mb = fm, fm
	a.restart()
	b.restart()
	befriendParties(t, a, b)
	a.setCard(b, []byte("card-b"))
	b.setCard(a, []byte("card-a"))
	ctx := t.Context()

	for _, id := range []string{"m1", "m2"} {
		if _, err := a.svc.Send(ctx, b.acct(), id, "text "+id); err != nil {
			t.Fatal(err)
		}
		if st := a.state(t, b, id); st != StateQueued {
			t.Fatalf("%s after send: %s", id, st)
		}
	}
	if _, err := a.svc.deliver(ctx, b.acct()); err == nil {
		t.Fatal("delivery without a reachable device reported success")
	}
	for _, id := range []string{"m1", "m2"} {
		if st := a.state(t, b, id); st != StateSent {
			t.Fatalf("%s after deposit: %s, want sent", id, st)
		}
	}
	// The relay hands the items to B (twice: a duplicate).
	if n := fm.drain(ctx, []byte("card-b"), b.svc.Sink); n != 2 {
		t.Fatalf("drained %d", n)
	}
	items, _ := a.outbox(b)
	if err := b.svc.Sink(ctx, items[0].item.Payload); err != nil {
		t.Fatal(err)
	}
	if h := b.history(a); len(h) != 2 || h[0].ID != "m1" || h[1].ID != "m2" {
		t.Fatalf("B's history %+v", h)
	}
	if st := a.state(t, b, "m1"); st != StateSent {
		t.Fatalf("a relay receipt alone made m1 %s", st)
	}
	// B's acks go back through A's mailbox.
	if _, err := b.svc.deliver(ctx, a.acct()); err == nil {
		t.Fatal("expected the direct path to fail")
	}
	fm.drain(ctx, []byte("card-a"), a.svc.Sink)
	for _, id := range []string{"m1", "m2"} {
		if st := a.state(t, b, id); st != StateDelivered {
			t.Fatalf("%s after ack: %s, want delivered", id, st)
		}
	}
	if n, _ := a.svc.Pending(ctx, b.acct()); n != 0 {
		t.Fatalf("%d still pending", n)
	}
	// Read receipts.
	if n, err := b.svc.MarkRead(ctx, a.acct(), "m1"); err != nil || n != 1 {
		t.Fatalf("mark read: %d %v", n, err)
	}
	_, _ = b.svc.deliver(ctx, a.acct())
	fm.drain(ctx, []byte("card-a"), a.svc.Sink)
	if a.state(t, b, "m1") != StateRead || a.state(t, b, "m2") != StateDelivered {
		t.Fatalf("after read receipt: m1 %s m2 %s", a.state(t, b, "m1"), a.state(t, b, "m2"))
	}
	// No relay: the message stays queued.
	fm.down = true
	if _, err := a.svc.Send(ctx, b.acct(), "m3", "text m3"); err != nil {
		t.Fatal(err)
	}
	_, _ = a.svc.deliver(ctx, b.acct())
	if st := a.state(t, b, "m3"); st != StateQueued {
		t.Fatalf("m3 with the relay down: %s", st)
	}
}

// TestBlockedDropped: messages from a blocked contact are dropped before being stored or shown, on the
// direct and the mailbox path, and the sender never sees them delivered.
func TestBlockedDropped(t *testing.T) {
	a, b := newParty(t, "a"), newParty(t, "b")
	befriendParties(t, a, b)
	ctx := t.Context()
	if _, _, err := b.graph.Update(a.id.AccountKey(), false, func(c *graph.Contact) error {
		c.State = graph.StateBlocked
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sub := b.bus.Subscribe(b.bus.Last(), []string{EventReceived})
	defer sub.Close()
	if _, err := a.svc.Send(ctx, b.acct(), "m1", "please read me"); err != nil {
		t.Fatal(err)
	}
	items, _ := a.outbox(b)
	reply := deliverDirect(t, a, b, [][]byte{items[0].item.Payload}, false)
	if reply.Ack != nil || len(reply.Failures) != 1 || reply.Failures[0].Permanent {
		t.Fatalf("reply to a blocked sender: %v", reply)
	}
	if err := b.svc.Sink(ctx, items[0].item.Payload); err != nil {
		t.Fatal(err)
	}
	if h := b.history(a); len(h) != 0 {
		t.Fatalf("blocked message stored: %+v", h)
	}
	select {
	case ev := <-sub.C():
		t.Fatalf("blocked message shown: %s", ev.Data)
	default:
	}
	if st := a.state(t, b, "m1"); st != StateQueued {
		t.Fatalf("sender sees %s", st)
	}
}

// TestAckEndsInitData: until the friend's signed ack for a message arrives, every message carries the
// session's PQXDH init data (the friend may have lost the earlier ones); after it, new messages do not,
// also after a restart, and the friend still decrypts them.
func TestAckEndsInitData(t *testing.T) {
	a, b := newParty(t, "a"), newParty(t, "b")
	befriendParties(t, a, b)
	ctx := t.Context()
	for _, id := range []string{"m1", "m2"} {
		if _, err := a.svc.Send(ctx, b.acct(), id, "text "+id); err != nil {
			t.Fatal(err)
		}
	}
	items, _ := a.outbox(b)
	if len(items) != 2 {
		t.Fatalf("%d queued", len(items))
	}
	withInit := len(items[1].item.Payload)
	if !carriesInit(t, items[1].item.Payload) {
		t.Fatal("m2 sent before any ack carries no init data")
	}
	// m2 alone arrives (m1 is lost on the way) and is acked.
	deliverDirect(t, a, b, [][]byte{items[1].item.Payload}, false)
	if st := a.state(t, b, "m2"); st != StateDelivered {
		t.Fatalf("m2 after ack: %s", st)
	}
	a.restart()
	if _, err := a.svc.Send(ctx, b.acct(), "m3", "text m3"); err != nil {
		t.Fatal(err)
	}
	items, _ = a.outbox(b)
	if len(items) != 2 || items[0].id != "m1" || items[1].id != "m3" {
		t.Fatalf("outbox %+v", items)
	}
	m3 := items[1].item.Payload
	if carriesInit(t, m3) || len(m3) > withInit-1000 {
		t.Fatalf("m3 after the ack: %d bytes (m2 had %d), init %v", len(m3), withInit, carriesInit(t, m3))
	}
	deliverDirect(t, a, b, [][]byte{items[0].item.Payload, m3}, false)
	h := b.history(a)
	if len(h) != 3 || h[0].ID != "m1" || h[1].ID != "m2" || h[2].ID != "m3" {
		t.Fatalf("B's history %+v", h)
	}
}

func carriesInit(t *testing.T, payload []byte) bool {
	t.Helper()
	p, err := DecodePayload(payload)
	if err != nil {
		t.Fatal(err)
	}
	isInit, _, err := ratchet.PeekInit(p.GetMessage().Ratchet)
	if err != nil {
		t.Fatal(err)
	}
	return isInit
}
