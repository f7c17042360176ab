// Package contact is the friend-request protocol /madang/contact/1.0.0: accepting an invite sends a signed
// request with my profile, device certificate, ratchet prekey bundle and mailbox card; the inviter's node
// accepts it automatically when the invite's secret matches a live invite, otherwise it waits as a request the
// user accepts or declines. Friends receive profile updates. Messages that cannot be delivered are retried with
// backoff (and, for friends whose mailbox card is known, deposited in their mailbox).
package contact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/contact/pb"
	"github.com/madang-p2p/madang/ratchet"
)

// ProtocolID is the contact protocol.
const ProtocolID = "/madang/contact/1.0.0"

// Event types.
const (
	EventRequest = "friend.request"
	EventUpdated = "friend.updated"
)

// exchangeTimeout bounds one request/answer on a stream.
const exchangeTimeout = 30 * time.Second

// requestGrace is how long after its invite expired an undelivered request is still tried (the inviter then
// answers with a clear refusal).
const requestGrace = 24 * time.Hour

// cardCheckInterval is how often friends' copies of my mailbox card are compared with the current card.
const cardCheckInterval = 10 * time.Minute

// Errors.
var (
	ErrOwnInvite  = errors.New("this is your own invite")
	ErrBlocked    = errors.New("you blocked this contact; unblock them first")
	ErrRefused    = errors.New("the inviter refused the request")
	ErrWrongState = errors.New("not possible in the contact's current state")
)

// Mailbox is the part of the relay feature's mailbox client this service uses.
type Mailbox interface {
	MailboxCard(ctx context.Context, friend ed25519.PublicKey) ([]byte, error)
}

// Options build a Service.
type Options struct {
	Host     host.Host
	Router   Router // may be nil
	Graph    *graph.Graph
	Identity *identity.Identity
	Events   *events.Bus
	Log      *slog.Logger
	// Bundle is my device's ratchet prekey bundle (protocols/dm).
	Bundle []byte
	// Mailbox gives my mailbox card for a friend (nil without the relay feature).
	Mailbox Mailbox
	// ViaMailbox deposits a signed contact message in a friend's mailbox (nil: no mailbox path).
	ViaMailbox func(ctx context.Context, c graph.Contact, signed []byte) error
	// OnFriend is called when a contact becomes a friend or their devices or keys change.
	OnFriend func(a identity.AccountID)
	// OnReachable is called when a device of a contact connects.
	OnReachable func(a identity.AccountID)
	// RelayHints returns relay addresses to put in new invites (may be nil).
	RelayHints func() []string
	// InviteTTL is the lifetime of invites created without one (default 24h).
	InviteTTL time.Duration
	// RetryMin and RetryMax bound the backoff of undelivered contact messages.
	RetryMin, RetryMax time.Duration
}

type retry struct {
	next  time.Time
	delay time.Duration
}

// Service runs the contact protocol.
type Service struct {
	ctx    context.Context // lifetime of the node, for stream handlers
	o      Options
	log    *slog.Logger
	dialer *Dialer
	kickCh chan struct{}

	notifee   *network.NotifyBundle
	reqMu     sync.Mutex // serialises inbound requests, so two copies of one cannot both spend an invite
	mu        sync.Mutex
	busy      map[identity.AccountID]bool // contacts with an exchange in flight (not retried meanwhile)
	retries   map[identity.AccountID]retry
	peers     map[peer.ID]identity.AccountID
	lastCards time.Time
}

// New builds the service; Start registers its handler, Run its retry loop. ctx bounds the work of inbound
// streams.
func New(ctx context.Context, o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RetryMin <= 0 {
		o.RetryMin = time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(o.RetryMin, 5*time.Minute)
	}
	if o.InviteTTL <= 0 {
		o.InviteTTL = 24 * time.Hour
	}
	return &Service{
		ctx: ctx, o: o, log: o.Log.With("component", "contact"), dialer: &Dialer{Host: o.Host, Router: o.Router},
		kickCh: make(chan struct{}, 1), retries: map[identity.AccountID]retry{}, peers: map[peer.ID]identity.AccountID{},
		busy: map[identity.AccountID]bool{},
	}
}

