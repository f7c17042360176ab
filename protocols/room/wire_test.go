package room

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/room/pb"
	syncpb "github.com/madang-p2p/madang/protocols/roomsync/pb"
)

func key(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func testManifest(t testing.TB, owner ed25519.PrivateKey, mods ...[]byte) *Manifest {
	t.Helper()
	m, err := SignManifest(owner, &pb.ManifestBody{
		Version: 1, Owner: pub(owner), Nonce: bytes.Repeat([]byte{7}, 16), Seq: 1, Name: "Seoul Gophers",
		Tags: []string{"golang", "서울"}, Capacity: 1500, Moderators: mods, CreatedMs: 1, UpdatedMs: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testMessage(t testing.TB, room ID, persona ed25519.PrivateKey, seq uint64, text string) *Message {
	t.Helper()
	m, err := SignMessage(persona, &pb.MessageBody{
		Version: 1, Room: room[:], Persona: pub(persona), TimeMs: 1700000000000 + int64(seq), Nonce: []byte("12345678"),
		Text: text, Nick: "n", Seq: seq,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testMod(t testing.TB, room ID, signer ed25519.PrivateKey, seq uint64, authority []byte, action any) *ModAction {
	t.Helper()
	b := &pb.ModBody{Version: 1, Room: room[:], Signer: pub(signer), Seq: seq, TimeMs: 1700000000000 + int64(seq), Authority: authority}
	switch a := action.(type) {
	case *pb.Ban:
		b.Action = &pb.ModBody_Ban{Ban: a}
	case *pb.Unban:
		b.Action = &pb.ModBody_Unban{Unban: a}
	case *pb.AddModerator:
		b.Action = &pb.ModBody_AddModerator{AddModerator: a}
	case *pb.RemoveModerator:
		b.Action = &pb.ModBody_RemoveModerator{RemoveModerator: a}
	case *pb.Hide:
		b.Action = &pb.ModBody_Hide{Hide: a}
	case *pb.Close:
		b.Action = &pb.ModBody_Close{Close: a}
	case *pb.Slow:
		b.Action = &pb.ModBody_Slow{Slow: a}
	}
	m, err := SignModAction(signer, b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoomIDAndPersonaDerivation(t *testing.T) {
	m := testManifest(t, key(1))
	if m.ID != DeriveID(pub(key(1)), m.Body.Nonce) {
		t.Fatal("manifest ID is not derived from owner and nonce")
	}
	back, err := ParseID(m.ID.String())
	if err != nil || back != m.ID {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "r", "x" + m.ID.String()[1:], m.ID.String() + "a", "r!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrBadID) {
			t.Errorf("ParseID(%q) = %v", bad, err)
		}
	}
}

func TestNormalizeTag(t *testing.T) {
	cases := map[string]string{
		"#Golang":     "golang",
		"  Go Lang  ": "go-lang",
		"서울":          "서울",
		"ＧＯ":          "go", // full-width, NFKC
		"c++":         "c",
		"a.b_c--d":    "a-b-c-d",
		"#맛집 #서울":     "맛집-서울",
		"---":         "",
		"🍜":           "",
		"αβγ_ΔΕ":      "αβγ-δε",
		"x23456789012345678901234567890123456789": "x2345678901234567890123456789012",
	}
	for in, want := range cases {
		got, ok := NormalizeTag(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeTag(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, err := NormalizeTags([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}); err == nil {
		t.Error("11 tags accepted")
	}
	if got, _ := NormalizeTags([]string{"#Go", "go", "GO"}); len(got) != 1 {
		t.Errorf("duplicates kept: %v", got)
	}
}

func TestLinkRoundTrip(t *testing.T) {
	id := testManifest(t, key(1)).ID
	ai, _ := peer.AddrInfoFromString("/ip4/127.0.0.1/tcp/4040/p2p/12D3KooWKieiiZkTWpyyLNdkon5MLsZv9AQ29NG7jizCh3dbvnnf")
	l := Link{Room: id, Secret: bytes.Repeat([]byte{9}, 16), Peers: []peer.AddrInfo{*ai}}
	back, err := ParseLink(l.String())
	if err != nil || back.Room != id || !bytes.Equal(back.Secret, l.Secret) || len(back.Peers) != 1 || back.Peers[0].ID != ai.ID {
		t.Fatalf("round trip %s: %+v %v", l, back, err)
	}
	if l2, err := ParseLink(id.String()); err != nil || l2.Room != id {
		t.Fatalf("bare id: %v", err)
	}
	for _, bad := range []string{LinkScheme + "nope", LinkScheme + id.String() + "?s=short", LinkScheme + id.String() + "?p=/ip4/1.2.3.4"} {
		if _, err := ParseLink(bad); err == nil {
			t.Errorf("ParseLink(%q) accepted", bad)
		}
	}
}

func TestDecodeRejectsTampering(t *testing.T) {
	m := testManifest(t, key(1))
	msg := testMessage(t, m.ID, key(2), 1, "hello")
	for name, raw := range map[string][]byte{"manifest": m.Raw, "message": msg.Raw} {
		for i := range raw {
			bad := bytes.Clone(raw)
			bad[i] ^= 0x01
			var err error
			if name == "manifest" {
				_, err = DecodeManifest(bad)
			} else {
				_, _, err = DecodeItem(bad)
			}
			if err == nil {
				t.Fatalf("%s with byte %d flipped verified", name, i)
			}
		}
	}
	// A message over the size limit or with text over 4 KiB is refused when signing.
	if _, err := SignMessage(key(2), &pb.MessageBody{Version: 1, Room: m.ID[:], Persona: pub(key(2)), TimeMs: 1, Nonce: []byte("12345678"),
		Text: string(bytes.Repeat([]byte("x"), MaxTextBytes+1))}); err == nil {
		t.Fatal("over-long text signed")
	}
	// An item carrying both a message and a moderation body is invalid.
	both, _ := proto.Marshal(&pb.Item{Message: []byte{1}, Moderation: []byte{1}, Sig: make([]byte, 64)})
	if _, _, err := DecodeItem(both); err == nil {
		t.Fatal("item with two bodies decoded")
	}
}

func TestModerationFold(t *testing.T) {
	owner, co, member, other := key(1), key(2), key(3), key(4)
	g := testManifest(t, owner)
	id := g.ID
	var log Log
	add := testMod(t, id, owner, 1, nil, &pb.AddModerator{Persona: pub(co)})
	log.Insert(add)
	log.Insert(testMod(t, id, co, 2, add.Raw, &pb.Ban{Persona: pub(member)}))
	log.Insert(testMod(t, id, member, 3, nil, &pb.Ban{Persona: pub(other)}))          // not a co-host: skipped
	log.Insert(testMod(t, id, co, 4, add.Raw, &pb.AddModerator{Persona: pub(other)})) // owner only: skipped
	log.Insert(testMod(t, id, co, 5, add.Raw, &pb.Ban{Persona: pub(co)}))             // co-hosts cannot ban co-hosts
	log.Insert(testMod(t, id, co, 6, add.Raw, &pb.Slow{Seconds: 30}))
	st := Fold(g, &log)
	if _, ok := st.Banned(pub(member), time.Now()); !ok {
		t.Fatal("co-host's ban not applied")
	}
	if _, ok := st.Banned(pub(other), time.Now()); ok || st.IsModerator(pub(other)) {
		t.Fatal("unauthorised action applied")
	}
	if _, ok := st.Banned(pub(co), time.Now()); ok {
		t.Fatal("co-host banned by a co-host")
	}
	if st.Slow != 30*time.Second || st.Applied != 3 || st.Skipped != 3 {
		t.Fatalf("slow %v applied %d skipped %d", st.Slow, st.Applied, st.Skipped)
	}
	// Removing the co-host makes its later actions void, whatever order they arrived in.
	log.Insert(testMod(t, id, co, 9, add.Raw, &pb.Unban{Persona: pub(member)}))
	log.Insert(testMod(t, id, owner, 7, nil, &pb.RemoveModerator{Persona: pub(co)}))
	st = Fold(g, &log)
	if _, ok := st.Banned(pub(member), time.Now()); !ok || st.IsModerator(pub(co)) {
		t.Fatal("removed co-host's unban applied")
	}
	// The same entries inserted in another order fold to the same state.
	var rev Log
	es := log.Entries()
	for i := len(es) - 1; i >= 0; i-- {
		rev.Insert(es[i])
	}
	if st2 := Fold(g, &rev); st2.Applied != st.Applied || len(st2.Bans) != len(st.Bans) || st2.Slow != st.Slow {
		t.Fatal("fold depends on arrival order")
	}
	// Close stops co-hosts, not the owner.
	log.Insert(testMod(t, id, owner, 10, nil, &pb.Close{}))
	if st = Fold(g, &log); !st.Closed {
		t.Fatal("not closed")
	}
	// Authority: an AddModerator signed by someone else than the owner is no authority.
	fake := testMod(t, id, other, 1, nil, &pb.AddModerator{Persona: pub(member)})
	if _, ok := authorityFor(g, testMod(t, id, member, 2, fake.Raw, &pb.Ban{Persona: pub(other)}).Body); ok {
		t.Fatal("forged authority accepted")
	}
	if a, ok := authorityFor(g, testMod(t, id, co, 2, add.Raw, &pb.Ban{Persona: pub(other)}).Body); !ok || a == nil {
		t.Fatal("valid authority refused")
	}
}

func TestLimiter(t *testing.T) {
	l := newLimiter(30, 10)
	p := pk(pub(key(1)))
	now := time.Unix(1000, 0)
	for i := range 10 {
		if l.allow(p, now, 0) != allowed {
			t.Fatalf("burst message %d refused", i)
		}
	}
	if l.allow(p, now, 0) != rateLimited {
		t.Fatal("11th message at once allowed")
	}
	if l.allow(p, now.Add(2*time.Second), 0) != allowed {
		t.Fatal("a token did not come back after 2 s at 30/min")
	}
	q := pk(pub(key(2)))
	if l.allow(q, now, 10*time.Second) != allowed || l.allow(q, now.Add(5*time.Second), 10*time.Second) != slowMode ||
		l.allow(q, now.Add(11*time.Second), 10*time.Second) != allowed {
		t.Fatal("slow mode")
	}
}

// fakeHistory is the room as the orderer sees it.
type fakeHistory struct {
	last     map[pkey]uint64
	acc      map[pkey][]uint64
	catching bool
}

func newFakeHistory() *fakeHistory {
	return &fakeHistory{last: map[pkey]uint64{}, acc: map[pkey][]uint64{}}
}

func (f *fakeHistory) lastSeq(k pkey) uint64 { return f.last[k] }
func (f *fakeHistory) catchingUp() bool      { return f.catching }
func (f *fakeHistory) accounted(k pkey) []uint64 {
	s := f.acc[k]
	delete(f.acc, k)
	return s
}

// authorMessages returns one author's messages with seqs 1..n, and the author.
func authorMessages(t *testing.T, n int) ([]*Message, pkey) {
	id := testManifest(t, key(1)).ID
	ms := make([]*Message, n)
	for i := range ms {
		ms[i] = testMessage(t, id, key(2), uint64(i+1), "x")
	}
	return ms, pk(ms[0].Body.Persona)
}

// seqsOf collects the seqs of released messages.
func seqsOf(got *[]uint64) func([]*Message) {
	return func(out []*Message) {
		for _, m := range out {
			*got = append(*got, m.Body.Seq)
		}
	}
}

func TestOrderer(t *testing.T) {
	ms, author := authorMessages(t, 8)
	o := newOrderer()
	h := newFakeHistory()
	now := time.Unix(1000, 0)
	var got []uint64
	take := seqsOf(&got)
	check := func(want ...uint64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	take(o.push(ms[0], now, h)) // 1
	take(o.push(ms[2], now, h)) // 3 waits for 2
	take(o.push(ms[3], now, h)) // 4 waits
	take(o.push(ms[1], now, h)) // 2 releases 2, 3, 4
	take(o.push(ms[5], now, h)) // 6 waits for 5
	h.acc[author] = []uint64{5}
	take(o.push(ms[6], now, h)) // 5 stored by sync: 6, 7 go
	take(o.push(ms[0], now, h)) // late duplicate passes (storage dedupes)
	take(o.expired(now.Add(time.Hour), h))
	check(1, 2, 3, 4, 6, 7, 1)

	// A gap that never fills is skipped after reorderWait.
	o, got = newOrderer(), nil
	take(o.push(ms[0], now, h))
	take(o.push(ms[2], now, h))
	take(o.expired(now.Add(reorderWait/2), h))
	check(1)
	take(o.expired(now.Add(reorderWait), h))
	check(1, 3)
	if o.gaps != 1 {
		t.Fatalf("%d gaps noted, want 1", o.gaps)
	}

	// Not catching up, the first message heard from a persona starts its queue.
	o, got = newOrderer(), nil
	take(o.push(ms[3], now, h))
	take(o.push(ms[4], now, h))
	check(4, 5)
}

// While a catch-up runs, the first message heard from a persona nothing is stored from waits for the
// persona's earlier messages the catch-up may bring (a member that just joined must not see an author's
// third message before the first two).
func TestOrdererWaitsForCatchUp(t *testing.T) {
	ms, author := authorMessages(t, 8)
	now := time.Unix(1000, 0)
	var got []uint64
	take := seqsOf(&got)
	check := func(o *orderer, want ...uint64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		if o.gaps != 0 {
			t.Fatalf("%d gaps noted while catching up, want 0", o.gaps)
		}
	}

	// The catch-up stores 1 and 2: the held 4 and 5 follow the live 3.
	o, h := newOrderer(), newFakeHistory()
	h.catching = true
	take(o.push(ms[3], now, h))
	take(o.push(ms[4], now, h))
	take(o.expired(now.Add(reorderTick), h))
	check(o)
	h.last[author], h.acc[author] = 2, []uint64{1, 2}
	take(o.push(ms[2], now, h))
	check(o, 3, 4, 5)
	take(o.push(ms[5], now, h))
	check(o, 3, 4, 5, 6)

	// The catch-up stores up to 5 while 4 and 6 wait: 4 is late (storage dedupes), 6 follows.
	o, h, got = newOrderer(), newFakeHistory(), nil
	h.catching = true
	take(o.push(ms[3], now, h))
	take(o.push(ms[5], now, h))
	h.last[author], h.acc[author] = 5, []uint64{1, 2, 3, 5}
	take(o.expired(now.Add(reorderTick), h))
	check(o, 4, 6)

	// The catch-ups end with nothing from the persona: its earlier messages are older history, not a gap.
	o, h, got = newOrderer(), newFakeHistory(), nil
	h.catching = true
	take(o.push(ms[3], now, h))
	take(o.push(ms[4], now, h))
	take(o.expired(now.Add(reorderTick), h))
	check(o)
	h.catching = false
	take(o.expired(now.Add(2*reorderTick), h))
	check(o, 4, 5)
	take(o.push(ms[5], now, h))
	check(o, 4, 5, 6)

	// A catch-up that takes longer than reorderWait does not hold the live stream longer.
	o, h, got = newOrderer(), newFakeHistory(), nil
	h.catching = true
	take(o.push(ms[3], now, h))
	take(o.expired(now.Add(reorderWait-time.Millisecond), h))
	check(o)
	take(o.expired(now.Add(reorderWait), h))
	check(o, 4)

	// A persona something is stored from is ordered from its last stored seq, catching up or not.
	o, h, got = newOrderer(), newFakeHistory(), nil
	h.catching = true
	h.last[author] = 2
	take(o.push(ms[2], now, h))
	check(o, 3)
}

func TestVerifyBootstrapChecksRoom(t *testing.T) {
	g := testManifest(t, key(1))
	other := testManifest(t, key(5))
	msg := testMessage(t, g.ID, key(2), 1, "hi")
	foreign := testMessage(t, other.ID, key(2), 1, "elsewhere")
	resp := &syncpb.Response{Genesis: g.Raw, Messages: [][]byte{msg.Raw, foreign.Raw, []byte("junk")}}
	b, err := verifyBootstrap(resp, Link{Room: g.ID}, "")
	if err != nil || len(b.messages) != 1 {
		t.Fatalf("bootstrap: %v, %d messages", err, len(b.messages))
	}
	if _, err := verifyBootstrap(resp, Link{Room: other.ID}, ""); err == nil {
		t.Fatal("genesis of another room accepted")
	}
}
