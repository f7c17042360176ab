package ratchet

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/madang-p2p/madang/ratchet/pb"
)

const sessionIDContext = "madang/ratchet/session-id/v1"

// sessionID hashes the associated data and the init data that determine the
// shared secret.
func sessionID(ad []byte, in *pb.InitHeader) key32 {
	h := sha256.New()
	h.Write([]byte(sessionIDContext))
	h.Write([]byte{0})
	h.Write(ad)
	h.Write(in.EphemeralKey)
	var ids [8]byte
	binary.BigEndian.PutUint32(ids[:4], in.SignedPrekeyId)
	binary.BigEndian.PutUint32(ids[4:], in.KemPrekeyId)
	h.Write(ids[:])
	h.Write(in.KemCiphertext)
	return key32(h.Sum(nil))
}

func encodeAD(initiatorAccount, initiatorIK, responderAccount, responderIK []byte) (ad [adSize]byte) {
	copy(ad[0:32], initiatorAccount)
	copy(ad[32:64], initiatorIK)
	copy(ad[64:96], responderAccount)
	copy(ad[96:128], responderIK)
	return ad
}

// Initiate starts a session with the device whose bundle is peer (PQXDH as
// initiator). The bundle is verified; the caller must check that
// peer.AccountKey is the account it means to talk to. Every message the
// session encrypts carries the init data until a message from the peer has
// been decrypted or the peer's acknowledgement of one of them is confirmed
// (Confirm).
func Initiate(local *LocalKeys, peer PrekeyBundle) (*Session, error) {
	if err := peer.verify(); err != nil {
		return nil, fmt.Errorf("ratchet: initiate: bundle: %w", err)
	}
	s, err := initiate(local, peer)
	if err != nil {
		return nil, fmt.Errorf("ratchet: initiate: %w", err)
	}
	return s, nil
}

func initiate(local *LocalKeys, peer PrekeyBundle) (*Session, error) {
	kemKey, err := mlkem.NewEncapsulationKey768(peer.KEMPrekey)
	if err != nil {
		return nil, badMessage("KEM prekey: %v", err)
	}
	curve := ecdh.X25519()
	ek, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	dh1, err := dh(local.identity, peer.SignedPrekey)
	if err != nil {
		return nil, err
	}
	dh2, err := dh(ek, peer.IdentityDH)
	if err != nil {
		return nil, err
	}
	dh3, err := dh(ek, peer.SignedPrekey)
	if err != nil {
		return nil, err
	}
	ss, ct := kemKey.Encapsulate()
	sk := deriveSK(dh1, dh2, dh3, ss)

	ikPub := local.identity.PublicKey().Bytes()
	in := &pb.InitHeader{
		AccountKey:     append([]byte(nil), local.account...),
		IdentityDh:     ikPub,
		IdentityDhSig:  append([]byte(nil), local.identitySig...),
		EphemeralKey:   ek.PublicKey().Bytes(),
		KemCiphertext:  ct,
		SignedPrekeyId: peer.SignedPrekeyID,
		KemPrekeyId:    peer.KEMPrekeyID,
	}
	s := &Session{
		initiator: true,
		ad:        encodeAD(local.account, ikPub, peer.AccountKey, peer.IdentityDH),
		pending:   in,
	}
	s.id = sessionID(s.ad[:], in)

	// Double Ratchet, Alice: DHs fresh, DHr = SPK_B, RK, CKs = KDF_RK(SK, DH(DHs, DHr)).
	dhs, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	dhOut, err := dh(dhs, peer.SignedPrekey)
	if err != nil {
		return nil, err
	}
	s.st.rk, s.st.cks = kdfRK(sk, dhOut)
	s.st.dhs, s.st.dhsPub = dhs, dhs.PublicKey().Bytes()
	s.st.dhr = key32(peer.SignedPrekey)
	return s, nil
}

// Accept runs PQXDH as responder on an init message (see PeekInit) and
// decrypts it, returning the new session and the plaintext. The caller should
// first try its existing sessions with the sender (a re-delivered init
// message is a duplicate there), and must check that
// Session.PeerAccountKey is an account it accepts messages from. With
// last-resort prekeys Accept alone does not detect a replayed init message;
// keep the sessions (or Session.ID values) you accepted.
func Accept(local *LocalKeys, msg []byte) (*Session, []byte, error) {
	return AcceptWithAD(local, msg, nil)
}

// AcceptWithAD is Accept for messages encrypted with extra associated data ad
// (the ad passed to the initiator's Encrypt).
func AcceptWithAD(local *LocalKeys, msg, ad []byte) (*Session, []byte, error) {
	m, err := parseMessage(msg)
	if err != nil {
		return nil, nil, fmt.Errorf("ratchet: accept: %w", err)
	}
	s, pt, err := acceptAD(local, m, ad)
	if err != nil {
		return nil, nil, fmt.Errorf("ratchet: accept: %w", err)
	}
	return s, pt, nil
}

func acceptAD(local *LocalKeys, m *parsedMessage, ad []byte) (*Session, []byte, error) {
	in := m.init
	if in == nil {
		return nil, nil, badMessage("not an init message")
	}
	if err := verifyInitSignature(in); err != nil {
		return nil, nil, err
	}
	if in.SignedPrekeyId != local.spkID || in.KemPrekeyId != local.kemID {
		return nil, nil, fmt.Errorf("prekey ids %d/%d: %w", in.SignedPrekeyId, in.KemPrekeyId, ErrUnknownPrekey)
	}
	dh1, err := dh(local.spk, in.IdentityDh)
	if err != nil {
		return nil, nil, err
	}
	dh2, err := dh(local.identity, in.EphemeralKey)
	if err != nil {
		return nil, nil, err
	}
	dh3, err := dh(local.spk, in.EphemeralKey)
	if err != nil {
		return nil, nil, err
	}
	ss, err := local.kem.Decapsulate(in.KemCiphertext)
	if err != nil {
		return nil, nil, badMessage("KEM ciphertext: %v", err)
	}
	sk := deriveSK(dh1, dh2, dh3, ss)

	s := &Session{
		ad: encodeAD(in.AccountKey, in.IdentityDh, local.account, local.identity.PublicKey().Bytes()),
	}
	s.id = sessionID(s.ad[:], in)
	// Double Ratchet, Bob: DHs = SPK_B, RK = SK; the first message's ratchet
	// key triggers the first DH ratchet step inside decrypt.
	s.st.rk = sk
	s.st.dhs, s.st.dhsPub = local.spk, local.spk.PublicKey().Bytes()
	pt, err := s.decrypt(m, ad)
	if err != nil {
		return nil, nil, err
	}
	return s, pt, nil
}
