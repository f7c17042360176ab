package room

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/room/pb"
)

// Wire limits.
const (
	MaxMessageBytes  = 64 << 10 // one Item on the topic or in history
	MaxTextBytes     = 4 << 10
	MaxNickBytes     = 64
	MaxAvatarBytes   = 32 << 10
	MaxManifestBytes = 8 << 10
	MaxNameRunes     = 64
	MaxDescBytes     = 1 << 10
	MaxLangBytes     = 16
	MaxModerators    = 10 // co-hosts, as in KakaoTalk open chat
	MaxCapacity      = 100000
	DefaultCapacity  = 1500
	MaxSlowMode      = 3600
	MaxPinBytes      = 1 << 10
	MaxReasonBytes   = 256
	MaxCardBytes     = 12 << 10
	nonceLen         = 16
)

// ErrInvalid wraps every decoding and verification failure.
var ErrInvalid = errors.New("room: invalid")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

var det = proto.MarshalOptions{Deterministic: true}

func signed(domain string, body []byte) []byte {
	b := make([]byte, 0, len(domain)+1+len(body))
	b = append(b, domain...)
	b = append(b, 0)
	return append(b, body...)
}

// signSigned marshals body deterministically and wraps it with the key's signature under domain.
func signSigned(key ed25519.PrivateKey, domain string, body proto.Message) ([]byte, error) {
	b, err := det.Marshal(body)
	if err != nil {
		return nil, err
	}
	return det.Marshal(&pb.Signed{Body: b, Sig: ed25519.Sign(key, signed(domain, b))})
}

// openSigned decodes a Signed envelope of at most maxBytes and its body (the signature is checked by the
// caller, which knows the key).
func openSigned(what string, raw []byte, maxBytes int, body proto.Message) (*pb.Signed, error) {
	if len(raw) > maxBytes {
		return nil, invalid("%s of %d bytes", what, len(raw))
	}
	var s pb.Signed
	if err := proto.Unmarshal(raw, &s); err != nil {
		return nil, invalid("%s: %v", what, err)
	}
	if err := proto.Unmarshal(s.Body, body); err != nil {
		return nil, invalid("%s body: %v", what, err)
	}
	return &s, nil
}

func verifySig(domain string, pub, body, sig []byte) bool {
	return len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize &&
		ed25519.Verify(pub, signed(domain, body), sig)
}

// Manifest is a verified room manifest.
type Manifest struct {
	ID   ID
	Raw  []byte // the Signed encoding, as received
	Body *pb.ManifestBody
}

// Owner is the room's owner key.
func (m *Manifest) Owner() ed25519.PublicKey { return m.Body.Owner }

// SignManifest signs body with the owner key and returns the verified manifest.
func SignManifest(owner ed25519.PrivateKey, body *pb.ManifestBody) (*Manifest, error) {
	raw, err := signSigned(owner, domainManifest, body)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	return DecodeManifest(raw)
}

// DecodeManifest decodes and verifies a Signed manifest: owner signature, sizes and field rules.
func DecodeManifest(raw []byte) (*Manifest, error) {
	var b pb.ManifestBody
	s, err := openSigned("manifest", raw, MaxManifestBytes, &b)
	if err != nil {
		return nil, err
	}
	if err := checkManifest(&b); err != nil {
		return nil, err
	}
	if !verifySig(domainManifest, b.Owner, s.Body, s.Sig) {
		return nil, invalid("manifest signature")
	}
	return &Manifest{ID: DeriveID(b.Owner, b.Nonce), Raw: raw, Body: &b}, nil
}

