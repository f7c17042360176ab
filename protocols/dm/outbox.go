package dm

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/dm/pb"
	"github.com/madang-p2p/madang/store"
)

// Deadlines.
const (
	batchTimeout   = 30 * time.Second // one batch and its reply
	idleTimeout    = 60 * time.Second // an inbound stream without a batch
	depositTimeout = 30 * time.Second
)

var errNoProgress = errors.New("dm: the friend's node stored nothing")

// worker delivers one friend's outbox and owed acks.
type worker struct {
	kick   chan struct{}
	kicked bool
}

// Kick wakes (or starts) the delivery worker of a friend and resets its backoff.
func (s *Service) Kick(a identity.AccountID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workers[a]; w != nil {
		w.kicked = true
		select {
		case w.kick <- struct{}{}:
		default:
		}
		return
	}
	w := &worker{kick: make(chan struct{}, 1)}
	s.workers[a] = w
	if s.runCtx != nil {
		s.startWorker(a, w)
	}
}

// startWorker is called with s.mu held and s.runCtx set; the worker gets that context by value (Run clears
// the field when it ends).
func (s *Service) startWorker(a identity.AccountID, w *worker) {
	ctx := s.runCtx
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.work(ctx, a, w)
	}()
}

// Start registers the stream handler.
func (s *Service) Start() { s.o.Host.SetStreamHandler(ProtocolID, s.handle) }

// Close removes the stream handler.
func (s *Service) Close() error {
	s.o.Host.RemoveStreamHandler(ProtocolID)
	return nil
}

