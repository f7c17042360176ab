package ratchet

import (
	"crypto/ed25519"
	"fmt"

	"github.com/madang-p2p/madang/ratchet/pb"
	"google.golang.org/protobuf/proto"
)

const (
	headerVersion = 1
	maxHeaderSize = 4096
	aeadTagSize   = 16
)

// parsedMessage is a decoded, size-checked message. headerBytes are the
// header exactly as received: they, not a re-encoding, are authenticated.
type parsedMessage struct {
	headerBytes []byte
	ciphertext  []byte
	dh          [dhKeySize]byte
	pn, n       uint32
	init        *pb.InitHeader
}

func badMessage(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrBadMessage)...)
}

func parseMessage(data []byte) (*parsedMessage, error) {
	if len(data) > MaxMessageSize {
		return nil, badMessage("message of %d bytes", len(data))
	}
	var env pb.Message
	if err := proto.Unmarshal(data, &env); err != nil {
		return nil, badMessage("envelope: %v", err)
	}
	if len(env.ProtoReflect().GetUnknown()) != 0 {
		return nil, badMessage("envelope: unknown fields")
	}
	if len(env.Header) == 0 || len(env.Header) > maxHeaderSize {
		return nil, badMessage("header of %d bytes", len(env.Header))
	}
	if len(env.Ciphertext) < aeadTagSize || len(env.Ciphertext) > MaxCiphertextSize {
		return nil, badMessage("ciphertext of %d bytes", len(env.Ciphertext))
	}
	var h pb.Header
	if err := proto.Unmarshal(env.Header, &h); err != nil {
		return nil, badMessage("header: %v", err)
	}
	if len(h.ProtoReflect().GetUnknown()) != 0 {
		return nil, badMessage("header: unknown fields")
	}
	if h.Version != headerVersion {
		return nil, badMessage("header version %d", h.Version)
	}
	if len(h.RatchetKey) != dhKeySize {
		return nil, badMessage("ratchet key of %d bytes", len(h.RatchetKey))
	}
	if h.Init != nil {
		if err := checkInit(h.Init); err != nil {
			return nil, err
		}
	}
	m := &parsedMessage{
		headerBytes: env.Header,
		ciphertext:  env.Ciphertext,
		pn:          h.PreviousCounter,
		n:           h.Counter,
		init:        h.Init,
	}
	copy(m.dh[:], h.RatchetKey)
	return m, nil
}

func checkInit(in *pb.InitHeader) error {
	switch {
	case len(in.ProtoReflect().GetUnknown()) != 0:
		return badMessage("init header: unknown fields")
	case len(in.AccountKey) != ed25519.PublicKeySize:
		return badMessage("init account key of %d bytes", len(in.AccountKey))
	case len(in.IdentityDh) != dhKeySize:
		return badMessage("init identity key of %d bytes", len(in.IdentityDh))
	case len(in.IdentityDhSig) != sigSize:
		return badMessage("init identity signature of %d bytes", len(in.IdentityDhSig))
	case len(in.EphemeralKey) != dhKeySize:
		return badMessage("init ephemeral key of %d bytes", len(in.EphemeralKey))
	case len(in.KemCiphertext) != kemCTSize:
		return badMessage("init KEM ciphertext of %d bytes", len(in.KemCiphertext))
	}
	return nil
}

func verifyInitSignature(in *pb.InitHeader) error {
	if !ed25519.Verify(in.AccountKey, identitySigMessage(in.IdentityDh), in.IdentityDhSig) {
		return fmt.Errorf("init identity key: %w", ErrBadSignature)
	}
	return nil
}

func encodeMessage(header, ciphertext []byte) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(&pb.Message{Header: header, Ciphertext: ciphertext})
}

// PeekInit reports whether msg carries PQXDH init data and, if so, the
// account key it claims to come from. The claim is only checked for
// self-consistency (the account's signature over the sender's identity DH
// key); the sender is authenticated only once Accept succeeds.
func PeekInit(msg []byte) (isInit bool, accountKey ed25519.PublicKey, err error) {
	m, err := parseMessage(msg)
	if err != nil {
		return false, nil, fmt.Errorf("ratchet: peek: %w", err)
	}
	if m.init == nil {
		return false, nil, nil
	}
	if err := verifyInitSignature(m.init); err != nil {
		return true, nil, fmt.Errorf("ratchet: peek: %w", err)
	}
	return true, append(ed25519.PublicKey(nil), m.init.AccountKey...), nil
}