// Dialer is the service's way of reaching contacts (shared with protocols/dm).
func (s *Service) Dialer() *Dialer { return s.dialer }

// Graph is the local graph.
func (s *Service) Graph() *graph.Graph { return s.o.Graph }

// Start registers the stream handler and the connection watcher.
func (s *Service) Start() {
	s.o.Host.SetStreamHandler(ProtocolID, s.handle)
	s.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		s.mu.Lock()
		a, ok := s.peers[c.RemotePeer()]
		s.mu.Unlock()
		if ok {
			s.Poke(a)
			if s.o.OnReachable != nil {
				s.o.OnReachable(a)
			}
		}
	}}
	s.o.Host.Network().Notify(s.notifee)
	s.refreshPeers()
}

// Close removes the stream handler and the connection watcher.
func (s *Service) Close() error {
	s.o.Host.RemoveStreamHandler(ProtocolID)
	if s.notifee != nil {
		s.o.Host.Network().StopNotify(s.notifee)
	}
	return nil
}

func (s *Service) refreshPeers() {
	all, err := s.o.Graph.Contacts(s.ctx)
	if err != nil {
		return
	}
	m := map[peer.ID]identity.AccountID{}
	for _, c := range all {
		for _, p := range c.PeerIDs() {
			m[p] = c.AccountID
		}
	}
	s.mu.Lock()
	s.peers = m
	s.mu.Unlock()
}

// AccountOf returns the contact whose device p is.
func (s *Service) AccountOf(p peer.ID) (identity.AccountID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.peers[p]
	return a, ok
}

// Poke resets the backoff of a contact and wakes the retry loop.
func (s *Service) Poke(a identity.AccountID) {
	s.mu.Lock()
	delete(s.retries, a)
	s.mu.Unlock()
	s.kick()
}

func (s *Service) kick() {
	select {
	case s.kickCh <- struct{}{}:
	default:
	}
}

func (s *Service) changed(c graph.Contact) {
	s.refreshPeers()
	s.o.Events.Publish(EventUpdated, View(c))
}

func (s *Service) me() ed25519.PublicKey { return s.o.Identity.AccountKey() }

// body builds a message of kind to account `to`.
func (s *Service) body(ctx context.Context, kind pb.Kind, to ed25519.PublicKey, secret []byte) *pb.Body {
	b := &pb.Body{
		Version: wireVersion, Kind: kind, FromAccount: s.me(), ToAccount: to,
		DeviceCert: s.o.Identity.CertBytes(), Profile: profileToPB(s.o.Graph.Profile()),
		PrekeyBundle: s.o.Bundle, InviteSecret: secret, CreatedMs: time.Now().UnixMilli(),
	}
	if card := s.card(ctx, to); card != nil {
		b.MailboxCard = card
	}
	for _, a := range s.o.Host.Addrs() {
		if len(b.Addrs) < maxAddrs {
			b.Addrs = append(b.Addrs, a.Bytes())
		}
	}
	return b
}

