package ratchet

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/mlkem"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/madang-p2p/madang/ratchet/pb"
	"google.golang.org/protobuf/proto"
)

// Signature contexts. Every signature is made by the account key over
// context ‖ 0x00 ‖ fields, with fixed-size fields, so no two kinds of signed
// statement can be confused.
const (
	identitySigContext = "madang/ratchet/ik/v1"
	spkSigContext      = "madang/ratchet/spk/v1"
	kemSigContext      = "madang/ratchet/kem/v1"
)

const (
	dhKeySize  = 32
	sigSize    = ed25519.SignatureSize
	kemPubSize = mlkem.EncapsulationKeySize768
	kemCTSize  = mlkem.CiphertextSize768
	kemSeedLen = mlkem.SeedSize
)

// PrekeyBundle is the public key material another device needs to start a
// session with this device. All three keys are signed by AccountKey.
type PrekeyBundle struct {
	AccountKey      ed25519.PublicKey
	IdentityDH      []byte // X25519 identity ("device DH") key
	IdentityDHSig   []byte // over "madang/ratchet/ik/v1" ‖ 0 ‖ IdentityDH
	SignedPrekeyID  uint32
	SignedPrekey    []byte // X25519
	SignedPrekeySig []byte // over "madang/ratchet/spk/v1" ‖ 0 ‖ IdentityDH ‖ be32(id) ‖ SignedPrekey
	KEMPrekeyID     uint32
	KEMPrekey       []byte // ML-KEM-768 encapsulation key
	KEMPrekeySig    []byte // over "madang/ratchet/kem/v1" ‖ 0 ‖ IdentityDH ‖ be32(id) ‖ KEMPrekey
}

func identitySigMessage(ik []byte) []byte {
	m := make([]byte, 0, len(identitySigContext)+1+len(ik))
	m = append(m, identitySigContext...)
	m = append(m, 0)
	return append(m, ik...)
}

// prekeySigMessage binds a prekey to its id and to the device's identity DH
// key, so prekeys of two devices of one account cannot be mixed.
func prekeySigMessage(context string, ik []byte, id uint32, key []byte) []byte {
	m := make([]byte, 0, len(context)+1+len(ik)+4+len(key))
	m = append(m, context...)
	m = append(m, 0)
	m = append(m, ik...)
	m = binary.BigEndian.AppendUint32(m, id)
	return append(m, key...)
}

func checkSizes(b *PrekeyBundle) error {
	switch {
	case len(b.AccountKey) != ed25519.PublicKeySize:
		return fmt.Errorf("account key of %d bytes: %w", len(b.AccountKey), ErrBadMessage)
	case len(b.IdentityDH) != dhKeySize:
		return fmt.Errorf("identity key of %d bytes: %w", len(b.IdentityDH), ErrBadMessage)
	case len(b.SignedPrekey) != dhKeySize:
		return fmt.Errorf("signed prekey of %d bytes: %w", len(b.SignedPrekey), ErrBadMessage)
	case len(b.KEMPrekey) != kemPubSize:
		return fmt.Errorf("KEM prekey of %d bytes: %w", len(b.KEMPrekey), ErrBadMessage)
	case len(b.IdentityDHSig) != sigSize, len(b.SignedPrekeySig) != sigSize, len(b.KEMPrekeySig) != sigSize:
		return fmt.Errorf("signature of wrong size: %w", ErrBadMessage)
	}
	return nil
}

// Verify checks sizes, the three account signatures and that the KEM key is
// a valid ML-KEM-768 encapsulation key. It does not tell whether AccountKey
// is the account the caller expects: compare it.
func (b PrekeyBundle) Verify() error {
	if err := b.verify(); err != nil {
		return fmt.Errorf("ratchet: verify bundle: %w", err)
	}
	return nil
}

