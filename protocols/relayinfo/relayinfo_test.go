package relayinfo

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
)

func pair(t *testing.T) (host.Host, host.Host) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	var hs []host.Host
	for i := range 2 {
		id, err := identity.New("x")
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(id.HostKey(), ma.StringCast("/ip4/10.0.0."+string(rune('1'+i))+"/tcp/1"))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return hs[0], hs[1]
}

func sample() Info {
	return Info{Name: "Mapo relay", Operator: "Jiwoo", Contact: "ops@example.org", Services: []string{"circuit", "mailbox"},
		Limits: Limits{MailboxQuotaBytes: 64 << 20, MailboxQuotaItems: 10000, MailboxTTLSeconds: 7 * 86400, DepositsPerMinute: 600},
		Issued: time.Unix(1_700_000_000, 0).UTC(), Software: "madang/test"}
}

func TestServeFetch(t *testing.T) {
	relay, user := pair(t)
	stop := Serve(relay, sample)
	defer stop()
	got, err := Fetch(t.Context(), user, relay.Peerstore().PeerInfo(relay.ID()))
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	want.PeerID = relay.ID().String()
	if got.Name != want.Name || got.Contact != want.Contact || got.Limits != want.Limits || got.PeerID != want.PeerID ||
		!got.Issued.Equal(want.Issued) || len(got.Services) != 2 {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestVerifyRejectsTampering(t *testing.T) {
	relay, other := pair(t)
	raw, err := Sign(relay, sample())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(raw); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, []byte("Mapo"))
	bad := bytes.Clone(raw)
	bad[i] = 'N'
	if _, err := Verify(bad); !errors.Is(err, ErrBadInfo) {
		t.Fatalf("tampered document: %v", err)
	}
	// Another peer serving the relay's signed document is caught by Fetch (signed by another peer).
	Serve(other, sample)
	if info, err := Fetch(t.Context(), relay, other.Peerstore().PeerInfo(other.ID())); err != nil || info.PeerID != other.ID().String() {
		t.Fatalf("fetch: %v %v", info, err)
	}
}

func FuzzVerify(f *testing.F) {
	mn := mocknet.New()
	defer mn.Close()
	id, _ := identity.New("f")
	h, err := mn.AddPeer(id.HostKey(), ma.StringCast("/ip4/10.0.0.1/tcp/1"))
	if err != nil {
		f.Fatal(err)
	}
	raw, err := Sign(h, sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Add([]byte{})
	f.Add(raw[:len(raw)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Verify(data)
		if err == nil && info.PeerID == "" {
			t.Fatal("verified a document without a peer")
		}
	})
}
