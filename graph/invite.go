package graph

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multibase"

	"github.com/madang-p2p/madang/identity"
)

// LinkPrefix starts every contact invite link.
const LinkPrefix = "madang://c/"

// Invite payload layout (version 1): one version byte, then TLV records (type byte, length byte, value), the
// signature record last. The signature is the account key's over inviteDomain ‖ every byte before the
// signature record, so the raw payload is verified as received and never re-encoded.
const (
	inviteVersion = 1
	inviteDomain  = "madang/invite/v1\x00"

	tlvAccount   = 1 // 32-byte ed25519 account key
	tlvDevice    = 2 // 32-byte ed25519 device key (the libp2p host key)
	tlvName      = 3 // display name, UTF-8
	tlvRelay     = 4 // relay hint, binary multiaddr ending in /p2p/<relay>; at most MaxRelayHints
	tlvSecret    = 5 // one-time secret
	tlvExpires   = 6 // expiry, big-endian uint32 unix seconds
	tlvSignature = 7 // ed25519 signature, always the last record

	// SecretSize is the size of an invite's one-time secret.
	SecretSize = 16
	// MaxRelayHints is the most relay addresses an invite carries.
	MaxRelayHints = 2
	// MaxInviteNameBytes bounds the display name carried in an invite (longer names are cut).
	MaxInviteNameBytes = 32
	// MaxInviteBytes bounds a decoded invite payload.
	MaxInviteBytes = 1024
	// MaxLinkChars bounds the accepted length of a link.
	MaxLinkChars = 2048
)

// Errors of invite links.
var (
	ErrBadInvite     = errors.New("invalid invite link")
	ErrInviteExpired = errors.New("invite has expired")
	ErrInviteUsed    = errors.New("invite has already been used")
	ErrInviteUnknown = errors.New("unknown invite")
)

// Invite is a decoded, signature-checked contact invite.
type Invite struct {
	AccountKey  ed25519.PublicKey
	DeviceKey   ed25519.PublicKey
	PeerID      peer.ID
	DisplayName string
	RelayHints  []ma.Multiaddr
	Secret      []byte
	Expires     time.Time
}

// AccountID is the inviter's account ID.
func (inv Invite) AccountID() identity.AccountID { return identity.AccountIDFromKey(inv.AccountKey) }

// InviteID names an invite by its secret: the first 8 bytes of SHA-256(secret), hex. Both sides compute it;
// only the inviter can tell which invite it is.
func InviteID(secret []byte) string {
	h := sha256.Sum256(secret)
	return hex.EncodeToString(h[:8])
}

type tlv struct {
	typ byte
	v   []byte
}

func appendTLV(b []byte, typ byte, v []byte) ([]byte, error) {
	if len(v) > 255 {
		return nil, fmt.Errorf("invite field %d: %d bytes", typ, len(v))
	}
	b = append(b, typ, byte(len(v)))
	return append(b, v...), nil
}

// cutName shortens s to at most n bytes without splitting a rune.
func cutName(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// encodeInvite builds and signs the payload.
func encodeInvite(inv Invite, sign func([]byte) []byte) ([]byte, error) {
	if len(inv.RelayHints) > MaxRelayHints {
		return nil, fmt.Errorf("%d relay hints, at most %d", len(inv.RelayHints), MaxRelayHints)
	}
	b := []byte{inviteVersion}
	var err error
	exp := make([]byte, 4)
	binary.BigEndian.PutUint32(exp, uint32(inv.Expires.Unix()))
	fields := []tlv{
		{tlvAccount, inv.AccountKey},
		{tlvDevice, inv.DeviceKey},
		{tlvName, []byte(cutName(inv.DisplayName, MaxInviteNameBytes))},
	}
	for _, h := range inv.RelayHints {
		fields = append(fields, tlv{tlvRelay, h.Bytes()})
	}
	fields = append(fields, tlv{tlvSecret, inv.Secret}, tlv{tlvExpires, exp})
	for _, f := range fields {
		if b, err = appendTLV(b, f.typ, f.v); err != nil {
			return nil, err
		}
	}
	sig := sign(append([]byte(inviteDomain), b...))
	return appendTLV(b, tlvSignature, sig)
}

// EncodeLink turns a payload into a madang://c/ link (multibase base58btc).
func EncodeLink(payload []byte) string {
	s, _ := multibase.Encode(multibase.Base58BTC, payload) // cannot fail for a known encoding
	return LinkPrefix + s
}

// ParseLink decodes a link (with or without the madang://c/ prefix) and verifies the invite's signature.
// It does not check expiry; see Invite.Expires.
func ParseLink(link string) (Invite, error) {
	raw, err := decodeLinkBytes(link)
	if err != nil {
		return Invite{}, err
	}
	return DecodeInvite(raw)
}

func decodeLinkBytes(link string) ([]byte, error) {
	link = strings.TrimSpace(link)
	if len(link) > MaxLinkChars {
		return nil, fmt.Errorf("%w: %d characters", ErrBadInvite, len(link))
	}
	s := strings.TrimPrefix(link, LinkPrefix)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadInvite)
	}
	_, raw, err := multibase.Decode(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadInvite, err)
	}
	return raw, nil
}

