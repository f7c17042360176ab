package ratchet

import "errors"

// Limits. The skipped-key and forward-jump caps are libsignal's.
const (
	// MaxSkippedKeys is the number of skipped message keys a session keeps.
	// When more would be stored, the oldest are evicted; a message whose key
	// was evicted fails with ErrTooManySkipped.
	MaxSkippedKeys = 2000
	// MaxForwardJump is the largest number of message keys a single message
	// may make the receiver skip in one chain; more fails with ErrTooFarAhead.
	MaxForwardJump = 25000
	// MaxCiphertextSize bounds the AEAD ciphertext (plaintext plus 16-byte tag).
	MaxCiphertextSize = 1 << 20
	// MaxPlaintextSize is the largest plaintext Encrypt accepts.
	MaxPlaintextSize = MaxCiphertextSize - 16
	// MaxMessageSize bounds an encoded message: the ciphertext plus room for
	// the header, including the PQXDH init data.
	MaxMessageSize = MaxCiphertextSize + 4096
	// MaxPreviousChains is how many retired receiving chains are remembered
	// (for duplicate detection); their skipped keys live on regardless.
	MaxPreviousChains = 32

	maxBundleSize    = 4096
	maxLocalKeysSize = 4096
	maxSessionSize   = 1 << 20
	maxEvictedSpans  = 32
)

// Sentinel errors. Decoding and crypto failures wrap one of these; test with errors.Is.
var (
	// ErrDuplicate: the message's counter was already consumed in a known
	// chain. The decision is made from the header alone (the key is gone), so
	// it is not an authentication: re-ack, but never treat it as a delivery.
	ErrDuplicate = errors.New("ratchet: duplicate message")
	// ErrTooFarAhead: the message would skip more than MaxForwardJump keys.
	ErrTooFarAhead = errors.New("ratchet: message too far ahead")
	// ErrTooManySkipped: the message's key was skipped and later evicted
	// because more than MaxSkippedKeys keys were outstanding; it can never be
	// decrypted.
	ErrTooManySkipped = errors.New("ratchet: message key evicted (too many skipped messages)")
	// ErrDecrypt: authentication failed.
	ErrDecrypt = errors.New("ratchet: decryption failed")
	// ErrBadMessage: malformed or out-of-bounds encoding.
	ErrBadMessage = errors.New("ratchet: malformed message")
	// ErrBadSignature: a bundle or init header signature does not verify.
	ErrBadSignature = errors.New("ratchet: bad signature")
	// ErrWrongSession: the message carries PQXDH init data of another session
	// (e.g. the peer initiated anew); try other sessions, then Accept.
	ErrWrongSession = errors.New("ratchet: message belongs to another session")
	// ErrUnknownPrekey: an init message names prekey ids this device does not have.
	ErrUnknownPrekey = errors.New("ratchet: unknown prekey id")
)
