// Package graph is a node's local social graph: my profile, my contacts (their devices, the profile they last
// shared with me, my alias for them, and where the relationship stands) and the contact invites I created. It
// lives only in the node's store; nothing here touches the network. Only my profile is ever shared, and only
// with friends (protocols/contact decides when).
package graph

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/store"
)

// State is where a relationship stands.
type State string

// Contact states.
const (
	StateInvited    State = "invited"     // I accepted their invite; my request has not reached them yet
	StateRequestOut State = "request-out" // my request reached them; they have not decided
	StateRequestIn  State = "request-in"  // they asked; I have not decided
	StateFriend     State = "friend"
	StateBlocked    State = "blocked"
)

// Errors.
var (
	ErrNotFound  = errors.New("no such contact")
	ErrAmbiguous = errors.New("name matches several contacts; use the alias or account ID")
	ErrInvalid   = errors.New("invalid value")
)

// Limits of profile fields.
const (
	MaxNameBytes   = 64
	MaxStatusBytes = 280
	MaxTags        = 16
	MaxTagBytes    = 32
	MaxAliasBytes  = 64
	MaxDevices     = 8
	MaxAddrs       = 8
)

var avatarRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// Profile is what a person shows their friends.
type Profile struct {
	DisplayName string    `json:"display_name"`
	Status      string    `json:"status,omitempty"`
	Tags        []string  `json:"tags,omitempty"`
	Avatar      string    `json:"avatar,omitempty"` // content hash "sha256:<64 hex>" of the avatar image
	Version     uint64    `json:"version"`
	Updated     time.Time `json:"updated"`
}

func cleanText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}

// Validate checks the profile's fields.
func (p Profile) Validate() error {
	switch {
	case strings.TrimSpace(p.DisplayName) == "" || len(p.DisplayName) > MaxNameBytes || !cleanText(p.DisplayName):
		return fmt.Errorf("%w: display name must be 1–%d bytes of text", ErrInvalid, MaxNameBytes)
	case len(p.Status) > MaxStatusBytes || !cleanText(p.Status):
		return fmt.Errorf("%w: status must be at most %d bytes of text", ErrInvalid, MaxStatusBytes)
	case len(p.Tags) > MaxTags:
		return fmt.Errorf("%w: at most %d tags", ErrInvalid, MaxTags)
	case p.Avatar != "" && !avatarRE.MatchString(p.Avatar):
		return fmt.Errorf("%w: avatar must be sha256:<64 hex digits>", ErrInvalid)
	}
	for _, t := range p.Tags {
		if t == "" || len(t) > MaxTagBytes || !cleanText(t) || strings.ContainsFunc(t, unicode.IsSpace) {
			return fmt.Errorf("%w: tag %q must be 1–%d bytes without spaces", ErrInvalid, t, MaxTagBytes)
		}
	}
	return nil
}

// Device is one device of a contact.
type Device struct {
	PeerID    peer.ID           `json:"peer_id"`
	DeviceKey ed25519.PublicKey `json:"device_key"`
	Cert      []byte            `json:"cert,omitempty"`   // device certificate (identity.VerifyCert)
	Bundle    []byte            `json:"bundle,omitempty"` // ratchet prekey bundle
	Addrs     []string          `json:"addrs,omitempty"`  // last known multiaddrs (may include relay circuits)
}

// Contact is someone in my graph.
type Contact struct {
	AccountID  identity.AccountID `json:"account_id"`
	AccountKey ed25519.PublicKey  `json:"account_key"`
	State      State              `json:"state"`
	Devices    []Device           `json:"devices,omitempty"`
	Profile    Profile            `json:"profile"`               // the profile they last shared
	InviteName string             `json:"invite_name,omitempty"` // name from their invite, until a profile arrives
	Alias      string             `json:"alias,omitempty"`
	Favourite  bool               `json:"favourite,omitempty"`
	// MailboxCard is their opaque mailbox card (protocols/mailbox), given to Deposit.
	MailboxCard []byte `json:"mailbox_card,omitempty"`
	// RelayHints are relay addresses from their invite.
	RelayHints []string  `json:"relay_hints,omitempty"`
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
	// Bookkeeping of the contact protocol.
	UnblockTo   State     `json:"unblock_to,omitempty"`    // state to return to when unblocked
	InviteID    string    `json:"invite_id,omitempty"`     // invite they used (request-in) or I used (invited)
	Secret      []byte    `json:"secret,omitempty"`        // the invite secret, while my request is not delivered
	InviteExp   time.Time `json:"invite_expires,omitzero"` // expiry of the invite I accepted, while invited
	AcceptOwed  bool      `json:"accept_owed,omitempty"`   // I accepted; they have not been told yet
	ProfileSent uint64    `json:"profile_sent,omitempty"`  // version of my profile they have
	CardSent    string    `json:"card_sent,omitempty"`     // hash of the mailbox card they have
}

