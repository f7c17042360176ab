package feed

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
)

func TestHeadValidator(t *testing.T) {
	k, other := seededKey(1), seededKey(2)
	id := IDFromKey(k.Public().(ed25519.PublicKey))
	key := HeadKey(id)
	var v HeadValidator
	h1, _ := SignHead(k, 1, bytes.Repeat([]byte{1}, 32), t0, 1)
	h5, _ := SignHead(k, 5, bytes.Repeat([]byte{5}, 32), t0.Add(time.Hour), 1)
	h5b, _ := SignHead(k, 5, bytes.Repeat([]byte{5}, 32), t0.Add(time.Hour), 2) // same seq, newer profile
	forgedKey, _ := SignHead(other, 99, bytes.Repeat([]byte{9}, 32), t0, 1)     // another channel's head
	forgedSig := bytes.Clone(h5.Raw)
	forgedSig[len(forgedSig)-1] ^= 1
	for _, c := range []struct {
		name string
		key  string
		val  []byte
		ok   bool
	}{
		{"valid", key, h5.Raw, true},
		{"other channel", key, forgedKey.Raw, false},
		{"bad signature", key, forgedSig, false},
		{"wrong namespace", "/ipns/" + string(id), h5.Raw, false},
		{"bad id", "/chanhead/nope", h5.Raw, false},
		{"garbage", key, []byte("hello"), false},
		{"too large", key, make([]byte, MaxHeadBytes+1), false},
	} {
		if err := v.Validate(c.key, c.val); (err == nil) != c.ok {
			t.Errorf("%s: Validate = %v", c.name, err)
		}
	}
	// Highest seq wins whatever the order; a forged record never wins, even with a higher seq.
	for _, vals := range [][][]byte{{h1.Raw, h5.Raw}, {h5.Raw, h1.Raw}, {forgedKey.Raw, h1.Raw, h5.Raw}, {h5.Raw, forgedSig, forgedKey.Raw}} {
		i, err := v.Select(key, vals)
		if err != nil || !bytes.Equal(vals[i], h5.Raw) {
			t.Fatalf("Select picked %d (%v)", i, err)
		}
	}
	if i, _ := v.Select(key, [][]byte{h5.Raw, h5b.Raw}); i != 1 {
		t.Fatal("a newer profile revision at the same seq must win")
	}
	if _, err := v.Select(key, [][]byte{forgedKey.Raw}); err == nil {
		t.Fatal("Select of only invalid records must fail")
	}
	if _, err := SignHead(k, 0, nil, t0, 1); err != nil {
		t.Fatalf("empty channel head: %v", err)
	}
	if _, err := SignHead(k, 0, bytes.Repeat([]byte{1}, 32), t0, 1); err == nil {
		t.Fatal("seq 0 with an entry id accepted")
	}
}

