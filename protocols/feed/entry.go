package feed

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/madang-p2p/madang/protocols/feed/pb"
)

// Limits of an entry.
const (
	// MaxEntryBytes bounds a signed entry as it travels and is stored.
	MaxEntryBytes = 256 << 10
	MaxTitleBytes = 512
	MaxPriceBytes = 64
	MaxMedia      = 16
	maxMediaHash  = 64
)

const entryDomain = "madang/feed/entry/v1"

// Entry validation errors. Every error of VerifyEntry wraps ErrInvalidEntry.
var (
	ErrInvalidEntry = errors.New("invalid feed entry")
	ErrBadSignature = fmt.Errorf("%w: bad signature", ErrInvalidEntry)
	ErrTooLarge     = fmt.Errorf("%w: too large", ErrInvalidEntry)
)

// Kinds of entries, in the order of pb.Kind.
var kindNames = map[pb.Kind]string{pb.Kind_KIND_POST: "post", pb.Kind_KIND_OFFER: "offer", pb.Kind_KIND_NOTICE: "notice", pb.Kind_KIND_MENU: "menu"}

// ParseKind maps "post", "offer", "notice" or "menu" to its wire value.
func ParseKind(s string) (pb.Kind, error) {
	for k, n := range kindNames {
		if n == strings.ToLower(strings.TrimSpace(s)) {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown entry kind %q (post, offer, notice or menu)", s)
}

// Draft is what an author writes; Sign turns it into an entry.
type Draft struct {
	Kind       string
	Title      string
	Body       string
	Price      string
	ValidUntil time.Time // zero: no end
	Media      [][]byte
}

// Entry is a verified feed entry.
type Entry struct {
	ID         [32]byte
	Channel    ed25519.PublicKey
	Seq        uint64
	Prev       []byte
	Time       time.Time
	Kind       string
	Title      string
	Body       string
	Price      string
	ValidUntil time.Time
	Media      [][]byte
	// Raw is the signed entry as stored and served (a Signed message holding the exact signed bytes).
	Raw []byte
}

// SignEntry signs the entry seq of a channel whose previous entry has id prev (nil for seq 1).
func SignEntry(priv ed25519.PrivateKey, seq uint64, prev []byte, at time.Time, d Draft) (*Entry, error) {
	kind, err := ParseKind(d.Kind)
	if err != nil {
		return nil, err
	}
	e := &pb.Entry{
		Version: 1, Channel: priv.Public().(ed25519.PublicKey), Seq: seq, Prev: prev, TimeMs: at.UnixMilli(),
		Kind: kind, Title: d.Title, Body: d.Body, Price: d.Price, Media: d.Media,
	}
	if !d.ValidUntil.IsZero() {
		e.ValidUntilMs = d.ValidUntil.UnixMilli()
	}
	raw, err := seal(priv, entryDomain, e)
	if err != nil {
		return nil, fmt.Errorf("sign entry: %w", err)
	}
	return VerifyEntry(raw)
}

// DecodeEntry checks the shape and size of a signed entry without verifying its signature: it returns the
// entry and the exact signed message, for callers that verify signatures in bulk (VerifyDecoded).
func DecodeEntry(raw []byte) (*Entry, []byte, []byte, error) {
	if len(raw) > MaxEntryBytes {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, len(raw))
	}
	var e pb.Entry
	body, sig, err := unseal(raw, MaxEntryBytes, &e)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
	}
	if err := checkEntry(&e); err != nil {
		return nil, nil, nil, err
	}
	canon := raw
	if !isCanonical(raw, body, sig) {
		if canon, err = marshalSigned(body, sig); err != nil {
			return nil, nil, nil, fmt.Errorf("%w: %v", ErrInvalidEntry, err)
		}
	}
	out := &Entry{
		ID: entryID(body), Channel: e.Channel, Seq: e.Seq, Prev: e.Prev, Time: time.UnixMilli(e.TimeMs),
		Kind: kindNames[e.Kind], Title: e.Title, Body: e.Body, Price: e.Price, Media: e.Media, Raw: canon,
	}
	if e.ValidUntilMs != 0 {
		out.ValidUntil = time.UnixMilli(e.ValidUntilMs)
	}
	return out, body, sig, nil
}

// VerifyDecoded checks the channel key's signature over an entry body returned by DecodeEntry.
func VerifyDecoded(e *Entry, body, sig []byte) error {
	if !ed25519.Verify(e.Channel, signed(entryDomain, body), sig) {
		return ErrBadSignature
	}
	return nil
}

// VerifyEntry decodes a signed entry and verifies its shape and the channel key's signature. It does not
// check the entry's place in the log (see Log).
func VerifyEntry(raw []byte) (*Entry, error) {
	e, body, sig, err := DecodeEntry(raw)
	if err != nil {
		return nil, err
	}
	if err := VerifyDecoded(e, body, sig); err != nil {
		return nil, err
	}
	return e, nil
}

// isCanonical reports whether raw is exactly the two-field encoding of se (the common case), so that the
// stored form is the received form.
func isCanonical(raw, body, sig []byte) bool {
	want := len(body) + len(sig) + 2 + sizeVarint(len(body)) + sizeVarint(len(sig))
	return len(raw) == want && raw[0] == 0x0a // field 1 (entry) first, then field 2, nothing else
}

func sizeVarint(n int) int {
	s := 1
	for n >= 0x80 {
		n >>= 7
		s++
	}
	return s
}

func checkEntry(e *pb.Entry) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidEntry, fmt.Sprintf(format, args...))
	}
	switch {
	case e.Version != 1:
		return bad("version %d", e.Version)
	case len(e.Channel) != ed25519.PublicKeySize:
		return bad("channel key size")
	case e.Seq == 0:
		return bad("seq 0")
	case e.Seq == 1 && len(e.Prev) != 0:
		return bad("first entry has a prev")
	case e.Seq > 1 && len(e.Prev) != 32:
		return bad("prev must be a 32-byte id")
	case e.TimeMs <= 0:
		return bad("no time")
	case kindNames[e.Kind] == "":
		return bad("kind %d", e.Kind)
	case e.Title == "" && e.Body == "":
		return bad("empty entry")
	case len(e.Title) > MaxTitleBytes || strings.ContainsAny(e.Title, "\n\r"):
		return bad("title")
	case len(e.Price) > MaxPriceBytes:
		return bad("price")
	case e.ValidUntilMs < 0:
		return bad("valid-until")
	case len(e.Media) > MaxMedia:
		return bad("%d media", len(e.Media))
	case !utf8.ValidString(e.Title) || !utf8.ValidString(e.Body) || !utf8.ValidString(e.Price):
		return bad("not UTF-8")
	}
	for _, m := range e.Media {
		if len(m) == 0 || len(m) > maxMediaHash {
			return bad("media hash size")
		}
	}
	return nil
}
