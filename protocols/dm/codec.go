package dm

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/dm/pb"
	"github.com/madang-p2p/madang/ratchet"
)

const (
	wireVersion = 1
	adDomain    = "madang/dm/v1\x00"
	ackDomain   = "madang/dm/ack/v1\x00"

	// MaxTextBytes bounds the text of one message.
	MaxTextBytes = 64 << 10
	// MaxIDBytes bounds a message ID.
	MaxIDBytes = 64
	// MaxPayloadBytes bounds one encoded Payload (a message with PQXDH init data, or an ack of many ids).
	MaxPayloadBytes = MaxTextBytes + 16<<10
	// MaxAckIDs bounds the ids of one ack.
	MaxAckIDs = 1024
	// maxBatchPayloads and maxBatchBytes bound what a sender puts in one Batch; maxFrameBytes what a reader
	// accepts.
	maxBatchPayloads = 64
	maxBatchBytes    = 512 << 10
	maxFrameBytes    = maxBatchBytes + MaxPayloadBytes + 1024
	maxReplyBytes    = 256 << 10
)

// ErrBadPayload wraps every decoding or verification failure of this package's wire types.
var ErrBadPayload = errors.New("dm: invalid payload")

var idRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,64}$`)

// ValidID reports whether id can name a message: 1–64 of A–Z a–z 0–9 . _ ~ -.
func ValidID(id string) bool { return idRE.MatchString(id) }

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadPayload, fmt.Sprintf(format, args...))
}

// messageAD binds a sealed message to both accounts and its id.
func messageAD(sender, recipient ed25519.PublicKey, id string) []byte {
	ad := make([]byte, 0, len(adDomain)+64+len(id))
	ad = append(ad, adDomain...)
	ad = append(ad, sender...)
	ad = append(ad, recipient...)
	return append(ad, id...)
}

// DecodePayload decodes and bounds-checks a Payload (it verifies no signature and decrypts nothing).
func DecodePayload(raw []byte) (*pb.Payload, error) {
	if len(raw) > MaxPayloadBytes {
		return nil, badf("%d bytes", len(raw))
	}
	var p pb.Payload
	if err := proto.Unmarshal(raw, &p); err != nil {
		return nil, badf("%v", err)
	}
	switch {
	case p.Version != wireVersion:
		return nil, badf("version %d", p.Version)
	case len(p.Sender) != ed25519.PublicKeySize || len(p.Recipient) != ed25519.PublicKeySize:
		return nil, badf("account key size")
	}
	switch k := p.Kind.(type) {
	case *pb.Payload_Message:
		if k.Message == nil || !ValidID(k.Message.Id) || len(k.Message.Ratchet) == 0 {
			return nil, badf("message without id or ciphertext")
		}
	case *pb.Payload_Ack:
		if k.Ack == nil || len(k.Ack.Signature) != ed25519.SignatureSize {
			return nil, badf("ack without signature")
		}
	case *pb.Payload_Contact:
		if len(k.Contact) == 0 {
			return nil, badf("empty contact message")
		}
	default:
		return nil, badf("no content")
	}
	return &p, nil
}

func encode(m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("dm: marshal %T: %v", m, err)) // only for invalid UTF-8 in strings we validated
	}
	return b
}

// encodeContent builds the plaintext of a message.
func encodeContent(id string, lamport uint64, sent time.Time, text string) []byte {
	return encode(&pb.Content{Version: wireVersion, Id: id, Lamport: lamport, SentMs: sent.UnixMilli(), Text: text})
}

// DecodeContent decodes and checks a decrypted message.
func DecodeContent(pt []byte, id string) (*pb.Content, error) {
	var c pb.Content
	if err := proto.Unmarshal(pt, &c); err != nil {
		return nil, badf("content: %v", err)
	}
	switch {
	case c.Version != wireVersion:
		return nil, badf("content version %d", c.Version)
	case c.Id != id:
		return nil, badf("content id differs from the envelope's")
	case len(c.Text) > MaxTextBytes || !utf8.ValidString(c.Text):
		return nil, badf("text")
	}
	return &c, nil
}

// signAck makes the signed acknowledgement of ids sent by `to`.
func signAck(sign func([]byte) []byte, from, to ed25519.PublicKey, ids []string, read bool, now time.Time) *pb.SignedAck {
	body := encode(&pb.AckBody{Version: wireVersion, From: from, To: to, Ids: ids, Read: read, TimeMs: now.UnixMilli()})
	return &pb.SignedAck{Body: body, Signature: sign(append([]byte(ackDomain), body...))}
}

// OpenAck verifies an ack made by `from` for messages sent by `to`.
func OpenAck(sa *pb.SignedAck, from, to ed25519.PublicKey) (*pb.AckBody, error) {
	if sa == nil || len(sa.Body) > MaxPayloadBytes {
		return nil, badf("ack size")
	}
	if !ed25519.Verify(from, append([]byte(ackDomain), sa.Body...), sa.Signature) {
		return nil, badf("ack signature")
	}
	var b pb.AckBody
	if err := proto.Unmarshal(sa.Body, &b); err != nil {
		return nil, badf("ack body: %v", err)
	}
	switch {
	case b.Version != wireVersion:
		return nil, badf("ack version %d", b.Version)
	case !bytes.Equal(b.From, from) || !bytes.Equal(b.To, to):
		return nil, badf("ack for other accounts")
	case len(b.Ids) > MaxAckIDs:
		return nil, badf("ack of %d ids", len(b.Ids))
	}
	for _, id := range b.Ids {
		if !ValidID(id) {
			return nil, badf("ack id")
		}
	}
	return &b, nil
}

// permanent reports whether a decryption error means the message can never be read.
func permanent(err error) bool {
	for _, e := range []error{ratchet.ErrTooManySkipped, ratchet.ErrTooFarAhead, ratchet.ErrDecrypt, ratchet.ErrBadMessage,
		ratchet.ErrBadSignature, ratchet.ErrUnknownPrekey, ratchet.ErrDuplicate, ratchet.ErrWrongSession, ErrBadPayload} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
