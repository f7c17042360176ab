package contact

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/contact/pb"
)

func signedRequest(tb testing.TB) (*identity.Identity, *identity.Identity, []byte) {
	tb.Helper()
	from, _ := identity.New("a")
	to, _ := identity.New("b")
	raw, err := sign(from, &pb.Body{
		Version: wireVersion, Kind: pb.Kind_KIND_REQUEST, FromAccount: from.AccountKey(), ToAccount: to.AccountKey(),
		DeviceCert: from.CertBytes(), Profile: profileToPB(graph.Profile{DisplayName: "Minji", Version: 3}),
		InviteSecret: bytes.Repeat([]byte{7}, graph.SecretSize), CreatedMs: time.Now().UnixMilli(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return from, to, raw
}

func TestOpenVerifies(t *testing.T) {
	from, _, raw := signedRequest(t)
	m, err := Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.From, from.AccountKey()) || m.Cert.PeerID != from.PeerID() || m.Profile().DisplayName != "Minji" {
		t.Fatalf("opened %+v", m.Body)
	}
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x40
		if _, err := Open(bad); err == nil {
			t.Fatalf("flipping byte %d still verifies", i)
		} else if !errors.Is(err, ErrBadMessage) {
			t.Fatalf("error %v does not wrap ErrBadMessage", err)
		}
	}
	// A body signed by one account with another account's device certificate is refused.
	other, _ := identity.New("c")
	forged, _ := sign(other, &pb.Body{Version: wireVersion, Kind: pb.Kind_KIND_PROFILE, FromAccount: other.AccountKey(),
		ToAccount: from.AccountKey(), DeviceCert: from.CertBytes(), Profile: profileToPB(graph.Profile{DisplayName: "x"})})
	if _, err := Open(forged); err == nil {
		t.Fatal("certificate of another account accepted")
	}
}

// FuzzOpen: the contact-message decoder never panics, and what it accepts is signed by the sender whose
// device certificate it carries.
func FuzzOpen(f *testing.F) {
	_, _, raw := signedRequest(f)
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00, 0x12, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Open(raw)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Cert.AccountKey, m.From) || m.Body.Profile == nil {
			t.Fatalf("accepted inconsistent message")
		}
	})
}
