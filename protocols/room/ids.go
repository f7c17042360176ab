package room

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"golang.org/x/text/unicode/norm"
)

// TopicPrefix is the gossipsub topic of a room, followed by its ID: /madang/room/1/<roomID>.
const TopicPrefix = "/madang/room/1/"

// Signature domains (each followed by a 0x00 byte and the signed bytes).
const (
	domainManifest = "madang/room-manifest/v1"
	domainMessage  = "madang/room-msg/v1"
	domainMod      = "madang/room-mod/v1"
	domainCard     = "madang/room-card/v1"
	domainReveal   = "madang/persona-reveal/v1"
	domainRoomID   = "madang/room-id/v1"
	domainLink     = "madang/room-link/v1"
	domainJoin     = "madang/room-join/v1"
	domainSync     = "madang/room-sync/v1"
	domainRepair   = "madang/room-sync/v2"
	domainRendez   = "madang/room/v1:"

	// PersonaPurpose and OwnerPurpose name the secrets derived from the account (identity.DeriveSecret):
	// the persona key of a room from the room ID, the owner key of a room from its nonce.
	PersonaPurpose = "madang/persona/v1"
	OwnerPurpose   = "madang/room-owner/v1"
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// ID identifies a room: the first 20 bytes of sha256(domain, owner key, nonce).
type ID [20]byte

// String is "r" followed by lower-case unpadded base32 (33 characters).
func (id ID) String() string { return "r" + strings.ToLower(b32.EncodeToString(id[:])) }

// Topic is the room's gossipsub topic.
func (id ID) Topic() string { return TopicPrefix + id.String() }

// ErrBadID is returned for malformed room IDs.
var ErrBadID = errors.New("room: invalid room id")

// ParseID parses the String form.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 33 || s[0] != 'r' {
		return id, fmt.Errorf("%w %q", ErrBadID, s)
	}
	raw, err := b32.DecodeString(strings.ToUpper(s[1:]))
	if err != nil || len(raw) != len(id) {
		return id, fmt.Errorf("%w %q", ErrBadID, s)
	}
	copy(id[:], raw)
	return id, nil
}

func idFromBytes(b []byte) (ID, bool) {
	var id ID
	if len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}

// DeriveID computes a room ID from its owner key and nonce.
func DeriveID(owner ed25519.PublicKey, nonce []byte) ID {
	h := sha256.New()
	h.Write([]byte(domainRoomID))
	h.Write([]byte{0})
	h.Write(owner)
	h.Write(nonce)
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// RendezvousCID is the DHT key that the room's peers (members and keeping relays) provide.
func RendezvousCID(id ID) cid.Cid {
	sum, _ := mh.Sum([]byte(domainRendez+id.String()), mh.SHA2_256, -1) // sha2-256 never fails
	return cid.NewCidV1(cid.Raw, sum)
}

// Secrets derives purpose-bound secrets from the account (identity.Identity satisfies it).
type Secrets interface {
	DeriveSecret(purpose string, context []byte) []byte
}

// PersonaKey is the account's persona key in a room: HKDF(account seed, room ID). Keys of two rooms are
// unrelated for anyone without the account seed.
func PersonaKey(s Secrets, id ID) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(s.DeriveSecret(PersonaPurpose, id[:]))
}

// OwnerKey is the owner key of a room created with nonce.
func OwnerKey(s Secrets, nonce []byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(s.DeriveSecret(OwnerPurpose, nonce))
}

// PersonaString is the printable form of a persona key: "p" + lower-case base32 (53 characters).
func PersonaString(pub []byte) string { return "p" + strings.ToLower(b32.EncodeToString(pub)) }

// ParsePersona parses PersonaString's form.
func ParsePersona(s string) (ed25519.PublicKey, error) {
	if len(s) < 2 || s[0] != 'p' {
		return nil, fmt.Errorf("room: invalid persona %q", s)
	}
	raw, err := b32.DecodeString(strings.ToUpper(s[1:]))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("room: invalid persona %q", s)
	}
	return raw, nil
}

// MsgID identifies a message or moderation action: the first 16 bytes of sha256(body).
type MsgID [16]byte

func (m MsgID) String() string { return hex.EncodeToString(m[:]) }

// ParseMsgID parses the hex form.
func ParseMsgID(s string) (MsgID, error) {
	var m MsgID
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != len(m) {
		return m, fmt.Errorf("room: invalid message id %q", s)
	}
	copy(m[:], raw)
	return m, nil
}

func msgIDOf(body []byte) MsgID {
	s := sha256.Sum256(body)
	var m MsgID
	copy(m[:], s[:])
	return m
}

type pkey [32]byte

func pk(b []byte) pkey {
	var k pkey
	copy(k[:], b)
	return k
}

func pub32(k ed25519.PrivateKey) pkey { return pk(k.Public().(ed25519.PublicKey)) }

func linkCheck(secret []byte) []byte {
	h := sha256.New()
	h.Write([]byte(domainLink))
	h.Write([]byte{0})
	h.Write(secret)
	return h.Sum(nil)
}

func mac(secret []byte, domain string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(domain))
	m.Write([]byte{0})
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

func joinProof(secret []byte, id ID, persona []byte) []byte {
	return mac(secret, domainJoin, id[:], persona)
}

func syncProof(secret []byte, id ID, requester, server string) []byte {
	return mac(secret, domainSync, id[:], []byte(requester), []byte{0}, []byte(server))
}

func repairProof(secret []byte, id ID, requester, server string) []byte {
	return mac(secret, domainRepair, id[:], []byte(requester), []byte{0}, []byte(server))
}

// Tag limits.
const (
	MaxTags     = 10
	MaxTagRunes = 32
)

// NormalizeTag gives the canonical form of an interest tag: Unicode NFKC, lower case, without a leading
// '#', letters and digits kept, runs of spaces, dashes, dots and underscores turned into one '-', anything
// else dropped, at most 32 runes. It reports false if nothing is left.
func NormalizeTag(s string) (string, bool) {
	s = strings.ToLower(norm.NFKC.String(strings.TrimSpace(s)))
	s = strings.TrimLeft(s, "#")
	var b strings.Builder
	n, dash := 0, false
	for _, r := range s {
		if n >= MaxTagRunes {
			break
		}
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r):
			if dash && b.Len() > 0 {
				b.WriteByte('-')
				n++
			}
			dash = false
			b.WriteRune(r)
			n++
		case unicode.IsSpace(r) || r == '-' || r == '_' || r == '.':
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-")
	return out, out != ""
}

// NormalizeTags normalises, deduplicates and bounds a tag list.
func NormalizeTags(in []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, t := range in {
		n, ok := NormalizeTag(t)
		if !ok {
			return nil, fmt.Errorf("room: tag %q has no letters or digits", t)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(out) > MaxTags {
		return nil, fmt.Errorf("room: %d tags, at most %d", len(out), MaxTags)
	}
	return out, nil
}

// NameWords are the normalised words of a room name that are indexed for search (two runes or more, at
// most ten).
func NameWords(name string) []string {
	var out []string
	seen := map[string]bool{}
	for _, w := range strings.Fields(name) {
		n, ok := NormalizeTag(w)
		if !ok || len([]rune(n)) < 2 || seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
		if len(out) == MaxTags {
			break
		}
	}
	return out
}

// Directory keys under which open rooms are announced.
func tagKey(tag string) string   { return "room/tag/" + tag }
func wordKey(word string) string { return "room/word/" + word }
