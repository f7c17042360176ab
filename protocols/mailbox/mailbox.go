// Package mailbox is store-and-forward for offline friends over /madang/mailbox/1.0.0.
//
// A community relay keeps mailboxes (Store, Service); every node has a Client that issues cards to friends,
// deposits items into friends' mailboxes and drains its own.
//
//   - Items are opaque to the relay: the sender seals each one with HPKE (MLKEM768-X25519, HKDF-SHA256,
//     ChaCha20-Poly1305) to the recipient's mailbox key; the sender's identity and the item's ID travel inside
//     the envelope, which is padded to a few size buckets.
//   - A deposit needs a capability the mailbox owner signed for one friend; the relay only checks that the
//     owner signed it and that it is not revoked, and cannot tell which friend holds it. It answers with a
//     receipt signed by its libp2p key.
//   - Only the owner fetches and deletes, proving its mailbox key over a fresh challenge that names the relay.
//   - The relay enforces per-mailbox quotas (items, bytes), a total storage cap, a TTL and per-peer and
//     per-capability rate limits; items are written with fsync and expire through a time index.
//
// Each user also publishes a signed record naming its 1–3 inbox relays in the DHT (/inbox/<account key>,
// highest seq wins), which senders consult before depositing.
package mailbox

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

// ProtocolID is the mailbox protocol.
const ProtocolID = "/madang/mailbox/1.0.0"

// Signature domains.
const (
	domainCapability = "madang/mailbox/capability/v1"
	domainCard       = "madang/mailbox/card/v1"
	domainReceipt    = "madang/mailbox/receipt/v1"
	domainAuth       = "madang/mailbox/auth/v1"
	domainInbox      = "madang/inbox-record/v1"
	domainMailboxID  = "madang/mailbox/id/v1"
	domainItemID     = "madang/mailbox/item/v1"
	hpkeInfoPrefix   = "madang/mailbox/seal/v1"
)

// Wire limits.
const (
	// DefaultMaxItemBytes bounds the sealed size of one item.
	DefaultMaxItemBytes = 1 << 20
	// maxRequestBytes bounds one request on the wire (a deposit of the largest item plus framing).
	maxRequestBytes = DefaultMaxItemBytes + 16<<10
	// maxPageBytes bounds the items of one fetch page.
	maxPageBytes = 4 << 20
	// maxResponseBytes bounds one response on the wire.
	maxResponseBytes = maxPageBytes + DefaultMaxItemBytes + 64<<10
	maxSignedBytes   = 8 << 10
	maxCardBytes     = 8 << 10
	maxRelays        = 3
	idLen            = 16
	capIDLen         = 16
	nonceLen         = 32
)

// kem is the HPKE KEM of mailbox keys: X-Wing (ML-KEM-768 + X25519), so that sealed items recorded today stay
// confidential against a future quantum adversary; its 1,120-byte encapsulation is small next to a message.
var (
	kem  = hpke.MLKEM768X25519()
	kdf  = hpke.HKDFSHA256()
	aead = hpke.ChaCha20Poly1305()
)

// Errors. A refused deposit wraps ErrRefused and one of the more specific errors below, so a sender can keep
// the item queued and try another relay or later.
var (
	ErrRefused      = errors.New("mailbox: deposit refused")
	ErrOverQuota    = errors.New("mailbox: over quota")
	ErrRateLimited  = errors.New("mailbox: rate limited")
	ErrNoCapability = errors.New("mailbox: no valid capability")
	ErrTooLarge     = errors.New("mailbox: item too large")
	ErrBadCard      = errors.New("mailbox: invalid card")
	ErrBadRecord    = errors.New("mailbox: invalid inbox record")
	ErrBadReceipt   = errors.New("mailbox: invalid receipt")
	ErrNoRelays     = errors.New("mailbox: no inbox relays")
	ErrUnauthorized = errors.New("mailbox: not the mailbox owner")
)