func checkManifest(b *pb.ManifestBody) error {
	switch {
	case b.Version != 1:
		return invalid("manifest version %d", b.Version)
	case len(b.Owner) != ed25519.PublicKeySize || len(b.Nonce) != nonceLen:
		return invalid("manifest owner or nonce size")
	case b.Seq == 0:
		return invalid("manifest seq 0")
	case b.Name == "" || !utf8.ValidString(b.Name) || utf8.RuneCountInString(b.Name) > MaxNameRunes:
		return invalid("manifest name")
	case len(b.Description) > MaxDescBytes || !utf8.ValidString(b.Description):
		return invalid("manifest description")
	case len(b.Tags) > MaxTags:
		return invalid("manifest has %d tags", len(b.Tags))
	case len(b.Language) > MaxLangBytes:
		return invalid("manifest language")
	case b.Capacity < 2 || b.Capacity > MaxCapacity:
		return invalid("manifest capacity %d", b.Capacity)
	case b.SlowModeSeconds > MaxSlowMode:
		return invalid("manifest slow mode %d", b.SlowModeSeconds)
	case len(b.Moderators) > MaxModerators:
		return invalid("manifest has %d moderators", len(b.Moderators))
	}
	switch b.JoinPolicy {
	case pb.JoinPolicy_JOIN_OPEN:
		if len(b.LinkCheck) != 0 {
			return invalid("open manifest with link check")
		}
	case pb.JoinPolicy_JOIN_LINK:
		if len(b.LinkCheck) != 32 {
			return invalid("link manifest without link check")
		}
	default:
		return invalid("manifest join policy %d", b.JoinPolicy)
	}
	for _, t := range b.Tags {
		if n, ok := NormalizeTag(t); !ok || n != t {
			return invalid("manifest tag %q is not normalised", t)
		}
	}
	for _, m := range b.Moderators {
		if len(m) != ed25519.PublicKeySize {
			return invalid("manifest moderator key size")
		}
	}
	return nil
}

// Message is a verified room message.
type Message struct {
	ID   MsgID
	Raw  []byte // the Item, as received
	Body *pb.MessageBody
	Room ID
}

// Time is the author's timestamp.
func (m *Message) Time() time.Time { return time.UnixMilli(m.Body.TimeMs) }

// ModAction is a verified moderation action (its authority is not yet checked: see State).
type ModAction struct {
	ID   MsgID
	Raw  []byte
	Body *pb.ModBody
	Room ID
}

// decoded is an Item whose structure is checked but whose signature is not yet verified; the validator
// runs its cheap checks first and verifies last.
type decoded struct {
	item *pb.Item
	msg  *Message
	mod  *ModAction
}

// Validated returns the message a room validator accepted in m, or nil (a moderation action, or m not
// validated by a room). Only valid until the room takes m from its subscription; for pubsub tracers,
// which see m before that (the simulator's gossip-layer latency).
func Validated(m *pubsub.Message) *Message {
	if d, ok := m.ValidatorData.(*decoded); ok {
		return d.msg
	}
	return nil
}

// ID is the item's ID and room.
func (d *decoded) ID() (MsgID, ID) {
	if d.msg != nil {
		return d.msg.ID, d.msg.Room
	}
	return d.mod.ID, d.mod.Room
}

func (d *decoded) verify() bool {
	if d.msg != nil {
		return verifySig(domainMessage, d.msg.Body.Persona, d.item.Message, d.item.Sig)
	}
	return verifySig(domainMod, d.mod.Body.Signer, d.item.Moderation, d.item.Sig)
}

// parseItem decodes an Item and checks every structural rule, without verifying the signature.
func parseItem(raw []byte) (*decoded, error) {
	if len(raw) > MaxMessageBytes {
		return nil, invalid("item of %d bytes", len(raw))
	}
	var it pb.Item
	if err := proto.Unmarshal(raw, &it); err != nil {
		return nil, invalid("item: %v", err)
	}
	if len(it.Sig) != ed25519.SignatureSize {
		return nil, invalid("item signature size")
	}
	switch {
	case len(it.Message) > 0 && len(it.Moderation) == 0:
		var b pb.MessageBody
		if err := proto.Unmarshal(it.Message, &b); err != nil {
			return nil, invalid("message body: %v", err)
		}
		room, err := checkMessage(&b)
		if err != nil {
			return nil, err
		}
		return &decoded{item: &it, msg: &Message{ID: msgIDOf(it.Message), Raw: raw, Body: &b, Room: room}}, nil
	case len(it.Moderation) > 0 && len(it.Message) == 0:
		var b pb.ModBody
		if err := proto.Unmarshal(it.Moderation, &b); err != nil {
			return nil, invalid("moderation body: %v", err)
		}
		room, err := checkMod(&b)
		if err != nil {
			return nil, err
		}
		return &decoded{item: &it, mod: &ModAction{ID: msgIDOf(it.Moderation), Raw: raw, Body: &b, Room: room}}, nil
	}
	return nil, invalid("item must carry exactly one of message or moderation")
}

// DecodeItem decodes and verifies an Item (a message or a moderation action).
func DecodeItem(raw []byte) (*Message, *ModAction, error) {
	d, err := parseItem(raw)
	if err != nil {
		return nil, nil, err
	}
	if !d.verify() {
		return nil, nil, invalid("item signature")
	}
	return d.msg, d.mod, nil
}

