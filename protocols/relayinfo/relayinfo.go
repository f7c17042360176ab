// Package relayinfo serves and fetches a community relay's info document over /madang/relay-info/1.0.0:
// its name, operator and contact, the services it offers and its limits and retention, signed by the relay's
// libp2p key so that a copy can be passed on and still be checked.
package relayinfo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/relayinfo/pb"
)

// ProtocolID is the relay info protocol: the relay writes one SignedInfo and closes the stream.
const ProtocolID = "/madang/relay-info/1.0.0"

const (
	domain       = "madang/relay-info/v1"
	maxInfoBytes = 16 << 10
	fetchTimeout = 10 * time.Second
)

// ErrBadInfo is returned for an info document that does not decode or verify.
var ErrBadInfo = errors.New("relayinfo: invalid info document")

// Limits are the limits a relay announces.
type Limits struct {
	MailboxQuotaBytes int64 `json:"mailbox_quota_bytes"`
	MailboxQuotaItems int   `json:"mailbox_quota_items"`
	// MailboxTTLSeconds is how long undelivered items are kept (retention).
	MailboxTTLSeconds int64 `json:"mailbox_ttl_seconds"`
	DepositsPerMinute int   `json:"deposits_per_minute"`
	MaxItemBytes      int64 `json:"max_item_bytes"`
	MaxReservations   int   `json:"max_reservations"`
	MaxCircuits       int   `json:"max_circuits"`
	CircuitSeconds    int64 `json:"circuit_duration_seconds"`
	CircuitBytes      int64 `json:"circuit_bytes"`
}

// Info is a relay's info document.
type Info struct {
	PeerID   string    `json:"peer_id"`
	Name     string    `json:"name"`
	Operator string    `json:"operator"`
	Contact  string    `json:"contact"`
	Services []string  `json:"services"`
	Limits   Limits    `json:"limits"`
	Issued   time.Time `json:"issued"`
	Software string    `json:"software"`
}

// Sign encodes and signs info with the host's key.
func Sign(h host.Host, info Info) ([]byte, error) {
	priv := h.Peerstore().PrivKey(h.ID())
	if priv == nil {
		return nil, errors.New("relayinfo: host has no private key")
	}
	l := info.Limits
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.InfoBody{
		Version: 1, RelayPeer: []byte(h.ID()), Name: info.Name, Operator: info.Operator, Contact: info.Contact,
		Services: info.Services, IssuedUnix: info.Issued.Unix(), Software: info.Software,
		Limits: &pb.Limits{
			MailboxQuotaBytes: l.MailboxQuotaBytes, MailboxQuotaItems: uint32(l.MailboxQuotaItems),
			MailboxTtlSeconds: l.MailboxTTLSeconds, DepositsPerMinute: uint32(l.DepositsPerMinute),
			MaxItemBytes: l.MaxItemBytes, MaxReservations: uint32(l.MaxReservations), MaxCircuits: uint32(l.MaxCircuits),
			CircuitDurationSeconds: l.CircuitSeconds, CircuitBytes: l.CircuitBytes,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("relayinfo: %w", err)
	}
	sig, err := priv.Sign(append([]byte(domain), body...))
	if err != nil {
		return nil, fmt.Errorf("relayinfo: sign: %w", err)
	}
	raw, err := proto.Marshal(&pb.SignedInfo{Body: body, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("relayinfo: %w", err)
	}
	if len(raw) > maxInfoBytes {
		return nil, fmt.Errorf("relayinfo: document of %d bytes is too large", len(raw))
	}
	return raw, nil
}

// Verify decodes a signed info document and checks the signature by the relay it names.
func Verify(raw []byte) (Info, error) {
	if len(raw) > maxInfoBytes {
		return Info{}, fmt.Errorf("%w: %d bytes", ErrBadInfo, len(raw))
	}
	var s pb.SignedInfo
	if err := proto.Unmarshal(raw, &s); err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrBadInfo, err)
	}
	var b pb.InfoBody
	if err := proto.Unmarshal(s.Body, &b); err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrBadInfo, err)
	}
	if b.Version != 1 {
		return Info{}, fmt.Errorf("%w: version %d", ErrBadInfo, b.Version)
	}
	id, err := peer.IDFromBytes(b.RelayPeer)
	if err != nil {
		return Info{}, fmt.Errorf("%w: peer: %v", ErrBadInfo, err)
	}
	pk, err := id.ExtractPublicKey()
	if err != nil {
		return Info{}, fmt.Errorf("%w: key: %v", ErrBadInfo, err)
	}
	if raw, err := pk.Raw(); err != nil || len(raw) != ed25519.PublicKeySize {
		return Info{}, fmt.Errorf("%w: not an ed25519 peer", ErrBadInfo)
	}
	if ok, err := pk.Verify(append([]byte(domain), s.Body...), s.Signature); err != nil || !ok {
		return Info{}, fmt.Errorf("%w: signature", ErrBadInfo)
	}
	l := b.GetLimits()
	return Info{
		PeerID: id.String(), Name: b.Name, Operator: b.Operator, Contact: b.Contact, Services: b.Services,
		Issued: time.Unix(b.IssuedUnix, 0).UTC(), Software: b.Software,
		Limits: Limits{
			MailboxQuotaBytes: l.GetMailboxQuotaBytes(), MailboxQuotaItems: int(l.GetMailboxQuotaItems()),
			MailboxTTLSeconds: l.GetMailboxTtlSeconds(), DepositsPerMinute: int(l.GetDepositsPerMinute()),
			MaxItemBytes: l.GetMaxItemBytes(), MaxReservations: int(l.GetMaxReservations()),
			MaxCircuits: int(l.GetMaxCircuits()), CircuitSeconds: l.GetCircuitDurationSeconds(), CircuitBytes: l.GetCircuitBytes(),
		},
	}, nil
}

// Serve answers info requests on h with the document doc returns (signed on each request, so it is always
// current). It returns a function that stops serving.
func Serve(h host.Host, doc func() Info) (stop func()) {
	h.SetStreamHandler(ProtocolID, func(s network.Stream) {
		defer func() { _ = s.Close() }()
		_ = s.SetDeadline(time.Now().Add(fetchTimeout))
		raw, err := Sign(h, doc())
		if err != nil {
			_ = s.Reset()
			return
		}
		_ = msgio.NewVarintWriter(s).WriteMsg(raw)
	})
	return func() { h.RemoveStreamHandler(ProtocolID) }
}

// Fetch asks relay for its info document and verifies that the relay itself signed it.
func Fetch(ctx context.Context, h host.Host, relay peer.AddrInfo) (Info, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	if len(relay.Addrs) > 0 {
		if err := h.Connect(ctx, relay); err != nil {
			return Info{}, fmt.Errorf("relayinfo: connect %s: %w", relay.ID, err)
		}
	}
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "relay-info"), relay.ID, ProtocolID)
	if err != nil {
		return Info{}, fmt.Errorf("relayinfo: open stream to %s: %w", relay.ID, err)
	}
	defer func() { _ = s.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	raw, err := msgio.NewVarintReaderSize(s, maxInfoBytes).ReadMsg()
	if err != nil {
		return Info{}, fmt.Errorf("relayinfo: read from %s: %w", relay.ID, err)
	}
	info, err := Verify(raw)
	if err != nil {
		return Info{}, err
	}
	if info.PeerID != relay.ID.String() {
		return Info{}, fmt.Errorf("%w: signed by %s, not %s", ErrBadInfo, info.PeerID, relay.ID)
	}
	return info, nil
}