// RefusedError is a relay's refusal of a deposit. It matches ErrRefused and, by code, ErrOverQuota,
// ErrRateLimited, ErrNoCapability or ErrTooLarge with errors.Is.
type RefusedError struct {
	Relay      peer.ID
	Code       pb.Code
	Message    string
	RetryAfter time.Duration
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("mailbox: relay %s refused the deposit: %s (%s)", e.Relay, e.Message, codeName(e.Code))
}

// Is makes errors.Is match the sentinel errors.
func (e *RefusedError) Is(target error) bool {
	switch target {
	case ErrRefused:
		return true
	case ErrOverQuota:
		return e.Code == pb.Code_CODE_QUOTA_ITEMS || e.Code == pb.Code_CODE_QUOTA_BYTES || e.Code == pb.Code_CODE_RELAY_FULL
	case ErrRateLimited:
		return e.Code == pb.Code_CODE_RATE_LIMITED
	case ErrNoCapability:
		return e.Code == pb.Code_CODE_NO_CAPABILITY || e.Code == pb.Code_CODE_REVOKED
	case ErrTooLarge:
		return e.Code == pb.Code_CODE_TOO_LARGE
	}
	return false
}

// codeName is the short name of a refusal code, used in metrics labels and the status API.
func codeName(c pb.Code) string {
	switch c {
	case pb.Code_CODE_BAD_REQUEST:
		return "bad_request"
	case pb.Code_CODE_NO_CAPABILITY:
		return "no_capability"
	case pb.Code_CODE_REVOKED:
		return "revoked"
	case pb.Code_CODE_QUOTA_ITEMS:
		return "quota_items"
	case pb.Code_CODE_QUOTA_BYTES:
		return "quota_bytes"
	case pb.Code_CODE_RATE_LIMITED:
		return "rate_limited"
	case pb.Code_CODE_TOO_LARGE:
		return "too_large"
	case pb.Code_CODE_RELAY_FULL:
		return "relay_full"
	case pb.Code_CODE_UNAUTHENTICATED:
		return "unauthenticated"
	case pb.Code_CODE_INTERNAL:
		return "internal"
	}
	return "unspecified"
}

// RefusalReasons lists every refusal reason the relay counts (metrics labels, status API).
func RefusalReasons() []string {
	var out []string
	for c := pb.Code_CODE_BAD_REQUEST; c <= pb.Code_CODE_INTERNAL; c++ {
		out = append(out, codeName(c))
	}
	return out
}

// MailboxID identifies a mailbox on a relay: a hash of the owner key, so the relay never sees an account key.
type MailboxID [32]byte

// MailboxIDOf derives the mailbox ID of an owner key.
func MailboxIDOf(owner ed25519.PublicKey) MailboxID {
	h := sha256.New()
	h.Write([]byte(domainMailboxID))
	h.Write(owner)
	var id MailboxID
	copy(id[:], h.Sum(nil))
	return id
}

func (m MailboxID) String() string { return hex.EncodeToString(m[:]) }

// RelayItemID derives the relay-side ID of the sender's item itemID in mailbox mb: a retried deposit of the
// same item lands on the same ID (idempotent), and the relay never sees the sender's ID.
func RelayItemID(mb MailboxID, itemID string) []byte {
	h := sha256.New()
	h.Write([]byte(domainItemID))
	h.Write(mb[:])
	h.Write([]byte(itemID))
	return h.Sum(nil)[:idLen]
}

// Keys are a node's mailbox keys, all derived from its account seed (nothing extra to store or back up).
type Keys struct {
	account   *identity.Identity
	owner     ed25519.PrivateKey
	hpkePriv  hpke.PrivateKey
	hpkePub   []byte
	capSecret []byte
}

