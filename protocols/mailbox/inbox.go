package mailbox

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

// InboxNamespace is the DHT record namespace of inbox relay records.
const InboxNamespace = "inbox"

// maxInboxRecordBytes bounds an inbox record.
const maxInboxRecordBytes = 4 << 10

// InboxKey is the DHT key of an account's inbox record: /inbox/<raw account key>.
func InboxKey(account ed25519.PublicKey) string { return "/" + InboxNamespace + "/" + string(account) }

// InboxRecord is a verified inbox relay record.
type InboxRecord struct {
	Account ed25519.PublicKey
	Seq     uint64
	Relays  []string
	Issued  time.Time
}

// NewInboxRecord signs a record naming 1–3 inbox relays of id's account.
func NewInboxRecord(id *identity.Identity, seq uint64, relays []string, now time.Time) ([]byte, error) {
	if err := checkRelays(relays, 1); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.InboxRecordBody{
		Version: 1, AccountKey: id.AccountKey(), Seq: seq, Relays: relays, IssuedUnix: now.Unix(),
	})
	if err != nil {
		return nil, fmt.Errorf("inbox record: %w", err)
	}
	raw, err := proto.Marshal(&pb.Signed{Body: body, Signature: id.SignAccount(signedMessage(domainInbox, body))})
	if err != nil {
		return nil, fmt.Errorf("inbox record: %w", err)
	}
	return raw, nil
}

// ParseInboxRecord decodes and verifies an inbox record.
func ParseInboxRecord(raw []byte) (InboxRecord, error) {
	if len(raw) > maxInboxRecordBytes {
		return InboxRecord{}, fmt.Errorf("%w: %d bytes", ErrBadRecord, len(raw))
	}
	var b pb.InboxRecordBody
	if err := openSigned(raw, domainInbox, &b, func() []byte { return b.AccountKey }); err != nil {
		return InboxRecord{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if b.Version != 1 {
		return InboxRecord{}, fmt.Errorf("%w: version %d", ErrBadRecord, b.Version)
	}
	if err := checkRelays(b.Relays, 1); err != nil {
		return InboxRecord{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return InboxRecord{Account: b.AccountKey, Seq: b.Seq, Relays: b.Relays, Issued: time.Unix(b.IssuedUnix, 0)}, nil
}

// InboxValidator validates inbox records in the DHT: the key names the signing account, and among valid
// records the highest seq wins.
type InboxValidator struct{}

// Validate checks that value is a record signed by the account the key names.
func (InboxValidator) Validate(key string, value []byte) error {
	acct, ok := strings.CutPrefix(key, "/"+InboxNamespace+"/")
	if !ok || len(acct) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: bad key", ErrBadRecord)
	}
	rec, err := ParseInboxRecord(value)
	if err != nil {
		return err
	}
	if !bytes.Equal(rec.Account, []byte(acct)) {
		return fmt.Errorf("%w: signed by another account", ErrBadRecord)
	}
	return nil
}

// Select picks the valid record with the highest seq (the first on ties).
func (v InboxValidator) Select(key string, values [][]byte) (int, error) {
	best, bestSeq := -1, uint64(0)
	for i, val := range values {
		if v.Validate(key, val) != nil {
			continue
		}
		rec, _ := ParseInboxRecord(val)
		if best < 0 || rec.Seq > bestSeq {
			best, bestSeq = i, rec.Seq
		}
	}
	if best < 0 {
		return 0, errors.New("inbox record: no valid record")
	}
	return best, nil
}
