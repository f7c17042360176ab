package room

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
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

// serveSync answers a history request for a room this node holds (/madang/room-sync/1.0.0: joining nodes
// take their first page here; members repair through /madang/room-sync/2.0.0, see repair.go).
func (s *Service) serveSync(ctx context.Context, remote peer.ID, req *syncpb.Request) (*syncpb.Response, error) {
	r, err := s.roomAsked(req.Room, req.Proof, func(secret []byte, id ID) []byte {
		return syncProof(secret, id, remote.String(), s.d.Host.ID().String())
	})
	if errors.Is(err, ErrLinkRequired) {
		return nil, roomsync.ErrLinkRequired
	}
	if err != nil {
		return nil, err
	}
	st := r.state.Load()
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

// roomAsked finds the room a sync request names and, in a link room, checks the requester's proof of
// the link secret (proof computes the one expected).
func (s *Service) roomAsked(room, got []byte, proof func(secret []byte, id ID) []byte) (*roomRT, error) {
	id, ok := idFromBytes(room)
	if !ok {
		return nil, ErrBadRequest
	}
	r, err := s.room(id)
	if err != nil {
		return nil, err
	}
	if r.state.Load().Genesis.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK && !hmac.Equal(got, proof(r.secret, id)) {
		return nil, ErrLinkRequired
	}
	return r, nil
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
