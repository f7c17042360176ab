package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/go-datastore/query"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/contact"
	"github.com/madang-p2p/madang/protocols/dm"
	"github.com/madang-p2p/madang/protocols/mailbox"
	"github.com/madang-p2p/madang/protocols/mailbox/mailboxtest"
	"github.com/madang-p2p/madang/testnet"
)

const dmCanary = "CANARY-e2e-5b7c-never-on-a-relay"

// fullRelay starts a relay node with every feature, on a fixed port.
func fullRelay(t *testing.T) *testnet.Node {
	t.Helper()
	listen := freeAddr(t)
	return testnet.Start(t, 1, testnet.Options{Configure: func(_ int, c *config.Config) {
		c.Role = config.RoleRelay
		c.Listen = []string{listen}
	}})[0]
}

// friendsWithRelays starts A and B (every feature, fast retries) with the given inbox relays, makes them
// friends and waits until each holds the other's mailbox card.
func friendsWithRelays(t *testing.T, relays ...*testnet.Node) (a, b *testnet.Node) {
	t.Helper()
	var addrs []string
	for _, r := range relays {
		addrs = append(addrs, r.Addr())
	}
	nodes := testnet.Start(t, 2, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRetries(i, c)
		c.Relays = addrs
	}})
	a, b = nodes[0], nodes[1]
	testnet.Connect(t, a, b)
	befriend(t, a, b)
	for _, pair := range [][2]*testnet.Node{{a, b}, {b, a}} {
		testnet.Eventually(t, 30*time.Second, func() bool {
			f := friendsOf(t, pair[0].Client)
			return len(f) == 1 && f[0].Mailbox
		}, "%s holds the friend's mailbox card", pair[0].Identity.AccountID())
	}
	return a, b
}

// history returns a node's conversation with peer, oldest first.
func history(t *testing.T, self, peer *testnet.Node) []dm.Message {
	t.Helper()
	s := node.DMService(self.Node)
	var all []dm.Message
	msgs, next, err := s.History(t.Context(), peer.Identity.AccountID(), "", 1000)
	all = append(all, msgs...)
	for err == nil && next != "" {
		msgs, next, err = s.History(t.Context(), peer.Identity.AccountID(), next, 1000)
		all = append(all, msgs...)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, j := 0, len(all)-1; i < j; i, j = i+1, j-1 {
		all[i], all[j] = all[j], all[i]
	}
	return all
}

func sendN(t *testing.T, from, to *testnet.Node, n int) {
	t.Helper()
	s := node.DMService(from.Node)
	for i := range n {
		if _, err := s.Send(t.Context(), to.Identity.AccountID(), fmt.Sprintf("m-%04d", i), fmt.Sprintf("%s %d", dmCanary, i)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
}

// checkReceived fails unless b shows exactly n messages from a, m-0000 … in order, each once.
func checkReceived(t *testing.T, b, a *testnet.Node, n int) {
	t.Helper()
	got := history(t, b, a)
	if len(got) != n {
		t.Fatalf("B shows %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Outgoing || m.ID != fmt.Sprintf("m-%04d", i) || m.Text != fmt.Sprintf("%s %d", dmCanary, i) {
			t.Fatalf("message %d: %s %q (outgoing %v)", i, m.ID, m.Text, m.Outgoing)
		}
	}
}

func countStates(msgs []dm.Message, state string) int {
	c := 0
	for _, m := range msgs {
		if m.State == state {
			c++
		}
	}
	return c
}

// storeHolds reports whether any record of a node's store namespace, or any file of its store directory (the
// write-ahead log included), contains needle.
func storeHolds(t *testing.T, n *testnet.Node, needle []byte) bool {
	t.Helper()
	for _, ns := range []string{"mailbox", "dht", "inbox"} {
		res, err := n.Store.Datastore(ns).Query(t.Context(), query.Query{})
		if err != nil {
			t.Fatal(err)
		}
		entries, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if bytes.Contains(e.Value, needle) || bytes.Contains([]byte(e.Key), needle) {
				return true
			}
		}
	}
	found := false
	_ = filepath.WalkDir(config.PathsFor(n.Home).Store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if raw, err := os.ReadFile(p); err == nil && bytes.Contains(raw, needle) {
			found = true
		}
		return nil
	})
	return found
}

// A and B are friends; B's daemon is stopped; A sends 100 messages, which go to B's inbox relay (state
// sent); the relay holds no plaintext; B starts and shows all 100 exactly once and in order; the relay
// deletes them after B's ack and A's messages end delivered.
func TestDMOfflineFriendThroughRelay(t *testing.T) {
	r := fullRelay(t)
	a, b := friendsWithRelays(t, r)
	b.Stop()
	const n = 100
	sendN(t, a, b, n)
	testnet.Eventually(t, 60*time.Second, func() bool {
		return countStates(history(t, a, b), dm.StateSent) == n
	}, "A's %d messages sent to B's relay", n)
	st := relayStatus(t, r)
	if st.Relay.Items < n {
		t.Fatalf("relay holds %d items, want at least %d", st.Relay.Items, n)
	}
	if storeHolds(t, r, []byte(dmCanary)) {
		t.Fatal("the relay's store holds message plaintext")
	}
	// The canary check can fail: A's own store holds it.
	if !storeHolds(t, a, []byte(dmCanary)) {
		t.Fatal("control: the sender's store scan does not see its own plaintext")
	}

	b.Restart()
	testnet.Eventually(t, 60*time.Second, func() bool { return len(history(t, b, a)) >= n }, "B receives %d", n)
	checkReceived(t, b, a, n)
	testnet.Eventually(t, 30*time.Second, func() bool { return relayStatus(t, r).Relay.Items == 0 },
		"the relay deletes B's items after the acks")
	testnet.Eventually(t, 60*time.Second, func() bool {
		return countStates(history(t, a, b), dm.StateDelivered) == n
	}, "A's messages end delivered")
	checkReceived(t, b, a, n)
}

// B has two inbox relays, one of them misbehaving; B is offline while A sends; every message arrives
// exactly once and in order.
func TestDMOneHonestRelayOfTwo(t *testing.T) {
	modes := []string{"drop", "tamper", "replay"}
	if testnet.Long() {
		modes = mailboxtest.Modes
	}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			evil, honest := fullRelay(t), fullRelay(t)
			v, _ := evil.Lookup("relay.mailbox")
			if err := mailboxtest.Misbehave(evil.Host, v.(*mailbox.Service), mode); err != nil {
				t.Fatal(err)
			}
			a, b := friendsWithRelays(t, evil, honest)
			b.Stop()
			const n = 30
			sendN(t, a, b, n)
			testnet.Eventually(t, 60*time.Second, func() bool {
				return countStates(history(t, a, b), dm.StateSent) == n
			}, "A's messages sent")
			b.Restart()
			testnet.Eventually(t, 60*time.Second, func() bool { return len(history(t, b, a)) >= n }, "B receives %d", n)
			// B drained them from the honest relay (not only from A's direct retries).
			testnet.Eventually(t, 30*time.Second, func() bool { return relayStatus(t, honest).Relay.Delivered >= n },
				"B acked the honest relay's items")
			// Further drains (replays of acked items) show nothing new.
			if err := b.Client.Do(t.Context(), "POST", "/api/v1/inbox/drain", nil, nil); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, b, a, n)
		})
	}
}

