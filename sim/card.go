package sim

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// CardKind is the directory kind of the cards the dht scenario announces: a small self-signed card, so
// that the scenario measures the directory and the DHT rather than any one feature's card format.
const CardKind = "sim"

const (
	cardDomain = "madang/sim-card/v1\x00"
	maxCardID  = 64
)

// ErrBadCard is returned for malformed or forged sim cards.
var ErrBadCard = errors.New("sim: invalid card")

// SignCard makes a card: public key (32) | updated unix ms (8, big endian) | id length (1) | id | signature
// (64) over the domain and everything before it. The card's directory id is the hex public key and id.
func SignCard(priv ed25519.PrivateKey, id string, updated time.Time) []byte {
	if len(id) > maxCardID {
		id = id[:maxCardID]
	}
	b := make([]byte, 0, 32+8+1+len(id)+ed25519.SignatureSize)
	b = append(b, priv.Public().(ed25519.PublicKey)...)
	b = binary.BigEndian.AppendUint64(b, uint64(updated.UnixMilli()))
	b = append(b, byte(len(id)))
	b = append(b, id...)
	return append(b, ed25519.Sign(priv, append([]byte(cardDomain), b...))...)
}

// VerifyCard is the directory verifier of kind "sim".
func VerifyCard(raw []byte) (string, time.Time, error) {
	const fixed = 32 + 8 + 1
	if len(raw) < fixed+ed25519.SignatureSize {
		return "", time.Time{}, fmt.Errorf("%w: %d bytes", ErrBadCard, len(raw))
	}
	n := int(raw[fixed-1])
	if n > maxCardID || len(raw) != fixed+n+ed25519.SignatureSize {
		return "", time.Time{}, fmt.Errorf("%w: length", ErrBadCard)
	}
	body := raw[:fixed+n]
	if !ed25519.Verify(ed25519.PublicKey(raw[:32]), append([]byte(cardDomain), body...), raw[fixed+n:]) {
		return "", time.Time{}, fmt.Errorf("%w: signature", ErrBadCard)
	}
	ms := int64(binary.BigEndian.Uint64(raw[32:40]))
	return hex.EncodeToString(raw[:32]) + "/" + string(raw[fixed:fixed+n]), time.UnixMilli(ms), nil
}