func checkMessage(b *pb.MessageBody) (ID, error) {
	room, ok := idFromBytes(b.Room)
	switch {
	case b.Version != 1:
		return room, invalid("message version %d", b.Version)
	case !ok:
		return room, invalid("message room id size")
	case len(b.Persona) != ed25519.PublicKeySize:
		return room, invalid("message persona size")
	case len(b.Nonce) < 8 || len(b.Nonce) > 16:
		return room, invalid("message nonce size")
	case b.TimeMs <= 0:
		return room, invalid("message time")
	case len(b.Text) > MaxTextBytes || !utf8.ValidString(b.Text):
		return room, invalid("message text")
	case len(b.ReplyTo) != 0 && len(b.ReplyTo) != len(MsgID{}):
		return room, invalid("message reply_to size")
	case len(b.Nick) > MaxNickBytes || !utf8.ValidString(b.Nick):
		return room, invalid("message nick")
	case len(b.Avatar) > MaxAvatarBytes || (len(b.Avatar) > 0 && b.Kind != pb.Kind_JOIN):
		return room, invalid("message avatar")
	case len(b.JoinProof) != 0 && len(b.JoinProof) != 32:
		return room, invalid("message join proof size")
	}
	switch b.Kind {
	case pb.Kind_TEXT:
		if b.Text == "" {
			return room, invalid("empty text message")
		}
	case pb.Kind_JOIN, pb.Kind_LEAVE:
	default:
		return room, invalid("message kind %d", b.Kind)
	}
	return room, nil
}

func checkMod(b *pb.ModBody) (ID, error) {
	room, ok := idFromBytes(b.Room)
	switch {
	case b.Version != 1:
		return room, invalid("moderation version %d", b.Version)
	case !ok:
		return room, invalid("moderation room id size")
	case len(b.Signer) != ed25519.PublicKeySize:
		return room, invalid("moderation signer size")
	case b.Seq == 0:
		return room, invalid("moderation seq 0")
	case b.TimeMs <= 0:
		return room, invalid("moderation time")
	case len(b.Authority) > MaxManifestBytes:
		return room, invalid("moderation authority size")
	}
	persona := func(p []byte) error {
		if len(p) != ed25519.PublicKeySize {
			return invalid("moderation persona size")
		}
		return nil
	}
	switch a := b.Action.(type) {
	case *pb.ModBody_Ban:
		if len(a.Ban.Reason) > MaxReasonBytes || a.Ban.UntilMs < 0 {
			return room, invalid("ban reason or expiry")
		}
		return room, persona(a.Ban.Persona)
	case *pb.ModBody_Unban:
		return room, persona(a.Unban.Persona)
	case *pb.ModBody_AddModerator:
		return room, persona(a.AddModerator.Persona)
	case *pb.ModBody_RemoveModerator:
		return room, persona(a.RemoveModerator.Persona)
	case *pb.ModBody_Hide:
		if len(a.Hide.MessageId) != len(MsgID{}) {
			return room, invalid("hide message id size")
		}
	case *pb.ModBody_Pin:
		if len(a.Pin.Text) > MaxPinBytes || !utf8.ValidString(a.Pin.Text) {
			return room, invalid("pin text")
		}
	case *pb.ModBody_Slow:
		if a.Slow.Seconds > MaxSlowMode {
			return room, invalid("slow mode %d", a.Slow.Seconds)
		}
	case *pb.ModBody_UpdateManifest:
		if len(a.UpdateManifest.Manifest) == 0 {
			return room, invalid("empty manifest update")
		}
	case *pb.ModBody_Close:
	default:
		return room, invalid("moderation without action")
	}
	return room, nil
}

func signItem(priv ed25519.PrivateKey, msg, mod []byte) ([]byte, error) {
	domain, body := domainMessage, msg
	if mod != nil {
		domain, body = domainMod, mod
	}
	raw, err := det.Marshal(&pb.Item{Message: msg, Moderation: mod, Sig: ed25519.Sign(priv, signed(domain, body))})
	if err != nil {
		return nil, fmt.Errorf("sign item: %w", err)
	}
	return raw, nil
}

