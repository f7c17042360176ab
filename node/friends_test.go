package node_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/contact"
	"github.com/madang-p2p/madang/protocols/dm"
	"github.com/madang-p2p/madang/store"
	"github.com/madang-p2p/madang/testnet"
)

func fastRetries(_ int, cfg *config.Config) {
	cfg.Friends.RetryMin = 50 * time.Millisecond
	cfg.Friends.RetryMax = time.Second
}

// befriend makes a and b friends through the API: a creates an invite, b accepts it.
func befriend(t testing.TB, a, b *testnet.Node) {
	t.Helper()
	var inv contact.InviteView
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/invites", map[string]any{"expires": "1h", "uses": 1}, &inv); err != nil {
		t.Fatal(err)
	}
	var f contact.FriendView
	if err := b.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": inv.Link}, &f); err != nil {
		t.Fatal(err)
	}
	if f.State != string(graph.StateFriend) {
		t.Fatalf("after accept: state %s", f.State)
	}
}

func friendsOf(t testing.TB, c *apiclient.Client) []contact.FriendView {
	t.Helper()
	var out struct {
		Friends []contact.FriendView `json:"friends"`
	}
	if err := c.Do(t.Context(), "GET", "/api/v1/friends", nil, &out); err != nil {
		t.Fatal(err)
	}
	return out.Friends
}

// TestFriendsInviteAndProfiles: A invites B (B finds A through the third node's DHT), both list each other
// with profiles, profile updates reach the friend, an expired invite and a used-up one are refused clearly.
func TestFriendsInviteAndProfiles(t *testing.T) {
	nodes := testnet.Start(t, 3, testnet.Options{Configure: func(i int, cfg *config.Config) {
		fastRetries(i, cfg)
		cfg.Name = []string{"Minji", "Jisoo", "Relay"}[i]
	}})
	a, b, c := nodes[0], nodes[1], nodes[2]
	testnet.Connect(t, a, c)
	testnet.Connect(t, b, c)
	testnet.Eventually(t, 10*time.Second, func() bool {
		return a.DHT.RoutingTable().Size() > 0 && b.DHT.RoutingTable().Size() > 0
	}, "routing tables")

	if err := a.Client.Do(t.Context(), "PUT", "/api/v1/profile", map[string]any{"display_name": "Minji", "status": "at the market", "tags": []string{"cooking"}}, nil); err != nil {
		t.Fatal(err)
	}
	befriend(t, a, b)
	fa, fb := friendsOf(t, a.Client), friendsOf(t, b.Client)
	if len(fa) != 1 || fa[0].AccountID != string(b.Identity.AccountID()) || fa[0].Profile.DisplayName != "Jisoo" || fa[0].State != "friend" {
		t.Fatalf("A's friends: %+v", fa)
	}
	if len(fb) != 1 || fb[0].AccountID != string(a.Identity.AccountID()) || fb[0].Profile.Status != "at the market" {
		t.Fatalf("B's friends: %+v", fb)
	}

	// A profile change reaches the friend.
	if err := b.Client.Do(t.Context(), "PUT", "/api/v1/profile", map[string]any{"display_name": "Jisoo P", "status": "travelling"}, nil); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, func() bool {
		f := friendsOf(t, a.Client)
		return len(f) == 1 && f[0].Profile.DisplayName == "Jisoo P" && f[0].Profile.Status == "travelling"
	}, "profile update reaches A")

	// A one-use invite: C uses it; B (a stranger again) is refused with a clear message.
	var inv contact.InviteView
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/invites", map[string]any{"expires": "1h", "uses": 1}, &inv); err != nil {
		t.Fatal(err)
	}
	var fc contact.FriendView
	if err := c.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": inv.Link}, &fc); err != nil || fc.State != "friend" {
		t.Fatalf("C accepts: %v %+v", err, fc)
	}
	// B and A forget each other, so B is a stranger to A again.
	if err := b.Client.Do(t.Context(), "DELETE", "/api/v1/friends/Minji", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Client.Do(t.Context(), "DELETE", "/api/v1/friends/"+string(b.Identity.AccountID()), nil, nil); err != nil {
		t.Fatal(err)
	}
	err := b.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": inv.Link}, nil)
	var ae *apiclient.Error
	if !asAPIError(err, &ae) || ae.Status != http.StatusGone || ae.Code != "invite_used" || !strings.Contains(ae.Message, "already been used") {
		t.Fatalf("used-up invite: %v", err)
	}
	if len(friendsOf(t, b.Client)) != 0 {
		t.Fatalf("a refused invite left a contact behind: %+v", friendsOf(t, b.Client))
	}
	// An expired invite is refused by the acceptor before anything is sent.
	var inv3 contact.InviteView
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/invites", map[string]any{"expires": "1s", "uses": 1}, &inv3); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool { return time.Now().After(inv3.Expires) }, "invite expiry")
	err = b.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": inv3.Link}, nil)
	if !asAPIError(err, &ae) || ae.Code != "invite_expired" || !strings.Contains(ae.Message, "expired") {
		t.Fatalf("expired invite: %v", err)
	}
}

