// Package feed is Madang's channels: a merchant's feed is an append-only log of entries signed by a channel
// key (separate from the owner's account), hash-chained as in Secure Scuttlebutt (seq from 1, prev = id of the
// previous entry), with a signed profile card, a signed head record in the DHT (/chanhead/<channel id>,
// highest seq wins) and live entries on the gossip topic /madang/feed/1/<channel id>. Followers verify every
// signature and link; two valid entries with one seq are kept as proof of a fork, the channel is flagged and
// following pauses.
package feed

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/feed/pb"
)

// ChannelID is the printable form of a channel key: "c" followed by unpadded lower-case base32 (53
// characters).
type ChannelID string

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ErrBadID is returned for strings that are not channel IDs.
var ErrBadID = errors.New("invalid channel id")

// IDFromKey encodes a channel key.
func IDFromKey(pub ed25519.PublicKey) ChannelID {
	return ChannelID("c" + strings.ToLower(b32.EncodeToString(pub)))
}

// ParseID decodes and checks a channel ID.
func ParseID(s string) (ed25519.PublicKey, error) {
	if len(s) != 53 || s[0] != 'c' {
		return nil, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	raw, err := b32.DecodeString(strings.ToUpper(s[1:]))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	return ed25519.PublicKey(raw), nil
}

// HeadNamespace is the DHT record namespace of head records.
const HeadNamespace = "chanhead"

// HeadKey is the DHT record key of a channel's head.
func HeadKey(id ChannelID) string { return "/" + HeadNamespace + "/" + string(id) }

// ProviderCID is the DHT provider key of a channel: nodes that keep its feed (owner, pinning relays, mirrors)
// provide it.
func ProviderCID(key ed25519.PublicKey) cid.Cid {
	h, err := mh.Sum(append([]byte("madang/channel/v1:"), key...), mh.SHA2_256, -1)
	if err != nil {
		panic(err) // sha2-256 is always available
	}
	return cid.NewCidV1(cid.Raw, h)
}

// Topic is the live gossip topic of a channel.
func Topic(id ChannelID) string { return "/madang/feed/1/" + string(id) }

// CustomerPurpose is the DeriveSecret purpose of per-channel customer keys.
const CustomerPurpose = "madang/customer/v1"

// SecretSource derives purpose-bound secrets from the account seed (identity.Identity).
type SecretSource interface {
	DeriveSecret(purpose string, context []byte) []byte
}

// CustomerKey is the follower's key for one channel: Ed25519 from DeriveSecret(CustomerPurpose, channel id).
// Keys of two channels are unrelated to anyone without the account seed.
func CustomerKey(ids SecretSource, id ChannelID) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(ids.DeriveSecret(CustomerPurpose, []byte(id)))
}

// entryID is the id of an entry: SHA-256 of its signed body.
func entryID(body []byte) [32]byte { return sha256.Sum256(body) }

// signed builds the message a channel key signs: a domain string, a zero byte and the body.
func signed(domain string, body []byte) []byte {
	m := make([]byte, 0, len(domain)+1+len(body))
	m = append(m, domain...)
	m = append(m, 0)
	return append(m, body...)
}

func marshal(m proto.Message) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

func unmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }

// seal encodes body as a Signed message, signed by priv under domain.
func seal(priv ed25519.PrivateKey, domain string, body proto.Message) ([]byte, error) {
	b, err := marshal(body)
	if err != nil {
		return nil, err
	}
	return marshalSigned(b, ed25519.Sign(priv, signed(domain, b)))
}

func marshalSigned(body, sig []byte) ([]byte, error) {
	return marshal(&pb.Signed{Body: body, Signature: sig})
}

// unseal decodes a Signed message of at most limit bytes and its body into m; it returns the exact signed
// bytes and the signature (of the right size) for the caller to verify with the key the body names.
func unseal(raw []byte, limit int, m proto.Message) (body, sig []byte, err error) {
	if len(raw) > limit {
		return nil, nil, fmt.Errorf("%d bytes (limit %d)", len(raw), limit)
	}
	var sd pb.Signed
	if err := proto.Unmarshal(raw, &sd); err != nil {
		return nil, nil, err
	}
	if len(sd.Signature) != ed25519.SignatureSize {
		return nil, nil, errors.New("signature size")
	}
	if err := proto.Unmarshal(sd.Body, m); err != nil {
		return nil, nil, fmt.Errorf("body: %w", err)
	}
	return sd.Body, sd.Signature, nil
}