func (s *Service) card(ctx context.Context, to ed25519.PublicKey) []byte {
	if s.o.Mailbox == nil {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	card, err := s.o.Mailbox.MailboxCard(cctx, to)
	if err != nil {
		s.log.Debug("No mailbox card", "err", err)
		return nil
	}
	return card
}

func cardHash(card []byte) string {
	if len(card) == 0 {
		return ""
	}
	h := sha256.Sum256(card)
	return hex.EncodeToString(h[:8])
}

// exchange sends one signed message to a contact's device and reads the answer.
func (s *Service) exchange(ctx context.Context, c graph.Contact, signed []byte) (*pb.Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, exchangeTimeout)
	defer cancel()
	st, err := s.dialer.Open(ctx, c, ProtocolID)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	dl, _ := ctx.Deadline()
	_ = st.SetDeadline(dl)
	var env pb.Signed
	if err := proto.Unmarshal(signed, &env); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("contact: re-read own message: %w", err)
	}
	if err := pbio.NewDelimitedWriter(st).WriteMsg(&env); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("contact: send to %s: %w", c.AccountID, err)
	}
	var reply pb.Reply
	if err := pbio.NewDelimitedReader(st, MaxMessageSize+1024).ReadMsg(&reply); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("contact: answer from %s: %w", c.AccountID, err)
	}
	s.rememberAddrs(c.AccountID, st.Conn().RemotePeer(), RemoteAddrs(s.o.Host, st))
	return &reply, nil
}

// rememberAddrs stores addresses that reached a device, when they add anything.
func (s *Service) rememberAddrs(a identity.AccountID, p peer.ID, addrs []ma.Multiaddr) {
	c, err := s.o.Graph.Contact(a)
	if err != nil {
		return
	}
	for _, d := range c.Devices {
		if d.PeerID == p && !slices.Equal(graph.MergeAddrs(d.Addrs, addrs...), d.Addrs) {
			_, _, _ = s.o.Graph.Update(c.AccountKey, false, func(c *graph.Contact) error {
				for i := range c.Devices {
					if c.Devices[i].PeerID == p {
						c.Devices[i].Addrs = graph.MergeAddrs(c.Devices[i].Addrs, addrs...)
					}
				}
				return nil
			})
			return
		}
	}
}

// handle serves one inbound message.
func (s *Service) handle(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(exchangeTimeout))
	var env pb.Signed
	if err := pbio.NewDelimitedReader(st, MaxMessageSize).ReadMsg(&env); err != nil {
		_ = st.Reset()
		return
	}
	raw, err := proto.Marshal(&env)
	var reply *pb.Reply
	if err == nil {
		var msg *Message
		if msg, err = Open(raw); err == nil {
			if msg.Cert.PeerID != st.Conn().RemotePeer() {
				err = bad("sent by another device than its certificate names")
			} else {
				ctx, cancel := context.WithTimeout(s.ctx, exchangeTimeout)
				reply = s.Handle(ctx, msg)
				cancel()
			}
		}
	}
	if err != nil {
		s.log.Debug("Invalid contact message", "peer", st.Conn().RemotePeer(), "err", err)
		reply = &pb.Reply{Status: pb.Status_STATUS_REFUSED, Reason: "invalid message"}
	}
	if err := pbio.NewDelimitedWriter(st).WriteMsg(reply); err != nil {
		_ = st.Reset()
	}
}

// HandleRaw processes a signed contact message that arrived without a stream (through a mailbox).
func (s *Service) HandleRaw(ctx context.Context, raw []byte) error {
	msg, err := Open(raw)
	if err != nil {
		return err
	}
	if r := s.Handle(ctx, msg); r.Status == pb.Status_STATUS_REFUSED {
		return fmt.Errorf("contact: %s", r.Reason)
	}
	return nil
}

func refused(reason string) *pb.Reply {
	return &pb.Reply{Status: pb.Status_STATUS_REFUSED, Reason: reason}
}

// Handle processes a verified message and returns the answer.
func (s *Service) Handle(ctx context.Context, msg *Message) *pb.Reply {
	if !bytes.Equal(msg.Body.ToAccount, s.me()) || bytes.Equal(msg.From, s.me()) {
		return refused("not addressed to this account")
	}
	switch msg.Body.Kind {
	case pb.Kind_KIND_REQUEST:
		return s.onRequest(ctx, msg)
	case pb.Kind_KIND_ACCEPT:
		return s.onAccept(ctx, msg, false)
	default:
		return s.onAccept(ctx, msg, true)
	}
}