func (b PrekeyBundle) verify() error {
	if err := checkSizes(&b); err != nil {
		return err
	}
	if !ed25519.Verify(b.AccountKey, identitySigMessage(b.IdentityDH), b.IdentityDHSig) {
		return fmt.Errorf("identity key: %w", ErrBadSignature)
	}
	if !ed25519.Verify(b.AccountKey, prekeySigMessage(spkSigContext, b.IdentityDH, b.SignedPrekeyID, b.SignedPrekey), b.SignedPrekeySig) {
		return fmt.Errorf("signed prekey: %w", ErrBadSignature)
	}
	if !ed25519.Verify(b.AccountKey, prekeySigMessage(kemSigContext, b.IdentityDH, b.KEMPrekeyID, b.KEMPrekey), b.KEMPrekeySig) {
		return fmt.Errorf("KEM prekey: %w", ErrBadSignature)
	}
	if _, err := mlkem.NewEncapsulationKey768(b.KEMPrekey); err != nil {
		return fmt.Errorf("KEM prekey: %v: %w", err, ErrBadMessage)
	}
	return nil
}

// MarshalBundle encodes a bundle as a PrekeyBundle protobuf.
func MarshalBundle(b PrekeyBundle) ([]byte, error) {
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.PrekeyBundle{
		AccountKey:      b.AccountKey,
		IdentityDh:      b.IdentityDH,
		IdentityDhSig:   b.IdentityDHSig,
		SignedPrekeyId:  b.SignedPrekeyID,
		SignedPrekey:    b.SignedPrekey,
		SignedPrekeySig: b.SignedPrekeySig,
		KemPrekeyId:     b.KEMPrekeyID,
		KemPrekey:       b.KEMPrekey,
		KemPrekeySig:    b.KEMPrekeySig,
	})
	if err != nil {
		return nil, fmt.Errorf("ratchet: marshal bundle: %w", err)
	}
	return out, nil
}

// UnmarshalBundle decodes a bundle and Verifies it: a bundle it returns
// without error is well-formed and self-consistently signed.
func UnmarshalBundle(data []byte) (PrekeyBundle, error) {
	if len(data) > maxBundleSize {
		return PrekeyBundle{}, fmt.Errorf("ratchet: unmarshal bundle: %d bytes: %w", len(data), ErrBadMessage)
	}
	var m pb.PrekeyBundle
	if err := proto.Unmarshal(data, &m); err != nil {
		return PrekeyBundle{}, fmt.Errorf("ratchet: unmarshal bundle: %v: %w", err, ErrBadMessage)
	}
	b := PrekeyBundle{
		AccountKey:      ed25519.PublicKey(m.AccountKey),
		IdentityDH:      m.IdentityDh,
		IdentityDHSig:   m.IdentityDhSig,
		SignedPrekeyID:  m.SignedPrekeyId,
		SignedPrekey:    m.SignedPrekey,
		SignedPrekeySig: m.SignedPrekeySig,
		KEMPrekeyID:     m.KemPrekeyId,
		KEMPrekey:       m.KemPrekey,
		KEMPrekeySig:    m.KemPrekeySig,
	}
	if err := b.verify(); err != nil {
		return PrekeyBundle{}, fmt.Errorf("ratchet: unmarshal bundle: %w", err)
	}
	return b, nil
}

// LocalKeys holds a device's private key material: the X25519 identity key
// and the two last-resort prekeys, plus the account's signatures over them.
// It does not hold the account private key. Persist it with Marshal; it is
// secret.
type LocalKeys struct {
	account     ed25519.PublicKey
	identity    *ecdh.PrivateKey
	identitySig []byte
	spkID       uint32
	spk         *ecdh.PrivateKey
	spkSig      []byte
	kemID       uint32
	kem         *mlkem.DecapsulationKey768
	kemSig      []byte
}

// GenerateLocalKeys creates a device's identity DH key and signed prekeys,
// signing them with the account key.
func GenerateLocalKeys(account ed25519.PrivateKey) (*LocalKeys, error) {
	if len(account) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("ratchet: generate keys: account key of %d bytes", len(account))
	}
	curve := ecdh.X25519()
	ik, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ratchet: generate keys: identity: %w", err)
	}
	spk, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ratchet: generate keys: signed prekey: %w", err)
	}
	kem, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("ratchet: generate keys: KEM prekey: %w", err)
	}
	var ids [8]byte
	if _, err := rand.Read(ids[:]); err != nil {
		return nil, fmt.Errorf("ratchet: generate keys: ids: %w", err)
	}
	k := &LocalKeys{
		account:  account.Public().(ed25519.PublicKey),
		identity: ik,
		spkID:    binary.BigEndian.Uint32(ids[:4]),
		spk:      spk,
		kemID:    binary.BigEndian.Uint32(ids[4:]),
		kem:      kem,
	}
	ikPub := ik.PublicKey().Bytes()
	k.identitySig = ed25519.Sign(account, identitySigMessage(ikPub))
	k.spkSig = ed25519.Sign(account, prekeySigMessage(spkSigContext, ikPub, k.spkID, spk.PublicKey().Bytes()))
	k.kemSig = ed25519.Sign(account, prekeySigMessage(kemSigContext, ikPub, k.kemID, kem.EncapsulationKey().Bytes()))
	return k, nil
}

