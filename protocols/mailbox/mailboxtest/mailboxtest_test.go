package mailboxtest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/ipfs/go-datastore/query"

	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/mailbox"
	"github.com/madang-p2p/madang/store"
)

var long = flag.Bool("long", false, "run the long variants (several pages per relay); MADANG_LONG=1 too")

func longRun() bool { return *long || os.Getenv("MADANG_LONG") == "1" }

const canary = "CANARY-91c2-plaintext-must-never-reach-a-relay"

type net struct {
	t  *testing.T
	mn mocknet.Mocknet
	n  int
}

func (tn *net) host(id *identity.Identity) host.Host {
	tn.t.Helper()
	tn.n++
	h, err := tn.mn.AddPeer(id.HostKey(), ma.StringCast(fmt.Sprintf("/ip4/10.1.0.%d/tcp/4040", tn.n)))
	if err != nil {
		tn.t.Fatal(err)
	}
	if err := tn.mn.LinkAll(); err != nil {
		tn.t.Fatal(err)
	}
	return h
}

func (tn *net) store() *store.Store {
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		tn.t.Fatal(err)
	}
	tn.t.Cleanup(func() { _ = st.Close() })
	return st
}

type relay struct {
	addr string
	ms   *mailbox.Store
	st   *store.Store
}

// relay starts a relay; a non-empty mode makes it misbehave.
func (tn *net) relay(mode string) *relay {
	tn.t.Helper()
	id, _ := identity.New("relay")
	h := tn.host(id)
	st := tn.store()
	ms, err := mailbox.OpenStore(tn.t.Context(), st, st.Namespace("mailbox"), mailbox.Limits{}, nil)
	if err != nil {
		tn.t.Fatal(err)
	}
	svc, err := mailbox.NewService(tn.t.Context(), h, ms, mailbox.ServiceOptions{DepositsPerMinute: 1 << 20})
	if err != nil {
		tn.t.Fatal(err)
	}
	if mode != "" {
		if err := Misbehave(h, svc, mode); err != nil {
			tn.t.Fatal(err)
		}
	}
	return &relay{addr: h.Addrs()[0].String() + "/p2p/" + h.ID().String(), ms: ms, st: st}
}

func (tn *net) user(relays ...*relay) (*identity.Identity, *mailbox.Client) {
	tn.t.Helper()
	id, _ := identity.New("user")
	h := tn.host(id)
	st := tn.store()
	var addrs []string
	for _, r := range relays {
		addrs = append(addrs, r.addr)
	}
	c, err := mailbox.NewClient(mailbox.ClientOptions{Host: h, Identity: id, Store: st, NS: st.Namespace("inbox"),
		Relays: func() []string { return addrs }})
	if err != nil {
		tn.t.Fatal(err)
	}
	return id, c
}

type msg struct {
	Seq  int    `json:"seq"`
	Text string `json:"text"`
}

// inbox is what the user is shown: every payload that parses, duplicates and garbage counted.
type inbox struct {
	mu             sync.Mutex
	shown          []int
	dupes, garbage int
}

func (in *inbox) sink(_ context.Context, p []byte) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	var m msg
	if json.Unmarshal(p, &m) != nil || m.Text != canary {
		in.garbage++
		return nil
	}
	for _, s := range in.shown {
		if s == m.Seq {
			in.dupes++
			return nil
		}
	}
	in.shown = append(in.shown, m.Seq)
	return nil
}

func (in *inbox) exactlyOnceInOrder(t *testing.T, n int) {
	t.Helper()
	if in.dupes != 0 || in.garbage != 0 {
		t.Fatalf("%d duplicates and %d forged payloads shown", in.dupes, in.garbage)
	}
	if len(in.shown) != n {
		t.Fatalf("%d messages shown, want %d", len(in.shown), n)
	}
	for i, s := range in.shown {
		if s != i {
			t.Fatalf("message %d is seq %d", i, s)
		}
	}
}

// contains reports whether the relay's stored keys or values contain needle.
func contains(t *testing.T, r *relay, needle []byte) bool {
	t.Helper()
	res, err := r.st.Datastore("mailbox").Query(t.Context(), query.Query{})
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
	return false
}

func run(t *testing.T, n int, mode string, honest bool, drains int) (*inbox, []*relay) {
	tn := &net{t: t, mn: mocknet.New()}
	t.Cleanup(func() { _ = tn.mn.Close() })
	relays := []*relay{tn.relay(mode)}
	if honest {
		relays = append(relays, tn.relay(""))
	}
	_, sender := tn.user()
	_, owner := tn.user(relays...)
	card, err := owner.MailboxCard(t.Context(), mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p, _ := json.Marshal(msg{Seq: i, Text: canary})
		if _, err := sender.Deposit(t.Context(), card, fmt.Sprintf("m%04d", i), p); err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
	}
	var in inbox
	for range drains {
		if _, err := owner.Drain(t.Context(), in.sink, nil); err != nil {
			t.Fatal(err)
		}
	}
	return &in, relays
}

func mustKey(t *testing.T) []byte {
	id, err := identity.New("friend")
	if err != nil {
		t.Fatal(err)
	}
	return id.AccountKey()
}

// With one honest relay of two, every message arrives exactly once and in order, whatever the other relay
// does; the honest relay is emptied by the acks and no relay stores plaintext.
func TestOneHonestRelayOfTwo(t *testing.T) {
	n := 40
	if longRun() {
		n = 600 // several pages per relay
	}
	for _, mode := range Modes {
		t.Run(mode, func(t *testing.T) {
			in, relays := run(t, n, mode, true, 3)
			in.exactlyOnceInOrder(t, n)
			if got := relays[1].ms.Stats(t.Context()).Items; got != 0 {
				t.Fatalf("honest relay still holds %d items", got)
			}
			for _, r := range relays {
				if contains(t, r, []byte(canary)) || contains(t, r, []byte("m0001")) {
					t.Fatal("plaintext or a sender's item ID on a relay")
				}
			}
		})
	}
}

// With only the misbehaving relay, nothing forged or duplicated is ever shown; relays that keep the items
// (duplicate, reorder, replay) still deliver each once and in order.
func TestMisbehavingRelayAlone(t *testing.T) {
	const n = 30
	for _, mode := range Modes {
		t.Run(mode, func(t *testing.T) {
			in, relays := run(t, n, mode, false, 3)
			if mode == "drop" && !contains(t, relays[0], []byte("/i/")) {
				t.Fatal("the dropping relay holds no items: the store scan used for canaries sees nothing")
			}
			switch mode {
			case "duplicate", "replay", "reorder":
				in.exactlyOnceInOrder(t, n)
			default:
				if in.dupes != 0 || in.garbage != 0 || len(in.shown) != 0 {
					t.Fatalf("%s: shown %d, %d duplicates, %d forged", mode, len(in.shown), in.dupes, in.garbage)
				}
			}
		})
	}
}

func TestUnknownMode(t *testing.T) {
	if err := Misbehave(nil, nil, "lie"); err == nil {
		t.Fatal("unknown mode accepted")
	}
}