// TestDMThousandEachWay: two real loopback nodes send 1,000 messages each way at the same time; every
// message arrives once, in order, and ends delivered.
func TestDMThousandEachWay(t *testing.T) {
	nodes := testnet.Start(t, 2, testnet.Options{Configure: fastRetries})
	a, b := nodes[0], nodes[1]
	testnet.Connect(t, a, b)
	befriend(t, a, b)
	n := 1000
	if testing.Short() {
		n = 200
	}
	send := func(from, to *testnet.Node, prefix string) error {
		s := node.DMService(from.Node)
		for i := range n {
			if _, err := s.Send(t.Context(), to.Identity.AccountID(), fmt.Sprintf("%s-%04d", prefix, i), fmt.Sprintf("%s message %d", prefix, i)); err != nil {
				return err
			}
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = send(a, b, "a") })
	wg.Go(func() { errs[1] = send(b, a, "b") })
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range [][2]*testnet.Node{{a, b}, {b, a}} {
		s := node.DMService(p[0].Node)
		testnet.Eventually(t, 120*time.Second, func() bool {
			n, err := s.Pending(t.Context(), p[1].Identity.AccountID())
			return err == nil && n == 0
		}, "%s's outbox drains", p[0].Identity.AccountID())
	}
	check := func(self, peer *testnet.Node, prefix string) {
		s := node.DMService(self.Node)
		msgs, next, err := s.History(t.Context(), peer.Identity.AccountID(), "", 1000)
		all := msgs
		for err == nil && next != "" {
			msgs, next, err = s.History(t.Context(), peer.Identity.AccountID(), next, 1000)
			all = append(all, msgs...)
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 2*n {
			seen := map[string]bool{}
			for _, m := range all {
				seen[m.ID] = true
			}
			var missing []string
			for i := range n {
				for _, p := range []string{"a", "b"} {
					if id := fmt.Sprintf("%s-%04d", p, i); !seen[id] {
						missing = append(missing, id)
					}
				}
			}
			t.Fatalf("%s: %d messages in history, want %d; missing %v", prefix, len(all), 2*n, missing)
		}
		mine, theirs := 0, 0
		// History is newest first: walk it backwards to check each sender's order.
		for i := len(all) - 1; i >= 0; i-- {
			m := all[i]
			if m.Outgoing {
				if want := fmt.Sprintf("%s-%04d", prefix, mine); m.ID != want || m.State != dm.StateDelivered {
					t.Fatalf("%s: own message %d is %s in state %s, want %s delivered", prefix, mine, m.ID, m.State, want)
				}
				mine++
			} else {
				other := map[string]string{"a": "b", "b": "a"}[prefix]
				if want := fmt.Sprintf("%s-%04d", other, theirs); m.ID != want || m.State != dm.StateReceived {
					t.Fatalf("%s: received message %d is %s (%s), want %s", prefix, theirs, m.ID, m.State, want)
				}
				theirs++
			}
		}
	}
	check(a, b, "a")
	check(b, a, "b")
}

// TestFriendRequestWaitsForUser: a request whose secret matches no live invite of the inviter waits as a
// request (event friend.request); accepting it makes both sides friends and messages flow; declining
// forgets it.
func TestFriendRequestWaitsForUser(t *testing.T) {
	nodes := testnet.Start(t, 3, testnet.Options{Configure: fastRetries})
	a, b, c := nodes[0], nodes[1], nodes[2]
	testnet.ConnectAll(t, nodes)
	link := func() string { return unknownSecretLink(t, a) }
	sub := a.Events.Subscribe(a.Events.Last(), []string{contact.EventRequest})
	defer sub.Close()
	var fb contact.FriendView
	if err := b.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": link()}, &fb); err != nil {
		t.Fatal(err)
	}
	if fb.State != string(graph.StateRequestOut) {
		t.Fatalf("B's side: %s", fb.State)
	}
	select {
	case ev := <-sub.C():
		if !strings.Contains(string(ev.Data), string(b.Identity.AccountID())) {
			t.Fatalf("friend.request for someone else: %s", ev.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no friend.request event")
	}
	var fa contact.FriendView
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/friends/"+string(b.Identity.AccountID())+"/accept", nil, &fa); err != nil || fa.State != "friend" {
		t.Fatalf("accept: %v %+v", err, fa)
	}
	testnet.Eventually(t, 10*time.Second, func() bool {
		f := friendsOf(t, b.Client)
		return len(f) == 1 && f[0].State == "friend"
	}, "B learns it was accepted")
	m, err := node.DMService(b.Node).Send(t.Context(), a.Identity.AccountID(), "", "thanks for accepting")
	if err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, func() bool {
		got, err := node.DMService(b.Node).Message(a.Identity.AccountID(), "", m.ID)
		return err == nil && got.State == dm.StateDelivered
	}, "message delivered")

	// C's request is declined and forgotten.
	if err := c.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": link()}, nil); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, func() bool { return len(friendsOf(t, a.Client)) == 2 }, "C's request arrives")
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/friends/"+string(c.Identity.AccountID())+"/decline", nil, nil); err != nil {
		t.Fatal(err)
	}
	if f := friendsOf(t, a.Client); len(f) != 1 {
		t.Fatalf("after decline: %+v", f)
	}
	if _, err := node.DMService(c.Node).Send(t.Context(), a.Identity.AccountID(), "", "hi"); err == nil {
		t.Fatal("C could queue a message to someone who is not its friend")
	}
}

