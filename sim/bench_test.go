package sim

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/directory"
	dirpb "github.com/madang-p2p/madang/protocols/directory/pb"
	"github.com/madang-p2p/madang/protocols/feed"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
	"github.com/madang-p2p/madang/testnet"
)

// Hot-path benchmarks across packages (the packages' own benchmarks cover the rest: store.BenchmarkPut for
// writes with and without sync, store.BenchmarkLast50, ratchet and dm BenchmarkEncryptDecrypt,
// feed.BenchmarkSync10k, mailbox deposits and drains).

func roomMessage(tb testing.TB, text int) *room.Message {
	tb.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var id room.ID
	_, _ = rand.Read(id[:])
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	m, err := room.SignMessage(priv, &pb.MessageBody{
		Version: 1, Room: id[:], Persona: priv.Public().(ed25519.PublicKey), TimeMs: time.Now().UnixMilli(),
		Nonce: nonce, Kind: pb.Kind_TEXT, Text: strings.Repeat("가", text/3), Nick: "bench", Seq: 1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// BenchmarkRoomEnvelope: signing a ~1 KiB room message, and decoding + verifying it (what the topic
// validator does once per message per node: parse, cheap checks, one ed25519 verify).
func BenchmarkRoomEnvelope(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var id room.ID
	body := &pb.MessageBody{Version: 1, Room: id[:], Persona: priv.Public().(ed25519.PublicKey), Nonce: make([]byte, 12),
		Kind: pb.Kind_TEXT, Text: strings.Repeat("x", 1024), Nick: "bench", Seq: 1}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			body.TimeMs = time.Now().UnixMilli()
			if _, err := room.SignMessage(priv, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw := roomMessage(b, 1024).Raw
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			if _, _, err := room.DecodeItem(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFeedEnvelope: signing and verifying a channel post.
func BenchmarkFeedEnvelope(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	d := feed.Draft{Kind: "post", Title: "오늘의 특가", Body: strings.Repeat("fresh mackerel, napa cabbage, tofu. ", 8)}
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			if _, err := feed.SignEntry(priv, 1, nil, time.Now(), d); err != nil {
				b.Fatal(err)
			}
		}
	})
	e, err := feed.SignEntry(priv, 1, nil, time.Now(), d)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := feed.VerifyEntry(e.Raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// oneNode starts one full Madang node on a mocknet and returns it.
func oneNode(b *testing.B) *ours {
	b.Helper()
	var c Config
	c.fill(Config{})
	o, err := startOurs(b.Context(), c, 1, Topology{N: 1}, netOpts{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = o.close() })
	return o
}

// roomCard creates an open room on a node and returns its signed directory card.
func roomCard(b *testing.B, o *ours) []byte {
	b.Helper()
	svc, err := roomService(o.nodes[0])
	if err != nil {
		b.Fatal(err)
	}
	if _, err := svc.Create(b.Context(), room.CreateOptions{Name: "벤치마크 room", Tags: []string{"bench"}, Description: strings.Repeat("d", 200)}); err != nil {
		b.Fatal(err)
	}
	v, _ := o.nodes[0].Lookup("directory")
	dir := v.(*directory.Service)
	var raw []byte
	poll(b.Context(), 30*time.Second, func() bool {
		for _, k := range dir.Keys() {
			for _, c := range dir.Held(k) {
				if c.Kind == room.CardKind {
					raw = c.Raw
					return true
				}
			}
		}
		return false
	})
	if raw == nil {
		b.Fatal("no room card held after 30s")
	}
	return raw
}

// BenchmarkValidators: each signature-checking validator on its hot path: the room topic validator's
// decode+verify, a channel entry, a channel head record (DHT validator), the directory verifiers of room
// and channel cards, a device certificate.
func BenchmarkValidators(b *testing.B) {
	o := oneNode(b)
	_, cpriv, _ := ed25519.GenerateKey(rand.Reader)
	e, _ := feed.SignEntry(cpriv, 1, nil, time.Now(), feed.Draft{Kind: "post", Title: "t", Body: "b"})
	h, err := feed.SignHead(cpriv, 1, e.ID[:], time.Now(), 1)
	if err != nil {
		b.Fatal(err)
	}
	prof, err := feed.SignProfile(cpriv, 1, time.Now(), feed.ProfileFields{Name: "shop", Category: "mart", Geohash: "wydm9qy"})
	if err != nil {
		b.Fatal(err)
	}
	fcard, err := feed.MakeCard(prof.Raw, h.Raw)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := identity.New("bench")
	headKey := feed.HeadKey(feed.IDFromKey(cpriv.Public().(ed25519.PublicKey)))
	cases := []struct {
		name string
		fn   func() error
	}{
		{"room-message", func() error { _, _, err := room.DecodeItem(roomMessage(b, 1024).Raw); return err }},
		{"feed-entry", func() error { _, err := feed.VerifyEntry(e.Raw); return err }},
		{"feed-head-record", func() error { return feed.HeadValidator{}.Validate(headKey, h.Raw) }},
		{"room-card", func() error { _, _, err := room.VerifyCard(roomCard(b, o)); return err }},
		{"feed-card", func() error { _, _, err := feed.VerifyCard(fcard.Raw); return err }},
		{"device-cert", func() error { _, err := identity.VerifyCert(id.CertBytes()); return err }},
	}
	for _, c := range cases {
		// Prepare once (the closures above build their input on first use).
		if err := c.fn(); err != nil {
			b.Fatalf("%s: %v", c.name, err)
		}
	}
	msg := roomMessage(b, 1024).Raw
	rc := roomCard(b, o)
	cases[0].fn = func() error { _, _, err := room.DecodeItem(msg); return err }
	cases[3].fn = func() error { _, _, err := room.VerifyCard(rc); return err }
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if err := c.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDirectoryCards: a directory response of 50 room cards: encoding it, and decoding + verifying
// it as a lookup does.
func BenchmarkDirectoryCards(b *testing.B) {
	o := oneNode(b)
	rc := roomCard(b, o)
	resp := &dirpb.Response{}
	for range 50 {
		resp.Cards = append(resp.Cards, &dirpb.Card{Kind: room.CardKind, Raw: rc})
	}
	v, _ := o.nodes[0].Lookup("directory")
	dir := v.(*directory.Service)
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := proto.Marshal(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	raw, _ := proto.Marshal(resp)
	b.Run("decode+verify", func(b *testing.B) {
		b.SetBytes(int64(len(raw)))
		for b.Loop() {
			cards, err := dir.DecodeResponse(raw, "room/tag/bench")
			if err != nil || len(cards) != 50 {
				b.Fatalf("%d cards, %v", len(cards), err)
			}
		}
	})
}

// benchN is the number of stored messages for the "last 50" benchmarks: 1,000,000 with MADANG_LONG=1 (or
// MADANG_BENCH_N), else 100,000.
func benchN() int {
	if v, err := strconv.Atoi(os.Getenv("MADANG_BENCH_N")); err == nil && v > 0 {
		return v
	}
	if testnet.Long() {
		return 1_000_000
	}
	return 100_000
}

// BenchmarkStoreLast50: the newest 50 of benchN() room messages (300 bytes each) stored under the room
// service's key layout (m/<room>/<time>/<id>) in an on-disk store, read with a reverse scan. Goal < 1 ms.
func BenchmarkStoreLast50(b *testing.B) {
	n := benchN()
	s, err := store.Open(b.TempDir(), store.Options{CacheMiB: 32})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ns := s.Namespace("rooms")
	var id room.ID
	_, _ = rand.Read(id[:])
	prefix := "m/" + id.String() + "/"
	val := make([]byte, 300)
	batch := s.NewBatch()
	t0 := time.Now().Add(-time.Duration(n) * time.Millisecond).UnixMilli()
	for i := range n {
		var mid room.MsgID
		_, _ = rand.Read(mid[:])
		_ = batch.Put(ns, prefix+store.Uint64Key(uint64(t0+int64(i)))+"/"+mid.String(), val)
		if batch.Len() == 10_000 {
			if err := batch.Commit(false); err != nil {
				b.Fatal(err)
			}
			batch = s.NewBatch()
		}
	}
	if err := batch.Commit(false); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n), "msgs")
	for b.Loop() {
		c := 0
		for _, err := range ns.Scan(b.Context(), store.Range{Prefix: prefix, Reverse: true, Limit: 50}) {
			if err != nil {
				b.Fatal(err)
			}
			c++
		}
		if c != 50 {
			b.Fatal(c)
		}
	}
}

// BenchmarkRoomMessagesLast50: the room service's own "last 50 messages" (room.Service.Messages, what the
// API serves) on a room holding 5,000 messages (the default history limit: a room keeps no more) sent
// through the service (each signed and stored as a member sends it). Messages parses the 50 stored items
// without verifying them again (they were verified once, when they arrived).
func BenchmarkRoomMessagesLast50(b *testing.B) {
	n := 5000
	o := oneNode(b)
	svc, err := roomService(o.nodes[0])
	if err != nil {
		b.Fatal(err)
	}
	info, err := svc.Create(b.Context(), room.CreateOptions{Name: "bench", Tags: []string{"bench"}})
	if err != nil {
		b.Fatal(err)
	}
	id, _ := room.ParseID(info.RoomID)
	text := strings.Repeat("x", 200)
	for i := range n {
		if _, _, err := svc.Send(b.Context(), id, fmt.Sprintf("%d %s", i, text), ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n), "msgs")
	for b.Loop() {
		vs, err := svc.Messages(b.Context(), id, 50, "")
		if err != nil || len(vs) != 50 {
			b.Fatalf("%d messages, %v", len(vs), err)
		}
	}
}

// BenchmarkLoopbackRTT: one libp2p round trip (the ping protocol: 32 bytes each way) between two real
// hosts on 127.0.0.1 over TCP with Noise and Yamux, the yardstick for "encrypt+decrypt well under one
// network round trip" (compare ratchet.BenchmarkEncryptDecrypt and dm.BenchmarkEncryptDecrypt).
func BenchmarkLoopbackRTT(b *testing.B) {
	mk := func() host.Host {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.Transport(tcp.NewTCPTransport))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = h.Close() })
		return h
	}
	a, c := mk(), mk()
	if err := a.Connect(b.Context(), peer.AddrInfo{ID: c.ID(), Addrs: c.Addrs()}); err != nil {
		b.Fatal(err)
	}
	ps := ping.NewPingService(a)
	_ = ping.NewPingService(c)
	ch := ps.Ping(b.Context(), c.ID())
	<-ch // warm up: stream negotiated
	for b.Loop() {
		if r := <-ch; r.Error != nil {
			b.Fatal(r.Error)
		}
	}
}
