package contact

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/contact/pb"
)

const (
	signDomain  = "madang/contact/v1\x00"
	wireVersion = 1
	// MaxMessageSize bounds one Signed message (and one Reply) on the wire.
	MaxMessageSize = 16 << 10
	maxAddrs       = graph.MaxAddrs
	maxBundleBytes = 4096
	maxCardBytes   = 4096
)

// ErrBadMessage wraps every decoding or verification failure.
var ErrBadMessage = errors.New("contact: invalid message")

// Message is a verified contact-protocol message.
type Message struct {
	Body *pb.Body
	Raw  []byte // the Signed bytes as received
	From ed25519.PublicKey
	Cert identity.Cert
}

// Profile converts the wire profile.
func (m *Message) Profile() graph.Profile { return profileFromPB(m.Body.Profile) }

// Addrs are the sender's announced addresses that parse.
func (m *Message) Addrs() []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, b := range m.Body.Addrs {
		if a, err := ma.NewMultiaddrBytes(b); err == nil {
			out = append(out, a)
		}
	}
	return out
}

func profileToPB(p graph.Profile) *pb.Profile {
	return &pb.Profile{DisplayName: p.DisplayName, Status: p.Status, Tags: p.Tags, Avatar: p.Avatar, Version: p.Version}
}

func profileFromPB(p *pb.Profile) graph.Profile {
	if p == nil {
		return graph.Profile{}
	}
	return graph.Profile{DisplayName: p.DisplayName, Status: p.Status, Tags: p.Tags, Avatar: p.Avatar, Version: p.Version}
}

// sign encodes body and signs it with the account key.
func sign(id *identity.Identity, body *pb.Body) ([]byte, error) {
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("contact: encode body: %w", err)
	}
	sig := id.SignAccount(append([]byte(signDomain), raw...))
	out, err := proto.Marshal(&pb.Signed{Body: raw, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("contact: encode: %w", err)
	}
	return out, nil
}

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadMessage, fmt.Sprintf(format, args...))
}

// Open decodes a Signed message and verifies its signature, the device certificate and every field's bounds.
func Open(raw []byte) (*Message, error) {
	if len(raw) > MaxMessageSize {
		return nil, bad("%d bytes", len(raw))
	}
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return nil, bad("envelope: %v", err)
	}
	var b pb.Body
	if err := proto.Unmarshal(s.Body, &b); err != nil {
		return nil, bad("body: %v", err)
	}
	switch {
	case b.Version != wireVersion:
		return nil, bad("version %d", b.Version)
	case b.Kind < pb.Kind_KIND_REQUEST || b.Kind > pb.Kind_KIND_PROFILE:
		return nil, bad("kind %d", b.Kind)
	case len(b.FromAccount) != ed25519.PublicKeySize || len(b.ToAccount) != ed25519.PublicKeySize:
		return nil, bad("account key size")
	case len(s.Signature) != ed25519.SignatureSize:
		return nil, bad("signature size")
	case len(b.PrekeyBundle) > maxBundleBytes || len(b.MailboxCard) > maxCardBytes || len(b.Addrs) > maxAddrs:
		return nil, bad("field too large")
	case len(b.InviteSecret) != 0 && len(b.InviteSecret) != graph.SecretSize:
		return nil, bad("invite secret size")
	case b.Profile == nil:
		return nil, bad("no profile")
	}
	if !ed25519.Verify(b.FromAccount, append([]byte(signDomain), s.Body...), s.Signature) {
		return nil, bad("signature")
	}
	cert, err := identity.VerifyCert(b.DeviceCert)
	if err != nil {
		return nil, bad("device certificate: %v", err)
	}
	if !bytes.Equal(cert.AccountKey, b.FromAccount) {
		return nil, bad("device certificate of another account")
	}
	if err := profileFromPB(b.Profile).Validate(); err != nil {
		return nil, bad("profile: %v", err)
	}
	return &Message{Body: &b, Raw: bytes.Clone(raw), From: ed25519.PublicKey(b.FromAccount), Cert: cert}, nil
}

// Created is the sender's timestamp.
func (m *Message) Created() time.Time { return time.UnixMilli(m.Body.CreatedMs) }
