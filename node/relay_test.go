package node_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/mailbox"
	"github.com/madang-p2p/madang/protocols/relayinfo"
	"github.com/madang-p2p/madang/testnet"
)

// mailboxClient is what the relay feature provides as "mailbox".
type mailboxClient interface {
	MailboxCard(ctx context.Context, friend ed25519.PublicKey) ([]byte, error)
	Deposit(ctx context.Context, card []byte, itemID string, payload []byte) ([]byte, error)
}

func mailboxOf(t *testing.T, n *testnet.Node) mailboxClient {
	t.Helper()
	v, ok := n.Lookup("mailbox")
	if !ok {
		t.Fatal("no mailbox provided")
	}
	return v.(mailboxClient)
}

// freeAddr returns a loopback TCP listen multiaddr on a port that is free now, so that a relay keeps its
// address across a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.Addr().(*net.TCPAddr).Port)
}

// startRelay starts one relay node (only the relay feature) on a fixed port.
func startRelay(t *testing.T, edit func(*config.Config)) *testnet.Node {
	t.Helper()
	listen := freeAddr(t)
	return testnet.Start(t, 1, testnet.Options{Features: []string{"relay"}, Configure: func(_ int, c *config.Config) {
		c.Role = config.RoleRelay
		c.Name = "Test relay"
		c.Relay.Operator, c.Relay.Contact = "Ops", "ops@example.org"
		c.Listen = []string{listen}
		if edit != nil {
			edit(c)
		}
	}})[0]
}

// startUsers starts n desktop nodes (relay feature only) whose inbox relay is r.
func startUsers(t *testing.T, n int, r *testnet.Node, edit func(int, *config.Config)) []*testnet.Node {
	t.Helper()
	return testnet.Start(t, n, testnet.Options{Features: []string{"relay"}, Configure: func(i int, c *config.Config) {
		c.Relays = []string{r.Addr()}
		if edit != nil {
			edit(i, c)
		}
	}})
}

// sink is a test "mailbox.sink": it records payloads in arrival order.
type sink struct {
	mu  sync.Mutex
	got []string
}

func (s *sink) fn(_ context.Context, p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, string(p))
	return nil
}

func (s *sink) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.got...)
}