// DecodeInvite parses and verifies a raw invite payload.
func DecodeInvite(raw []byte) (Invite, error) {
	inv, err := decodeInvite(raw)
	if err != nil {
		return Invite{}, fmt.Errorf("%w: %v", ErrBadInvite, err)
	}
	return inv, nil
}

func decodeInvite(raw []byte) (Invite, error) {
	var inv Invite
	if len(raw) > MaxInviteBytes {
		return inv, fmt.Errorf("%d bytes", len(raw))
	}
	if len(raw) < 1 || raw[0] != inviteVersion {
		return inv, errors.New("unsupported version")
	}
	seen := map[byte]bool{}
	var sig []byte
	signedLen := 0
	for i := 1; i < len(raw); {
		if sig != nil {
			return inv, errors.New("data after the signature")
		}
		if len(raw)-i < 2 {
			return inv, errors.New("truncated record")
		}
		typ, n := raw[i], int(raw[i+1])
		if len(raw)-i-2 < n {
			return inv, errors.New("truncated value")
		}
		v := raw[i+2 : i+2+n]
		if typ != tlvRelay && seen[typ] {
			return inv, fmt.Errorf("record %d repeated", typ)
		}
		seen[typ] = true
		switch typ {
		case tlvAccount:
			if n != ed25519.PublicKeySize {
				return inv, errors.New("account key size")
			}
			inv.AccountKey = bytes.Clone(v)
		case tlvDevice:
			if n != ed25519.PublicKeySize {
				return inv, errors.New("device key size")
			}
			inv.DeviceKey = bytes.Clone(v)
		case tlvName:
			if !utf8.Valid(v) || n > MaxInviteNameBytes {
				return inv, errors.New("bad display name")
			}
			inv.DisplayName = string(v)
		case tlvRelay:
			if len(inv.RelayHints) >= MaxRelayHints {
				return inv, errors.New("too many relay hints")
			}
			m, err := ma.NewMultiaddrBytes(v)
			if err != nil {
				return inv, fmt.Errorf("relay hint: %v", err)
			}
			if _, err := peer.AddrInfoFromP2pAddr(m); err != nil {
				return inv, fmt.Errorf("relay hint without /p2p/: %v", err)
			}
			inv.RelayHints = append(inv.RelayHints, m)
		case tlvSecret:
			if n != SecretSize {
				return inv, errors.New("secret size")
			}
			inv.Secret = bytes.Clone(v)
		case tlvExpires:
			if n != 4 {
				return inv, errors.New("expiry size")
			}
			inv.Expires = time.Unix(int64(binary.BigEndian.Uint32(v)), 0)
		case tlvSignature:
			if n != ed25519.SignatureSize {
				return inv, errors.New("signature size")
			}
			sig = v
			signedLen = i
		default:
			// Unknown records are skipped (they are covered by the signature), so later versions can add
			// optional fields.
		}
		i += 2 + n
	}
	switch {
	case sig == nil:
		return inv, errors.New("no signature")
	case inv.AccountKey == nil || inv.DeviceKey == nil || inv.Secret == nil || !seen[tlvExpires]:
		return inv, errors.New("missing field")
	}
	if !ed25519.Verify(inv.AccountKey, append([]byte(inviteDomain), raw[:signedLen]...), sig) {
		return inv, errors.New("bad signature")
	}
	pk, err := crypto.UnmarshalEd25519PublicKey(inv.DeviceKey)
	if err != nil {
		return inv, fmt.Errorf("device key: %v", err)
	}
	if inv.PeerID, err = peer.IDFromPublicKey(pk); err != nil {
		return inv, fmt.Errorf("device key: %v", err)
	}
	return inv, nil
}