// SignMessage signs a message body with a persona key. It checks the same rules as the decoder but does
// not verify the signature it just made.
func SignMessage(persona ed25519.PrivateKey, b *pb.MessageBody) (*Message, error) {
	body, err := det.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("sign message: %w", err)
	}
	raw, err := signItem(persona, body, nil)
	if err != nil {
		return nil, err
	}
	if len(raw) > MaxMessageBytes {
		return nil, invalid("message of %d bytes", len(raw))
	}
	d, err := parseItem(raw)
	if err != nil {
		return nil, err
	}
	return d.msg, nil
}

// SignModAction signs a moderation body with the owner or a moderator key.
func SignModAction(key ed25519.PrivateKey, b *pb.ModBody) (*ModAction, error) {
	body, err := det.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("sign moderation: %w", err)
	}
	raw, err := signItem(key, nil, body)
	if err != nil {
		return nil, err
	}
	d, err := parseItem(raw)
	if err != nil {
		return nil, err
	}
	return d.mod, nil
}

// Card is a verified directory card of a room.
type Card struct {
	Raw      []byte
	Body     *pb.CardBody
	Manifest *Manifest
}

// SignCard signs a card with the owner key.
func SignCard(owner ed25519.PrivateKey, b *pb.CardBody) (*Card, error) {
	raw, err := signSigned(owner, domainCard, b)
	if err != nil {
		return nil, fmt.Errorf("sign card: %w", err)
	}
	return DecodeCard(raw)
}

// DecodeCard decodes and verifies a card: the manifest inside and the card itself are signed by the same
// owner key.
func DecodeCard(raw []byte) (*Card, error) {
	var b pb.CardBody
	s, err := openSigned("card", raw, MaxCardBytes, &b)
	if err != nil {
		return nil, err
	}
	if b.Version != 1 || b.TimeMs <= 0 {
		return nil, invalid("card version or time")
	}
	m, err := DecodeManifest(b.Manifest)
	if err != nil {
		return nil, err
	}
	if !verifySig(domainCard, m.Owner(), s.Body, s.Sig) {
		return nil, invalid("card signature")
	}
	return &Card{Raw: raw, Body: &b, Manifest: m}, nil
}

// VerifyCard is the directory verifier of kind "room".
func VerifyCard(raw []byte) (string, time.Time, error) {
	c, err := DecodeCard(raw)
	if err != nil {
		return "", time.Time{}, err
	}
	return c.Manifest.ID.String(), time.UnixMilli(c.Body.TimeMs), nil
}

// RevealInfo is a verified reveal proof.
type RevealInfo struct {
	Room    ID
	Persona ed25519.PublicKey
	Account ed25519.PublicKey
	Time    time.Time
}

// SignReveal makes a proof that persona (in room) belongs to the account.
func SignReveal(room ID, persona, account ed25519.PrivateKey, now time.Time) ([]byte, error) {
	body, err := det.Marshal(&pb.RevealBody{
		Version: 1, Room: room[:], Persona: persona.Public().(ed25519.PublicKey),
		Account: account.Public().(ed25519.PublicKey), TimeMs: now.UnixMilli(),
	})
	if err != nil {
		return nil, fmt.Errorf("sign reveal: %w", err)
	}
	raw, err := det.Marshal(&pb.Reveal{
		Body: body, PersonaSig: ed25519.Sign(persona, signed(domainReveal, body)),
		AccountSig: ed25519.Sign(account, signed(domainReveal, body)),
	})
	if err != nil {
		return nil, fmt.Errorf("sign reveal: %w", err)
	}
	return raw, nil
}

// VerifyReveal checks both signatures of a reveal proof.
func VerifyReveal(raw []byte) (RevealInfo, error) {
	if len(raw) > 1<<10 {
		return RevealInfo{}, invalid("reveal of %d bytes", len(raw))
	}
	var r pb.Reveal
	if err := proto.Unmarshal(raw, &r); err != nil {
		return RevealInfo{}, invalid("reveal: %v", err)
	}
	var b pb.RevealBody
	if err := proto.Unmarshal(r.Body, &b); err != nil {
		return RevealInfo{}, invalid("reveal body: %v", err)
	}
	room, ok := idFromBytes(b.Room)
	if b.Version != 1 || !ok {
		return RevealInfo{}, invalid("reveal version or room")
	}
	if !verifySig(domainReveal, b.Persona, r.Body, r.PersonaSig) || !verifySig(domainReveal, b.Account, r.Body, r.AccountSig) {
		return RevealInfo{}, invalid("reveal signature")
	}
	return RevealInfo{Room: room, Persona: b.Persona, Account: b.Account, Time: time.UnixMilli(b.TimeMs)}, nil
}