// Name is how the contact is shown: alias, else their profile's name, else the name from their invite.
func (c Contact) Name() string {
	switch {
	case c.Alias != "":
		return c.Alias
	case c.Profile.DisplayName != "":
		return c.Profile.DisplayName
	case c.InviteName != "":
		return c.InviteName
	}
	return string(c.AccountID)
}

// PeerIDs lists the contact's device peer IDs.
func (c Contact) PeerIDs() []peer.ID {
	out := make([]peer.ID, 0, len(c.Devices))
	for _, d := range c.Devices {
		out = append(out, d.PeerID)
	}
	return out
}

// HasDevice reports whether p is one of the contact's devices.
func (c Contact) HasDevice(p peer.ID) bool { return slices.Contains(c.PeerIDs(), p) }

// Graph is the local graph, backed by the "graph" and "invites" namespaces.
type Graph struct {
	ns   *store.NS
	inv  *store.NS
	id   *identity.Identity
	now  func() time.Time
	mu   sync.Mutex
	prof Profile
}

const profileKey = "profile"

func contactKey(a identity.AccountID) string { return "c/" + string(a) }

// New opens the graph. defaultName is the display name of a profile that does not exist yet.
func New(graphNS, invitesNS *store.NS, id *identity.Identity, defaultName string) (*Graph, error) {
	g := &Graph{ns: graphNS, inv: invitesNS, id: id, now: time.Now}
	raw, err := graphNS.Get(profileKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		name := cutName(strings.TrimSpace(defaultName), MaxNameBytes)
		if name == "" || !cleanText(name) {
			name = "madang user"
		}
		g.prof = Profile{DisplayName: name, Version: 1, Updated: g.now().UTC()}
		if err := g.putJSON(graphNS, profileKey, g.prof); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("graph: load profile: %w", err)
	default:
		if err := json.Unmarshal(raw, &g.prof); err != nil {
			return nil, fmt.Errorf("graph: decode profile: %w", err)
		}
	}
	return g, nil
}

// SetClock replaces the clock (tests).
func (g *Graph) SetClock(now func() time.Time) { g.now = now }

// Identity is the node's identity.
func (g *Graph) Identity() *identity.Identity { return g.id }

func (g *Graph) putJSON(ns *store.NS, k string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("graph: encode %s: %w", k, err)
	}
	if err := ns.PutSync(k, raw); err != nil {
		return fmt.Errorf("graph: write %s: %w", k, err)
	}
	return nil
}

// Profile is my profile.
func (g *Graph) Profile() Profile {
	g.mu.Lock()
	defer g.mu.Unlock()
	p := g.prof
	p.Tags = slices.Clone(p.Tags)
	return p
}

// SetProfile replaces my profile's fields (display name, status, tags, avatar) and bumps its version. It
// returns the stored profile and whether anything changed.
func (g *Graph) SetProfile(p Profile) (Profile, bool, error) {
	if err := p.Validate(); err != nil {
		return Profile{}, false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.prof
	if old.DisplayName == p.DisplayName && old.Status == p.Status && slices.Equal(old.Tags, p.Tags) && old.Avatar == p.Avatar {
		return old, false, nil
	}
	p.Version = old.Version + 1
	p.Updated = g.now().UTC()
	p.Tags = slices.Clone(p.Tags)
	if err := g.putJSON(g.ns, profileKey, p); err != nil {
		return Profile{}, false, err
	}
	g.prof = p
	return p, true, nil
}

// Contact returns the contact with that account ID.
func (g *Graph) Contact(a identity.AccountID) (Contact, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.get(a)
}

// ContactByKey returns the contact with that account key.
func (g *Graph) ContactByKey(k ed25519.PublicKey) (Contact, error) {
	return g.Contact(identity.AccountIDFromKey(k))
}

func (g *Graph) get(a identity.AccountID) (Contact, error) {
	raw, err := g.ns.Get(contactKey(a))
	if errors.Is(err, store.ErrNotFound) {
		return Contact{}, fmt.Errorf("%w: %s", ErrNotFound, a)
	}
	if err != nil {
		return Contact{}, fmt.Errorf("graph: read contact: %w", err)
	}
	var c Contact
	if err := json.Unmarshal(raw, &c); err != nil {
		return Contact{}, fmt.Errorf("graph: decode contact %s: %w", a, err)
	}
	return c, nil
}

// Update reads the contact (a zero Contact with AccountID and AccountKey set if it does not exist and create
// is true), applies fn and writes it durably, all under the graph's lock. fn may return ErrNotFound-wrapping
// or any error to abort. It returns the stored contact and the one before (zero if new).
func (g *Graph) Update(key ed25519.PublicKey, create bool, fn func(c *Contact) error) (after, before Contact, err error) {
	if len(key) != ed25519.PublicKeySize {
		return Contact{}, Contact{}, fmt.Errorf("%w: account key", ErrInvalid)
	}
	a := identity.AccountIDFromKey(key)
	g.mu.Lock()
	defer g.mu.Unlock()
	c, err := g.get(a)
	switch {
	case errors.Is(err, ErrNotFound) && create:
		c = Contact{AccountID: a, AccountKey: slices.Clone(key), Created: g.now().UTC()}
	case err != nil:
		return Contact{}, Contact{}, err
	default:
		before = c
	}
	if err := fn(&c); err != nil {
		return Contact{}, before, err
	}
	c.AccountID, c.AccountKey = a, slices.Clone(key)
	c.Updated = g.now().UTC()
	if err := g.putJSON(g.ns, contactKey(a), c); err != nil {
		return Contact{}, before, err
	}
	return c, before, nil
}

// Delete removes a contact.
func (g *Graph) Delete(a identity.AccountID) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.get(a); err != nil {
		return err
	}
	if err := g.ns.DeleteSync(contactKey(a)); err != nil {
		return fmt.Errorf("graph: delete contact: %w", err)
	}
	return nil
}

