package room

import (
	"context"
	"strings"

	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
)

// A message sent while no room peer is reachable is stored and shown at once, and kept in the room's
// outbox. When peers are back it is sent again as a new message (fresh time and seq, since validators
// ignore stale messages on the live topic) and the pending copy is removed: messages typed offline reach
// the room when the device is online again, however busy the room was meanwhile.

func (r *roomRT) outboxKey(m *Message) string {
	return "o/" + r.key + "/" + store.Uint64Key(uint64(m.Body.TimeMs)) + "/" + m.ID.String()
}

// addPending records an unpublished message.
func (r *roomRT) addPending(m *Message) {
	if err := r.s.d.Store.Put(r.outboxKey(m), nil); err != nil {
		r.s.log.Warn("Room outbox write failed", "err", err)
		return
	}
	r.mu.Lock()
	r.pending++
	r.mu.Unlock()
}

func (r *roomRT) hasPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending > 0
}

// isPending reports whether a message of ours is still waiting to be sent.
func (r *roomRT) isPending(m *Message) bool {
	if !r.hasPending() {
		return false
	}
	ok, _ := r.s.d.Store.Has(r.outboxKey(m))
	return ok
}

// isPendingKey is isPending for a message's key suffix ("<time>/<id>").
func (r *roomRT) isPendingKey(suffix string) bool {
	ok, _ := r.s.d.Store.Has("o/" + r.key + "/" + suffix)
	return ok
}

// flushOutbox sends the pending messages again, oldest first, while the topic has peers and the rate
// limit allows; what is left waits for the next flush.
func (r *roomRT) flushOutbox(ctx context.Context) {
	if !r.hasPending() || len(r.topic.ListPeers()) == 0 || !r.flushing.CompareAndSwap(false, true) {
		return
	}
	defer r.flushing.Store(false)
	for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: "o/" + r.key + "/"}) {
		if err != nil {
			return
		}
		ts, id, _ := strings.Cut(strings.TrimPrefix(e.Key, "o/"+r.key+"/"), "/")
		mkey := "m/" + r.key + "/" + ts + "/" + id
		raw, err := r.s.d.Store.Get(mkey)
		var old *Message
		if err == nil {
			if d, err := parseItem(raw); err == nil && d.msg != nil {
				old = d.msg
			}
		}
		if old != nil && old.Body.Kind == pb.Kind_TEXT {
			m, published, err := r.sendSeq(ctx, pb.Kind_TEXT, old.Body.Text, old.Body.ReplyTo, old.Body.Seq)
			if err != nil || !published {
				if m != nil {
					r.dropLocal(m) // the new copy did not go out: keep the original pending instead
				}
				return
			}
		}
		r.dropLocal(old)
		b := r.s.d.DB.NewBatch()
		_ = b.Delete(r.s.d.Store, e.Key)
		if err := commit(b, false); err != nil {
			return
		}
		r.mu.Lock()
		r.pending = max(r.pending-1, 0)
		r.mu.Unlock()
	}
}

// dropLocal deletes a message of ours from the local history (a pending copy that was sent anew).
func (r *roomRT) dropLocal(m *Message) {
	if m == nil {
		return
	}
	b := r.s.d.DB.NewBatch()
	_ = b.Delete(r.s.d.Store, r.msgKey(m.Body.TimeMs, m.ID))
	_ = b.Delete(r.s.d.Store, r.idxKey(m.ID))
	_ = b.Delete(r.s.d.Store, r.outboxKey(m))
	if commit(b, false) == nil {
		r.mu.Lock()
		r.count--
		r.mu.Unlock()
	}
}
