package mailbox

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

// fuzzFixture is a relay and two users with real wire objects for seeds.
type fuzzFixture struct {
	r        *testRelay
	a, b     *testUser
	card     []byte
	capab    []byte
	receipts []byte
	record   []byte
	sealed   []byte
}

func newFuzzFixture(f *testing.F) *fuzzFixture {
	tn := newTestNet(f)
	fx := &fuzzFixture{r: tn.relay(Limits{QuotaItems: 50}, 1_000_000)}
	fx.a, fx.b = tn.user("a"), tn.user("b", fx.r)
	fx.card = cardFor(f, fx.b, fx.a)
	card, err := ParseCard(fx.card)
	if err != nil {
		f.Fatal(err)
	}
	fx.capab = card.Capability
	if fx.receipts, err = fx.a.c.Deposit(f.Context(), fx.card, "seed", []byte("seed payload")); err != nil {
		f.Fatal(err)
	}
	if fx.record, err = NewInboxRecord(fx.b.id, 3, []string{fx.r.addr}, tn.clock.Now()); err != nil {
		f.Fatal(err)
	}
	if fx.sealed, err = seal(card, "seed-2", []byte("hello"), 42); err != nil {
		f.Fatal(err)
	}
	return fx
}

func FuzzParseCard(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.card)
	f.Add(fx.card[:len(fx.card)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCard(data)
		if err == nil && (len(c.Owner) != 32 || len(c.Relays) > maxRelays) {
			t.Fatalf("accepted a malformed card: %+v", c)
		}
	})
}

func FuzzVerifyCapability(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.capab)
	f.Add(fx.capab[1:])
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := VerifyCapability(data, fx.r.ms.now())
		if err == nil && (len(c.ID) != capIDLen || c.Mailbox != MailboxIDOf(c.Owner)) {
			t.Fatalf("accepted a malformed capability: %+v", c)
		}
	})
}

func FuzzVerifyReceiptSet(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.receipts)
	var set pb.ReceiptSet
	_ = proto.Unmarshal(fx.receipts, &set)
	f.Add(set.Receipts[0])
	f.Fuzz(func(t *testing.T, data []byte) {
		if rcs, err := VerifyReceiptSet(data); err == nil && len(rcs) == 0 {
			t.Fatal("empty receipt set accepted")
		}
		_, _ = VerifyReceipt(data)
	})
}

func FuzzInboxRecord(f *testing.F) {
	fx := newFuzzFixture(f)
	key := InboxKey(fx.b.id.AccountKey())
	f.Add(fx.record)
	f.Add(fx.record[:10])
	var v InboxValidator
	f.Fuzz(func(t *testing.T, data []byte) {
		err := v.Validate(key, data)
		if _, perr := ParseInboxRecord(data); err == nil && perr != nil {
			t.Fatal("validator accepted what the parser refuses")
		}
		if i, err := v.Select(key, [][]byte{data, fx.record}); err != nil || i < 0 || i > 1 {
			t.Fatalf("select %d %v", i, err)
		}
	})
}

// FuzzOpenItem feeds arbitrary sealed bytes and relay IDs to the owner's drain path.
func FuzzOpenItem(f *testing.F) {
	fx := newFuzzFixture(f)
	rid := RelayItemID(fx.b.c.Keys().MailboxID(), "seed-2")
	f.Add(rid, fx.sealed)
	f.Add(rid, fx.sealed[:len(fx.sealed)-1])
	f.Add([]byte{1}, []byte{})
	f.Fuzz(func(t *testing.T, id, sealed []byte) {
		got := fx.b.c.open(0, &pb.Item{Id: id, Sealed: sealed})
		if got.item != nil && string(RelayItemID(fx.b.c.Keys().MailboxID(), got.item.ItemId)) != string(id) {
			t.Fatal("opened an item under a foreign relay ID")
		}
	})
}

// FuzzServiceRequest decodes arbitrary requests and runs them through the relay's dispatcher, in a fresh
// session and in an authenticated one.
func FuzzServiceRequest(f *testing.F) {
	fx := newFuzzFixture(f)
	card, _ := ParseCard(fx.card)
	for _, req := range []*pb.Request{
		{Op: &pb.Request_Deposit{Deposit: &pb.Deposit{Capability: fx.capab, ItemId: RelayItemID(card.Mailbox, "z"), Sealed: fx.sealed}}},
		{Op: &pb.Request_Open{Open: &pb.Open{OwnerKey: card.Owner}}},
		{Op: &pb.Request_Fetch{Fetch: &pb.Fetch{Limit: 3, After: []byte{0, 0, 0, 0, 0, 0, 0, 1}}}},
		{Op: &pb.Request_Ack{Ack: &pb.Ack{Ids: [][]byte{RelayItemID(card.Mailbox, "seed")}}}},
		{Op: &pb.Request_Revoke{Revoke: &pb.Revoke{CapIds: [][]byte{make([]byte, 16)}}}},
	} {
		raw, _ := proto.Marshal(req)
		f.Add(raw)
	}
	svc := fx.r.svc
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.Request
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		fresh := &session{remote: fx.a.h.ID()}
		if resp, _ := svc.dispatch(t.Context(), fresh, &req); resp == nil {
			t.Fatal("nil response")
		}
		owner := &session{remote: fx.b.h.ID(), owner: card.Owner, mb: card.Mailbox, authed: true}
		if resp, _ := svc.dispatch(t.Context(), owner, &req); resp == nil {
			t.Fatal("nil response")
		}
		if st := svc.st.Stats(t.Context()); st.Items < 0 || st.Bytes < 0 {
			t.Fatalf("negative totals %+v", st)
		}
	})
}
