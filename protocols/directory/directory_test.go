package directory

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/madang-p2p/madang/protocols/directory/pb"
	"github.com/madang-p2p/madang/store"
)

// testCard is a minimal signed card kind: 32-byte key || 8-byte update time (ms) || name || 64-byte sig.
func testCard(priv ed25519.PrivateKey, name string, upd time.Time) []byte {
	b := make([]byte, 0, 32+8+len(name)+64)
	b = append(b, priv.Public().(ed25519.PublicKey)...)
	b = binary.BigEndian.AppendUint64(b, uint64(upd.UnixMilli()))
	b = append(b, name...)
	return append(b, ed25519.Sign(priv, b)...)
}

func verifyTestCard(raw []byte) (string, time.Time, error) {
	if len(raw) < 32+8+64 {
		return "", time.Time{}, errors.New("short")
	}
	body, sig := raw[:len(raw)-64], raw[len(raw)-64:]
	if !ed25519.Verify(body[:32], body, sig) {
		return "", time.Time{}, errors.New("bad signature")
	}
	return fmt.Sprintf("%x", body[:32]), time.UnixMilli(int64(binary.BigEndian.Uint64(body[32:40]))), nil
}

func newKey(t testing.TB) ed25519.PrivateKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

func memNS(t testing.TB) *store.NS {
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st.Namespace("directory")
}

