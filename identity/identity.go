// Package identity holds a node's keys: an account key (who the person is) and a device key (this node's libp2p
// identity), bound by a device certificate signed by the account key. One device exists today; the formats carry
// account and device as separate fields everywhere, so that more devices can be certified later.
package identity

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/identity/pb"
)

// ErrExists is returned by Create when an identity is already there; it is never overwritten.
var ErrExists = errors.New("identity already exists")

// ErrNotFound is returned by Load when the home has no identity yet.
var ErrNotFound = errors.New("no identity")

// ErrBadCert is returned when a device certificate does not verify.
var ErrBadCert = errors.New("invalid device certificate")

const certDomain = "madang/device-cert/v1"

// maxCertBytes bounds a certificate on the wire.
const maxCertBytes = 1024

// AccountID is the printable form of an account public key: "a" followed by unpadded lower-case base32.
type AccountID string

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// AccountIDFromKey encodes an account key.
func AccountIDFromKey(pub ed25519.PublicKey) AccountID {
	return AccountID("a" + strings.ToLower(b32.EncodeToString(pub)))
}

// ParseAccountID decodes and checks an account ID.
func ParseAccountID(s string) (ed25519.PublicKey, error) {
	if len(s) < 2 || s[0] != 'a' {
		return nil, fmt.Errorf("parse account id %q: must start with 'a'", s)
	}
	raw, err := b32.DecodeString(strings.ToUpper(s[1:]))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("parse account id %q: not a 32-byte base32 key", s)
	}
	return ed25519.PublicKey(raw), nil
}

// Identity is a node's account and device keys.
type Identity struct {
	account ed25519.PrivateKey
	device  ed25519.PrivateKey
	cert    *pb.DeviceCert
	host    crypto.PrivKey
	peerID  peer.ID
}

// New creates a fresh identity in memory (tests, simulations). Create persists one.
func New(deviceName string) (*Identity, error) {
	accSeed := make([]byte, ed25519.SeedSize)
	devSeed := make([]byte, ed25519.SeedSize)
	_, _ = rand.Read(accSeed)
	_, _ = rand.Read(devSeed)
	return fromSeeds(accSeed, devSeed, nil, deviceName, time.Now())
}

func fromSeeds(accSeed, devSeed []byte, cert *pb.DeviceCert, deviceName string, now time.Time) (*Identity, error) {
	if len(accSeed) != ed25519.SeedSize || len(devSeed) != ed25519.SeedSize {
		return nil, errors.New("identity: bad seed length")
	}
	id := &Identity{account: ed25519.NewKeyFromSeed(accSeed), device: ed25519.NewKeyFromSeed(devSeed)}
	hk, err := crypto.UnmarshalEd25519PrivateKey(id.device)
	if err != nil {
		return nil, fmt.Errorf("identity: device key: %w", err)
	}
	id.host = hk
	if id.peerID, err = peer.IDFromPrivateKey(hk); err != nil {
		return nil, fmt.Errorf("identity: peer id: %w", err)
	}
	if cert == nil {
		body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.DeviceCertBody{
			Version:     1,
			AccountKey:  id.AccountKey(),
			DeviceKey:   id.device.Public().(ed25519.PublicKey),
			CreatedUnix: now.Unix(),
			DeviceName:  deviceName,
		})
		if err != nil {
			return nil, fmt.Errorf("identity: cert body: %w", err)
		}
		cert = &pb.DeviceCert{Body: body, Signature: ed25519.Sign(id.account, certMessage(body))}
	}
	id.cert = cert
	if _, err := VerifyCert(id.CertBytes()); err != nil {
		return nil, err
	}
	return id, nil
}

func certMessage(body []byte) []byte { return append([]byte(certDomain), body...) }

// AccountKey is the account public key.
func (id *Identity) AccountKey() ed25519.PublicKey { return id.account.Public().(ed25519.PublicKey) }

// AccountID is the printable account ID.
func (id *Identity) AccountID() AccountID { return AccountIDFromKey(id.AccountKey()) }

// SignAccount signs msg with the account key. Callers domain-separate msg.
func (id *Identity) SignAccount(msg []byte) []byte { return ed25519.Sign(id.account, msg) }

// SignDevice signs msg with the device key.
func (id *Identity) SignDevice(msg []byte) []byte { return ed25519.Sign(id.device, msg) }