// B listens on no address of its own: it is reachable only through its relay reservation, and A's messages
// still reach it live (delivered, not parked in the mailbox).
func TestDMLiveToNodeOnlyReachableThroughRelay(t *testing.T) {
	r := fullRelay(t)
	nodes := testnet.Start(t, 2, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRetries(i, c)
		c.Relays = []string{r.Addr()}
		if i == 1 {
			c.Listen = nil
		}
	}})
	a, b := nodes[0], nodes[1]
	testnet.Eventually(t, 30*time.Second, func() bool {
		st := relayStatus(t, b)
		return len(st.Inbox.Relays) == 1 && st.Inbox.Relays[0].ReservationExpires != nil
	}, "B holds a reservation")
	for _, la := range b.Host.Network().ListenAddresses() {
		if _, err := la.ValueForProtocol(ma.P_CIRCUIT); err != nil {
			t.Fatalf("B listens on %s", la)
		}
	}
	// B invites A: the invite carries B's relay as hint, so A reaches B through the circuit.
	var inv contact.InviteView
	if err := b.Client.Do(t.Context(), "POST", "/api/v1/invites", map[string]any{"expires": "1h", "uses": 1}, &inv); err != nil {
		t.Fatal(err)
	}
	var f contact.FriendView
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": inv.Link}, &f); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 30*time.Second, func() bool {
		fr := friendsOf(t, b.Client)
		return len(fr) == 1 && fr[0].State == "friend"
	}, "B lists A as friend")
	// Park nothing: if the message went through the mailbox instead, B would only see it at its next drain.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	events := b.Events.Subscribe(b.Events.Last(), []string{"message.received"})
	defer events.Close()
	if _, err := node.DMService(a.Node).Send(ctx, b.Identity.AccountID(), "live-1", "hello through the relay"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-events.C():
	case <-ctx.Done():
		t.Fatal("B did not receive the message live")
	}
	testnet.Eventually(t, 30*time.Second, func() bool {
		h := history(t, a, b)
		return len(h) == 1 && h[0].State == dm.StateDelivered
	}, "A's message delivered")
	if got := relayStatus(t, r).Relay.Items; got != 0 {
		t.Fatalf("the message went through the mailbox (%d items), not live", got)
	}
}

// Over quota the relay refuses clearly and A keeps the messages queued; once B is back they arrive anyway,
// each once and in order.
func TestDMOverQuotaStaysQueued(t *testing.T) {
	listen := freeAddr(t)
	r := testnet.Start(t, 1, testnet.Options{Configure: func(_ int, c *config.Config) {
		c.Role = config.RoleRelay
		c.Listen = []string{listen}
		c.Relay.MailboxQuotaItems = 5
	}})[0]
	a, b := friendsWithRelays(t, r)
	b.Stop()
	const n = 8
	sendN(t, a, b, n)
	testnet.Eventually(t, 30*time.Second, func() bool {
		return relayStatus(t, r).Relay.Refusals["quota_items"] > 0
	}, "the relay refuses deposits over quota")
	h := history(t, a, b)
	if sent, queued := countStates(h, dm.StateSent), countStates(h, dm.StateQueued); sent > 5 || sent+queued != n {
		t.Fatalf("%d sent, %d queued: over-quota messages must stay queued", sent, queued)
	}
	b.Restart()
	testnet.Eventually(t, 60*time.Second, func() bool { return len(history(t, b, a)) >= n }, "B receives all %d", n)
	checkReceived(t, b, a, n)
	testnet.Eventually(t, 60*time.Second, func() bool {
		return countStates(history(t, a, b), dm.StateDelivered) == n
	}, "all delivered")
}
