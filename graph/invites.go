package graph

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/store"
)

// Invite limits.
const (
	MaxInviteUses = 1000
	MaxInviteTTL  = 30 * 24 * time.Hour
	// inviteRetention is how long an expired or used-up invite is remembered, so that a late accept gets a
	// clear refusal rather than turning into a plain friend request.
	inviteRetention = 30 * 24 * time.Hour
)

// InviteRecord is an invite I created.
type InviteRecord struct {
	ID         string    `json:"id"`
	Link       string    `json:"link"`
	SecretHash []byte    `json:"secret_hash"`
	Created    time.Time `json:"created"`
	Expires    time.Time `json:"expires"`
	Uses       int       `json:"uses"`
	Used       int       `json:"used"`
	Revoked    bool      `json:"revoked,omitempty"`
}

// Live reports whether the invite can still be used at t.
func (r InviteRecord) Live(t time.Time) bool {
	return !r.Revoked && t.Before(r.Expires) && r.Used < r.Uses
}

// InviteOptions shape a new invite.
type InviteOptions struct {
	TTL        time.Duration
	Uses       int
	RelayHints []string // multiaddrs with /p2p/; the first MaxRelayHints valid ones are used
}

func inviteKey(id string) string { return "i/" + id }

// CreateInvite makes, stores and returns a signed invite.
func (g *Graph) CreateInvite(o InviteOptions) (InviteRecord, error) {
	if o.TTL <= 0 || o.TTL > MaxInviteTTL {
		return InviteRecord{}, fmt.Errorf("%w: expiry must be between 1s and %s", ErrInvalid, MaxInviteTTL)
	}
	if o.Uses < 1 || o.Uses > MaxInviteUses {
		return InviteRecord{}, fmt.Errorf("%w: uses must be between 1 and %d", ErrInvalid, MaxInviteUses)
	}
	cert, err := identity.VerifyCert(g.id.CertBytes())
	if err != nil {
		return InviteRecord{}, fmt.Errorf("graph: own certificate: %w", err)
	}
	var hints []ma.Multiaddr
	for _, h := range o.RelayHints {
		m, err := ma.NewMultiaddr(h)
		if err != nil {
			continue
		}
		if _, err := peer.AddrInfoFromP2pAddr(m); err != nil {
			continue
		}
		if len(hints) < MaxRelayHints {
			hints = append(hints, m)
		}
	}
	now := g.now().UTC()
	inv := Invite{
		AccountKey:  g.id.AccountKey(),
		DeviceKey:   cert.DeviceKey,
		DisplayName: g.Profile().DisplayName,
		RelayHints:  hints,
		Secret:      randomSecret(),
		Expires:     now.Add(o.TTL).Truncate(time.Second),
	}
	payload, err := encodeInvite(inv, g.id.SignAccount)
	if err != nil {
		return InviteRecord{}, fmt.Errorf("graph: encode invite: %w", err)
	}
	h := sha256.Sum256(inv.Secret)
	rec := InviteRecord{
		ID: InviteID(inv.Secret), Link: EncodeLink(payload), SecretHash: h[:],
		Created: now, Expires: inv.Expires, Uses: o.Uses,
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.putJSON(g.inv, inviteKey(rec.ID), rec); err != nil {
		return InviteRecord{}, err
	}
	return rec, nil
}

func (g *Graph) getInvite(id string) (InviteRecord, error) {
	raw, err := g.inv.Get(inviteKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return InviteRecord{}, ErrInviteUnknown
	}
	if err != nil {
		return InviteRecord{}, fmt.Errorf("graph: read invite: %w", err)
	}
	var r InviteRecord
	if err := json.Unmarshal(raw, &r); err != nil {
		return InviteRecord{}, fmt.Errorf("graph: decode invite: %w", err)
	}
	return r, nil
}

// Invites lists my invites, newest first; with liveOnly only those that can still be used.
func (g *Graph) Invites(ctx context.Context, liveOnly bool) ([]InviteRecord, error) {
	now := g.now()
	var out []InviteRecord
	for e, err := range g.inv.Scan(ctx, store.Range{Prefix: "i/"}) {
		if err != nil {
			return nil, fmt.Errorf("graph: list invites: %w", err)
		}
		var r InviteRecord
		if err := json.Unmarshal(e.Value, &r); err != nil {
			return nil, fmt.Errorf("graph: decode invite: %w", err)
		}
		if !liveOnly || r.Live(now) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b InviteRecord) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// RevokeInvite makes an invite unusable.
func (g *Graph) RevokeInvite(id string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, err := g.getInvite(id)
	if err != nil {
		return err
	}
	r.Revoked = true
	return g.putJSON(g.inv, inviteKey(id), r)
}

// RedeemInvite spends one use of the invite whose secret this is. It fails with ErrInviteUnknown (no such
// invite, or a wrong secret), ErrInviteExpired (expired or revoked) or ErrInviteUsed.
func (g *Graph) RedeemInvite(secret []byte) (InviteRecord, error) {
	if len(secret) != SecretSize {
		return InviteRecord{}, ErrInviteUnknown
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	r, err := g.getInvite(InviteID(secret))
	if err != nil {
		return InviteRecord{}, err
	}
	h := sha256.Sum256(secret)
	switch {
	case subtle.ConstantTimeCompare(h[:], r.SecretHash) != 1:
		return InviteRecord{}, ErrInviteUnknown
	case r.Revoked || !g.now().Before(r.Expires):
		return r, ErrInviteExpired
	case r.Used >= r.Uses:
		return r, ErrInviteUsed
	}
	r.Used++
	if err := g.putJSON(g.inv, inviteKey(r.ID), r); err != nil {
		return InviteRecord{}, err
	}
	return r, nil
}

// SweepInvites forgets invites that expired (or were used up) more than 30 days ago.
func (g *Graph) SweepInvites(ctx context.Context) (int, error) {
	all, err := g.Invites(ctx, false)
	if err != nil {
		return 0, err
	}
	cut := g.now().Add(-inviteRetention)
	n := 0
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, r := range all {
		if r.Expires.Before(cut) {
			if err := g.inv.Delete(inviteKey(r.ID)); err != nil {
				return n, fmt.Errorf("graph: sweep invites: %w", err)
			}
			n++
		}
	}
	return n, nil
}