// AccountPrivate exposes the account signing key for packages that must sign with it directly (for example
// the ratchet's prekey signatures). Never log or send it.
func (id *Identity) AccountPrivate() ed25519.PrivateKey { return id.account }

// DeriveSecret derives a 32-byte secret from the account seed, bound to a purpose string and a context (for
// example a per-room persona seed: DeriveSecret("madang/persona/v1", roomID)). Different purposes or contexts
// give unrelated secrets; nobody without the account seed can link them.
func (id *Identity) DeriveSecret(purpose string, context []byte) []byte {
	out, err := hkdf.Key(sha256.New, id.account.Seed(), context, purpose, 32)
	if err != nil {
		panic(err) // only for lengths > 255*32
	}
	return out
}

// HostKey is the libp2p private key of this device.
func (id *Identity) HostKey() crypto.PrivKey { return id.host }

// PeerID is this device's libp2p peer ID.
func (id *Identity) PeerID() peer.ID { return id.peerID }

// CertBytes is the serialized device certificate.
func (id *Identity) CertBytes() []byte {
	b, _ := proto.Marshal(id.cert)
	return b
}

// Cert is a verified device certificate.
type Cert struct {
	AccountKey ed25519.PublicKey
	AccountID  AccountID
	DeviceKey  ed25519.PublicKey
	PeerID     peer.ID
	Created    time.Time
	DeviceName string
}

// VerifyCert decodes and verifies a device certificate.
func VerifyCert(raw []byte) (Cert, error) {
	if len(raw) > maxCertBytes {
		return Cert{}, fmt.Errorf("%w: %d bytes", ErrBadCert, len(raw))
	}
	var c pb.DeviceCert
	if err := proto.Unmarshal(raw, &c); err != nil {
		return Cert{}, fmt.Errorf("%w: %v", ErrBadCert, err)
	}
	var body pb.DeviceCertBody
	if err := proto.Unmarshal(c.Body, &body); err != nil {
		return Cert{}, fmt.Errorf("%w: body: %v", ErrBadCert, err)
	}
	if body.Version != 1 || len(body.AccountKey) != ed25519.PublicKeySize || len(body.DeviceKey) != ed25519.PublicKeySize {
		return Cert{}, fmt.Errorf("%w: bad version or key size", ErrBadCert)
	}
	if !ed25519.Verify(body.AccountKey, certMessage(c.Body), c.Signature) {
		return Cert{}, fmt.Errorf("%w: signature", ErrBadCert)
	}
	pk, err := crypto.UnmarshalEd25519PublicKey(body.DeviceKey)
	if err != nil {
		return Cert{}, fmt.Errorf("%w: device key: %v", ErrBadCert, err)
	}
	pid, err := peer.IDFromPublicKey(pk)
	if err != nil {
		return Cert{}, fmt.Errorf("%w: peer id: %v", ErrBadCert, err)
	}
	return Cert{
		AccountKey: body.AccountKey, AccountID: AccountIDFromKey(body.AccountKey), DeviceKey: body.DeviceKey,
		PeerID: pid, Created: time.Unix(body.CreatedUnix, 0), DeviceName: body.DeviceName,
	}, nil
}

// Create makes a new identity file at path. It never overwrites an existing one.
func Create(path, deviceName string) (*Identity, error) {
	id, err := New(deviceName)
	if err != nil {
		return nil, err
	}
	raw, err := proto.Marshal(&pb.IdentityFile{
		Version: 1, AccountSeed: id.account.Seed(), DeviceSeed: id.device.Seed(), Cert: id.cert,
	})
	if err != nil {
		return nil, fmt.Errorf("create identity: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create identity: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create identity %s: %w", path, ErrExists)
	}
	if err != nil {
		return nil, fmt.Errorf("create identity: %w", err)
	}
	if _, err := f.Write(raw); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("create identity: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("create identity: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create identity: %w", err)
	}
	return id, nil
}

// Load reads the identity file at path.
func Load(path string) (*Identity, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load identity %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("load identity: %w", err)
	}
	var f pb.IdentityFile
	if err := proto.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("load identity %s: corrupt file: %w", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("load identity %s: unsupported version %d", path, f.Version)
	}
	id, err := fromSeeds(f.AccountSeed, f.DeviceSeed, f.Cert, "", time.Time{})
	if err != nil {
		return nil, fmt.Errorf("load identity %s: %w", path, err)
	}
	return id, nil
}
