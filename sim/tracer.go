package sim

import (
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"
)

// Tracer is a pubsub RawTracer that counts, for one node, the bytes of every RPC it receives and sends
// (control traffic included), and the messages of one topic prefix that enter validation, are delivered,
// rejected, ignored or dropped as duplicates. Counters are atomics; Reset zeroes them at the start of the
// measured phase.
type Tracer struct {
	// Prefix selects the topics whose messages are counted ("" = all).
	Prefix string
	// OnValidate, if set, is called for every message of the selected topics that enters validation (the
	// sim uses it to prove the validator ran).
	OnValidate func(m *pubsub.Message)
	// OnDeliver, if set, is called for every message of the selected topics that pubsub delivers
	// (validated, first copy).
	OnDeliver func(m *pubsub.Message)

	RecvBytes, SentBytes, RecvRPCs atomic.Int64
	Validated, Delivered, Dups     atomic.Int64
	Rejected, Ignored, Throttled   atomic.Int64
	DroppedRPCs, Undeliverable     atomic.Int64
	// ValidatorRejected counts messages a topic validator rejected (not pubsub's own checks).
	ValidatorRejected atomic.Int64
	// Received RPC contents: full messages, and message IDs in IHAVE, IWANT and IDONTWANT.
	RecvMsgs, IHave, IWant, IDontWant atomic.Int64
}

var _ pubsub.RawTracer = (*Tracer)(nil)

// Reset zeroes every counter.
func (t *Tracer) Reset() {
	for _, c := range []*atomic.Int64{&t.RecvBytes, &t.SentBytes, &t.RecvRPCs, &t.Validated, &t.Delivered,
		&t.Dups, &t.Rejected, &t.Ignored, &t.Throttled, &t.DroppedRPCs, &t.Undeliverable, &t.ValidatorRejected,
		&t.RecvMsgs, &t.IHave, &t.IWant, &t.IDontWant} {
		c.Store(0)
	}
}

func (t *Tracer) match(m *pubsub.Message) bool {
	if t.Prefix == "" {
		return true
	}
	topic := m.GetTopic()
	return len(topic) >= len(t.Prefix) && topic[:len(t.Prefix)] == t.Prefix
}

func (t *Tracer) ValidateMessage(m *pubsub.Message) {
	if t.match(m) {
		t.Validated.Add(1)
		if t.OnValidate != nil {
			t.OnValidate(m)
		}
	}
}

func (t *Tracer) DeliverMessage(m *pubsub.Message) {
	if t.match(m) {
		t.Delivered.Add(1)
		if t.OnDeliver != nil {
			t.OnDeliver(m)
		}
	}
}

func (t *Tracer) RejectMessage(m *pubsub.Message, reason string) {
	if !t.match(m) {
		return
	}
	switch reason {
	case pubsub.RejectValidationIgnored:
		t.Ignored.Add(1)
	case pubsub.RejectValidationFailed:
		t.ValidatorRejected.Add(1)
		t.Rejected.Add(1)
	default:
		t.Rejected.Add(1)
	}
}

func (t *Tracer) DuplicateMessage(m *pubsub.Message) {
	if t.match(m) {
		t.Dups.Add(1)
	}
}

func (t *Tracer) UndeliverableMessage(m *pubsub.Message) {
	if t.match(m) {
		t.Undeliverable.Add(1)
	}
}

func (t *Tracer) RecvRPC(rpc *pubsub.RPC) {
	t.RecvRPCs.Add(1)
	t.RecvBytes.Add(int64(proto.Size(&rpc.RPC)))
	t.RecvMsgs.Add(int64(len(rpc.GetPublish())))
	if c := rpc.GetControl(); c != nil {
		var ih, iw, idw int
		for _, x := range c.GetIhave() {
			ih += len(x.GetMessageIDs())
		}
		for _, x := range c.GetIwant() {
			iw += len(x.GetMessageIDs())
		}
		for _, x := range c.GetIdontwant() {
			idw += len(x.GetMessageIDs())
		}
		t.IHave.Add(int64(ih))
		t.IWant.Add(int64(iw))
		t.IDontWant.Add(int64(idw))
	}
}

func (t *Tracer) SendRPC(rpc *pubsub.RPC, _ peer.ID) { t.SentBytes.Add(int64(proto.Size(&rpc.RPC))) }
func (t *Tracer) DropRPC(*pubsub.RPC, peer.ID)       { t.DroppedRPCs.Add(1) }

func (t *Tracer) ThrottlePeer(peer.ID) { t.Throttled.Add(1) }

func (t *Tracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (t *Tracer) OnClosedOutboundStream(peer.ID)                       {}
func (t *Tracer) Join(string)                                          {}
func (t *Tracer) Leave(string)                                         {}
func (t *Tracer) Graft(peer.ID, string)                                {}
func (t *Tracer) Prune(peer.ID, string)                                {}
func (t *Tracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}

// Totals sums the counters of many tracers.
type Totals struct {
	RecvBytes, SentBytes, RecvRPCs    int64
	Validated, Delivered, Dups        int64
	Rejected, Ignored, Throttled      int64
	DroppedRPCs, Undeliverable        int64
	ValidatorRejected                 int64
	RecvMsgs, IHave, IWant, IDontWant int64
}

// Sum adds up tracers.
func Sum(ts []*Tracer) Totals {
	var s Totals
	for _, t := range ts {
		s.RecvBytes += t.RecvBytes.Load()
		s.SentBytes += t.SentBytes.Load()
		s.RecvRPCs += t.RecvRPCs.Load()
		s.Validated += t.Validated.Load()
		s.Delivered += t.Delivered.Load()
		s.Dups += t.Dups.Load()
		s.Rejected += t.Rejected.Load()
		s.Ignored += t.Ignored.Load()
		s.Throttled += t.Throttled.Load()
		s.DroppedRPCs += t.DroppedRPCs.Load()
		s.Undeliverable += t.Undeliverable.Load()
		s.ValidatorRejected += t.ValidatorRejected.Load()
		s.RecvMsgs += t.RecvMsgs.Load()
		s.IHave += t.IHave.Load()
		s.IWant += t.IWant.Load()
		s.IDontWant += t.IDontWant.Load()
	}
	return s
}
