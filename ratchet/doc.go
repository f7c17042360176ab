// Package ratchet is Madang's end-to-end encryption for 1:1 chats: a
// PQXDH-shaped session start followed by the Double Ratchet, built from the
// public Signal specifications (PQXDH revision 3, Double Ratchet) on the
// standard library (crypto/ecdh X25519, crypto/mlkem ML-KEM-768, crypto/hkdf,
// crypto/hmac, crypto/sha256, crypto/ed25519) and
// golang.org/x/crypto/chacha20poly1305.
//
// # Keys
//
// A device owns LocalKeys: an X25519 identity key IK ("device DH key"), a
// signed X25519 prekey SPK and a signed ML-KEM-768 prekey PQPK, both
// last-resort style (no one-time prekeys) and named by uint32 ids. The
// caller's ed25519 account key signs, each over a domain-separated string:
//
//	"madang/ratchet/ik/v1"  ‖ 0x00 ‖ IK
//	"madang/ratchet/spk/v1" ‖ 0x00 ‖ IK ‖ be32(SPK id) ‖ SPK
//	"madang/ratchet/kem/v1" ‖ 0x00 ‖ IK ‖ be32(PQPK id) ‖ PQPK
//
// The public half is a PrekeyBundle (MarshalBundle / UnmarshalBundle;
// UnmarshalBundle also verifies). LocalKeys does not hold the account private
// key.
//
// # Session start (PQXDH)
//
// Initiate (device A, with B's verified bundle) computes
//
//	DH1 = DH(IK_A, SPK_B)   DH2 = DH(EK_A, IK_B)   DH3 = DH(EK_A, SPK_B)
//	(SS, CT) = ML-KEM-768.Encaps(PQPK_B)
//	SK = HKDF-SHA256(salt = 32 zero bytes,
//	                 ikm  = 0xFF*32 ‖ DH1 ‖ DH2 ‖ DH3 ‖ SS,
//	                 info = "madang PQXDH X25519 SHA-256 ML-KEM-768")
//
// rejecting any all-zero X25519 output. Every message A sends carries an init
// header (A's account key, IK_A with its account signature, EK_A, CT and the
// prekey ids) until A has decrypted a message from B, or until B authentically
// acknowledged one of those messages (Confirm, after a signed delivery ack), so
// whichever of them arrives first can start the session. B's Accept (AcceptWithAD if Encrypt was
// given associated data) verifies the account signature over IK_A, computes the
// same SK and decrypts. PeekInit tells an
// init message from a normal one and which account it claims to be from.
//
// # Associated data
//
// The session AD is
//
//	AD = account_A ‖ IK_A ‖ account_B ‖ IK_B      (initiator first, 128 bytes)
//
// and every message is sealed with ChaCha20-Poly1305 under associated data
//
//	AD ‖ be32(len(header)) ‖ header ‖ ad
//
// where header is the serialized Header exactly as sent (it is authenticated
// as raw bytes, never re-encoded) and ad is the caller's extra associated data
// (e.g. a message id) given to Encrypt and Decrypt. So each message is bound to
// both accounts, both devices, its ratchet key, counters, init data and ad.
// Session.ID, a hash of AD and the init data, is the same on both sides.
//
// # Double Ratchet
//
// As in the Signal specification: KDF_RK is HKDF-SHA256 (salt = root key,
// ikm = DH output, info "madang/ratchet/root/v1", 64 bytes: new root key and
// chain key); KDF_CK is HMAC-SHA256 with 0x01 (message key) and 0x02 (next
// chain key); a message key is expanded by HKDF-SHA256 (info
// "madang/ratchet/aead/v1") into a ChaCha20-Poly1305 key and nonce. The
// initiator starts with a fresh ratchet key against SPK_B; the responder's
// first ratchet key is SPK_B, replaced at its first DH ratchet step inside
// Accept. The header holds the sender's ratchet public key, PN and N.
//
// Caps, as in libsignal: at most MaxSkippedKeys (2,000) skipped message keys
// are stored, the oldest evicted first (a message whose key was evicted fails
// with ErrTooManySkipped); a message that would skip more than MaxForwardJump
// (25,000) keys in one chain fails with ErrTooFarAhead. Ciphertexts are at
// most 1 MiB; every length is checked before use.
//
// Decrypt is transactional: on any error the session is exactly as before.
// A message whose counter was already consumed in a known chain (the current
// one or the last MaxPreviousChains retired ones) fails with ErrDuplicate, so
// the caller can re-acknowledge it. That verdict is made from the
// unauthenticated header: it never means "delivered now". A message carrying
// another session's init data fails with ErrWrongSession.
//
// # Persistence contract
//
// A Session lives in memory; the caller persists Session.Marshal (protobuf,
// contains secrets) with a synced write (store's Sync):
//
//   - after Encrypt and before sending the message: a crash that restores an
//     older state would make the session derive the same message key, key
//     and nonce again for a different plaintext;
//   - after Decrypt and before acknowledging the message, together with (in
//     the same synced batch as) the stored plaintext: an acknowledged message
//     that was not durably stored is lost, since the sender stops retrying.
//
// Decrypt consumes message keys: a restored older state can decrypt a
// message again, a newer one reports ErrDuplicate. LocalKeys.Marshal is
// persisted likewise once, when the keys are generated and before the bundle
// is published.
//
// Before authenticating a message the receiver may do up to two X25519
// operations and derive up to 2 × MaxForwardJump chain keys (as libsignal
// does); callers should rate-limit undecryptable traffic per sender.
//
// # Several sessions per peer, simultaneous initiation
//
// Both sides may Initiate; an init message received from a peer with which a
// session exists starts a new session. The rule, the one Signal uses:
//
//  1. Keep, per peer device, the active session plus a few previous ones
//     (for stragglers).
//  2. To receive: try the active session, then the previous ones, newest
//     first; ErrDuplicate from any means duplicate. If none decrypts and
//     PeekInit reports an init message, Accept it and keep the new session.
//  3. The active session (the one Encrypt is called on) is the one that most
//     recently was created by Initiate/Accept or decrypted a message.
//
// So if both sides initiate at once each accepts the other's session, all
// messages of both sessions decrypt, and the two converge on whichever
// session carried the latest message.
//
// A Session is not safe for concurrent use.
package ratchet
