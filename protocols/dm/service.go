// Package dm is end-to-end encrypted 1:1 chat between friends over /madang/dm/1.0.0, with honest delivery
// states.
//
// A message is encrypted with the friend's Double Ratchet session (package ratchet) when it is sent, and the
// advanced session, the ciphertext in the outbox and the message in the history are written in one synced
// batch before Send returns: the message is then "queued". A delivery worker per friend sends the outbox in
// order straight to the friend's device (over an existing connection, known addresses, relay circuits or peer
// routing). The friend's node decrypts, stores the session, the message and its dedup index in one synced
// batch and only then answers with an ack signed by the friend's account key: "delivered". When the device
// cannot be reached and the friend's mailbox card is known, the payload is deposited in their mailbox relays:
// "sent" (a relay's receipt is not a delivery). The worker keeps retrying with backoff until the ack comes,
// through whichever path works. Read receipts ("read") are acks with the read flag, when enabled.
//
// Messages are deduplicated by (sender, id) and ordered per conversation by (Lamport clock, sender, id);
// wall time is for display only. History is paged newest-first by cursor.
package dm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/contact"
	"github.com/madang-p2p/madang/protocols/dm/pb"
	"github.com/madang-p2p/madang/ratchet"
	"github.com/madang-p2p/madang/store"
)

// ProtocolID is the direct-message protocol.
const ProtocolID = "/madang/dm/1.0.0"

// Event types.
const (
	EventReceived = "message.received"
	EventState    = "message.state"
)

// Message states. Outgoing: queued → sent → delivered → read, or failed. Incoming: received → read.
const (
	StateQueued    = "queued"
	StateSent      = "sent"
	StateDelivered = "delivered"
	StateRead      = "read"
	StateFailed    = "failed"
	StateReceived  = "received"
)

func rank(state string) int {
	switch state {
	case StateQueued:
		return 0
	case StateSent:
		return 1
	case StateDelivered:
		return 2
	case StateRead:
		return 3
	}
	return -1
}

// maxSessions is how many ratchet sessions are kept per friend (the active one and stragglers).
const maxSessions = 5

// errNotYet keeps a mailbox item for later.
var errNotYet = errors.New("dm: message from a contact whose accept has not arrived yet")

// Errors.
var (
	ErrNotFriend = errors.New("not a friend")
	ErrConflict  = errors.New("message id already used for another text")
	ErrInvalid   = errors.New("invalid message")
	ErrNoKeys    = errors.New("the friend's encryption keys are not known yet")
)

// Mailbox is the relay feature's mailbox client, as this package uses it.
type Mailbox interface {
	MailboxCard(ctx context.Context, friend ed25519.PublicKey) ([]byte, error)
	Deposit(ctx context.Context, card []byte, itemID string, payload []byte) (receipt []byte, err error)
}

// Options build a Service.
type Options struct {
	Host     host.Host
	Dialer   *contact.Dialer
	Graph    *graph.Graph
	Identity *identity.Identity
	Store    *store.Store
	NS       *store.NS // the "dm" namespace
	Events   *events.Bus
	Log      *slog.Logger
	// Mailbox is nil without the relay feature.
	Mailbox Mailbox
	// AccountOf maps a device to its contact (nil: scan the graph).
	AccountOf func(peer.ID) (identity.AccountID, bool)
	// ContactHandler receives contact-protocol messages that arrived through a mailbox.
	ContactHandler func(ctx context.Context, signed []byte) error
	// ReadReceipts sends read receipts when messages are marked read.
	ReadReceipts bool
	// RetryMin and RetryMax bound the outbox backoff; RedepositAfter is how long a deposited message waits
	// for its ack before it is deposited again.
	RetryMin, RetryMax, RedepositAfter time.Duration
}