func TestProfileNormalizeAndVerify(t *testing.T) {
	k := seededKey(1)
	p, err := SignProfile(k, 3, t0, ProfileFields{Name: "  Dongne Bakery ", Category: "Bakery", Tags: []string{"#Fresh Bread", "fresh-bread", "  ", "빵"}, Geohash: "WYDM9QYZZ"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "Dongne Bakery" || p.Category != "bakery" || p.Geohash != "wydm9qy" || p.Cell() != "wydm9" || len(p.Tags) != 2 || p.Tags[0] != "fresh-bread" || p.Tags[1] != "빵" {
		t.Fatalf("normalised: %+v", p.ProfileFields)
	}
	again, err := VerifyProfile(p.Raw)
	if err != nil || again.Revision != 3 || again.ID() != IDFromKey(k.Public().(ed25519.PublicKey)) {
		t.Fatalf("verify: %v", err)
	}
	bad := bytes.Clone(p.Raw)
	bad[10] ^= 1
	if _, err := VerifyProfile(bad); err == nil {
		t.Fatal("tampered profile verified")
	}
	for _, f := range []ProfileFields{
		{Name: "", Category: "mart", Geohash: "wydm9"},
		{Name: "x", Category: "bank", Geohash: "wydm9"},
		{Name: "x", Category: "mart", Geohash: "wyd"},
		{Name: "x", Category: "mart", Geohash: "wydm!"},
		{Name: strings.Repeat("x", MaxNameBytes+1), Category: "mart", Geohash: "wydm9"},
		{Name: "x\x07", Category: "mart", Geohash: "wydm9"},
		{Name: "x", Category: "mart", Geohash: "wydm9", Tags: []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}},
	} {
		if _, err := SignProfile(k, 1, t0, f); !errors.Is(err, ErrInvalidProfile) {
			t.Errorf("%+v: %v", f, err)
		}
	}
}

func TestCardsAndNotices(t *testing.T) {
	k, other := seededKey(1), seededKey(2)
	p, _ := SignProfile(k, 1, t0, mart().withGeohash("wydm9qy"))
	h, _ := SignHead(k, 4, bytes.Repeat([]byte{4}, 32), t0.Add(time.Hour), 1)
	c, err := MakeCard(p.Raw, h.Raw)
	if err != nil {
		t.Fatal(err)
	}
	id, upd, err := VerifyCard(c.Raw)
	if err != nil || id != string(p.ID()) || !upd.Equal(t0.Add(time.Hour)) || !c.LastPost().Equal(t0.Add(time.Hour)) {
		t.Fatalf("card: %v %s %v", err, id, upd)
	}
	oh, _ := SignHead(other, 4, bytes.Repeat([]byte{4}, 32), t0, 1)
	if _, err := MakeCard(p.Raw, oh.Raw); err == nil {
		t.Fatal("a card mixing two channels verified")
	}
	if keys := cardKeys(p); len(keys) != 4 || keys[0] != "chan/cell/wydm9" || keys[1] != "chan/cell/wydm9/mart" || keys[2] != "chan/tag/kimchi" {
		t.Fatalf("card keys %v", keys)
	}

	// Follow notices: signed by the per-channel customer key; nothing but that key and the channel inside.
	acct, err := identity.New("shopper")
	if err != nil {
		t.Fatal(err)
	}
	chA, chB := IDFromKey(k.Public().(ed25519.PublicKey)), IDFromKey(other.Public().(ed25519.PublicKey))
	nA, err := SignNotice(CustomerKey(acct, chA), k.Public().(ed25519.PublicKey), true, t0)
	if err != nil {
		t.Fatal(err)
	}
	nB, _ := SignNotice(CustomerKey(acct, chB), other.Public().(ed25519.PublicKey), true, t0)
	if bytes.Equal(nA.Customer, nB.Customer) {
		t.Fatal("one customer key for two channels")
	}
	// The notices of one account for two channels share no 8-byte run beyond the fixed framing.
	for i := 0; i+8 <= len(nA.Customer); i++ {
		if bytes.Contains(nB.Raw, nA.Customer[i:i+8]) || bytes.Contains(nB.Raw, nA.Raw[len(nA.Raw)-64+i:len(nA.Raw)-56+i]) {
			t.Fatal("notices for two channels share key or signature bytes")
		}
	}
	if _, err := VerifyNotice(nA.Raw); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(nA.Raw)
	bad[len(bad)-3] ^= 1
	if _, err := VerifyNotice(bad); err == nil {
		t.Fatal("tampered notice verified")
	}
}

func TestLinks(t *testing.T) {
	k := seededKey(1)
	pub := k.Public().(ed25519.PublicKey)
	addr := ma.StringCast("/ip4/127.0.0.1/tcp/4040/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
	link, err := FormatLink(pub, "Haenam Mart", []ma.Multiaddr{addr, addr, addr})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, LinkPrefix) || len(link) > 300 {
		t.Fatalf("link %q (%d chars)", link, len(link))
	}
	l, err := ParseLink(link)
	if err != nil || !l.Channel.Equal(pub) || l.Name != "Haenam Mart" || len(l.Peers) != 1 || len(l.Peers[0].Addrs) != 2 {
		t.Fatalf("parse: %v %+v", err, l)
	}
	if l, err := ParseLink(string(IDFromKey(pub))); err != nil || !l.Channel.Equal(pub) {
		t.Fatalf("id as link: %v", err)
	}
	for _, bad := range []string{"", "madang://channel/", "madang://channel/zzzz", "c123", "https://example.com"} {
		if _, err := ParseLink(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func (f ProfileFields) withGeohash(g string) ProfileFields { f.Geohash = g; return f }

// Fuzz targets for every decoder of the package. None may panic; whatever decodes must verify and survive a
// round trip.

func FuzzVerifyEntry(f *testing.F) {
	es := chain(f, seededKey(1), 2)
	f.Add(es[0].Raw)
	f.Add(es[1].Raw)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := VerifyEntry(raw)
		if err != nil {
			return
		}
		again, err := VerifyEntry(e.Raw)
		if err != nil || again.ID != e.ID {
			t.Fatalf("canonical form does not verify: %v", err)
		}
	})
}

func FuzzVerifyProfile(f *testing.F) {
	p, _ := SignProfile(seededKey(1), 1, t0, mart())
	f.Add(p.Raw)
	f.Add([]byte{0x0a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if p, err := VerifyProfile(raw); err == nil {
			if err := p.check(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func FuzzHeadRecord(f *testing.F) {
	k := seededKey(1)
	h, _ := SignHead(k, 3, bytes.Repeat([]byte{3}, 32), t0, 1)
	key := HeadKey(IDFromKey(k.Public().(ed25519.PublicKey)))
	f.Add(h.Raw)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var v HeadValidator
		err := v.Validate(key, raw)
		i, serr := v.Select(key, [][]byte{h.Raw, raw})
		if serr != nil {
			t.Fatal("the valid record must always be selectable")
		}
		if err != nil && i != 0 {
			t.Fatal("an invalid record was selected")
		}
	})
}

func FuzzDecodeCardNoticeLink(f *testing.F) {
	k := seededKey(1)
	p, _ := SignProfile(k, 1, t0, mart())
	h, _ := SignHead(k, 1, bytes.Repeat([]byte{1}, 32), t0, 1)
	c, _ := MakeCard(p.Raw, h.Raw)
	n, _ := SignNotice(seededKey(3), k.Public().(ed25519.PublicKey), true, t0)
	f.Add(c.Raw)
	f.Add(n.Raw)
	f.Add([]byte(LinkPrefix + "z2"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if c, err := DecodeCard(raw); err == nil && c.Head != nil && !c.Head.Channel.Equal(c.Profile.Channel) {
			t.Fatal("card of two channels")
		}
		if n, err := VerifyNotice(raw); err == nil && len(n.Customer) != ed25519.PublicKeySize {
			t.Fatal("bad notice accepted")
		}
		if l, err := ParseLink(string(raw)); err == nil && len(l.Channel) != ed25519.PublicKeySize {
			t.Fatal("bad link accepted")
		}
	})
}
