package room

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/protocols/roomsync"
	syncpb "github.com/madang-p2p/madang/protocols/roomsync/pb"
	"github.com/madang-p2p/madang/store"
)

// inFlight is how recently the live topic must have delivered from an author for sync to leave that
// author's newer messages to it.
const inFlight = 2 * reorderWait

// maxSyncPages bounds one catch-up (pages of at most roomsync.MaxLimit messages).
const maxSyncPages = 40

// serveSync answers a history request for a room this node holds.
func (s *Service) serveSync(ctx context.Context, remote peer.ID, req *syncpb.Request) (*syncpb.Response, error) {
	id, ok := idFromBytes(req.Room)
	if !ok {
		return nil, ErrBadRequest
	}
	r, err := s.room(id)
	if err != nil {
		return nil, err
	}
	st := r.state.Load()
	if st.Genesis.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK &&
		!hmac.Equal(req.Proof, syncProof(r.secret, id, remote.String(), s.d.Host.ID().String())) {
		return nil, roomsync.ErrLinkRequired
	}
	resp := &syncpb.Response{Genesis: st.Genesis.Raw}
	if st.Manifest != st.Genesis {
		resp.Manifest = st.Manifest.Raw
	}
	r.mu.Lock()
	for _, a := range r.log.From(req.ModFrom, roomsync.MaxModeration) {
		resp.Moderation = append(resp.Moderation, a.Raw)
	}
	resp.Card = r.rec.Card
	r.mu.Unlock()
	limit := int(req.Limit)
	if limit <= 0 || limit > roomsync.MaxLimit {
		limit = roomsync.MaxLimit
	}
	prefix := "m/" + r.key + "/"
	rng := store.Range{Prefix: prefix, Limit: limit + 1}
	if req.Latest {
		rng.Reverse = true
	} else {
		rng.Start = prefix + store.Uint64Key(uint64(max(req.SinceMs, 0)))
		if req.Cursor != "" {
			if strings.ContainsAny(req.Cursor, "\x00") || len(req.Cursor) > 64 {
				return nil, ErrBadRequest
			}
			rng.Start = prefix + req.Cursor + "\x00"
		}
	}
	size := 0
	pending := r.hasPending()
	for e, err := range s.d.Store.Scan(ctx, rng) {
		if err != nil {
			return nil, err
		}
		if len(resp.Messages) == limit || size+len(e.Value) > roomsync.PageBytes {
			resp.More = true
			break
		}
		if i := strings.LastIndexByte(e.Key, '/'); i >= 0 {
			if mid, err := ParseMsgID(e.Key[i+1:]); err == nil && st.Hidden[mid] {
				continue // hidden by a host: not handed on
			}
		}
		if pending && r.isPendingKey(strings.TrimPrefix(e.Key, prefix)) {
			continue // ours, not sent yet: it goes out anew from the outbox
		}
		resp.Messages = append(resp.Messages, e.Value)
		resp.Cursor = strings.TrimPrefix(e.Key, prefix)
		size += len(e.Value)
	}
	if req.Latest {
		// Newest first from the scan; hand them oldest first. There is no "more" in latest mode.
		for i, j := 0, len(resp.Messages)-1; i < j; i, j = i+1, j-1 {
			resp.Messages[i], resp.Messages[j] = resp.Messages[j], resp.Messages[i]
		}
		resp.More, resp.Cursor = false, ""
	}
	return resp, nil
}

// bootstrap is a verified first answer for a room being joined.
type bootstrap struct {
	genesis  *Manifest
	log      Log
	messages []*Message
	card     *Card
	from     peer.ID
}

func (s *Service) syncRequest(id ID, secret []byte, p peer.ID) *syncpb.Request {
	req := &syncpb.Request{Room: id[:]}
	if secret != nil {
		req.Proof = syncProof(secret, id, s.d.Host.ID().String(), p.String())
	}
	return req
}

// fetchBootstrap asks p for a room's state and newest messages and verifies everything.
func (s *Service) fetchBootstrap(ctx context.Context, l Link, p peer.ID) (*bootstrap, error) {
	req := s.syncRequest(l.Room, l.Secret, p)
	req.Latest, req.Limit = true, uint32(s.c.HistoryOnJoin)
	resp, err := roomsync.Fetch(ctx, s.d.Host, p, req)
	if errors.Is(err, roomsync.ErrLinkRequired) {
		return nil, ErrLinkRequired
	}
	if err != nil {
		return nil, err
	}
	return verifyBootstrap(resp, l, p)
}