// Message is one message of a conversation.
type Message struct {
	ID           string             `json:"id"`
	Conversation identity.AccountID `json:"conversation"`
	From         identity.AccountID `json:"from"`
	Text         string             `json:"text"`
	Lamport      uint64             `json:"lamport"`
	Time         time.Time          `json:"time"`
	Received     time.Time          `json:"received,omitzero"`
	State        string             `json:"state"`
	Outgoing     bool               `json:"outgoing"`
	Error        string             `json:"error,omitempty"`
	Cursor       string             `json:"cursor,omitempty"`
}

type convMeta struct {
	Lamport  uint64 `json:"lamport"`
	ReadUpTo string `json:"read_up_to,omitempty"`
}

// conv is the in-memory state of one conversation; mu serialises everything that touches its ratchet.
type conv struct {
	mu       sync.Mutex
	acct     identity.AccountID
	loaded   bool
	meta     convMeta
	sessions []*ratchet.Session
	// bundleRaw and bundleIK cache the friend's last verified prekey bundle and its identity DH key.
	bundleRaw []byte
	bundleIK  []byte
}

// Service is the DM layer of a node.
type Service struct {
	ctx    context.Context // the node's lifetime, for inbound streams
	o      Options
	log    *slog.Logger
	ns     *store.NS
	keys   *ratchet.LocalKeys
	bundle []byte
	me     ed25519.PublicKey
	myID   identity.AccountID

	mu      sync.Mutex
	convs   map[identity.AccountID]*conv
	workers map[identity.AccountID]*worker
	runCtx  context.Context
	wg      sync.WaitGroup
}

// Key layout in the "dm" namespace (a = friend's account ID, s = sender's, l = fixed-width Lamport clock):
//
//	keys                 ratchet.LocalKeys of this device
//	meta/a               convMeta
//	s/a                  pb.StoredSessions, the active session first
//	m/a/l/s/id           Message (history)
//	i/a/s/id             l/s/id (dedup index and lookup)
//	o/a/l/id             pb.OutboxItem (my messages not yet acknowledged)
//	a/a/d|r/id           acks (d) and read receipts (r) owed to a, not yet sent
const keysKey = "keys"

func metaKey(a identity.AccountID) string { return "meta/" + string(a) }
func sessKey(a identity.AccountID) string { return "s/" + string(a) }
func msgPrefix(a identity.AccountID) string {
	return "m/" + string(a) + "/"
}
func suffix(lamport uint64, sender identity.AccountID, id string) string {
	return store.Uint64Key(lamport) + "/" + string(sender) + "/" + id
}
func idxKey(a, sender identity.AccountID, id string) string {
	return "i/" + string(a) + "/" + string(sender) + "/" + id
}
func outPrefix(a identity.AccountID) string { return "o/" + string(a) + "/" }
func outKey(a identity.AccountID, lamport uint64, id string) string {
	return outPrefix(a) + store.Uint64Key(lamport) + "/" + id
}
func ackPrefix(a identity.AccountID) string { return "a/" + string(a) + "/" }
func ackKey(a identity.AccountID, read bool, id string) string {
	if read {
		return ackPrefix(a) + "r/" + id
	}
	return ackPrefix(a) + "d/" + id
}

