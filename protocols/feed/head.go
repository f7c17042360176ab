package feed

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	record "github.com/libp2p/go-libp2p-record"

	"github.com/madang-p2p/madang/protocols/feed/pb"
)

const (
	headDomain = "madang/feed/head/v1"
	// MaxHeadBytes bounds a signed head record.
	MaxHeadBytes = 512
)

// ErrInvalidHead wraps every head record validation error.
var ErrInvalidHead = errors.New("invalid head record")

// Head is a verified head record: the channel's newest entry as signed by the channel key.
type Head struct {
	Channel         ed25519.PublicKey
	Seq             uint64
	EntryID         []byte
	Time            time.Time
	ProfileRevision uint64
	Raw             []byte
}

// SignHead signs a head record for entry seq with id entryID (seq 0: no entries yet, entryID nil).
func SignHead(priv ed25519.PrivateKey, seq uint64, entryID []byte, at time.Time, profileRevision uint64) (*Head, error) {
	raw, err := seal(priv, headDomain, &pb.Head{
		Version: 1, Channel: priv.Public().(ed25519.PublicKey), Seq: seq, EntryId: entryID, TimeMs: at.UnixMilli(),
		ProfileRevision: profileRevision,
	})
	if err != nil {
		return nil, fmt.Errorf("sign head: %w", err)
	}
	return VerifyHead(raw)
}

// VerifyHead decodes a signed head record and verifies its signature.
func VerifyHead(raw []byte) (*Head, error) {
	var h pb.Head
	body, sig, err := unseal(raw, MaxHeadBytes, &h)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHead, err)
	}
	switch {
	case h.Version != 1 || len(h.Channel) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: version or key size", ErrInvalidHead)
	case (h.Seq == 0) != (len(h.EntryId) == 0), len(h.EntryId) != 0 && len(h.EntryId) != 32:
		return nil, fmt.Errorf("%w: entry id", ErrInvalidHead)
	}
	if !ed25519.Verify(h.Channel, signed(headDomain, body), sig) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidHead)
	}
	return &Head{Channel: h.Channel, Seq: h.Seq, EntryID: h.EntryId, Time: time.UnixMilli(h.TimeMs), ProfileRevision: h.ProfileRevision, Raw: raw}, nil
}

// Newer reports whether h should replace old: a higher seq wins; on the same seq a newer profile revision,
// then a later time, then the greater encoding (so that every node makes the same choice).
func (h *Head) Newer(old *Head) bool {
	if old == nil {
		return true
	}
	if h.Seq != old.Seq {
		return h.Seq > old.Seq
	}
	if h.ProfileRevision != old.ProfileRevision {
		return h.ProfileRevision > old.ProfileRevision
	}
	if !h.Time.Equal(old.Time) {
		return h.Time.After(old.Time)
	}
	return bytes.Compare(h.Raw, old.Raw) > 0
}

// HeadValidator is the DHT record validator of the "chanhead" namespace: a record is valid if it is a head
// signed by the key the record key names; Select picks the newest (highest seq).
type HeadValidator struct{}

var _ record.Validator = HeadValidator{}

// Validate implements record.Validator.
func (HeadValidator) Validate(key string, value []byte) error {
	_, err := verifyHeadRecord(key, value)
	return err
}

func verifyHeadRecord(key string, value []byte) (*Head, error) {
	ns, rest, err := record.SplitKey(key)
	if err != nil || ns != HeadNamespace || strings.Contains(rest, "/") {
		return nil, fmt.Errorf("%w: key %q", ErrInvalidHead, key)
	}
	pub, err := ParseID(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidHead, err)
	}
	h, err := VerifyHead(value)
	if err != nil {
		return nil, err
	}
	if !h.Channel.Equal(pub) {
		return nil, fmt.Errorf("%w: signed by another channel", ErrInvalidHead)
	}
	return h, nil
}

// Select implements record.Validator: the index of the newest valid head. Invalid values never win.
func (HeadValidator) Select(key string, values [][]byte) (int, error) {
	best, bestIdx := (*Head)(nil), -1
	for i, v := range values {
		h, err := verifyHeadRecord(key, v)
		if err != nil {
			continue
		}
		if h.Newer(best) {
			best, bestIdx = h, i
		}
	}
	if bestIdx < 0 {
		return 0, fmt.Errorf("%w: no valid record among %d", ErrInvalidHead, len(values))
	}
	return bestIdx, nil
}
