package dm

import (
	"testing"
	"time"

	"github.com/madang-p2p/madang/protocols/dm/pb"
)

// seeds returns real payloads between two befriended parties: a first message (with PQXDH init data), a
// later one, an ack and a contact payload.
func seeds(tb testing.TB) (a, b *party, payloads [][]byte) {
	a, b = newParty(tb, "a"), newParty(tb, "b")
	befriendParties(tb, a, b)
	for _, id := range []string{"m1", "m2"} {
		if _, err := a.svc.Send(tb.Context(), b.acct(), id, "hello "+id); err != nil {
			tb.Fatal(err)
		}
	}
	items, _ := a.outbox(b)
	for _, it := range items {
		payloads = append(payloads, it.item.Payload)
	}
	sa := signAck(b.id.SignAccount, b.id.AccountKey(), a.id.AccountKey(), []string{"m1", "m2"}, false, time.Now())
	payloads = append(payloads,
		encode(&pb.Payload{Version: 1, Sender: b.id.AccountKey(), Recipient: a.id.AccountKey(), Kind: &pb.Payload_Ack{Ack: sa}}),
		encode(&pb.Payload{Version: 1, Sender: b.id.AccountKey(), Recipient: a.id.AccountKey(), Kind: &pb.Payload_Contact{Contact: []byte{1, 2}}}))
	return a, b, payloads
}

// FuzzDecodePayload: the payload decoder never panics and bounds what it accepts.
func FuzzDecodePayload(f *testing.F) {
	_, _, payloads := seeds(f)
	for _, p := range payloads {
		f.Add(p)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, err := DecodePayload(raw)
		if err != nil {
			return
		}
		if len(p.Sender) != 32 || len(p.Recipient) != 32 || p.Kind == nil {
			t.Fatalf("accepted %v", p)
		}
	})
}

// FuzzOpenAck: the ack decoder never panics and accepts only acks signed by the claimed friend.
func FuzzOpenAck(f *testing.F) {
	a, b, _ := seeds(f)
	good := signAck(b.id.SignAccount, b.id.AccountKey(), a.id.AccountKey(), []string{"m1"}, true, time.Now())
	f.Add(good.Body, good.Signature)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		ack, err := OpenAck(&pb.SignedAck{Body: body, Signature: sig}, b.id.AccountKey(), a.id.AccountKey())
		if err != nil {
			return
		}
		if string(body) != string(good.Body) && len(ack.Ids) > 0 && ack.Ids[0] != "m1" {
			t.Fatalf("forged ack accepted: %v", ack)
		}
	})
}

// FuzzSink feeds arbitrary mailbox items (ratchet messages included) to a receiving node: no panic, and
// nothing but genuine messages is ever stored.
func FuzzSink(f *testing.F) {
	a, b, payloads := seeds(f)
	for _, p := range payloads {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if err := b.svc.Sink(t.Context(), raw); err != nil {
			t.Fatalf("sink: %v", err)
		}
		msgs, _, err := b.svc.History(t.Context(), a.acct(), "", 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if m.Text != "hello "+m.ID {
				t.Fatalf("stored a forged message %q", m.Text)
			}
		}
	})
}