// applyPeer stores what a message tells about its sender's device, keys, card and profile.
func (s *Service) applyPeer(c *graph.Contact, msg *Message) {
	b := msg.Body
	dev := graph.Device{PeerID: msg.Cert.PeerID, DeviceKey: msg.Cert.DeviceKey, Cert: b.DeviceCert}
	if bundle, err := ratchet.UnmarshalBundle(b.PrekeyBundle); err == nil && bytes.Equal(bundle.AccountKey, msg.From) {
		dev.Bundle = b.PrekeyBundle
	}
	found := false
	for i := range c.Devices {
		if c.Devices[i].PeerID == dev.PeerID {
			found = true
			c.Devices[i].DeviceKey, c.Devices[i].Cert = dev.DeviceKey, dev.Cert
			if dev.Bundle != nil {
				c.Devices[i].Bundle = dev.Bundle
			}
			c.Devices[i].Addrs = graph.MergeAddrs(c.Devices[i].Addrs, msg.Addrs()...)
		}
	}
	if !found && len(c.Devices) < graph.MaxDevices {
		dev.Addrs = graph.MergeAddrs(nil, msg.Addrs()...)
		c.Devices = append(c.Devices, dev)
	}
	if len(b.MailboxCard) > 0 {
		c.MailboxCard = b.MailboxCard
	}
	if p := msg.Profile(); p.Version >= c.Profile.Version {
		p.Updated = msg.Created().UTC()
		c.Profile = p
	}
}

func (s *Service) onRequest(ctx context.Context, msg *Message) *pb.Reply {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	old, err := s.o.Graph.ContactByKey(msg.From)
	exists := err == nil
	if exists && old.State == graph.StateBlocked {
		return refused("refused")
	}
	befriend := exists && (old.State == graph.StateFriend || old.State == graph.StateInvited || old.State == graph.StateRequestOut)
	if !befriend && len(msg.Body.InviteSecret) > 0 {
		switch _, err := s.o.Graph.RedeemInvite(msg.Body.InviteSecret); {
		case err == nil:
			befriend = true
		case errors.Is(err, graph.ErrInviteExpired):
			return &pb.Reply{Status: pb.Status_STATUS_EXPIRED, Reason: "the invite has expired"}
		case errors.Is(err, graph.ErrInviteUsed):
			return &pb.Reply{Status: pb.Status_STATUS_USED, Reason: "the invite has already been used"}
		case errors.Is(err, graph.ErrInviteUnknown):
		default:
			s.log.Warn("Cannot redeem invite", "err", err)
			return refused("internal error")
		}
	}
	myVersion := s.o.Graph.Profile().Version
	c, _, err := s.o.Graph.Update(msg.From, true, func(c *graph.Contact) error {
		s.applyPeer(c, msg)
		if befriend {
			c.State, c.Secret, c.AcceptOwed, c.ProfileSent = graph.StateFriend, nil, false, myVersion
		} else {
			c.State = graph.StateRequestIn
		}
		return nil
	})
	if err != nil {
		s.log.Warn("Cannot store contact", "err", err)
		return refused("internal error")
	}
	if !befriend {
		s.changed(c)
		s.o.Events.Publish(EventRequest, View(c))
		return &pb.Reply{Status: pb.Status_STATUS_PENDING, Reason: "waiting for the user to accept"}
	}
	accept, err := sign(s.o.Identity, s.body(ctx, pb.Kind_KIND_ACCEPT, msg.From, nil))
	if err != nil {
		return refused("internal error")
	}
	_, _, _ = s.o.Graph.Update(msg.From, false, func(c *graph.Contact) error {
		c.CardSent = cardHash(s.card(ctx, msg.From))
		return nil
	})
	s.changed(c)
	s.friended(c.AccountID)
	var env pb.Signed
	_ = proto.Unmarshal(accept, &env)
	return &pb.Reply{Status: pb.Status_STATUS_ACCEPTED, Accept: &env}
}