// unknownSecretLink is a link signed by a's account for a secret a's node does not know (as an invite made
// before a reinstall would be): built with a's identity on a scratch graph.
func unknownSecretLink(t *testing.T, a *testnet.Node) string {
	t.Helper()
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	g, err := graph.New(st.Namespace("graph"), st.Namespace("invites"), a.Identity, "Minji")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := g.CreateInvite(graph.InviteOptions{TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	return rec.Link
}

// TestAcceptReachesOfflineFriendThroughMailbox: A accepts B's request while B is offline; the accept goes
// to B's inbox relay and B, back online, drains it and becomes A's friend; then they message.
func TestAcceptReachesOfflineFriendThroughMailbox(t *testing.T) {
	r := testnet.Start(t, 1, testnet.Options{Configure: func(_ int, c *config.Config) {
		c.Role = config.RoleRelay
	}})[0]
	nodes := testnet.Start(t, 2, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRetries(i, c)
		c.Relays = []string{r.Addr()}
	}})
	a, b := nodes[0], nodes[1]
	testnet.Connect(t, a, b)
	var fb contact.FriendView
	if err := b.Client.Do(t.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": unknownSecretLink(t, a)}, &fb); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, func() bool {
		f := friendsOf(t, a.Client)
		return len(f) == 1 && f[0].State == "request-in" && f[0].Mailbox
	}, "B's request with its mailbox card reaches A")
	b.Stop()
	var fa contact.FriendView
	if err := a.Client.Do(t.Context(), "POST", "/api/v1/friends/"+string(b.Identity.AccountID())+"/accept", nil, &fa); err != nil {
		t.Fatal(err)
	}
	if _, err := node.DMService(a.Node).Send(t.Context(), b.Identity.AccountID(), "welcome", "welcome aboard"); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 60*time.Second, func() bool {
		m, err := node.DMService(a.Node).Message(b.Identity.AccountID(), "", "welcome")
		return err == nil && m.State == dm.StateSent
	}, "the message waits in B's mailbox (sent)")
	testnet.Eventually(t, 30*time.Second, func() bool { return relayStatus(t, r).Relay.Items >= 2 },
		"the relay holds the accept and the message")
	b.Restart()
	testnet.Eventually(t, 60*time.Second, func() bool {
		f := friendsOf(t, b.Client)
		return len(f) == 1 && f[0].State == "friend"
	}, "B learns from its mailbox that A accepted")
	testnet.Eventually(t, 60*time.Second, func() bool {
		m, err := node.DMService(a.Node).Message(b.Identity.AccountID(), "", "welcome")
		return err == nil && m.State == dm.StateDelivered
	}, "the message ends delivered")
	if m, err := node.DMService(b.Node).Message(a.Identity.AccountID(), a.Identity.AccountID(), "welcome"); err != nil || m.Text != "welcome aboard" {
		t.Fatalf("B's copy: %+v %v", m, err)
	}
}