// mockDirs starts n hosts on a mocknet, each with a DHT server and a directory, connected in a line so
// that lookups have to route.
func mockDirs(t *testing.T, n int) []*Service {
	t.Helper()
	mn, err := mocknet.FullMeshLinked(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mn.Close() })
	var out []*Service
	var kads []*dht.IpfsDHT
	for _, h := range mn.Hosts() {
		kad, err := dht.New(h, dht.ProtocolPrefix("/madangtest"), dht.Mode(dht.ModeServer))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kad.Close() })
		kads = append(kads, kad)
		s := New(t.Context(), h, kad, memNS(t), nil, Options{RetryMin: 50 * time.Millisecond})
		s.RegisterKind("test", verifyTestCard)
		out = append(out, s)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { _ = s.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	hs := mn.Hosts()
	for i := 1; i < n; i++ {
		if _, err := mn.ConnectPeers(hs[i-1].ID(), hs[i].ID()); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range kads {
		waitFor(t, 5*time.Second, func() bool { return k.RoutingTable().Size() > 0 }, "routing table")
	}
	return out
}

func waitFor(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAnnounceLookupAcrossDHT(t *testing.T) {
	dirs := mockDirs(t, 6)
	alice, bob := newKey(t), newKey(t)
	now := time.Now()

	if err := dirs[0].Announce("room/tag/go", "test", testCard(alice, "old", now.Add(-time.Minute))); err != nil {
		t.Fatal(err)
	}
	// A newer card with the same id, announced elsewhere (a relay holding the owner's card), wins.
	if err := dirs[3].Announce("room/tag/go", "test", testCard(alice, "new", now)); err != nil {
		t.Fatal(err)
	}
	if err := dirs[3].Announce("room/tag/go", "test", testCard(bob, "bob", now.Add(-time.Hour))); err != nil {
		t.Fatal(err)
	}
	// A card under another key must not show up.
	if err := dirs[2].Announce("room/tag/rust", "test", testCard(bob, "rust", now)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		return dirs[0].Provided("room/tag/go") && dirs[3].Provided("room/tag/go") && dirs[2].Provided("room/tag/rust")
	}, "keys provided")

	start := time.Now()
	cards, err := dirs[5].Lookup(t.Context(), "room/tag/go", 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lookup took %v", time.Since(start))
	if len(cards) != 2 {
		t.Fatalf("got %d cards, want 2: %+v", len(cards), cards)
	}
	if cards[0].ID != fmt.Sprintf("%x", alice.Public()) || string(cards[0].Raw[40:len(cards[0].Raw)-64]) != "new" {
		t.Fatalf("first card is not alice's newest: %q", cards[0].Raw[40:len(cards[0].Raw)-64])
	}
	if cards[1].ID != fmt.Sprintf("%x", bob.Public()) {
		t.Fatalf("second card is not bob's")
	}
	if cards, _ := dirs[5].Lookup(t.Context(), "room/tag/go", 1); len(cards) != 1 {
		t.Fatalf("limit 1 gave %d cards", len(cards))
	}

	// Withdrawn cards are no longer served.
	if err := dirs[3].Withdraw("room/tag/go", "test", fmt.Sprintf("%x", bob.Public())); err != nil {
		t.Fatal(err)
	}
	cards, err = dirs[4].Lookup(t.Context(), "room/tag/go", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cards) != 1 {
		t.Fatalf("after withdraw: %d cards, want 1", len(cards))
	}
}

func TestAnnounceRejectsInvalid(t *testing.T) {
	s := New(t.Context(), mocknetHost(t), &fakeRouting{}, memNS(t), nil)
	s.RegisterKind("test", verifyTestCard)
	good := testCard(newKey(t), "x", time.Now())
	bad := append([]byte(nil), good...)
	bad[35] ^= 1
	cases := []struct {
		name, key, kind string
		raw             []byte
		want            error
	}{
		{"unknown kind", "k", "nope", good, ErrUnknownKind},
		{"bad signature", "k", "test", bad, ErrBadCard},
		{"empty key", "", "test", good, ErrBadKey},
		{"long key", string(make([]byte, MaxKeyBytes+1)), "test", good, ErrBadKey},
		{"huge card", "k", "test", make([]byte, MaxCardBytes+1), ErrBadCard},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := s.Announce(c.key, c.kind, c.raw); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	if len(s.Keys()) != 0 {
		t.Fatal("an invalid card was held")
	}
}

// A provider that serves forged or foreign-kind cards has them dropped; valid ones still count.
func TestLookupDropsForgedCards(t *testing.T) {
	dirs := mockDirs(t, 3)
	k := newKey(t)
	good := testCard(k, "ok", time.Now())
	// Put a forged card straight into the provider's store, bypassing Announce.
	forged := testCard(newKey(t), "forged", time.Now())
	forged[len(forged)-1] ^= 1
	for _, raw := range [][]byte{good, forged} {
		h := &pb.Held{Key: "k", Id: fmt.Sprintf("%x", raw[:8]), Card: &pb.Card{Kind: "test", Raw: raw}}
		dirs[0].mu.Lock()
		if dirs[0].held["k"] == nil {
			dirs[0].held["k"] = map[string]*pb.Held{}
			dirs[0].rep.Add("k", KeyCID("k"))
		}
		dirs[0].held["k"][h.Id] = h
		dirs[0].mu.Unlock()
	}
	waitFor(t, 10*time.Second, func() bool { return dirs[0].Provided("k") }, "provided")
	cards, err := dirs[2].Lookup(t.Context(), "k", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cards) != 1 || cards[0].ID != fmt.Sprintf("%x", k.Public()) {
		t.Fatalf("got %d cards, want only the valid one", len(cards))
	}
}

func TestHeldSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := mocknetHost(t)
	s := New(t.Context(), h, &fakeRouting{}, st.Namespace("directory"), nil)
	s.RegisterKind("test", verifyTestCard)
	if err := s.Announce("a", "test", testCard(newKey(t), "x", time.Now())); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st2, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	h.RemoveStreamHandler(ProtocolID)
	s2 := New(t.Context(), h, &fakeRouting{}, st2.Namespace("directory"), nil)
	if got := s2.Keys(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("keys after restart: %v", got)
	}
	if s2.Provided("a") {
		t.Fatal("a reloaded key must be provided again")
	}
}

// Republishing happens on the Republish interval; a failed Provide is retried with backoff.
func TestRepublishAndRetry(t *testing.T) {
	fr := &fakeRouting{failFirst: 2}
	s := New(t.Context(), mocknetHost(t), fr, memNS(t), nil, Options{Republish: 150 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 40 * time.Millisecond})
	s.RegisterKind("test", verifyTestCard)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if err := s.Announce("a", "test", testCard(newKey(t), "x", time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return fr.count() >= 2+4 }, "two failures then four provides")
	if !s.Provided("a") && fr.count() < 6 {
		t.Fatal("not provided")
	}
	// After withdrawing, nothing more is provided.
	if err := s.Withdraw("a", "test", s.Held("a")[0].ID); err != nil {
		t.Fatal(err)
	}
	n := fr.count()
	deadline := time.Now().Add(400 * time.Millisecond)
	for time.Now().Before(deadline) {
		if fr.count() > n+1 { // one in flight may finish
			t.Fatalf("provides continued after withdraw: %d → %d", n, fr.count())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type fakeRouting struct {
	mu        sync.Mutex
	n         int
	failFirst int
}

func (f *fakeRouting) Provide(ctx context.Context, c cid.Cid, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.n <= f.failFirst {
		return errors.New("no peers")
	}
	return nil
}

func (f *fakeRouting) FindProvidersAsync(ctx context.Context, c cid.Cid, _ int) <-chan peer.AddrInfo {
	ch := make(chan peer.AddrInfo)
	close(ch)
	return ch
}

func (f *fakeRouting) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func mocknetHost(t testing.TB) host.Host {
	t.Helper()
	mn, err := mocknet.FullMeshLinked(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mn.Close() })
	return mn.Hosts()[0]
}

// TestLookupNotHeldBySilentProvider: a hostile peer that provides the key and then never answers must not
// hold the lookup for the whole stream deadline once an honest provider has answered.
func TestLookupNotHeldBySilentProvider(t *testing.T) {
	dirs := mockDirs(t, 4)
	k := newKey(t)
	if err := dirs[0].Announce("k", "test", testCard(k, "ok", time.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return dirs[0].Provided("k") }, "provided")

	// dirs[1] turns silent: it still provides the key, but its directory handler reads the request and
	// then never answers.
	silent := dirs[1]
	asked := make(chan struct{}, 4)
	silent.h.SetStreamHandler(ProtocolID, func(st network.Stream) {
		var req pb.Request
		if err := pbio.NewDelimitedReader(st, maxRequestBytes).ReadMsg(&req); err != nil {
			_ = st.Reset()
			return
		}
		asked <- struct{}{}
		select { // silent until the test ends (bounded, so that a lookup that waits for it still ends)
		case <-t.Context().Done():
		case <-time.After(2 * StreamTimeout):
		}
		_ = st.Reset()
	})
	silent.rep.Add("k", KeyCID("k"))
	waitFor(t, 10*time.Second, func() bool { return silent.Provided("k") }, "silent peer provided")

	asker := dirs[3]
	asker.grace = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(t.Context(), StreamTimeout+5*time.Second)
	defer cancel()
	start := time.Now()
	cards, err := asker.Lookup(ctx, "k", 10)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(cards) != 1 || cards[0].ID != fmt.Sprintf("%x", k.Public()) {
		t.Fatalf("got %d cards, want the honest one", len(cards))
	}
	// The bound is the behaviour under test (grace, not the stream deadline), with a wide margin.
	if took >= StreamTimeout {
		t.Fatalf("lookup took %v: held by the silent provider for the whole stream deadline", took)
	}
	select {
	case <-asked:
	default:
		t.Fatal("the lookup never asked the silent provider: the test proves nothing")
	}
}
