package ratchet

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

const (
	pqxdhInfo = "madang PQXDH X25519 SHA-256 ML-KEM-768"
	rootInfo  = "madang/ratchet/root/v1"
	aeadInfo  = "madang/ratchet/aead/v1"
)

type key32 = [32]byte

var zero32 key32

// dh computes X25519 and rejects an all-zero result (low-order public key).
func dh(priv *ecdh.PrivateKey, pub []byte) ([]byte, error) {
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("X25519 public key: %v: %w", err, ErrBadMessage)
	}
	out, err := priv.ECDH(p)
	if err != nil {
		return nil, fmt.Errorf("X25519: %v: %w", err, ErrBadMessage)
	}
	if subtle.ConstantTimeCompare(out, zero32[:]) == 1 {
		return nil, fmt.Errorf("X25519: all-zero shared secret: %w", ErrBadMessage)
	}
	return out, nil
}

// deriveSK is the PQXDH KDF: HKDF-SHA256 with a zero salt over
// 0xFF*32 ‖ DH1 ‖ DH2 ‖ DH3 ‖ SS.
func deriveSK(dh1, dh2, dh3, ss []byte) key32 {
	ikm := make([]byte, 0, 32*5)
	for range 32 {
		ikm = append(ikm, 0xFF)
	}
	ikm = append(ikm, dh1...)
	ikm = append(ikm, dh2...)
	ikm = append(ikm, dh3...)
	ikm = append(ikm, ss...)
	out, err := hkdf.Key(sha256.New, ikm, zero32[:], pqxdhInfo, 32)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error()) // cannot happen for 32 bytes
	}
	return key32(out)
}

// kdfRK is the Double Ratchet root KDF: HKDF-SHA256 with the root key as salt.
func kdfRK(rk key32, dhOut []byte) (newRK, ck key32) {
	out, err := hkdf.Key(sha256.New, dhOut, rk[:], rootInfo, 64)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error())
	}
	return key32(out[:32]), key32(out[32:])
}

// kdfCK is the chain KDF: HMAC-SHA256(ck, 0x01) is the message key,
// HMAC-SHA256(ck, 0x02) the next chain key.
func kdfCK(ck key32) (mk, next key32) {
	h := hmac.New(sha256.New, ck[:])
	h.Write([]byte{0x01})
	h.Sum(mk[:0])
	h.Reset()
	h.Write([]byte{0x02})
	h.Sum(next[:0])
	return mk, next
}

// aeadInput builds the AEAD associated data:
// session AD ‖ be32(len(header)) ‖ header ‖ caller AD.
func aeadInput(sessionAD, header, ad []byte) []byte {
	b := make([]byte, 0, len(sessionAD)+4+len(header)+len(ad))
	b = append(b, sessionAD...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(header)))
	b = append(b, header...)
	return append(b, ad...)
}

// messageAEAD derives the ChaCha20-Poly1305 key and nonce from a message key
// with HKDF-SHA256 (zero salt). Message keys are single-use, so the derived
// nonce never repeats under one key.
func messageAEAD(mk key32) (aead cipher.AEAD, nonce []byte) {
	out, err := hkdf.Key(sha256.New, mk[:], zero32[:], aeadInfo, chacha20poly1305.KeySize+chacha20poly1305.NonceSize)
	if err != nil {
		panic("ratchet: hkdf: " + err.Error())
	}
	a, err := chacha20poly1305.New(out[:chacha20poly1305.KeySize])
	if err != nil {
		panic("ratchet: chacha20poly1305: " + err.Error())
	}
	return a, out[chacha20poly1305.KeySize:]
}

func seal(mk key32, sessionAD, header, plaintext, ad []byte) []byte {
	a, nonce := messageAEAD(mk)
	return a.Seal(nil, nonce, plaintext, aeadInput(sessionAD, header, ad))
}

func open(mk key32, sessionAD, header, ciphertext, ad []byte) ([]byte, error) {
	a, nonce := messageAEAD(mk)
	pt, err := a.Open(nil, nonce, ciphertext, aeadInput(sessionAD, header, ad))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}