// DeriveKeys derives the mailbox keys of an identity.
func DeriveKeys(id *identity.Identity) (*Keys, error) {
	k := &Keys{account: id}
	k.owner = ed25519.NewKeyFromSeed(id.DeriveSecret("madang/mailbox/owner-key/v1", nil))
	priv, err := kem.DeriveKeyPair(id.DeriveSecret("madang/mailbox/hpke-key/v1", nil))
	if err != nil {
		return nil, fmt.Errorf("mailbox: derive hpke key: %w", err)
	}
	k.hpkePriv = priv
	k.hpkePub = priv.PublicKey().Bytes()
	k.capSecret = id.DeriveSecret("madang/mailbox/capability/v1", nil)
	return k, nil
}

// OwnerKey is the public mailbox owner key.
func (k *Keys) OwnerKey() ed25519.PublicKey { return k.owner.Public().(ed25519.PublicKey) }

// MailboxID is this node's mailbox ID (the same on every relay).
func (k *Keys) MailboxID() MailboxID { return MailboxIDOf(k.OwnerKey()) }

// capID is the capability ID issued to friend: deterministic, so re-issuing needs no storage, and opaque.
func (k *Keys) capID(friend ed25519.PublicKey) []byte {
	m := hmac.New(sha256.New, k.capSecret)
	m.Write(friend)
	return m.Sum(nil)[:capIDLen]
}

// Capability issues the deposit capability for friend. It carries no time, so the same friend always gets
// the same bytes (ed25519 signatures are deterministic): a friend's copy only changes when revoked.
func (k *Keys) Capability(friend ed25519.PublicKey) ([]byte, error) {
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.CapabilityBody{
		Version: 1, OwnerKey: k.OwnerKey(), CapId: k.capID(friend),
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox: capability: %w", err)
	}
	return sign(k.owner, domainCapability, body)
}

// authSignature answers a relay's challenge.
func (k *Keys) authSignature(relay peer.ID, nonce []byte) []byte {
	return ed25519.Sign(k.owner, authMessage(relay, nonce, k.OwnerKey()))
}

func authMessage(relay peer.ID, nonce []byte, owner ed25519.PublicKey) []byte {
	msg := []byte(domainAuth)
	msg = append(msg, []byte(relay)...)
	msg = append(msg, nonce...)
	return append(msg, owner...)
}

func sign(key ed25519.PrivateKey, domain string, body []byte) ([]byte, error) {
	raw, err := proto.Marshal(&pb.Signed{Body: body, Signature: ed25519.Sign(key, signedMessage(domain, body))})
	if err != nil {
		return nil, fmt.Errorf("mailbox: sign: %w", err)
	}
	return raw, nil
}

func signedMessage(domain string, body []byte) []byte {
	return append([]byte(domain), body...)
}

// openSigned decodes a Signed container and returns its body after checking the signature with the key that
// keyOf extracts from the body (decoded into body).
func openSigned(raw []byte, domain string, body proto.Message, keyOf func() []byte) error {
	if len(raw) > maxSignedBytes {
		return fmt.Errorf("%d bytes is too large", len(raw))
	}
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if err := proto.Unmarshal(s.Body, body); err != nil {
		return fmt.Errorf("decode body: %w", err)
	}
	key := keyOf()
	if len(key) != ed25519.PublicKeySize {
		return errors.New("bad key size")
	}
	if !ed25519.Verify(key, signedMessage(domain, s.Body), s.Signature) {
		return errors.New("bad signature")
	}
	return nil
}

// Capability is a verified deposit capability.
type Capability struct {
	Owner   ed25519.PublicKey
	Mailbox MailboxID
	ID      []byte
	Expires time.Time // zero: none
}

// VerifyCapability decodes and verifies a capability (signature by its owner key, expiry).
func VerifyCapability(raw []byte, now time.Time) (Capability, error) {
	var b pb.CapabilityBody
	if err := openSigned(raw, domainCapability, &b, func() []byte { return b.OwnerKey }); err != nil {
		return Capability{}, fmt.Errorf("%w: %v", ErrNoCapability, err)
	}
	if b.Version != 1 || len(b.CapId) != capIDLen {
		return Capability{}, fmt.Errorf("%w: bad version or id", ErrNoCapability)
	}
	c := Capability{Owner: b.OwnerKey, Mailbox: MailboxIDOf(b.OwnerKey), ID: b.CapId}
	if b.ExpiresUnix != 0 {
		c.Expires = time.Unix(b.ExpiresUnix, 0)
		if now.After(c.Expires) {
			return Capability{}, fmt.Errorf("%w: expired", ErrNoCapability)
		}
	}
	return c, nil
}