// New loads (or creates, once) this device's ratchet keys and builds the service. ctx bounds the work of
// inbound streams.
func New(ctx context.Context, o Options) (*Service, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(o.RetryMin, 5*time.Minute)
	}
	if o.RedepositAfter <= 0 {
		o.RedepositAfter = 10 * time.Minute
	}
	s := &Service{
		ctx: ctx, o: o, log: o.Log.With("component", "dm"), ns: o.NS, me: o.Identity.AccountKey(), myID: o.Identity.AccountID(),
		convs: map[identity.AccountID]*conv{}, workers: map[identity.AccountID]*worker{},
	}
	raw, err := o.NS.Get(keysKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if s.keys, err = ratchet.GenerateLocalKeys(o.Identity.AccountPrivate()); err != nil {
			return nil, fmt.Errorf("dm: %w", err)
		}
		if raw, err = s.keys.Marshal(); err != nil {
			return nil, fmt.Errorf("dm: %w", err)
		}
		if err := o.NS.PutSync(keysKey, raw); err != nil {
			return nil, fmt.Errorf("dm: store keys: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("dm: load keys: %w", err)
	default:
		if s.keys, err = ratchet.UnmarshalLocalKeys(raw); err != nil {
			return nil, fmt.Errorf("dm: %w", err)
		}
	}
	if s.bundle, err = ratchet.MarshalBundle(s.keys.Bundle()); err != nil {
		return nil, fmt.Errorf("dm: %w", err)
	}
	return s, nil
}

// Bundle is this device's prekey bundle, handed to friends by the contact protocol.
func (s *Service) Bundle() []byte { return bytes.Clone(s.bundle) }

// SetAccountOf sets how inbound streams are matched to contacts (by device peer ID).
func (s *Service) SetAccountOf(f func(peer.ID) (identity.AccountID, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.AccountOf = f
}

// SetContactHandler sets where contact messages that arrive through a mailbox go.
func (s *Service) SetContactHandler(h func(ctx context.Context, signed []byte) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.ContactHandler = h
}

func (s *Service) conv(a identity.AccountID) *conv {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[a]
	if c == nil {
		c = &conv{acct: a}
		s.convs[a] = c
	}
	return c
}

// load reads the conversation's meta and sessions (with cv.mu held).
func (s *Service) load(cv *conv) error {
	if cv.loaded {
		return nil
	}
	cv.meta, cv.sessions = convMeta{}, nil
	raw, err := s.ns.Get(metaKey(cv.acct))
	if err == nil {
		if err := json.Unmarshal(raw, &cv.meta); err != nil {
			return fmt.Errorf("dm: decode conversation: %w", err)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("dm: load conversation: %w", err)
	}
	raw, err = s.ns.Get(sessKey(cv.acct))
	if err == nil {
		var ss pb.StoredSessions
		if err := proto.Unmarshal(raw, &ss); err != nil {
			return fmt.Errorf("dm: decode sessions: %w", err)
		}
		for _, b := range ss.Sessions {
			sess, err := ratchet.UnmarshalSession(b)
			if err != nil {
				return fmt.Errorf("dm: %w", err)
			}
			cv.sessions = append(cv.sessions, sess)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("dm: load sessions: %w", err)
	}
	cv.loaded = true
	return nil
}

// putState adds the conversation's sessions and meta to a batch.
func (s *Service) putState(b *store.Batch, cv *conv) error {
	var ss pb.StoredSessions
	for _, sess := range cv.sessions {
		raw, err := sess.Marshal()
		if err != nil {
			return fmt.Errorf("dm: %w", err)
		}
		ss.Sessions = append(ss.Sessions, raw)
	}
	if err := b.Put(s.ns, sessKey(cv.acct), encode(&ss)); err != nil {
		return err
	}
	return s.putJSON(b, metaKey(cv.acct), cv.meta)
}

func (s *Service) putJSON(b *store.Batch, k string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("dm: encode %s: %w", k, err)
	}
	return b.Put(s.ns, k, raw)
}

// commit writes a batch; on failure the conversation's in-memory state is dropped, so that the next use
// reloads what is durably stored.
func (s *Service) commit(b *store.Batch, cv *conv, sync bool) error {
	if err := b.Commit(sync); err != nil {
		b.Discard()
		cv.loaded = false
		return fmt.Errorf("dm: %w", err)
	}
	return nil
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a random message ID.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToLower(idEncoding.EncodeToString(b))
}

// friend returns the contact if it is a friend.
func (s *Service) friend(a identity.AccountID) (graph.Contact, error) {
	c, err := s.o.Graph.Contact(a)
	if err != nil {
		return c, err
	}
	if c.State != graph.StateFriend {
		return c, fmt.Errorf("%w: %s is %s", ErrNotFriend, c.Name(), c.State)
	}
	return c, nil
}

// activeSession returns the session to encrypt with, starting one from the friend's bundle when there is none
// or when the friend's device keys changed.
func (s *Service) activeSession(cv *conv, c graph.Contact) (*ratchet.Session, error) {
	var bundle []byte
	for _, d := range c.Devices {
		if len(d.Bundle) > 0 {
			bundle = d.Bundle
			break
		}
	}
	if len(cv.sessions) > 0 {
		if bundle == nil {
			return cv.sessions[0], nil
		}
		if !bytes.Equal(bundle, cv.bundleRaw) {
			if b, err := ratchet.UnmarshalBundle(bundle); err == nil {
				cv.bundleRaw, cv.bundleIK = bytes.Clone(bundle), b.IdentityDH
			}
		}
		if bytes.Equal(cv.bundleIK, cv.sessions[0].PeerIdentityDH()) {
			return cv.sessions[0], nil
		}
	}
	if bundle == nil {
		return nil, fmt.Errorf("%w (%s)", ErrNoKeys, c.Name())
	}
	b, err := ratchet.UnmarshalBundle(bundle)
	if err != nil {
		return nil, fmt.Errorf("dm: friend's bundle: %w", err)
	}
	if !bytes.Equal(b.AccountKey, c.AccountKey) {
		return nil, fmt.Errorf("dm: friend's bundle is signed by another account")
	}
	sess, err := ratchet.Initiate(s.keys, b)
	if err != nil {
		return nil, fmt.Errorf("dm: %w", err)
	}
	cv.sessions = append([]*ratchet.Session{sess}, cv.sessions...)
	if len(cv.sessions) > maxSessions {
		cv.sessions = cv.sessions[:maxSessions]
	}
	return sess, nil
}

// Send queues a message to a friend. id is chosen by the client ("" picks a random one); sending the same id
// again returns the stored message, so retries are idempotent. When Send returns, the message is durably
// queued (encrypted, with the advanced ratchet state) and will be delivered.
func (s *Service) Send(ctx context.Context, friend identity.AccountID, id, text string) (Message, error) {
	if id == "" {
		id = NewID()
	}
	switch {
	case !ValidID(id):
		return Message{}, fmt.Errorf("%w: id must be 1–%d of A–Z a–z 0–9 . _ ~ -", ErrInvalid, MaxIDBytes)
	case text == "" || len(text) > MaxTextBytes || !utf8.ValidString(text):
		return Message{}, fmt.Errorf("%w: text must be 1–%d bytes of UTF-8", ErrInvalid, MaxTextBytes)
	}
	c, err := s.friend(friend)
	if err != nil {
		return Message{}, err
	}
	cv := s.conv(friend)
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if err := s.load(cv); err != nil {
		return Message{}, err
	}
	if old, err := s.lookup(friend, s.myID, id); err == nil {
		if old.Text != text {
			return old, ErrConflict
		}
		return old, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return Message{}, err
	}
	sess, err := s.activeSession(cv, c)
	if err != nil {
		return Message{}, err
	}
	now := time.Now()
	lamport := cv.meta.Lamport + 1
	ct, err := sess.Encrypt(encodeContent(id, lamport, now, text), messageAD(s.me, c.AccountKey, id))
	if err != nil {
		cv.loaded = false
		return Message{}, fmt.Errorf("dm: %w", err)
	}
	payload := encode(&pb.Payload{Version: wireVersion, Sender: s.me, Recipient: c.AccountKey,
		Kind: &pb.Payload_Message{Message: &pb.Sealed{Id: id, Ratchet: ct}}})
	cv.meta.Lamport = lamport
	m := Message{ID: id, Conversation: friend, From: s.myID, Text: text, Lamport: lamport, Time: now.UTC(),
		State: StateQueued, Outgoing: true}
	b := s.o.Store.NewBatch()
	sfx := suffix(lamport, s.myID, id)
	err = errors.Join(
		s.putState(b, cv),
		s.putJSON(b, msgPrefix(friend)+sfx, m),
		b.Put(s.ns, idxKey(friend, s.myID, id), []byte(sfx)),
		b.Put(s.ns, outKey(friend, lamport, id), encode(&pb.OutboxItem{Payload: payload, QueuedMs: now.UnixMilli()})),
	)
	if err != nil {
		b.Discard()
		cv.loaded = false
		return Message{}, err
	}
	if err := s.commit(b, cv, true); err != nil {
		return Message{}, err
	}
	m.Cursor = sfx
	s.publishState(m)
	s.Kick(friend)
	return m, nil
}

// lookup returns a stored message by conversation, sender and id.
func (s *Service) lookup(a, sender identity.AccountID, id string) (Message, error) {
	sfx, err := s.ns.Get(idxKey(a, sender, id))
	if err != nil {
		return Message{}, err
	}
	raw, err := s.ns.Get(msgPrefix(a) + string(sfx))
	if err != nil {
		return Message{}, err
	}
	var m Message
	if err := json.Unmarshal(raw, &m); err != nil {
		return Message{}, fmt.Errorf("dm: decode message: %w", err)
	}
	m.Cursor = string(sfx)
	return m, nil
}

// Message returns one message of the conversation with friend, sent by sender ("" = by me).
func (s *Service) Message(friend, sender identity.AccountID, id string) (Message, error) {
	if sender == "" {
		sender = s.myID
	}
	return s.lookup(friend, sender, id)
}

func (s *Service) publishState(m Message) {
	s.o.Events.Publish(EventState, map[string]any{
		"conversation": m.Conversation, "id": m.ID, "from": m.From, "state": m.State, "error": m.Error,
	})
}

// History returns up to limit messages of the conversation with friend older than the cursor before ("" =
// newest), newest first, and the cursor of the next page ("" at the end).
func (s *Service) History(ctx context.Context, friend identity.AccountID, before string, limit int) ([]Message, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 50
	}
	r := store.Range{Prefix: msgPrefix(friend), Reverse: true, Limit: limit + 1}
	if before != "" {
		r.End = msgPrefix(friend) + before
	}
	out := make([]Message, 0, limit)
	next := ""
	for e, err := range s.ns.Scan(ctx, r) {
		if err != nil {
			return nil, "", fmt.Errorf("dm: history: %w", err)
		}
		if len(out) == limit {
			next = out[len(out)-1].Cursor
			break
		}
		var m Message
		if err := json.Unmarshal(e.Value, &m); err != nil {
			return nil, "", fmt.Errorf("dm: decode message: %w", err)
		}
		m.Cursor = strings.TrimPrefix(e.Key, msgPrefix(friend))
		out = append(out, m)
	}
	return out, next, nil
}

// decrypt tries the conversation's sessions (newest first), then accepts a new session from an init
// message. It changes cv.sessions only on success.
func (s *Service) decrypt(cv *conv, msg, ad []byte, sender ed25519.PublicKey) ([]byte, error) {
	var lastErr error = ratchet.ErrDecrypt
	for i, sess := range cv.sessions {
		pt, err := sess.Decrypt(msg, ad)
		if err == nil {
			if i > 0 {
				cv.sessions = append(append([]*ratchet.Session{sess}, cv.sessions[:i]...), cv.sessions[i+1:]...)
			}
			return pt, nil
		}
		if errors.Is(err, ratchet.ErrDuplicate) {
			return nil, err
		}
		lastErr = err
	}
	isInit, acct, err := ratchet.PeekInit(msg)
	if err != nil {
		return nil, err
	}
	if !isInit {
		return nil, lastErr
	}
	if !bytes.Equal(acct, sender) {
		return nil, fmt.Errorf("%w: init message of another account", ratchet.ErrBadSignature)
	}
	sess, pt, err := ratchet.AcceptWithAD(s.keys, msg, ad)
	if err != nil {
		return nil, err
	}
	cv.sessions = append([]*ratchet.Session{sess}, cv.sessions...)
	if len(cv.sessions) > maxSessions {
		cv.sessions = cv.sessions[:maxSessions]
	}
	return pt, nil
}

// sealedItem is a received message and the ItemID of the payload that carried it.
type sealedItem struct {
	*pb.Sealed
	digest string
}

// received is the outcome of storing incoming messages.
type received struct {
	stored   []string      // ids now durably stored (new or earlier)
	failures []*pb.Failure // ids not stored
}

// receive decrypts and durably stores messages from sender (one synced batch), queueing acks when they came
// through a mailbox. Messages from anyone but a friend (blocked contacts included) are dropped unread.
func (s *Service) receive(ctx context.Context, sender ed25519.PublicKey, items []sealedItem, viaMailbox bool) (received, error) {
	var out received
	acct := identity.AccountIDFromKey(sender)
	if c, err := s.friend(acct); err != nil {
		if viaMailbox && (c.State == graph.StateRequestOut || c.State == graph.StateInvited) {
			// Someone I asked to be friends writes before their accept reached me (the relay may hand
			// items over in any order): keep the item on the relay for the next drain.
			return out, errNotYet
		}
		for _, it := range items {
			out.failures = append(out.failures, &pb.Failure{Id: it.GetId(), Reason: "refused", Digest: it.digest})
		}
		s.log.Debug("Dropped messages from a non-friend", "account", acct, "n", len(items))
		return out, nil
	}
	cv := s.conv(acct)
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if err := s.load(cv); err != nil {
		return out, err
	}
	b := s.o.Store.NewBatch()
	var fresh []Message
	seen := map[string]bool{}
	now := time.Now().UTC()
	for _, it := range items {
		id := it.GetId()
		if !ValidID(id) {
			out.failures = append(out.failures, &pb.Failure{Id: id, Permanent: true, Reason: "bad id", Digest: it.digest})
			continue
		}
		if seen[id] {
			out.stored = append(out.stored, id)
			continue
		}
		if ok, err := s.ns.Has(idxKey(acct, acct, id)); err != nil {
			b.Discard()
			return out, err
		} else if ok {
			seen[id] = true
			out.stored = append(out.stored, id)
			if viaMailbox {
				_ = b.Put(s.ns, ackKey(acct, false, id), nil)
			}
			continue
		}
		pt, err := s.decrypt(cv, it.Ratchet, messageAD(sender, s.me, id), sender)
		var content *pb.Content
		if err == nil {
			content, err = DecodeContent(pt, id)
		}
		if err != nil {
			s.log.Debug("Cannot read message", "account", acct, "err", err)
			out.failures = append(out.failures, &pb.Failure{Id: id, Permanent: permanent(err), Reason: "undecryptable", Digest: it.digest})
			continue
		}
		seen[id] = true
		cv.meta.Lamport = max(cv.meta.Lamport, content.Lamport)
		m := Message{ID: id, Conversation: acct, From: acct, Text: content.Text, Lamport: content.Lamport,
			Time: time.UnixMilli(content.SentMs).UTC(), Received: now, State: StateReceived}
		sfx := suffix(m.Lamport, acct, id)
		m.Cursor = sfx
		err = errors.Join(s.putJSON(b, msgPrefix(acct)+sfx, m), b.Put(s.ns, idxKey(acct, acct, id), []byte(sfx)))
		if viaMailbox {
			err = errors.Join(err, b.Put(s.ns, ackKey(acct, false, id), nil))
		}
		if err != nil {
			b.Discard()
			cv.loaded = false
			return out, err
		}
		fresh = append(fresh, m)
		out.stored = append(out.stored, id)
	}
	if b.Len() == 0 {
		b.Discard()
		return out, nil
	}
	if len(fresh) > 0 {
		if err := s.putState(b, cv); err != nil {
			b.Discard()
			cv.loaded = false
			return received{}, err
		}
	}
	if err := s.commit(b, cv, true); err != nil {
		return received{}, err
	}
	for _, m := range fresh {
		s.o.Events.Publish(EventReceived, m)
	}
	if viaMailbox {
		s.Kick(acct)
	}
	return out, nil
}

// applyAck records a friend's verified ack: my messages become delivered (or read) and leave the outbox.
func (s *Service) applyAck(from ed25519.PublicKey, body *pb.AckBody) error {
	acct := identity.AccountIDFromKey(from)
	cv := s.conv(acct)
	cv.mu.Lock()
	defer cv.mu.Unlock()
	state := StateDelivered
	if body.Read {
		state = StateRead
	}
	// Only a session that still sends its init data can be confirmed; otherwise the queued messages need not
	// be read. A conversation whose sessions do not load still takes the ack.
	confirmable := s.load(cv) == nil && slices.ContainsFunc(cv.sessions, (*ratchet.Session).SendsInit)
	b := s.o.Store.NewBatch()
	var changed []Message
	confirmed := false
	for _, id := range body.Ids {
		m, err := s.lookup(acct, s.myID, id)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			b.Discard()
			return err
		}
		confirmed = confirmable && s.confirmSession(cv, outKey(acct, m.Lamport, id)) || confirmed
		if err := b.Delete(s.ns, outKey(acct, m.Lamport, id)); err != nil {
			b.Discard()
			return err
		}
		if rank(state) > rank(m.State) && (m.State != StateFailed) {
			m.State, m.Error = state, ""
			if err := s.putJSON(b, msgPrefix(acct)+m.Cursor, m); err != nil {
				b.Discard()
				return err
			}
			changed = append(changed, m)
		}
	}
	if confirmed {
		// Not synced: losing it only means the next messages carry the init data again.
		if err := s.putState(b, cv); err != nil {
			b.Discard()
			return err
		}
	}
	if err := s.commit(b, cv, false); err != nil {
		return err
	}
	for _, m := range changed {
		s.publishState(m)
	}
	return nil
}

// confirmSession tells the session that encrypted the queued message at key that the friend acknowledged
// it (with cv.mu held), so that the session stops sending its init data; it reports whether one changed.
func (s *Service) confirmSession(cv *conv, key string) bool {
	raw, err := s.ns.Get(key)
	if err != nil {
		return false
	}
	var it pb.OutboxItem
	if proto.Unmarshal(raw, &it) != nil {
		return false
	}
	p, err := DecodePayload(it.Payload)
	if err != nil || p.GetMessage() == nil {
		return false
	}
	for _, sess := range cv.sessions {
		if sess.Confirm(p.GetMessage().Ratchet) {
			return true
		}
	}
	return false
}

// setState moves queued messages to sent (deposited) or failed, removing failed ones from the outbox.
func (s *Service) setState(acct identity.AccountID, state, reason string, ids ...string) error {
	cv := s.conv(acct)
	cv.mu.Lock()
	defer cv.mu.Unlock()
	b := s.o.Store.NewBatch()
	var changed []Message
	for _, id := range ids {
		m, err := s.lookup(acct, s.myID, id)
		if err != nil {
			continue
		}
		if state == StateFailed {
			if m.State != StateQueued && m.State != StateSent {
				continue
			}
			_ = b.Delete(s.ns, outKey(acct, m.Lamport, id))
		} else if rank(state) <= rank(m.State) {
			continue
		}
		m.State, m.Error = state, reason
		if err := s.putJSON(b, msgPrefix(acct)+m.Cursor, m); err != nil {
			b.Discard()
			return err
		}
		changed = append(changed, m)
	}
	if err := s.commit(b, cv, state == StateFailed); err != nil {
		return err
	}
	for _, m := range changed {
		s.publishState(m)
	}
	return nil
}

// MarkRead marks the friend's messages up to and including the one with id upTo ("" = all) as read, and
// queues read receipts when they are enabled. It returns how many messages became read.
func (s *Service) MarkRead(ctx context.Context, friend identity.AccountID, upTo string) (int, error) {
	cv := s.conv(friend)
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if err := s.load(cv); err != nil {
		return 0, err
	}
	r := store.Range{Prefix: msgPrefix(friend)}
	if cv.meta.ReadUpTo != "" {
		r.Start = msgPrefix(friend) + cv.meta.ReadUpTo + "\x00"
	}
	if upTo != "" {
		m, err := s.lookup(friend, friend, upTo)
		if err != nil {
			return 0, fmt.Errorf("dm: mark read: %w", err)
		}
		r.End = msgPrefix(friend) + m.Cursor + "\x00"
	}
	b := s.o.Store.NewBatch()
	var changed []Message
	last := cv.meta.ReadUpTo
	for e, err := range s.ns.Scan(ctx, r) {
		if err != nil {
			b.Discard()
			return 0, fmt.Errorf("dm: mark read: %w", err)
		}
		var m Message
		if err := json.Unmarshal(e.Value, &m); err != nil {
			continue
		}
		last = strings.TrimPrefix(e.Key, msgPrefix(friend))
		if m.Outgoing || m.State != StateReceived {
			continue
		}
		m.State = StateRead
		m.Cursor = ""
		if err := s.putJSON(b, e.Key, m); err != nil {
			b.Discard()
			return 0, err
		}
		if s.o.ReadReceipts {
			_ = b.Put(s.ns, ackKey(friend, true, m.ID), nil)
		}
		m.Cursor = last
		changed = append(changed, m)
	}
	if last == cv.meta.ReadUpTo {
		b.Discard()
		return 0, nil
	}
	cv.meta.ReadUpTo = last
	if err := s.putJSON(b, metaKey(friend), cv.meta); err != nil {
		b.Discard()
		return 0, err
	}
	if err := s.commit(b, cv, false); err != nil {
		return 0, err
	}
	for _, m := range changed {
		s.publishState(m)
	}
	if s.o.ReadReceipts && len(changed) > 0 {
		s.Kick(friend)
	}
	return len(changed), nil
}

// Conversation summarises the conversation with one friend.
type Conversation struct {
	ID      identity.AccountID `json:"id"`
	Friend  contact.FriendView `json:"friend"`
	Last    *Message           `json:"last,omitempty"`
	Unread  int                `json:"unread"`
	Pending int                `json:"pending"`
}

// Conversations lists a conversation for every friend and for anyone else with history, most recent first.
func (s *Service) Conversations(ctx context.Context) ([]Conversation, error) {
	all, err := s.o.Graph.Contacts(ctx)
	if err != nil {
		return nil, err
	}
	out := []Conversation{}
	for _, c := range all {
		cv := Conversation{ID: c.AccountID, Friend: contact.View(c)}
		msgs, _, err := s.History(ctx, c.AccountID, "", 1)
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 {
			cv.Last = &msgs[0]
		}
		if cv.Last == nil && c.State != graph.StateFriend {
			continue
		}
		if cv.Unread, err = s.unread(ctx, c.AccountID); err != nil {
			return nil, err
		}
		if cv.Pending, err = s.ns.Count(ctx, outPrefix(c.AccountID)); err != nil {
			return nil, err
		}
		out = append(out, cv)
	}
	sortConversations(out)
	return out, nil
}

func (s *Service) unread(ctx context.Context, a identity.AccountID) (int, error) {
	var meta convMeta
	if raw, err := s.ns.Get(metaKey(a)); err == nil {
		_ = json.Unmarshal(raw, &meta)
	}
	r := store.Range{Prefix: msgPrefix(a)}
	if meta.ReadUpTo != "" {
		r.Start = msgPrefix(a) + meta.ReadUpTo + "\x00"
	}
	n := 0
	for e, err := range s.ns.Scan(ctx, r) {
		if err != nil {
			return 0, err
		}
		var m Message
		if json.Unmarshal(e.Value, &m) == nil && !m.Outgoing && m.State == StateReceived {
			n++
		}
	}
	return n, nil
}

func sortConversations(cs []Conversation) {
	slices.SortStableFunc(cs, func(a, b Conversation) int {
		switch {
		case a.Last == nil && b.Last == nil:
			return 0
		case a.Last == nil:
			return 1
		case b.Last == nil:
			return -1
		}
		return b.Last.Time.Compare(a.Last.Time)
	})
}