// verifyBootstrap checks a first answer: the genesis manifest must hash to the room ID, link rooms need
// the right secret, and every log entry and message must verify and belong to the room.
func verifyBootstrap(resp *syncpb.Response, l Link, from peer.ID) (*bootstrap, error) {
	g, err := DecodeManifest(resp.Genesis)
	if err != nil {
		return nil, err
	}
	if g.ID != l.Room || g.Body.Seq != 1 {
		return nil, invalid("genesis manifest is not this room's")
	}
	if g.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK && !bytes.Equal(linkCheck(l.Secret), g.Body.LinkCheck) {
		return nil, ErrLinkRequired
	}
	b := &bootstrap{genesis: g, from: from}
	for _, raw := range resp.Moderation {
		if msg, a, err := DecodeItem(raw); err == nil && msg == nil && a.Room == l.Room {
			b.log.Insert(a)
		}
	}
	for _, raw := range resp.Messages {
		if m, _, err := DecodeItem(raw); err == nil && m != nil && m.Room == l.Room {
			b.messages = append(b.messages, m)
		}
	}
	if len(resp.Card) > 0 {
		if c, err := DecodeCard(resp.Card); err == nil && c.Manifest.ID == l.Room {
			b.card = c
		}
	}
	return b, nil
}

// syncRoom fetches moderation entries and messages from p into a running room: the newest page (latest)
// or every page since sinceMs. It returns the number of new messages stored.
func (s *Service) syncRoom(ctx context.Context, r *roomRT, p peer.ID, latest bool, sinceMs int64) (int, error) {
	if !r.syncing.CompareAndSwap(false, true) {
		return 0, nil // one sync per room at a time; the next peer event retries
	}
	defer r.syncing.Store(false)
	stored := 0
	cursor := ""
	for range maxSyncPages {
		r.mu.Lock()
		modFrom := r.log.MaxSeq()
		r.mu.Unlock()
		req := s.syncRequest(r.id, r.secret, p)
		req.Latest, req.SinceMs, req.Cursor, req.ModFrom = latest, sinceMs, cursor, modFrom
		req.Limit = roomsync.MaxLimit
		resp, err := roomsync.Fetch(ctx, s.d.Host, p, req)
		if err != nil {
			return stored, err
		}
		n, err := s.applySync(r, resp)
		stored += n
		if err != nil {
			return stored, err
		}
		if !resp.More || resp.Cursor == "" || resp.Cursor == cursor {
			return stored, nil
		}
		cursor = resp.Cursor
	}
	return stored, nil
}

// applySync verifies and stores a sync answer in a running room: moderation first (so that bans and
// hides apply to the messages), then messages.
func (s *Service) applySync(r *roomRT, resp *syncpb.Response) (int, error) {
	g, err := DecodeManifest(resp.Genesis)
	if err != nil || g.ID != r.id {
		return 0, invalid("sync answer for another room")
	}
	var errs []error
	for _, raw := range resp.Moderation {
		d, err := parseItem(raw)
		if err != nil || d.mod == nil || d.mod.Room != r.id || r.hasMod(d.mod.ID) || !d.verify() {
			continue
		}
		if _, err := r.ingestMod(d.mod); err != nil {
			errs = append(errs, err)
		}
	}
	n := 0
	st := r.state.Load()
	for _, raw := range resp.Messages {
		// Parse first and skip what is already stored, so that overlapping catch-ups cost no signature
		// verification: each message is verified once per node.
		d, err := parseItem(raw)
		if err != nil || d.msg == nil || d.msg.Room != r.id || r.has(d.msg.ID) || !d.verify() {
			continue
		}
		m := d.msg
		if st.Genesis.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK && !hmac.Equal(m.Body.JoinProof, joinProof(r.secret, r.id, m.Body.Persona)) {
			continue
		}
		// A message ahead of what the live stream is delivering from its author is left to the live path
		// (which restores the author's order); a later catch-up fetches it if it was lost.
		if r.aheadOfLive(m) {
			continue
		}
		ok, err := r.ingestMessage(m, false)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if ok {
			n++
		}
	}
	if len(resp.Card) > 0 {
		s.takeCard(r, resp.Card)
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("apply sync: %w", err)
	}
	return n, nil
}