// Card is a verified mailbox card.
type Card struct {
	Account    ed25519.PublicKey
	Owner      ed25519.PublicKey
	Mailbox    MailboxID
	HPKEPublic []byte
	Relays     []string
	Capability []byte
}

// ParseCard decodes and verifies a card (signature by the account key, key sizes, relay addresses).
func ParseCard(raw []byte) (Card, error) {
	if len(raw) > maxCardBytes {
		return Card{}, fmt.Errorf("%w: %d bytes", ErrBadCard, len(raw))
	}
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return Card{}, fmt.Errorf("%w: %v", ErrBadCard, err)
	}
	var b pb.CardBody
	if err := proto.Unmarshal(s.Body, &b); err != nil {
		return Card{}, fmt.Errorf("%w: %v", ErrBadCard, err)
	}
	if b.Version != 1 || len(b.AccountKey) != ed25519.PublicKeySize || len(b.OwnerKey) != ed25519.PublicKeySize {
		return Card{}, fmt.Errorf("%w: bad version or key size", ErrBadCard)
	}
	if !ed25519.Verify(b.AccountKey, signedMessage(domainCard, s.Body), s.Signature) {
		return Card{}, fmt.Errorf("%w: signature", ErrBadCard)
	}
	if b.KemId != uint32(kem.ID()) {
		return Card{}, fmt.Errorf("%w: unsupported KEM %#x", ErrBadCard, b.KemId)
	}
	if _, err := kem.NewPublicKey(b.HpkePublicKey); err != nil {
		return Card{}, fmt.Errorf("%w: hpke key: %v", ErrBadCard, err)
	}
	if err := checkRelays(b.Relays, 0); err != nil {
		return Card{}, fmt.Errorf("%w: %v", ErrBadCard, err)
	}
	// Expiry is the relay's to judge at deposit time; here only the structure and signature count.
	capab, err := VerifyCapability(b.Capability, time.Unix(0, 0))
	if err != nil {
		return Card{}, fmt.Errorf("%w: %v", ErrBadCard, err)
	}
	if !capab.Owner.Equal(ed25519.PublicKey(b.OwnerKey)) {
		return Card{}, fmt.Errorf("%w: capability of another mailbox", ErrBadCard)
	}
	return Card{
		Account: b.AccountKey, Owner: b.OwnerKey, Mailbox: MailboxIDOf(b.OwnerKey), HPKEPublic: b.HpkePublicKey,
		Relays: b.Relays, Capability: b.Capability,
	}, nil
}

// checkRelays checks a relay list: at most maxRelays entries, at least min, each a multiaddr with /p2p/.
func checkRelays(relays []string, min int) error {
	if len(relays) > maxRelays || len(relays) < min {
		return fmt.Errorf("%d relays (want %d to %d)", len(relays), min, maxRelays)
	}
	for _, r := range relays {
		if _, err := peer.AddrInfoFromString(r); err != nil {
			return fmt.Errorf("relay %q: %v", r, err)
		}
	}
	return nil
}

// Receipt is a verified relay receipt.
type Receipt struct {
	Relay      peer.ID
	Mailbox    MailboxID
	ItemID     []byte
	SealedHash []byte
	Stored     time.Time
	Expires    time.Time
	Duplicate  bool
}

