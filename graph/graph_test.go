package graph

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/store"
)

func newGraph(t testing.TB) (*Graph, *identity.Identity) {
	t.Helper()
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	id, err := identity.New("dev")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(st.Namespace("graph"), st.Namespace("invites"), id, "Minji")
	if err != nil {
		t.Fatal(err)
	}
	return g, id
}

const relayHint = "/ip4/203.0.113.7/tcp/4040/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"

func TestInviteRoundTrip(t *testing.T) {
	g, id := newGraph(t)
	for hints := 0; hints <= 2; hints++ {
		rec, err := g.CreateInvite(InviteOptions{TTL: time.Hour, Uses: 1, RelayHints: []string{relayHint, relayHint, relayHint}[:hints]})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("invite with %d relay hints: %d characters", hints, len(rec.Link))
		if !strings.HasPrefix(rec.Link, LinkPrefix) {
			t.Fatalf("link %q", rec.Link)
		}
		if hints == 0 && len(rec.Link) > 300 {
			t.Errorf("invite without hints is %d characters, want ≤ 300", len(rec.Link))
		}
		inv, err := ParseLink(rec.Link)
		if err != nil {
			t.Fatal(err)
		}
		if inv.AccountID() != id.AccountID() || inv.PeerID != id.PeerID() || inv.DisplayName != "Minji" {
			t.Fatalf("decoded %+v", inv)
		}
		if len(inv.RelayHints) != hints || InviteID(inv.Secret) != rec.ID {
			t.Fatalf("hints %d id %s/%s", len(inv.RelayHints), InviteID(inv.Secret), rec.ID)
		}
		if !inv.Expires.Equal(rec.Expires) {
			t.Fatalf("expires %v != %v", inv.Expires, rec.Expires)
		}
	}
}

func TestInviteTamperRejected(t *testing.T) {
	g, _ := newGraph(t)
	rec, err := g.CreateInvite(InviteOptions{TTL: time.Hour, Uses: 1, RelayHints: []string{relayHint}})
	if err != nil {
		t.Fatal(err)
	}
	raw := mustPayload(t, rec.Link)
	for i := range raw {
		for _, bit := range []byte{1, 0x80} {
			bad := bytes.Clone(raw)
			bad[i] ^= bit
			got, err := DecodeInvite(bad)
			if err == nil {
				t.Fatalf("flipping byte %d bit %x verified as %+v", i, bit, got)
			}
			if !errors.Is(err, ErrBadInvite) {
				t.Fatalf("error %v does not wrap ErrBadInvite", err)
			}
		}
	}
	if _, err := ParseLink(LinkPrefix + "zzzz"); !errors.Is(err, ErrBadInvite) {
		t.Fatalf("garbage: %v", err)
	}
}

func mustPayload(t testing.TB, link string) []byte {
	t.Helper()
	raw, err := decodeLinkBytes(link)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestRedeemInvite(t *testing.T) {
	g, _ := newGraph(t)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	g.SetClock(func() time.Time { return now })
	rec, err := g.CreateInvite(InviteOptions{TTL: time.Hour, Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := ParseLink(rec.Link)
	wrong := bytes.Clone(inv.Secret)
	wrong[0] ^= 1
	if _, err := g.RedeemInvite(wrong); !errors.Is(err, ErrInviteUnknown) {
		t.Fatalf("wrong secret: %v", err)
	}
	for range 2 {
		if _, err := g.RedeemInvite(inv.Secret); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.RedeemInvite(inv.Secret); !errors.Is(err, ErrInviteUsed) {
		t.Fatalf("third use: %v", err)
	}
	rec2, _ := g.CreateInvite(InviteOptions{TTL: time.Hour, Uses: 1})
	inv2, _ := ParseLink(rec2.Link)
	now = now.Add(time.Hour)
	if _, err := g.RedeemInvite(inv2.Secret); !errors.Is(err, ErrInviteExpired) {
		t.Fatalf("expired: %v", err)
	}
	live, _ := g.Invites(t.Context(), true)
	all, _ := g.Invites(t.Context(), false)
	if len(live) != 0 || len(all) != 2 {
		t.Fatalf("live %d all %d", len(live), len(all))
	}
	now = now.Add(31 * 24 * time.Hour)
	if n, err := g.SweepInvites(t.Context()); err != nil || n != 2 {
		t.Fatalf("sweep %d %v", n, err)
	}
	if _, err := g.CreateInvite(InviteOptions{TTL: 0, Uses: 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("zero ttl: %v", err)
	}
}

func TestResolveAndProfile(t *testing.T) {
	g, _ := newGraph(t)
	if p := g.Profile(); p.DisplayName != "Minji" || p.Version != 1 {
		t.Fatalf("default profile %+v", p)
	}
	p, changed, err := g.SetProfile(Profile{DisplayName: "Minji K", Status: "hi", Tags: []string{"go", "coffee"}})
	if err != nil || !changed || p.Version != 2 {
		t.Fatalf("set profile %+v %v %v", p, changed, err)
	}
	if _, _, err := g.SetProfile(Profile{DisplayName: ""}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty name: %v", err)
	}
	if _, _, err := g.SetProfile(Profile{DisplayName: "x", Tags: []string{"two words"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad tag: %v", err)
	}
	mk := func(name, alias string) Contact {
		id, _ := identity.New("x")
		c, _, err := g.Update(id.AccountKey(), true, func(c *Contact) error {
			c.State, c.Profile.DisplayName, c.Alias = StateFriend, name, alias
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := mk("Jisoo", "")
	b1 := mk("Hana", "")
	mk("Hana", "hana2")
	if c, err := g.Resolve(t.Context(), "jisoo"); err != nil || c.AccountID != a.AccountID {
		t.Fatalf("by name: %v %v", c.AccountID, err)
	}
	if _, err := g.Resolve(t.Context(), "Hana"); !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("ambiguous: %v", err)
	}
	if c, err := g.Resolve(t.Context(), string(b1.AccountID)); err != nil || c.AccountID != b1.AccountID {
		t.Fatalf("by id: %v", err)
	}
	if c, err := g.Resolve(t.Context(), "hana2"); err != nil || c.Alias != "hana2" {
		t.Fatalf("by alias: %v", err)
	}
	if _, err := g.Resolve(t.Context(), "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown: %v", err)
	}
	all, _ := g.Contacts(t.Context(), StateFriend)
	if len(all) != 3 {
		t.Fatalf("%d contacts", len(all))
	}
	if err := g.Delete(a.AccountID); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Contact(a.AccountID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

// FuzzDecodeInvite: the invite decoder never panics, and anything it accepts re-verifies.
func FuzzDecodeInvite(f *testing.F) {
	g, _ := newGraph(f)
	for hints := 0; hints <= 2; hints++ {
		rec, err := g.CreateInvite(InviteOptions{TTL: time.Hour, Uses: 1, RelayHints: []string{relayHint, relayHint}[:hints]})
		if err != nil {
			f.Fatal(err)
		}
		raw, err := decodeLinkBytes(rec.Link)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 32})
	f.Add([]byte{1, 7, 64})
	f.Fuzz(func(t *testing.T, raw []byte) {
		inv, err := DecodeInvite(raw)
		if err != nil {
			return
		}
		if len(inv.AccountKey) != 32 || len(inv.Secret) != SecretSize || inv.PeerID == "" || len(inv.RelayHints) > MaxRelayHints {
			t.Fatalf("accepted an incomplete invite: %+v", inv)
		}
		if _, err := ParseLink(EncodeLink(raw)); err != nil {
			t.Fatalf("accepted payload does not parse as a link: %v", err)
		}
	})
}