func (s *Service) friended(a identity.AccountID) {
	if s.o.OnFriend != nil {
		s.o.OnFriend(a)
	}
}

// onAccept handles ACCEPT (profile=false) and PROFILE messages.
func (s *Service) onAccept(_ context.Context, msg *Message, profile bool) *pb.Reply {
	old, err := s.o.Graph.ContactByKey(msg.From)
	if err != nil {
		return refused("unexpected")
	}
	switch old.State {
	case graph.StateFriend, graph.StateInvited, graph.StateRequestOut:
	default:
		return refused("unexpected")
	}
	c, _, err := s.o.Graph.Update(msg.From, false, func(c *graph.Contact) error {
		s.applyPeer(c, msg)
		c.State, c.Secret = graph.StateFriend, nil
		return nil
	})
	if err != nil {
		s.log.Warn("Cannot store contact", "err", err)
		return refused("internal error")
	}
	if old.State != graph.StateFriend || !profile || !slices.Equal(old.PeerIDs(), c.PeerIDs()) || !sameBundles(old, c) {
		s.friended(c.AccountID)
	}
	s.changed(c)
	return &pb.Reply{Status: pb.Status_STATUS_OK}
}

func sameBundles(a, b graph.Contact) bool {
	if len(a.Devices) != len(b.Devices) {
		return false
	}
	for i := range a.Devices {
		if !bytes.Equal(a.Devices[i].Bundle, b.Devices[i].Bundle) {
			return false
		}
	}
	return true
}

// CreateInvite makes an invite link carrying up to two of the relay hints.
func (s *Service) CreateInvite(ttl time.Duration, uses int) (graph.InviteRecord, error) {
	var hints []string
	if s.o.RelayHints != nil {
		hints = s.o.RelayHints()
	}
	return s.o.Graph.CreateInvite(graph.InviteOptions{TTL: ttl, Uses: uses, RelayHints: hints})
}

// AcceptInvite accepts someone's invite link: it stores them as a contact and sends them a friend request.
// When their node answers at once the result is a friend (or a pending request); when it cannot be reached
// now the request stays queued (state invited) and is retried until the invite expires. Expired and used-up
// invites fail with graph.ErrInviteExpired and graph.ErrInviteUsed.
func (s *Service) AcceptInvite(ctx context.Context, link string) (graph.Contact, error) {
	inv, err := graph.ParseLink(link)
	if err != nil {
		return graph.Contact{}, err
	}
	if !time.Now().Before(inv.Expires) {
		return graph.Contact{}, fmt.Errorf("%w (it expired %s)", graph.ErrInviteExpired, inv.Expires.UTC().Format(time.RFC3339))
	}
	if bytes.Equal(inv.AccountKey, s.me()) {
		return graph.Contact{}, ErrOwnInvite
	}
	if old, err := s.o.Graph.ContactByKey(inv.AccountKey); err == nil {
		switch old.State {
		case graph.StateFriend:
			return old, nil
		case graph.StateBlocked:
			return graph.Contact{}, ErrBlocked
		case graph.StateRequestIn:
			return s.AcceptRequest(ctx, old.AccountID)
		}
	}
	a := identity.AccountIDFromKey(inv.AccountKey)
	if !s.claim(a) {
		return graph.Contact{}, fmt.Errorf("%w: a request to %s is being sent", ErrWrongState, inv.DisplayName)
	}
	defer s.release(a)
	myVersion := s.o.Graph.Profile().Version
	c, _, err := s.o.Graph.Update(inv.AccountKey, true, func(c *graph.Contact) error {
		c.State, c.InviteName = graph.StateInvited, inv.DisplayName
		c.Secret, c.InviteID, c.ProfileSent = inv.Secret, graph.InviteID(inv.Secret), myVersion
		c.InviteExp = inv.Expires
		c.RelayHints = nil
		for _, h := range inv.RelayHints {
			c.RelayHints = append(c.RelayHints, h.String())
		}
		if !c.HasDevice(inv.PeerID) {
			c.Devices = append(c.Devices, graph.Device{PeerID: inv.PeerID, DeviceKey: inv.DeviceKey})
		}
		return nil
	})
	if err != nil {
		return graph.Contact{}, err
	}
	s.changed(c)
	reply, err := s.sendRequest(ctx, c)
	if err != nil {
		s.log.Info("Friend request queued", "account", c.AccountID, "err", err)
		return c, nil
	}
	return s.applyRequestReply(ctx, c, reply)
}

