package mailbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/routing"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/store"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type testNet struct {
	t     testing.TB
	mn    mocknet.Mocknet
	clock *clock
	n     int
}

func newTestNet(t testing.TB) *testNet {
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	return &testNet{t: t, mn: mn, clock: newClock()}
}

func (tn *testNet) host(id *identity.Identity) host.Host {
	tn.t.Helper()
	tn.n++
	h, err := tn.mn.AddPeer(id.HostKey(), ma.StringCast(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4040", tn.n)))
	if err != nil {
		tn.t.Fatal(err)
	}
	if err := tn.mn.LinkAll(); err != nil {
		tn.t.Fatal(err)
	}
	return h
}

func memStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

type testRelay struct {
	id   *identity.Identity
	h    host.Host
	st   *store.Store
	ms   *Store
	svc  *Service
	addr string
}

func (tn *testNet) relay(lim Limits, perMinute int) *testRelay {
	tn.t.Helper()
	id, err := identity.New("relay")
	if err != nil {
		tn.t.Fatal(err)
	}
	r := &testRelay{id: id, h: tn.host(id), st: memStore(tn.t)}
	r.ms, err = OpenStore(tn.t.Context(), r.st, r.st.Namespace("mailbox"), lim, tn.clock.Now)
	if err != nil {
		tn.t.Fatal(err)
	}
	r.svc, err = NewService(tn.t.Context(), r.h, r.ms, ServiceOptions{DepositsPerMinute: perMinute, Now: tn.clock.Now})
	if err != nil {
		tn.t.Fatal(err)
	}
	r.addr = r.h.Addrs()[0].String() + "/p2p/" + r.h.ID().String()
	return r
}

type testUser struct {
	id *identity.Identity
	h  host.Host
	st *store.Store
	c  *Client
}

func (tn *testNet) user(name string, relays ...*testRelay) *testUser {
	tn.t.Helper()
	id, err := identity.New(name)
	if err != nil {
		tn.t.Fatal(err)
	}
	u := &testUser{id: id, h: tn.host(id), st: memStore(tn.t)}
	var addrs []string
	for _, r := range relays {
		addrs = append(addrs, r.addr)
	}
	u.c, err = NewClient(ClientOptions{Host: u.h, Identity: id, Store: u.st, NS: u.st.Namespace("inbox"),
		Relays: func() []string { return addrs }, Now: tn.clock.Now, Lifetime: tn.t.Context()})
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(u.c.Close)
	return u
}

// cardFor returns the card owner gives friend.
func cardFor(t testing.TB, owner, friend *testUser) []byte {
	t.Helper()
	card, err := owner.c.MailboxCard(t.Context(), friend.id.AccountKey())
	if err != nil {
		t.Fatal(err)
	}
	return card
}

// dm is a realistic payload: what a DM layer would put into an item (its own message ID, a counter, text).
type dm struct {
	ID   string `json:"id"`
	Seq  int    `json:"seq"`
	Text string `json:"text"`
}

func dmPayload(i int, text string) (string, []byte) {
	id := fmt.Sprintf("msg-%04d", i)
	raw, _ := json.Marshal(dm{ID: id, Seq: i, Text: text})
	return id, raw
}

// inbox is a realistic sink: it decodes each payload, refuses nothing it can parse, and records what a user
// would be shown, flagging duplicates and anything that does not parse (a forgery got through).
type inbox struct {
	mu      sync.Mutex
	shown   []dm
	dupes   int
	garbage int
	failAt  int // when > 0, the failAt-th call fails (a full disk), once
	calls   int
}

func (in *inbox) sink(_ context.Context, payload []byte) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.calls++
	if in.failAt > 0 && in.calls == in.failAt {
		in.failAt = 0
		return fmt.Errorf("disk full")
	}
	var m dm
	if err := json.Unmarshal(payload, &m); err != nil {
		in.garbage++
		return nil
	}
	for _, s := range in.shown {
		if s.ID == m.ID {
			in.dupes++
			return nil
		}
	}
	in.shown = append(in.shown, m)
	return nil
}

func (in *inbox) seqs() []int {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make([]int, len(in.shown))
	for i, m := range in.shown {
		out[i] = m.Seq
	}
	return out
}

// checkExactlyOnceInOrder fails unless the inbox shows messages 0..n-1 once each, in order, and nothing else.
func (in *inbox) checkExactlyOnceInOrder(t testing.TB, n int) {
	t.Helper()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dupes != 0 || in.garbage != 0 {
		t.Fatalf("inbox: %d duplicates and %d garbage payloads reached the user", in.dupes, in.garbage)
	}
	if len(in.shown) != n {
		t.Fatalf("inbox shows %d messages, want %d", len(in.shown), n)
	}
	for i, m := range in.shown {
		if m.Seq != i {
			t.Fatalf("message %d is seq %d: out of order", i, m.Seq)
		}
	}
}

// rawContains reports whether any key or value of a namespace contains needle.
func rawContains(t testing.TB, ns *store.NS, needle []byte) bool {
	t.Helper()
	for e, err := range ns.Scan(t.Context(), store.Range{}) {
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(e.Value, needle) || bytes.Contains([]byte(e.Key), needle) {
			return true
		}
	}
	return false
}

type routingOption = routing.Option
