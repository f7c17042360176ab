package mailbox

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

var evilModes = []string{"drop", "duplicate", "reorder", "replay", "tamper", "truncate"}

// evilRelay is a relay whose stream handler wraps the honest service and misbehaves in one mode:
//
//	drop       signs a receipt for every deposit, then throws the item away
//	duplicate  serves every item twice
//	reorder    serves each page backwards
//	replay     ignores acks (claims to delete) and serves the same items on every drain
//	tamper     flips a bit in every sealed item it serves
//	truncate   cuts every sealed item in half and serves only the first half of each page
func (tn *testNet) evilRelay(mode string) *testRelay {
	tn.t.Helper()
	r := tn.relay(Limits{}, 100000)
	r.h.SetStreamHandler(ProtocolID, func(str network.Stream) { evilHandle(r.svc, mode, str) })
	return r
}

func evilHandle(svc *Service, mode string, str network.Stream) {
	defer func() { _ = str.Close() }()
	rd := pbio.NewDelimitedReader(str, maxRequestBytes)
	w := pbio.NewDelimitedWriter(str)
	sess := &session{remote: str.Conn().RemotePeer()}
	for {
		_ = str.SetDeadline(time.Now().Add(streamIdle))
		var req pb.Request
		if err := rd.ReadMsg(&req); err != nil {
			return
		}
		if ack := req.GetAck(); ack != nil && mode == "replay" && sess.authed {
			if err := w.WriteMsg(&pb.Response{Result: &pb.Response_Acked{Acked: &pb.Acked{Deleted: uint32(len(ack.Ids))}}}); err != nil {
				return
			}
			continue
		}
		resp, fatal := svc.dispatch(svc.ctx, sess, &req)
		if d := req.GetDeposit(); d != nil && mode == "drop" && resp.GetReceipt() != nil {
			if c, err := VerifyCapability(d.Capability, time.Now()); err == nil {
				_, _ = svc.st.Delete(c.Mailbox, [][]byte{d.ItemId})
			}
		}
		if items := resp.GetItems(); items != nil {
			mutatePage(mode, items)
		}
		if err := w.WriteMsg(resp); err != nil || fatal {
			return
		}
	}
}

func mutatePage(mode string, p *pb.Items) {
	switch mode {
	case "duplicate":
		var out []*pb.Item
		for _, it := range p.Items {
			out = append(out, it, proto.Clone(it).(*pb.Item))
		}
		p.Items = out
	case "reorder":
		slices.Reverse(p.Items)
	case "tamper":
		for _, it := range p.Items {
			it.Sealed = bytes.Clone(it.Sealed)
			it.Sealed[len(it.Sealed)/2] ^= 0x10
		}
	case "truncate":
		p.Items = p.Items[:len(p.Items)/2]
		p.More = false
		for _, it := range p.Items {
			it.Sealed = it.Sealed[:len(it.Sealed)/2]
		}
	}
}

// With one honest relay of two, every message arrives exactly once and in order, whatever the other does;
// the honest relay is emptied.
func TestEvilRelayWithHonestRelay(t *testing.T) {
	n := 40
	if *long {
		n = 600 // several pages per relay
	}
	for _, mode := range evilModes {
		t.Run(mode, func(t *testing.T) {
			tn := newTestNet(t)
			evil, honest := tn.evilRelay(mode), tn.relay(Limits{}, 1000000)
			a, b := tn.user("a"), tn.user("b", evil, honest)
			card := cardFor(t, b, a)
			for i := range n {
				id, p := dmPayload(i, canary)
				if _, err := a.c.Deposit(t.Context(), card, id, p); err != nil {
					t.Fatalf("deposit %d: %v", i, err)
				}
			}
			var in inbox
			for range 3 { // repeated drains: replays must not show again
				if _, err := b.c.Drain(t.Context(), in.sink, nil); err != nil {
					t.Fatal(err)
				}
			}
			in.checkExactlyOnceInOrder(t, n)
			if got := honest.ms.Stats(t.Context()).Items; got != 0 {
				t.Fatalf("honest relay still holds %d items", got)
			}
			if rawContains(t, evil.ms.ns, []byte(canary)) || rawContains(t, honest.ms.ns, []byte(canary)) {
				t.Fatal("plaintext on a relay")
			}
		})
	}
}

// With only the evil relay, nothing forged or duplicated is ever shown; the modes that keep the items
// (duplicate, reorder, replay) still deliver everything once.
func TestEvilRelayAlone(t *testing.T) {
	const n = 30
	for _, mode := range evilModes {
		t.Run(mode, func(t *testing.T) {
			tn := newTestNet(t)
			evil := tn.evilRelay(mode)
			a, b := tn.user("a"), tn.user("b", evil)
			card := cardFor(t, b, a)
			for i := range n {
				id, p := dmPayload(i, "x")
				if _, err := a.c.Deposit(t.Context(), card, id, p); err != nil {
					t.Fatalf("deposit %d: %v", i, err)
				}
			}
			var in inbox
			for range 3 {
				if _, err := b.c.Drain(t.Context(), in.sink, nil); err != nil {
					t.Fatal(err)
				}
			}
			if in.dupes != 0 || in.garbage != 0 {
				t.Fatalf("%d duplicates, %d forged payloads shown", in.dupes, in.garbage)
			}
			switch mode {
			case "duplicate", "replay":
				in.checkExactlyOnceInOrder(t, n)
			case "reorder":
				// One page per drain: sorted back into order by the sender clock.
				in.checkExactlyOnceInOrder(t, n)
			default:
				if len(in.shown) != 0 {
					t.Fatalf("mode %s: %d messages shown from items that cannot be genuine", mode, len(in.shown))
				}
			}
		})
	}
}