func (s *Service) sendRequest(ctx context.Context, c graph.Contact) (*pb.Reply, error) {
	signed, err := sign(s.o.Identity, s.body(ctx, pb.Kind_KIND_REQUEST, c.AccountKey, c.Secret))
	if err != nil {
		return nil, err
	}
	return s.exchange(ctx, c, signed)
}

func (s *Service) applyRequestReply(ctx context.Context, c graph.Contact, r *pb.Reply) (graph.Contact, error) {
	switch r.Status {
	case pb.Status_STATUS_ACCEPTED:
		raw, err := proto.Marshal(r.Accept)
		if err != nil {
			return c, fmt.Errorf("contact: accept: %w", err)
		}
		msg, err := Open(raw)
		if err != nil {
			return c, err
		}
		if !bytes.Equal(msg.From, c.AccountKey) || msg.Body.Kind != pb.Kind_KIND_ACCEPT {
			return c, bad("accept from another account")
		}
		if rr := s.Handle(ctx, msg); rr.Status != pb.Status_STATUS_OK {
			return c, fmt.Errorf("contact: accept: %s", rr.Reason)
		}
		_, _, _ = s.o.Graph.Update(c.AccountKey, false, func(c *graph.Contact) error {
			c.CardSent = cardHash(s.card(ctx, c.AccountKey))
			return nil
		})
		return s.o.Graph.Contact(c.AccountID)
	case pb.Status_STATUS_PENDING:
		c, _, err := s.o.Graph.Update(c.AccountKey, false, func(c *graph.Contact) error {
			if c.State == graph.StateInvited {
				c.State, c.Secret = graph.StateRequestOut, nil
			}
			return nil
		})
		if err == nil {
			s.changed(c)
		}
		return c, err
	}
	var cause error
	switch r.Status {
	case pb.Status_STATUS_EXPIRED:
		cause = fmt.Errorf("%w: %s says so", graph.ErrInviteExpired, c.Name())
	case pb.Status_STATUS_USED:
		cause = fmt.Errorf("%w: %s says so", graph.ErrInviteUsed, c.Name())
	default:
		cause = fmt.Errorf("%w: %s", ErrRefused, r.Reason)
	}
	if cur, err := s.o.Graph.Contact(c.AccountID); err == nil && cur.State == graph.StateInvited {
		if err := s.o.Graph.Delete(c.AccountID); err == nil {
			cur.State = ""
			s.changed(cur)
		}
	}
	return graph.Contact{}, cause
}

// AcceptRequest makes a requesting contact a friend; they are told (now or by the retry loop).
func (s *Service) AcceptRequest(_ context.Context, a identity.AccountID) (graph.Contact, error) {
	c, err := s.o.Graph.Contact(a)
	if err != nil {
		return c, err
	}
	if c.State == graph.StateFriend {
		return c, nil
	}
	if c.State != graph.StateRequestIn {
		return c, fmt.Errorf("%w: %s is %s", ErrWrongState, c.Name(), c.State)
	}
	c, _, err = s.o.Graph.Update(c.AccountKey, false, func(c *graph.Contact) error {
		c.State, c.AcceptOwed = graph.StateFriend, true
		return nil
	})
	if err != nil {
		return c, err
	}
	s.changed(c)
	s.friended(a)
	s.Poke(a)
	return c, nil
}