// VerifyReceipt decodes a receipt and checks the relay's signature (the relay's peer ID embeds its key).
func VerifyReceipt(raw []byte) (Receipt, error) {
	var b pb.ReceiptBody
	var relay peer.ID
	err := openSigned(raw, domainReceipt, &b, func() []byte {
		id, err := peer.IDFromBytes(b.RelayPeer)
		if err != nil {
			return nil
		}
		relay = id
		pk, err := id.ExtractPublicKey()
		if err != nil {
			return nil
		}
		rawKey, err := pk.Raw()
		if err != nil || len(rawKey) != ed25519.PublicKeySize {
			return nil
		}
		return rawKey
	})
	if err != nil {
		return Receipt{}, fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	if b.Version != 1 || len(b.MailboxId) != len(MailboxID{}) || len(b.ItemId) != idLen {
		return Receipt{}, fmt.Errorf("%w: bad version or ids", ErrBadReceipt)
	}
	r := Receipt{Relay: relay, ItemID: b.ItemId, SealedHash: b.SealedHash, Stored: time.Unix(b.StoredUnix, 0),
		Expires: time.Unix(b.ExpiresUnix, 0), Duplicate: b.Duplicate}
	copy(r.Mailbox[:], b.MailboxId)
	return r, nil
}

// VerifyReceiptSet decodes what Deposit returned and verifies every receipt in it.
func VerifyReceiptSet(raw []byte) ([]Receipt, error) {
	var set pb.ReceiptSet
	if err := proto.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReceipt, err)
	}
	if len(set.Receipts) == 0 || len(set.Receipts) > maxRelays {
		return nil, fmt.Errorf("%w: %d receipts", ErrBadReceipt, len(set.Receipts))
	}
	out := make([]Receipt, 0, len(set.Receipts))
	for _, r := range set.Receipts {
		rc, err := VerifyReceipt(r)
		if err != nil {
			return nil, err
		}
		out = append(out, rc)
	}
	return out, nil
}

// padBuckets are the sizes sealed plaintexts are padded up to; above the last, to a multiple of it.
var padBuckets = []int{256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10}

func paddedSize(n int) int {
	for _, b := range padBuckets {
		if n <= b {
			return b
		}
	}
	last := padBuckets[len(padBuckets)-1]
	return (n + last - 1) / last * last
}

// hpkeInfo binds a sealed item to one mailbox.
func hpkeInfo(mb MailboxID) []byte { return append([]byte(hpkeInfoPrefix), mb[:]...) }

// seal encrypts an item for the card's owner. Padding hides the payload's exact size.
func seal(card Card, itemID string, payload []byte, sentMicros int64) ([]byte, error) {
	pub, err := kem.NewPublicKey(card.HPKEPublic)
	if err != nil {
		return nil, fmt.Errorf("mailbox: seal: %w", err)
	}
	it := &pb.SealedItem{Version: 1, ItemId: itemID, Payload: payload, SentMicros: sentMicros}
	size := proto.Size(it)
	// The padding field costs a tag and a varint length besides its bytes.
	if pad := paddedSize(size+4) - size - 4; pad > 0 {
		it.Padding = make([]byte, pad)
	}
	plain, err := proto.Marshal(it)
	if err != nil {
		return nil, fmt.Errorf("mailbox: seal: %w", err)
	}
	out, err := hpke.Seal(pub, kdf, aead, hpkeInfo(card.Mailbox), plain)
	if err != nil {
		return nil, fmt.Errorf("mailbox: seal: %w", err)
	}
	return out, nil
}

// openItem decrypts and decodes an item sealed to k. It fails on anything tampered, truncated or not for k.
func (k *Keys) openItem(sealed []byte) (*pb.SealedItem, error) {
	plain, err := hpke.Open(k.hpkePriv, kdf, aead, hpkeInfo(k.MailboxID()), sealed)
	if err != nil {
		return nil, fmt.Errorf("mailbox: open item: %w", err)
	}
	var it pb.SealedItem
	if err := proto.Unmarshal(plain, &it); err != nil {
		return nil, fmt.Errorf("mailbox: decode item: %w", err)
	}
	if it.Version != 1 || it.ItemId == "" {
		return nil, errors.New("mailbox: decode item: bad version or id")
	}
	return &it, nil
}