// Contacts lists contacts, favourites first, then by name. With states, only those states.
func (g *Graph) Contacts(ctx context.Context, states ...State) ([]Contact, error) {
	var out []Contact
	for e, err := range g.ns.Scan(ctx, store.Range{Prefix: "c/"}) {
		if err != nil {
			return nil, fmt.Errorf("graph: list contacts: %w", err)
		}
		var c Contact
		if err := json.Unmarshal(e.Value, &c); err != nil {
			return nil, fmt.Errorf("graph: decode contact %s: %w", e.Key, err)
		}
		if len(states) == 0 || slices.Contains(states, c.State) {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Contact) int {
		if a.Favourite != b.Favourite {
			if a.Favourite {
				return -1
			}
			return 1
		}
		if c := strings.Compare(strings.ToLower(a.Name()), strings.ToLower(b.Name())); c != 0 {
			return c
		}
		return strings.Compare(string(a.AccountID), string(b.AccountID))
	})
	return out, nil
}

// Resolve finds a contact by alias, account ID or display name (when only one contact has it), in that
// order. Names compare case-insensitively.
func (g *Graph) Resolve(ctx context.Context, q string) (Contact, error) {
	q = strings.TrimSpace(q)
	if q == "" {
		return Contact{}, fmt.Errorf("%w: empty name", ErrNotFound)
	}
	all, err := g.Contacts(ctx)
	if err != nil {
		return Contact{}, err
	}
	for _, c := range all {
		if c.Alias != "" && strings.EqualFold(c.Alias, q) {
			return c, nil
		}
	}
	for _, c := range all {
		if string(c.AccountID) == q {
			return c, nil
		}
	}
	var match []Contact
	for _, c := range all {
		if strings.EqualFold(c.Profile.DisplayName, q) || (c.Profile.DisplayName == "" && strings.EqualFold(c.InviteName, q)) {
			match = append(match, c)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return Contact{}, fmt.Errorf("%w: %q", ErrNotFound, q)
	}
	return Contact{}, fmt.Errorf("%w: %q", ErrAmbiguous, q)
}

// ValidateAlias checks an alias ("" clears it).
func ValidateAlias(a string) error {
	if len(a) > MaxAliasBytes || !cleanText(a) || (a != "" && strings.TrimSpace(a) != a) {
		return fmt.Errorf("%w: alias must be at most %d bytes of text without surrounding spaces", ErrInvalid, MaxAliasBytes)
	}
	return nil
}

// MergeAddrs adds addrs (newest first) to a device's known addresses, keeping at most MaxAddrs.
func MergeAddrs(old []string, addrs ...ma.Multiaddr) []string {
	out := make([]string, 0, MaxAddrs)
	for _, a := range addrs {
		if s := a.String(); !slices.Contains(out, s) && len(out) < MaxAddrs {
			out = append(out, s)
		}
	}
	for _, s := range old {
		if !slices.Contains(out, s) && len(out) < MaxAddrs {
			out = append(out, s)
		}
	}
	return out
}

// randomSecret returns an invite secret.
func randomSecret() []byte {
	b := make([]byte, SecretSize)
	_, _ = rand.Read(b)
	return b
}