// Decline forgets a friend request.
func (s *Service) Decline(_ context.Context, a identity.AccountID) error {
	c, err := s.o.Graph.Contact(a)
	if err != nil {
		return err
	}
	if c.State != graph.StateRequestIn {
		return fmt.Errorf("%w: %s is %s", ErrWrongState, c.Name(), c.State)
	}
	if err := s.o.Graph.Delete(a); err != nil {
		return err
	}
	c.State = ""
	s.changed(c)
	return nil
}

// Remove forgets a contact (the conversation history stays).
func (s *Service) Remove(_ context.Context, a identity.AccountID) error {
	c, err := s.o.Graph.Contact(a)
	if err != nil {
		return err
	}
	if err := s.o.Graph.Delete(a); err != nil {
		return err
	}
	c.State = ""
	s.changed(c)
	return nil
}

// Block blocks a contact: their messages and requests are dropped from now on.
func (s *Service) Block(_ context.Context, a identity.AccountID) (graph.Contact, error) {
	c, _, err := s.update(a, func(c *graph.Contact) error {
		if c.State != graph.StateBlocked {
			c.UnblockTo, c.State = c.State, graph.StateBlocked
		}
		return nil
	})
	return c, err
}

// Unblock returns a blocked contact to the state it had.
func (s *Service) Unblock(_ context.Context, a identity.AccountID) (graph.Contact, error) {
	c, _, err := s.update(a, func(c *graph.Contact) error {
		if c.State != graph.StateBlocked {
			return fmt.Errorf("%w: %s is not blocked", ErrWrongState, c.Name())
		}
		c.State, c.UnblockTo = c.UnblockTo, ""
		if c.State == "" {
			c.State = graph.StateFriend
		}
		return nil
	})
	if err == nil && c.State == graph.StateFriend {
		s.friended(a)
		s.Poke(a)
	}
	return c, err
}

// SetAlias sets my alias for a contact ("" clears it).
func (s *Service) SetAlias(_ context.Context, a identity.AccountID, alias string) (graph.Contact, error) {
	if err := graph.ValidateAlias(alias); err != nil {
		return graph.Contact{}, err
	}
	c, _, err := s.update(a, func(c *graph.Contact) error { c.Alias = alias; return nil })
	return c, err
}

// SetFavourite marks or unmarks a contact as a favourite.
func (s *Service) SetFavourite(_ context.Context, a identity.AccountID, fav bool) (graph.Contact, error) {
	c, _, err := s.update(a, func(c *graph.Contact) error { c.Favourite = fav; return nil })
	return c, err
}

func (s *Service) update(a identity.AccountID, fn func(c *graph.Contact) error) (graph.Contact, graph.Contact, error) {
	cur, err := s.o.Graph.Contact(a)
	if err != nil {
		return cur, cur, err
	}
	c, old, err := s.o.Graph.Update(cur.AccountKey, false, fn)
	if err == nil {
		s.changed(c)
	}
	return c, old, err
}

// SetProfile changes my profile; friends receive it.
func (s *Service) SetProfile(p graph.Profile) (graph.Profile, error) {
	p, changed, err := s.o.Graph.SetProfile(p)
	if err == nil && changed {
		s.mu.Lock()
		clear(s.retries)
		s.mu.Unlock()
		s.kick()
	}
	return p, err
}

// Run retries undelivered requests, accepts and profile updates until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(max(s.o.RetryMin, 200*time.Millisecond))
	defer t.Stop()
	sweep := time.NewTicker(time.Hour)
	defer sweep.Stop()
	for {
		s.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-s.kickCh:
		case <-t.C:
		case <-sweep.C:
			if _, err := s.o.Graph.SweepInvites(ctx); err != nil {
				s.log.Warn("Cannot sweep invites", "err", err)
			}
		}
	}
}

