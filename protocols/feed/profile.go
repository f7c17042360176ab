package feed

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/madang-p2p/madang/geo"
	"github.com/madang-p2p/madang/protocols/feed/pb"
)

// Categories a channel can choose.
var Categories = []string{"mart", "butcher", "bakery", "cafe", "convenience", "restaurant", "salon", "clinic", "other"}

// Profile limits and precisions.
const (
	MaxProfileBytes   = 8 << 10
	MaxNameBytes      = 64
	MaxTags           = 10
	MaxTagBytes       = 32
	MaxAddressBytes   = 256
	MaxHoursBytes     = 256
	MaxPhoneBytes     = 32
	MaxDescBytes      = 2048
	StoredPrecision   = 7 // a profile keeps the shop's location at geohash precision 7 (≈150 m)
	AnnouncePrecision = 5 // the directory files it under its precision-5 cell (≈4.9 km)
	minPrecision      = 5
)

const profileDomain = "madang/feed/profile/v1"

// ErrInvalidProfile wraps every profile validation error.
var ErrInvalidProfile = errors.New("invalid channel profile")

// ProfileFields is the editable content of a profile.
type ProfileFields struct {
	Name        string
	Category    string
	Tags        []string
	Geohash     string
	Address     string
	Hours       string
	Phone       string
	Description string
}

// Profile is a verified, signed profile.
type Profile struct {
	ProfileFields
	Channel  ed25519.PublicKey
	Revision uint64
	Updated  time.Time
	Raw      []byte
}

// NormalizeTag lower-cases a tag, drops a leading '#', and joins words with '-'. It returns "" for a tag
// with nothing left.
func NormalizeTag(t string) string {
	t = strings.TrimPrefix(strings.TrimSpace(t), "#")
	t = strings.ToLower(strings.Join(strings.Fields(t), "-"))
	t = strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsNumber(r) || r == '-' || r == '_' {
			return r
		}
		return -1
	}, t)
	return t
}

// Normalize cleans user input: trims text, normalises and de-duplicates tags, lower-cases the category and
// cuts the geohash to StoredPrecision. It returns an error wrapping ErrInvalidProfile for what cannot be
// fixed.
func (f ProfileFields) Normalize() (ProfileFields, error) {
	bad := func(format string, args ...any) (ProfileFields, error) {
		return ProfileFields{}, fmt.Errorf("%w: %s", ErrInvalidProfile, fmt.Sprintf(format, args...))
	}
	f.Name = strings.TrimSpace(f.Name)
	f.Category = strings.ToLower(strings.TrimSpace(f.Category))
	f.Address, f.Hours, f.Phone = strings.TrimSpace(f.Address), strings.TrimSpace(f.Hours), strings.TrimSpace(f.Phone)
	f.Description = strings.TrimSpace(f.Description)
	var tags []string
	for _, t := range f.Tags {
		if t = NormalizeTag(t); t != "" && !slices.Contains(tags, t) {
			tags = append(tags, t)
		}
	}
	f.Tags = tags
	gh, err := geo.Normalize(strings.TrimSpace(f.Geohash))
	if err != nil || len(gh) < minPrecision {
		return bad("geohash %q must be a geohash of at least %d characters", f.Geohash, minPrecision)
	}
	f.Geohash = gh[:min(len(gh), StoredPrecision)]
	if err := f.check(); err != nil {
		return ProfileFields{}, err
	}
	return f, nil
}

func (f ProfileFields) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidProfile, fmt.Sprintf(format, args...))
	}
	switch {
	case f.Name == "" || len(f.Name) > MaxNameBytes:
		return bad("name must have 1 to %d bytes", MaxNameBytes)
	case !slices.Contains(Categories, f.Category):
		return bad("category %q is not one of %s", f.Category, strings.Join(Categories, ", "))
	case len(f.Tags) > MaxTags:
		return bad("at most %d tags", MaxTags)
	case len(f.Address) > MaxAddressBytes, len(f.Hours) > MaxHoursBytes, len(f.Phone) > MaxPhoneBytes, len(f.Description) > MaxDescBytes:
		return bad("a field is too long")
	}
	if gh, err := geo.Normalize(f.Geohash); err != nil || gh != f.Geohash || len(gh) < minPrecision || len(gh) > StoredPrecision {
		return bad("geohash %q", f.Geohash)
	}
	for _, t := range f.Tags {
		if t == "" || len(t) > MaxTagBytes || NormalizeTag(t) != t {
			return bad("tag %q", t)
		}
	}
	for _, s := range []string{f.Name, f.Address, f.Hours, f.Phone} {
		if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
			return bad("control characters")
		}
	}
	return nil
}

// SignProfile signs a (normalised) profile with the channel key.
func SignProfile(priv ed25519.PrivateKey, revision uint64, at time.Time, f ProfileFields) (*Profile, error) {
	f, err := f.Normalize()
	if err != nil {
		return nil, err
	}
	raw, err := seal(priv, profileDomain, &pb.Profile{
		Version: 1, Channel: priv.Public().(ed25519.PublicKey), Revision: revision, UpdatedMs: at.UnixMilli(),
		Name: f.Name, Category: f.Category, Tags: f.Tags, Geohash: f.Geohash, Address: f.Address,
		Hours: f.Hours, Phone: f.Phone, Description: f.Description,
	})
	if err != nil {
		return nil, fmt.Errorf("sign profile: %w", err)
	}
	return VerifyProfile(raw)
}

// VerifyProfile decodes a signed profile and checks its fields and signature.
func VerifyProfile(raw []byte) (*Profile, error) {
	var p pb.Profile
	body, sig, err := unseal(raw, MaxProfileBytes, &p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidProfile, err)
	}
	if p.Version != 1 || len(p.Channel) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: version or key size", ErrInvalidProfile)
	}
	f := ProfileFields{
		Name: p.Name, Category: p.Category, Tags: p.Tags, Geohash: p.Geohash, Address: p.Address,
		Hours: p.Hours, Phone: p.Phone, Description: p.Description,
	}
	if err := f.check(); err != nil {
		return nil, err
	}
	if !ed25519.Verify(p.Channel, signed(profileDomain, body), sig) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalidProfile)
	}
	return &Profile{ProfileFields: f, Channel: p.Channel, Revision: p.Revision, Updated: time.UnixMilli(p.UpdatedMs), Raw: raw}, nil
}

// ID is the profile's channel ID.
func (p *Profile) ID() ChannelID { return IDFromKey(p.Channel) }

// Cell is the profile's directory cell (geohash precision 5).
func (p *Profile) Cell() string { return p.Geohash[:AnnouncePrecision] }