// Bundle returns the public bundle to hand to peers.
func (k *LocalKeys) Bundle() PrekeyBundle {
	return PrekeyBundle{
		AccountKey:      append(ed25519.PublicKey(nil), k.account...),
		IdentityDH:      k.identity.PublicKey().Bytes(),
		IdentityDHSig:   append([]byte(nil), k.identitySig...),
		SignedPrekeyID:  k.spkID,
		SignedPrekey:    k.spk.PublicKey().Bytes(),
		SignedPrekeySig: append([]byte(nil), k.spkSig...),
		KEMPrekeyID:     k.kemID,
		KEMPrekey:       k.kem.EncapsulationKey().Bytes(),
		KEMPrekeySig:    append([]byte(nil), k.kemSig...),
	}
}

const localKeysVersion = 1

// Marshal encodes the private keys for persistence (protobuf). The result is
// secret.
func (k *LocalKeys) Marshal() ([]byte, error) {
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.LocalKeys{
		Version:             localKeysVersion,
		AccountKey:          k.account,
		IdentityDhPrivate:   k.identity.Bytes(),
		IdentityDhSig:       k.identitySig,
		SignedPrekeyId:      k.spkID,
		SignedPrekeyPrivate: k.spk.Bytes(),
		SignedPrekeySig:     k.spkSig,
		KemPrekeyId:         k.kemID,
		KemPrekeySeed:       k.kem.Bytes(),
		KemPrekeySig:        k.kemSig,
	})
	if err != nil {
		return nil, fmt.Errorf("ratchet: marshal local keys: %w", err)
	}
	return out, nil
}

// UnmarshalLocalKeys decodes keys written by Marshal and re-verifies the
// signatures of the derived public bundle.
func UnmarshalLocalKeys(data []byte) (*LocalKeys, error) {
	k, err := unmarshalLocalKeys(data)
	if err != nil {
		return nil, fmt.Errorf("ratchet: unmarshal local keys: %w", err)
	}
	return k, nil
}

func unmarshalLocalKeys(data []byte) (*LocalKeys, error) {
	if len(data) > maxLocalKeysSize {
		return nil, fmt.Errorf("%d bytes: %w", len(data), ErrBadMessage)
	}
	var m pb.LocalKeys
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%v: %w", err, ErrBadMessage)
	}
	if m.Version != localKeysVersion {
		return nil, fmt.Errorf("version %d: %w", m.Version, ErrBadMessage)
	}
	if len(m.IdentityDhPrivate) != dhKeySize || len(m.SignedPrekeyPrivate) != dhKeySize || len(m.KemPrekeySeed) != kemSeedLen {
		return nil, fmt.Errorf("private key of wrong size: %w", ErrBadMessage)
	}
	curve := ecdh.X25519()
	ik, err := curve.NewPrivateKey(m.IdentityDhPrivate)
	if err != nil {
		return nil, fmt.Errorf("identity key: %v: %w", err, ErrBadMessage)
	}
	spk, err := curve.NewPrivateKey(m.SignedPrekeyPrivate)
	if err != nil {
		return nil, fmt.Errorf("signed prekey: %v: %w", err, ErrBadMessage)
	}
	kem, err := mlkem.NewDecapsulationKey768(m.KemPrekeySeed)
	if err != nil {
		return nil, fmt.Errorf("KEM prekey: %v: %w", err, ErrBadMessage)
	}
	k := &LocalKeys{
		account:     ed25519.PublicKey(m.AccountKey),
		identity:    ik,
		identitySig: m.IdentityDhSig,
		spkID:       m.SignedPrekeyId,
		spk:         spk,
		spkSig:      m.SignedPrekeySig,
		kemID:       m.KemPrekeyId,
		kem:         kem,
		kemSig:      m.KemPrekeySig,
	}
	if err := k.Bundle().verify(); err != nil {
		return nil, err
	}
	return k, nil
}