func (s *Service) pass(ctx context.Context) {
	all, err := s.o.Graph.Contacts(ctx)
	if err != nil {
		return
	}
	now := time.Now()
	checkCards := false
	s.mu.Lock()
	if s.o.Mailbox != nil && now.Sub(s.lastCards) > cardCheckInterval {
		checkCards, s.lastCards = true, now
	}
	s.mu.Unlock()
	myVersion := s.o.Graph.Profile().Version
	for _, c := range all {
		if ctx.Err() != nil {
			return
		}
		var kind pb.Kind
		switch {
		case c.State == graph.StateInvited && c.Secret != nil:
			kind = pb.Kind_KIND_REQUEST
		case c.State == graph.StateFriend && c.AcceptOwed:
			kind = pb.Kind_KIND_ACCEPT
		case c.State == graph.StateFriend && c.ProfileSent < myVersion:
			kind = pb.Kind_KIND_PROFILE
		case c.State == graph.StateFriend && checkCards && cardHash(s.card(ctx, c.AccountKey)) != c.CardSent:
			kind = pb.Kind_KIND_PROFILE
		default:
			continue
		}
		if !s.due(c.AccountID, now) || !s.claim(c.AccountID) {
			continue
		}
		err := s.deliver(ctx, c, kind, myVersion)
		s.release(c.AccountID)
		s.backoff(c.AccountID, err)
	}
}

// claim marks an exchange with a in flight; false if one already is.
func (s *Service) claim(a identity.AccountID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[a] {
		return false
	}
	s.busy[a] = true
	return true
}

func (s *Service) release(a identity.AccountID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.busy, a)
}

func (s *Service) due(a identity.AccountID, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.retries[a]
	return !ok || !now.Before(r.next)
}

func (s *Service) backoff(a identity.AccountID, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.retries, a)
		return
	}
	r := s.retries[a]
	r.delay = min(max(2*r.delay, s.o.RetryMin), s.o.RetryMax)
	r.next = time.Now().Add(r.delay)
	s.retries[a] = r
}

// deliver sends one pending message to c directly, else (not for requests) through their mailbox.
func (s *Service) deliver(ctx context.Context, c graph.Contact, kind pb.Kind, myVersion uint64) error {
	if kind == pb.Kind_KIND_REQUEST {
		if time.Now().After(c.InviteExp.Add(requestGrace)) {
			// The inviter was never reached while the invite lived: give up.
			if err := s.o.Graph.Delete(c.AccountID); err != nil {
				return err
			}
			s.log.Info("Friend request dropped: the invite expired before the inviter could be reached", "account", c.AccountID)
			c.State = ""
			s.changed(c)
			return nil
		}
		reply, err := s.sendRequest(ctx, c)
		if err != nil {
			return err
		}
		_, err = s.applyRequestReply(ctx, c, reply)
		if err != nil {
			s.log.Info("Friend request refused", "account", c.AccountID, "err", err)
		}
		return nil
	}
	body := s.body(ctx, kind, c.AccountKey, nil)
	signed, err := sign(s.o.Identity, body)
	if err != nil {
		return err
	}
	reply, err := s.exchange(ctx, c, signed)
	if err != nil && s.o.ViaMailbox != nil && len(c.MailboxCard) > 0 {
		if merr := s.o.ViaMailbox(ctx, c, signed); merr == nil {
			err, reply = nil, &pb.Reply{Status: pb.Status_STATUS_OK}
		}
	}
	if err != nil {
		return err
	}
	if reply.Status != pb.Status_STATUS_OK {
		s.log.Info("Contact update refused", "account", c.AccountID, "reason", reply.Reason)
	}
	_, _, err = s.o.Graph.Update(c.AccountKey, false, func(c *graph.Contact) error {
		if kind == pb.Kind_KIND_ACCEPT {
			c.AcceptOwed = false
		}
		c.ProfileSent = max(c.ProfileSent, min(myVersion, body.Profile.Version))
		c.CardSent = cardHash(body.MailboxCard)
		return nil
	})
	return err
}