// Run runs the delivery workers until ctx ends: at start for every friend with anything queued, later
// whenever Kick is called.
func (s *Service) Run(ctx context.Context) error {
	pending := map[identity.AccountID]bool{}
	for _, prefix := range []string{"o/", "a/"} {
		for e, err := range s.ns.Scan(ctx, store.Range{Prefix: prefix}) {
			if err != nil {
				return fmt.Errorf("dm: scan outbox: %w", err)
			}
			a, _, _ := strings.Cut(strings.TrimPrefix(e.Key, prefix), "/")
			pending[identity.AccountID(a)] = true
		}
	}
	s.mu.Lock()
	s.runCtx = ctx
	for a, w := range s.workers {
		s.startWorker(a, w)
		delete(pending, a)
	}
	s.mu.Unlock()
	for a := range pending {
		s.Kick(a)
	}
	<-ctx.Done()
	s.mu.Lock()
	s.runCtx = nil // no worker starts after this; those running end with ctx
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// work delivers until nothing is owed to the friend; it backs off while the friend cannot be reached.
func (s *Service) work(ctx context.Context, a identity.AccountID, w *worker) {
	delay := s.o.RetryMin
	for {
		s.mu.Lock()
		w.kicked = false
		s.mu.Unlock()
		done, err := s.deliver(ctx, a)
		if ctx.Err() != nil {
			return
		}
		if done {
			s.mu.Lock()
			if !w.kicked {
				delete(s.workers, a)
				s.mu.Unlock()
				return
			}
			s.mu.Unlock()
			continue
		}
		if err == nil {
			delay = s.o.RetryMin
			continue
		}
		s.log.Debug("Delivery postponed", "account", a, "retryIn", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.kick:
			delay = s.o.RetryMin
		case <-t.C:
			delay = min(2*delay, s.o.RetryMax)
		}
		t.Stop()
	}
}

type outItem struct {
	key  string
	id   string
	item *pb.OutboxItem
}

type owedAck struct {
	key  string
	id   string
	read bool
}

// pending returns the first batch of the friend's outbox (in order) and the acks owed to them.
func (s *Service) pending(ctx context.Context, a identity.AccountID) ([]outItem, []owedAck, error) {
	items, err := s.outboxPage(ctx, a, "")
	if err != nil {
		return nil, nil, err
	}
	var acks []owedAck
	for e, err := range s.ns.Scan(ctx, store.Range{Prefix: ackPrefix(a), Limit: MaxAckIDs}) {
		if err != nil {
			return nil, nil, fmt.Errorf("dm: owed acks: %w", err)
		}
		kind, id, _ := strings.Cut(strings.TrimPrefix(e.Key, ackPrefix(a)), "/")
		acks = append(acks, owedAck{key: e.Key, id: id, read: kind == "r"})
	}
	return items, acks, nil
}

// outboxPage returns one batch of the outbox (at most maxBatchPayloads items and about maxBatchBytes of
// payload) after the key `after` ("" = from the start).
func (s *Service) outboxPage(ctx context.Context, a identity.AccountID, after string) ([]outItem, error) {
	var items []outItem
	size := 0
	r := store.Range{Prefix: outPrefix(a), Limit: maxBatchPayloads}
	if after != "" {
		r.Start = after + "\x00"
	}
	for e, err := range s.ns.Scan(ctx, r) {
		if err != nil {
			return nil, fmt.Errorf("dm: outbox: %w", err)
		}
		var it pb.OutboxItem
		if err := proto.Unmarshal(e.Value, &it); err != nil {
			return nil, fmt.Errorf("dm: outbox item: %w", err)
		}
		if size+len(it.Payload) > maxBatchBytes && len(items) > 0 {
			break
		}
		size += len(it.Payload)
		_, id, _ := strings.Cut(strings.TrimPrefix(e.Key, outPrefix(a)), "/")
		items = append(items, outItem{key: e.Key, id: id, item: &it})
	}
	return items, nil
}

// ackPayloads encodes owed acks (delivery and read) as signed payloads.
func (s *Service) ackPayloads(to ed25519.PublicKey, acks []owedAck) [][]byte {
	var d, r []string
	for _, k := range acks {
		if k.read {
			r = append(r, k.id)
		} else {
			d = append(d, k.id)
		}
	}
	var out [][]byte
	for i, ids := range [][]string{d, r} {
		if len(ids) == 0 {
			continue
		}
		sa := signAck(s.o.Identity.SignAccount, s.me, to, ids, i == 1, time.Now())
		out = append(out, encode(&pb.Payload{Version: wireVersion, Sender: s.me, Recipient: to, Kind: &pb.Payload_Ack{Ack: sa}}))
	}
	return out
}

func (s *Service) dropAcks(acks []owedAck) {
	b := s.o.Store.NewBatch()
	for _, k := range acks {
		_ = b.Delete(s.ns, k.key)
	}
	if err := b.Commit(false); err != nil {
		b.Discard()
	}
}

// deliver makes one delivery attempt: directly, else through the friend's mailbox. done means nothing is owed
// to the friend any more.
func (s *Service) deliver(ctx context.Context, a identity.AccountID) (done bool, err error) {
	items, acks, err := s.pending(ctx, a)
	if err != nil {
		return false, err
	}
	if len(items) == 0 && len(acks) == 0 {
		return true, nil
	}
	c, err := s.o.Graph.Contact(a)
	if err != nil || c.State != graph.StateFriend {
		// Not a friend (any more): keep the queue; it resumes if they become one again.
		return true, nil
	}
	derr := s.deliverDirect(ctx, c)
	if derr == nil {
		return false, nil
	}
	if merr := s.deposit(ctx, c); merr != nil {
		return false, errors.Join(derr, merr)
	}
	return false, derr
}

// deliverDirect streams the outbox to the friend's device until it is empty or no progress is made.
func (s *Service) deliverDirect(ctx context.Context, c graph.Contact) error {
	if s.o.Dialer == nil {
		return errors.New("dm: no dialer")
	}
	st, err := s.o.Dialer.Open(ctx, c, ProtocolID)
	if err != nil {
		return err
	}
	defer st.Close()
	w := pbio.NewDelimitedWriter(st)
	r := pbio.NewDelimitedReader(st, maxReplyBytes)
	for {
		items, acks, err := s.pending(ctx, c.AccountID)
		if err != nil {
			return err
		}
		if len(items) == 0 && len(acks) == 0 {
			return nil
		}
		batch := &pb.Batch{Payloads: s.ackPayloads(c.AccountKey, acks)}
		for _, it := range items {
			batch.Payloads = append(batch.Payloads, it.item.Payload)
		}
		_ = st.SetDeadline(time.Now().Add(batchTimeout))
		var reply pb.Reply
		if err := w.WriteMsg(batch); err != nil {
			_ = st.Reset()
			return fmt.Errorf("dm: send to %s: %w", c.AccountID, err)
		}
		if err := r.ReadMsg(&reply); err != nil {
			_ = st.Reset()
			return fmt.Errorf("dm: reply from %s: %w", c.AccountID, err)
		}
		if len(acks) > 0 {
			s.dropAcks(acks)
		}
		progress, err := s.applyReply(c, &reply, len(items))
		if err != nil {
			return err
		}
		if len(items) > 0 && !progress {
			return errNoProgress
		}
	}
}

// applyReply records a direct reply; progress means some item was acked or failed for good.
func (s *Service) applyReply(c graph.Contact, reply *pb.Reply, sent int) (bool, error) {
	progress := false
	if reply.Ack != nil {
		body, err := OpenAck(reply.Ack, c.AccountKey, s.me)
		if err != nil {
			return false, err
		}
		if err := s.applyAck(c.AccountKey, body); err != nil {
			return false, err
		}
		progress = len(body.Ids) > 0
	}
	var failed []string
	for _, f := range reply.Failures {
		if f.Permanent && ValidID(f.Id) && s.isQueued(c.AccountID, f.Id, f.Digest) {
			failed = append(failed, f.Id)
		}
	}
	if len(failed) > 0 {
		s.log.Warn("Friend's node cannot read messages", "account", c.AccountID, "n", len(failed))
		if err := s.setState(c.AccountID, StateFailed, "the friend's device cannot decrypt it", failed...); err != nil {
			return false, err
		}
		progress = true
	}
	return progress || sent == 0, nil
}

// isQueued reports whether my message id to a is in the outbox with exactly the payload of that digest (a
// failure report about a damaged copy must not fail the original).
func (s *Service) isQueued(a identity.AccountID, id, digest string) bool {
	m, err := s.lookup(a, s.myID, id)
	if err != nil {
		return false
	}
	raw, err := s.ns.Get(outKey(a, m.Lamport, id))
	if err != nil {
		return false
	}
	var it pb.OutboxItem
	return proto.Unmarshal(raw, &it) == nil && ItemID(it.Payload) == digest
}

// ItemID names a mailbox item by its payload, so that re-deposits of the same payload are recognisable.
func ItemID(payload []byte) string {
	h := sha256.Sum256(payload)
	return hex.EncodeToString(h[:16])
}

// deposit hands queued messages (not deposited recently) and owed acks to the friend's mailbox relays.
func (s *Service) deposit(ctx context.Context, c graph.Contact) error {
	if s.o.Mailbox == nil || len(c.MailboxCard) == 0 {
		return errors.New("dm: no mailbox for this friend")
	}
	items, acks, err := s.pending(ctx, c.AccountID)
	if err != nil {
		return err
	}
	put := func(payload []byte) error {
		dctx, cancel := context.WithTimeout(ctx, depositTimeout)
		defer cancel()
		if _, err := s.o.Mailbox.Deposit(dctx, c.MailboxCard, ItemID(payload), payload); err != nil {
			return fmt.Errorf("dm: deposit: %w", err)
		}
		return nil
	}
	for _, p := range s.ackPayloads(c.AccountKey, acks) {
		if err := put(p); err != nil {
			return err
		}
	}
	if len(acks) > 0 {
		s.dropAcks(acks)
	}
	now := time.Now()
	// pending returns one direct-delivery batch; the mailbox path pages on through the whole outbox, so that
	// messages beyond the first batch are deposited too (those deposited recently are skipped).
	for len(items) > 0 {
		for _, it := range items {
			if it.item.DepositedMs != 0 && now.Sub(time.UnixMilli(it.item.DepositedMs)) < s.o.RedepositAfter {
				continue
			}
			if err := put(it.item.Payload); err != nil {
				return err
			}
			it.item.DepositedMs = now.UnixMilli()
			if err := s.markDeposited(c.AccountID, it); err != nil {
				return err
			}
		}
		if items, err = s.outboxPage(ctx, c.AccountID, items[len(items)-1].key); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) markDeposited(a identity.AccountID, it outItem) error {
	cv := s.conv(a)
	cv.mu.Lock()
	if ok, err := s.ns.Has(it.key); err != nil || !ok {
		cv.mu.Unlock()
		return err // acked meanwhile
	}
	err := s.ns.Put(it.key, encode(it.item))
	cv.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dm: outbox: %w", err)
	}
	return s.setState(a, StateSent, "", it.id)
}

// accountOf finds the contact a device belongs to.
func (s *Service) accountOf(p peer.ID) (identity.AccountID, bool) {
	s.mu.Lock()
	f := s.o.AccountOf
	s.mu.Unlock()
	if f != nil {
		return f(p)
	}
	all, err := s.o.Graph.Contacts(s.ctx)
	if err != nil {
		return "", false
	}
	for _, c := range all {
		if c.HasDevice(p) {
			return c.AccountID, true
		}
	}
	return "", false
}

// handle serves a friend's device: batches in, replies out, until the stream ends.
func (s *Service) handle(st network.Stream) {
	defer st.Close()
	remote := st.Conn().RemotePeer()
	a, ok := s.accountOf(remote)
	if !ok {
		_ = st.Reset()
		return
	}
	c, err := s.o.Graph.Contact(a)
	if err != nil {
		_ = st.Reset()
		return
	}
	ctx := s.ctx
	r := pbio.NewDelimitedReader(st, maxFrameBytes)
	w := pbio.NewDelimitedWriter(st)
	for {
		_ = st.SetDeadline(time.Now().Add(idleTimeout))
		var batch pb.Batch
		if err := r.ReadMsg(&batch); err != nil {
			return
		}
		if len(batch.Payloads) > maxBatchPayloads {
			_ = st.Reset()
			return
		}
		reply, err := s.process(ctx, c.AccountKey, batch.Payloads, false)
		if err != nil {
			s.log.Warn("Cannot store messages", "account", a, "err", err)
			_ = st.Reset()
			return
		}
		_ = st.SetDeadline(time.Now().Add(batchTimeout))
		if err := w.WriteMsg(reply); err != nil {
			_ = st.Reset()
			return
		}
	}
}

// process handles payloads that claim to come from sender (for streams: the account of the remote device).
// It returns the reply for the sender; an error means a local failure (nothing was acked).
func (s *Service) process(ctx context.Context, sender ed25519.PublicKey, payloads [][]byte, viaMailbox bool) (*pb.Reply, error) {
	var sealed []sealedItem
	reply := &pb.Reply{}
	for _, raw := range payloads {
		p, err := DecodePayload(raw)
		if err != nil || !bytes.Equal(p.Sender, sender) || !bytes.Equal(p.Recipient, s.me) {
			s.log.Debug("Dropped invalid payload", "err", err)
			continue
		}
		switch k := p.Kind.(type) {
		case *pb.Payload_Message:
			sealed = append(sealed, sealedItem{Sealed: k.Message, digest: ItemID(raw)})
		case *pb.Payload_Ack:
			body, err := OpenAck(k.Ack, sender, s.me)
			if err != nil {
				s.log.Debug("Dropped invalid ack", "err", err)
				continue
			}
			if err := s.applyAck(sender, body); err != nil {
				return nil, err
			}
		case *pb.Payload_Contact:
			s.mu.Lock()
			h := s.o.ContactHandler
			s.mu.Unlock()
			if h != nil {
				if err := h(ctx, k.Contact); err != nil {
					s.log.Debug("Contact message via mailbox refused", "err", err)
				}
			}
		}
	}
	if len(sealed) == 0 {
		return reply, nil
	}
	res, err := s.receive(ctx, sender, sealed, viaMailbox)
	if err != nil {
		return nil, err
	}
	if len(res.stored) > 0 {
		reply.Ack = signAck(s.o.Identity.SignAccount, s.me, sender, res.stored, false, time.Now())
	}
	reply.Failures = res.failures
	return reply, nil
}

// Sink takes one payload fetched from my mailbox (the bytes a friend gave Deposit). It returns nil once the
// payload is durably handled, or is garbage that can never be (so the relay may delete it); an error means
// "keep it and hand it to me again".
func (s *Service) Sink(ctx context.Context, payload []byte) error {
	p, err := DecodePayload(payload)
	if err != nil {
		s.log.Debug("Dropped invalid mailbox item", "err", err)
		return nil
	}
	if !bytes.Equal(p.Recipient, s.me) {
		return nil
	}
	_, err = s.process(ctx, p.Sender, [][]byte{payload}, true)
	return err
}

// ViaMailbox deposits a signed contact message in a friend's mailbox (the contact protocol's fallback).
func (s *Service) ViaMailbox(ctx context.Context, c graph.Contact, signed []byte) error {
	if s.o.Mailbox == nil || len(c.MailboxCard) == 0 {
		return errors.New("dm: no mailbox for this friend")
	}
	payload := encode(&pb.Payload{Version: wireVersion, Sender: s.me, Recipient: c.AccountKey, Kind: &pb.Payload_Contact{Contact: signed}})
	dctx, cancel := context.WithTimeout(ctx, depositTimeout)
	defer cancel()
	if _, err := s.o.Mailbox.Deposit(dctx, c.MailboxCard, ItemID(payload), payload); err != nil {
		return fmt.Errorf("dm: deposit contact message: %w", err)
	}
	return nil
}

// Pending is how many of my messages to friend wait for an ack.
func (s *Service) Pending(ctx context.Context, friend identity.AccountID) (int, error) {
	return s.ns.Count(ctx, outPrefix(friend))
}