func relayStatus(t *testing.T, n *testnet.Node) node.RelayStatus {
	t.Helper()
	var st node.RelayStatus
	if err := n.Client.Do(t.Context(), "GET", "/api/v1/relay/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The relay role runs the hop service with configured limits, keeps reservations of its users, serves its
// info document over the protocol and the API, and reports itself on the status API, page and metrics.
func TestRelayRoleOperatorSurface(t *testing.T) {
	r := startRelay(t, func(c *config.Config) { c.Relay.MaxReservations = 7 })
	users := startUsers(t, 2, r, nil)
	for _, u := range users {
		testnet.Eventually(t, 30*time.Second, func() bool {
			st := relayStatus(t, u)
			return len(st.Inbox.Relays) == 1 && st.Inbox.Relays[0].Connected && st.Inbox.Relays[0].ReservationExpires != nil
		}, "user holds a reservation on the relay")
		if !u.Host.ConnManager().IsProtected(r.Host.ID(), "relay") {
			t.Fatal("relay connection not protected from trimming")
		}
	}
	testnet.Eventually(t, 30*time.Second, func() bool { return relayStatus(t, r).Relay.Reservations == 2 },
		"relay counts two reservations")
	st := relayStatus(t, r)
	if st.Role != "relay" || st.Relay == nil || st.Relay.Limits.MaxReservations != 7 || st.Relay.Name != "Test relay" {
		t.Fatalf("relay status %+v", st)
	}

	// Info document over the protocol, through a user's API.
	var info relayinfo.Info
	if err := users[0].Client.Do(t.Context(), "GET", "/api/v1/relay/info?addr="+r.Addr(), nil, &info); err != nil {
		t.Fatal(err)
	}
	if info.PeerID != r.Host.ID().String() || info.Operator != "Ops" || info.Limits.MailboxTTLSeconds != 7*24*3600 {
		t.Fatalf("info %+v", info)
	}
	if err := users[0].Client.Do(t.Context(), "GET", "/api/v1/relay/info", nil, &info); err == nil {
		t.Fatal("a desktop node served a relay info document of its own")
	}

	page := get(t, r, "/relay")
	for _, want := range []string{"Test relay", "Reservations", "2 of 7", "Rooms kept"} {
		if !strings.Contains(page, want) {
			t.Fatalf("status page lacks %q:\n%s", want, page)
		}
	}
	metrics := get(t, r, "/metrics")
	for _, want := range []string{"madang_relay_reservations 2", "madang_relay_mailboxes 0", `madang_relay_refusals_total{reason="no_capability"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
	if err := r.API.CheckSpec(); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, n *testnet.Node, path string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", "http://"+n.APIAddr()+path, nil)
	req.Header.Set("Authorization", "Bearer "+n.APIToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}

// Items deposited for an offline user survive a relay restart and reach the user, once, when it comes back,
// with operation.progress events; the relay deletes them after the ack.
func TestRelayRestartBetweenDepositAndFetch(t *testing.T) {
	r := startRelay(t, nil)
	users := startUsers(t, 2, r, nil)
	a, b := users[0], users[1]
	card, err := mailboxOf(t, b).MailboxCard(t.Context(), a.Identity.AccountKey())
	if err != nil {
		t.Fatal(err)
	}
	b.Stop()
	const n = 25
	for i := range n {
		if _, err := mailboxOf(t, a).Deposit(t.Context(), card, fmt.Sprintf("m%02d", i), []byte(fmt.Sprintf("payload %02d", i))); err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
	}
	r.Restart()
	if st := relayStatus(t, r); st.Relay.Items != n || st.Relay.Mailboxes != 1 {
		t.Fatalf("after restart the relay holds %+v", st.Relay)
	}
	b.Restart()
	var s sink
	b.Provide("mailbox.sink", s.fn)
	events := b.Events.Subscribe(0, []string{"operation.progress"})
	defer events.Close()
	var res mailbox.DrainResult
	testnet.Eventually(t, 30*time.Second, func() bool {
		return b.Client.Do(t.Context(), "POST", "/api/v1/inbox/drain", nil, &res) == nil && len(s.all()) == n
	}, "b drained %d items", n)
	got := s.all()
	for i, p := range got {
		if p != fmt.Sprintf("payload %02d", i) {
			t.Fatalf("item %d is %q", i, p)
		}
	}
	if st := relayStatus(t, r); st.Relay.Items != 0 || st.Relay.Delivered != n {
		t.Fatalf("relay after drain %+v", st.Relay)
	}
	var last struct {
		Done, Total int
		Unit        string
	}
	for ev := range events.C() {
		if err := jsonUnmarshal(ev.Data, &last); err != nil {
			t.Fatal(err)
		}
		if last.Done == last.Total {
			break
		}
	}
	if last.Total != n || last.Unit != "items" {
		t.Fatalf("last progress %+v", last)
	}
}

// A user with no listen address at all is reachable only through its relay reservation, and still takes
// live streams (with the limited-connection flag the DM layer sets).
func TestReachableOnlyThroughRelay(t *testing.T) {
	r := startRelay(t, nil)
	hidden := startUsers(t, 1, r, func(_ int, c *config.Config) { c.Listen = nil })[0]
	caller := startUsers(t, 1, r, nil)[0]
	for _, a := range hidden.Host.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err != nil {
			t.Fatalf("hidden node listens on %s", a)
		}
	}
	testnet.Eventually(t, 30*time.Second, func() bool {
		st := relayStatus(t, hidden)
		return len(st.Inbox.Relays) == 1 && st.Inbox.Relays[0].ReservationExpires != nil
	}, "hidden node holds a reservation")
	const proto = "/madang/test-echo/1.0.0"
	hidden.Host.SetStreamHandler(proto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, io.LimitReader(s, 64))
	})
	circuit := ma.StringCast(r.Addr() + "/p2p-circuit/p2p/" + hidden.Host.ID().String())
	ai, err := peer.AddrInfoFromP2pAddr(circuit)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := caller.Host.Connect(ctx, *ai); err != nil {
		t.Fatal(err)
	}
	s, err := caller.Host.NewStream(network.WithAllowLimitedConn(ctx, "test"), hidden.Host.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("live through the relay")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	got, _ := io.ReadAll(s)
	if !bytes.Equal(got, []byte("live through the relay")) {
		t.Fatalf("echo %q", got)
	}
	testnet.Eventually(t, 30*time.Second, func() bool { return relayStatus(t, r).Relay.Circuits >= 1 }, "relay counts the circuit")
}

func jsonUnmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// Every user publishes a signed record of its inbox relays in the DHT; others find it by account key.
func TestInboxRecordInDHT(t *testing.T) {
	r := startRelay(t, nil)
	users := startUsers(t, 2, r, nil)
	a, b := users[0], users[1]
	testnet.Eventually(t, 30*time.Second, func() bool { return relayStatus(t, b).Inbox.RecordPublished != nil },
		"B publishes its inbox record")
	v, _ := a.Lookup("mailbox")
	rec, err := v.(*mailbox.Client).LookupInboxRecord(t.Context(), b.Identity.AccountKey())
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Relays) != 1 || rec.Relays[0] != r.Addr() || !rec.Account.Equal(b.Identity.AccountKey()) {
		t.Fatalf("record %+v", rec)
	}
	// A forged record for B under B's key is refused by the DHT's validator.
	forged, err := mailbox.NewInboxRecord(a.Identity, rec.Seq+1, []string{r.Addr()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := a.DHT.PutValue(ctx, mailbox.InboxKey(b.Identity.AccountKey()), forged); err == nil {
		t.Fatal("the DHT took a record signed by another account")
	}
}
