package feed

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/madang-p2p/madang/protocols/feed/pb"
)

const (
	noticeDomain = "madang/feed/follow/v1"
	// MaxNoticeBytes bounds a signed follow notice.
	MaxNoticeBytes = 256
)

// ErrInvalidNotice wraps every follow notice validation error.
var ErrInvalidNotice = errors.New("invalid follow notice")

// Notice is a verified follow notice: a per-channel customer key follows (or stopped following) a channel.
// It carries nothing but the channel, the customer key, the state and a time, so notices of one person for
// two channels share no byte a merchant or relay could match.
type Notice struct {
	Channel   ed25519.PublicKey
	Customer  ed25519.PublicKey
	Following bool
	Time      time.Time
	Raw       []byte
}

// SignNotice signs a notice with the customer key of the channel.
func SignNotice(customer ed25519.PrivateKey, channel ed25519.PublicKey, following bool, at time.Time) (*Notice, error) {
	raw, err := seal(customer, noticeDomain, &pb.FollowNotice{
		Version: 1, Channel: channel, Customer: customer.Public().(ed25519.PublicKey), Following: following, TimeMs: at.UnixMilli(),
	})
	if err != nil {
		return nil, fmt.Errorf("sign notice: %w", err)
	}
	return VerifyNotice(raw)
}

// VerifyNotice decodes a signed notice and verifies the customer key's signature.
func VerifyNotice(raw []byte) (*Notice, error) {
	var n pb.FollowNotice
	body, sig, err := unseal(raw, MaxNoticeBytes, &n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidNotice, err)
	}
	if n.Version != 1 || len(n.Channel) != ed25519.PublicKeySize || len(n.Customer) != ed25519.PublicKeySize || n.TimeMs <= 0 {
		return nil, fmt.Errorf("%w: shape", ErrInvalidNotice)
	}
	if !ed25519.Verify(n.Customer, signed(noticeDomain, body), sig) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidNotice)
	}
	return &Notice{Channel: n.Channel, Customer: n.Customer, Following: n.Following, Time: time.UnixMilli(n.TimeMs), Raw: raw}, nil
}
