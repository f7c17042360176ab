package mailbox

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

const canary = "CANARY-7d1f3a-plaintext-must-never-reach-a-relay"

// A sends 100 messages while B is away; the relay holds no plaintext; B drains all 100 exactly once, in
// order; the relay holds nothing after B's acks.
func TestDepositAndDrain(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 100000)
	a, b := tn.user("a"), tn.user("b", r)
	card := cardFor(t, b, a)
	for i := range 100 {
		id, payload := dmPayload(i, canary)
		raw, err := a.c.Deposit(t.Context(), card, id, payload)
		if err != nil {
			t.Fatalf("deposit %d: %v", i, err)
		}
		rcs, err := VerifyReceiptSet(raw)
		if err != nil || len(rcs) != 1 || rcs[0].Relay != r.h.ID() || rcs[0].Mailbox != b.c.Keys().MailboxID() {
			t.Fatalf("receipt %d: %v %+v", i, err, rcs)
		}
	}
	if got := r.ms.Stats(t.Context()); got.Items != 100 || got.Mailboxes != 1 {
		t.Fatalf("relay stats %+v, want 100 items in 1 mailbox", got)
	}
	for _, needle := range [][]byte{[]byte(canary), []byte("msg-0042"), a.id.AccountKey(), b.id.AccountKey()} {
		if rawContains(t, r.ms.ns, needle) {
			t.Fatalf("relay store contains %q", needle)
		}
	}
	var in inbox
	var last [2]int
	res, err := b.c.Drain(t.Context(), in.sink, func(done, total int) { last = [2]int{done, total} })
	if err != nil {
		t.Fatal(err)
	}
	in.checkExactlyOnceInOrder(t, 100)
	if res.Delivered != 100 || res.Found != 100 || last != [2]int{100, 100} {
		t.Fatalf("drain result %+v, last progress %v", res, last)
	}
	if got := r.ms.Stats(t.Context()); got.Items != 0 || got.Bytes != 0 || got.Mailboxes != 0 {
		t.Fatalf("relay still holds %+v after the acks", got)
	}
	// A second drain finds nothing.
	res, err = b.c.Drain(t.Context(), in.sink, nil)
	if err != nil || res.Found != 0 || res.Delivered != 0 {
		t.Fatalf("second drain: %+v %v", res, err)
	}
}

// A retried deposit of the same item is idempotent: one stored copy, a receipt marked duplicate.
func TestDepositIdempotent(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 100000)
	a, b := tn.user("a"), tn.user("b", r)
	card := cardFor(t, b, a)
	id, payload := dmPayload(1, "hi")
	for i := range 3 {
		raw, err := a.c.Deposit(t.Context(), card, id, payload)
		if err != nil {
			t.Fatal(err)
		}
		rcs, _ := VerifyReceiptSet(raw)
		if rcs[0].Duplicate != (i > 0) {
			t.Fatalf("deposit %d: duplicate=%v", i, rcs[0].Duplicate)
		}
	}
	if got := r.ms.Stats(t.Context()).Items; got != 1 {
		t.Fatalf("%d items stored, want 1", got)
	}
}

// Strangers cannot deposit: no capability, a forged one, one for another mailbox signed by the wrong key.
func TestStrangerRefused(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 100000)
	a, b, mallory := tn.user("a"), tn.user("b", r), tn.user("mallory")
	card, err := ParseCard(cardFor(t, b, a))
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := seal(card, "x", []byte("spam"), 1)
	if err != nil {
		t.Fatal(err)
	}
	// A capability Mallory signs with her own key for B's mailbox ID cannot name B's owner key.
	var forgedBody pb.CapabilityBody
	forgedBody.Version, forgedBody.OwnerKey, forgedBody.CapId = 1, b.c.Keys().OwnerKey(), make([]byte, 16)
	body, _ := proto.Marshal(&forgedBody)
	forged, _ := sign(mallory.c.Keys().owner, domainCapability, body)
	// A genuine capability bit-flipped.
	flipped := bytes.Clone(card.Capability)
	flipped[len(flipped)-1] ^= 1
	for name, capab := range map[string][]byte{"none": nil, "forged": forged, "flipped": flipped, "garbage": []byte("x")} {
		dep := &pb.Deposit{Capability: capab, ItemId: RelayItemID(card.Mailbox, "x"), Sealed: sealed}
		_, err := mallory.c.depositOne(t.Context(), r.addr, card.Mailbox, dep)
		if !errors.Is(err, ErrNoCapability) || !errors.Is(err, ErrRefused) {
			t.Fatalf("%s: deposit err = %v, want a refusal for lack of capability", name, err)
		}
	}
	if got := r.ms.Stats(t.Context()).Items; got != 0 {
		t.Fatalf("relay stored %d items from a stranger", got)
	}
	if n := r.svc.Refusals()["no_capability"]; n != 4 {
		t.Fatalf("no_capability refusals = %d, want 4", n)
	}
	// A revoked friend is refused too.
	if err := b.c.Revoke(t.Context(), a.id.AccountKey()); err != nil {
		t.Fatal(err)
	}
	_, err = a.c.Deposit(t.Context(), cardFor(t, b, a), "after-revoke", []byte("x"))
	if !errors.Is(err, ErrNoCapability) {
		t.Fatalf("deposit after revoke: %v", err)
	}
}

// Over quota the sender gets a clear refusal and keeps the item; once the owner drained, the retry lands.
func TestOverQuota(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{QuotaItems: 5}, 100000)
	a, b := tn.user("a"), tn.user("b", r)
	card := cardFor(t, b, a)
	var queue []int // the sender's outbox
	for i := range 8 {
		id, payload := dmPayload(i, "q")
		_, err := a.c.Deposit(t.Context(), card, id, payload)
		switch {
		case err == nil:
		case errors.Is(err, ErrOverQuota) && errors.Is(err, ErrRefused):
			var re *RefusedError
			if !errors.As(err, &re) || re.Code != pb.Code_CODE_QUOTA_ITEMS || re.Relay != r.h.ID() {
				t.Fatalf("refusal does not say why: %v", err)
			}
			queue = append(queue, i)
		default:
			t.Fatalf("deposit %d: %v", i, err)
		}
	}
	if len(queue) != 3 {
		t.Fatalf("%d deposits refused, want 3", len(queue))
	}
	var in inbox
	if _, err := b.c.Drain(t.Context(), in.sink, nil); err != nil {
		t.Fatal(err)
	}
	for _, i := range queue {
		id, payload := dmPayload(i, "q")
		if _, err := a.c.Deposit(t.Context(), card, id, payload); err != nil {
			t.Fatalf("retry %d: %v", i, err)
		}
	}
	if _, err := b.c.Drain(t.Context(), in.sink, nil); err != nil {
		t.Fatal(err)
	}
	in.checkExactlyOnceInOrder(t, 8)
	if r.svc.Refusals()["quota_items"] != 3 {
		t.Fatalf("refusals %v", r.svc.Refusals())
	}

	// Bytes quota: one big item fits, the next does not.
	r2 := tn.relay(Limits{QuotaBytes: 100 << 10}, 100000) // a 30 KiB payload pads to 64 KiB
	c := tn.user("c", r2)
	card = cardFor(t, c, a)
	if _, err := a.c.Deposit(t.Context(), card, "big-1", make([]byte, 30<<10)); err != nil {
		t.Fatal(err)
	}
	_, err := a.c.Deposit(t.Context(), card, "big-2", make([]byte, 30<<10))
	var re *RefusedError
	if !errors.As(err, &re) || re.Code != pb.Code_CODE_QUOTA_BYTES || !errors.Is(err, ErrOverQuota) {
		t.Fatalf("bytes quota: %v", err)
	}
}

func TestRateLimited(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 60) // burst 10
	a, b := tn.user("a"), tn.user("b", r)
	card := cardFor(t, b, a)
	var refused error
	for i := range 20 {
		id, payload := dmPayload(i, "r")
		if _, err := a.c.Deposit(t.Context(), card, id, payload); err != nil {
			refused = err
			break
		}
	}
	var re *RefusedError
	if !errors.Is(refused, ErrRateLimited) || !errors.As(refused, &re) || re.RetryAfter <= 0 {
		t.Fatalf("no rate limit within 20 deposits at 60/min: %v", refused)
	}
}

// Only the owner can fetch: someone who knows the owner key but not its private half is refused, and an
// owner signature made for one relay does not open another.
func TestFetchNeedsOwner(t *testing.T) {
	tn := newTestNet(t)
	r1, r2 := tn.relay(Limits{}, 100000), tn.relay(Limits{}, 100000)
	a, b := tn.user("a"), tn.user("b", r1, r2)
	if _, err := a.c.Deposit(t.Context(), cardFor(t, b, a), "secret", []byte("s")); err != nil {
		t.Fatal(err)
	}
	mallory := tn.user("mallory", r1)
	s, err := mallory.c.stream(t.Context(), mallory.h.Peerstore().PeerInfo(r1.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := roundTrip(s, &pb.Request{Op: &pb.Request_Open{Open: &pb.Open{OwnerKey: b.c.Keys().OwnerKey()}}})
	if err != nil || resp.GetChallenge() == nil {
		t.Fatalf("open: %v %v", resp, err)
	}
	// B's signature over the same nonce but for relay r2 does not verify at r1.
	sig := b.c.Keys().authSignature(r2.h.ID(), resp.GetChallenge().Nonce)
	resp, err = roundTrip(s, &pb.Request{Op: &pb.Request_Auth{Auth: &pb.Auth{Signature: sig}}})
	if err != nil || resp.GetError().GetCode() != pb.Code_CODE_UNAUTHENTICATED {
		t.Fatalf("auth with a signature for another relay: %v %v", resp, err)
	}
	// Fetch without a session is refused.
	s2, err := mallory.c.stream(t.Context(), mallory.h.Peerstore().PeerInfo(r1.h.ID()))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	resp, err = roundTrip(s2, &pb.Request{Op: &pb.Request_Fetch{Fetch: &pb.Fetch{}}})
	if err != nil || resp.GetError().GetCode() != pb.Code_CODE_UNAUTHENTICATED {
		t.Fatalf("fetch without auth: %v %v", resp, err)
	}
	if got := r1.ms.Stats(t.Context()).Items; got != 1 {
		t.Fatalf("relay lost the item: %d", got)
	}
}

func TestExpirySweep(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{TTL: time.Hour}, 100000)
	a, b := tn.user("a"), tn.user("b", r)
	card := cardFor(t, b, a)
	if _, err := a.c.Deposit(t.Context(), card, "old", []byte("old")); err != nil {
		t.Fatal(err)
	}
	tn.clock.Advance(40 * time.Minute)
	if _, err := a.c.Deposit(t.Context(), card, "new", []byte("new")); err != nil {
		t.Fatal(err)
	}
	st := r.ms.Stats(t.Context())
	if age := tn.clock.Now().Sub(st.Oldest); st.Items != 2 || age != 40*time.Minute {
		t.Fatalf("stats %+v, oldest age %v", st, age)
	}
	tn.clock.Advance(30 * time.Minute) // "old" is 70 min old, "new" 30 min
	n, err := r.ms.Sweep(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("sweep removed %d (%v), want 1", n, err)
	}
	var got []string
	_, err = b.c.Drain(t.Context(), func(_ context.Context, p []byte) error { got = append(got, string(p)); return nil }, nil)
	if err != nil || len(got) != 1 || got[0] != "new" {
		t.Fatalf("after sweep drained %q (%v), want only new", got, err)
	}
	if st := r.ms.Stats(t.Context()); st.Items != 0 || !st.Oldest.IsZero() {
		t.Fatalf("stats after drain %+v", st)
	}
}

// A sink failure stops the drain: the failed item and the ones after it stay on the relay and arrive, once,
// on the next drain.
func TestDrainSinkFailureKeepsItems(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 100000)
	a, b := tn.user("a"), tn.user("b", r)
	card := cardFor(t, b, a)
	for i := range 10 {
		id, p := dmPayload(i, "x")
		if _, err := a.c.Deposit(t.Context(), card, id, p); err != nil {
			t.Fatal(err)
		}
	}
	in := inbox{failAt: 4}
	if _, err := b.c.Drain(t.Context(), in.sink, nil); err == nil {
		t.Fatal("drain hid the sink error")
	}
	if got := r.ms.Stats(t.Context()).Items; got != 7 {
		t.Fatalf("relay holds %d items after a failed drain, want 7", got)
	}
	if _, err := b.c.Drain(t.Context(), in.sink, nil); err != nil {
		t.Fatal(err)
	}
	in.checkExactlyOnceInOrder(t, 10)
}

// Two inbox relays: both get every item; the owner sees each once; both are emptied.
func TestTwoRelaysDedupe(t *testing.T) {
	tn := newTestNet(t)
	r1, r2 := tn.relay(Limits{}, 100000), tn.relay(Limits{}, 100000)
	a, b := tn.user("a"), tn.user("b", r1, r2)
	card := cardFor(t, b, a)
	for i := range 30 {
		id, p := dmPayload(i, "x")
		raw, err := a.c.Deposit(t.Context(), card, id, p)
		if err != nil {
			t.Fatal(err)
		}
		if rcs, _ := VerifyReceiptSet(raw); len(rcs) != 2 {
			t.Fatalf("%d receipts, want 2", len(rcs))
		}
	}
	var in inbox
	res, err := b.c.Drain(t.Context(), in.sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.checkExactlyOnceInOrder(t, 30)
	if res.Duplicates != 30 || res.Found != 60 {
		t.Fatalf("drain %+v", res)
	}
	for _, r := range []*testRelay{r1, r2} {
		if n := r.ms.Stats(t.Context()).Items; n != 0 {
			t.Fatalf("relay still holds %d", n)
		}
	}
}

func TestCardAndRecord(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 100)
	a, b := tn.user("a"), tn.user("b", r)
	raw := cardFor(t, b, a)
	card, err := ParseCard(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !card.Account.Equal(b.id.AccountKey()) || len(card.Relays) != 1 || card.Mailbox != b.c.Keys().MailboxID() {
		t.Fatalf("card %+v", card)
	}
	if len(raw) > 4096 {
		t.Fatalf("card is %d bytes", len(raw))
	}
	if again := cardFor(t, b, a); !bytes.Equal(again, raw) {
		t.Fatal("the card for the same friend changed between calls")
	}
	// Cards for different friends carry different capabilities.
	other, _ := ParseCard(cardFor(t, b, tn.user("c")))
	if bytes.Equal(other.Capability, card.Capability) {
		t.Fatal("two friends got the same capability")
	}
	raw[len(raw)-3] ^= 1
	if _, err := ParseCard(raw); !errors.Is(err, ErrBadCard) {
		t.Fatalf("tampered card: %v", err)
	}

	var v InboxValidator
	key := InboxKey(b.id.AccountKey())
	rec1, err := NewInboxRecord(b.id, 1, []string{r.addr}, tn.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	rec2, _ := NewInboxRecord(b.id, 2, []string{r.addr}, tn.clock.Now())
	if err := v.Validate(key, rec1); err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(InboxKey(a.id.AccountKey()), rec1); err == nil {
		t.Fatal("record accepted under another account's key")
	}
	if _, err := NewInboxRecord(b.id, 3, nil, tn.clock.Now()); err == nil {
		t.Fatal("record without relays")
	}
	if i, err := v.Select(key, [][]byte{rec1, []byte("junk"), rec2}); err != nil || i != 2 {
		t.Fatalf("select = %d %v, want the highest seq", i, err)
	}
	forged := bytes.Clone(rec2)
	forged[len(forged)-1] ^= 1
	if i, _ := v.Select(key, [][]byte{rec1, forged}); i != 0 {
		t.Fatal("select chose a forged record")
	}
}

// Deposits go to the relays of the recipient's current inbox record, not those of an old card.
func TestDepositFollowsInboxRecord(t *testing.T) {
	tn := newTestNet(t)
	old, cur := tn.relay(Limits{}, 100000), tn.relay(Limits{}, 100000)
	a, b := tn.user("a"), tn.user("b", old)
	card := cardFor(t, b, a)
	rec, err := NewInboxRecord(b.id, 7, []string{cur.addr}, tn.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	a.c.o.Routing = mapRouting{InboxKey(b.id.AccountKey()): rec}
	// The first deposit goes to the card's relays while the record is looked up in the background …
	if _, err := a.c.Deposit(t.Context(), card, "m1", []byte("m")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if r, ok := a.c.inboxRecord(t.Context(), b.id.AccountKey(), false); ok && r.Seq == 7 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("inbox record never cached")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// … later ones follow the record.
	if _, err := a.c.Deposit(t.Context(), card, "m2", []byte("m")); err != nil {
		t.Fatal(err)
	}
	if old.ms.Stats(t.Context()).Items != 1 || cur.ms.Stats(t.Context()).Items != 1 {
		t.Fatal("deposit did not follow the inbox record")
	}
}

type mapRouting map[string][]byte

func (m mapRouting) PutValue(_ context.Context, k string, v []byte, _ ...routingOption) error {
	m[k] = v
	return nil
}

func (m mapRouting) GetValue(_ context.Context, k string, _ ...routingOption) ([]byte, error) {
	if v, ok := m[k]; ok {
		return v, nil
	}
	return nil, errors.New("not found")
}

func TestKeysDeterministic(t *testing.T) {
	tn := newTestNet(t)
	u := tn.user("u")
	k2, err := DeriveKeys(u.id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k2.hpkePub, u.c.Keys().hpkePub) || !k2.OwnerKey().Equal(u.c.Keys().OwnerKey()) {
		t.Fatal("mailbox keys are not derived deterministically")
	}
	if bytes.Equal(k2.OwnerKey(), u.id.AccountKey()) || ed25519.PublicKey(k2.OwnerKey()).Equal(u.id.AccountKey()) {
		t.Fatal("the owner key must not be the account key")
	}
}

// A relay's own user: deposits to and drains from the relay's own service without the network.
func TestRelayOwnMailboxIsLocal(t *testing.T) {
	tn := newTestNet(t)
	r := tn.relay(Limits{}, 100000)
	st := memStore(t)
	self, err := NewClient(ClientOptions{Host: r.h, Identity: r.id, Store: st, NS: st.Namespace("inbox"),
		Relays: func() []string { return []string{r.addr} }, Local: r.svc, Now: tn.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	a := tn.user("a")
	card, err := self.MailboxCard(t.Context(), a.id.AccountKey())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Deposit(t.Context(), card, "remote", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	// The relay's user sends itself a note through its own card (local deposit path).
	if _, err := self.Deposit(t.Context(), card, "local", []byte("to myself")); err != nil {
		t.Fatal(err)
	}
	var got []string
	res, err := self.Drain(t.Context(), func(_ context.Context, p []byte) error { got = append(got, string(p)); return nil }, nil)
	if err != nil || len(got) != 2 || res.Relays != 1 {
		t.Fatalf("local drain: %v %q %+v", err, got, res)
	}
	if n := r.ms.Stats(t.Context()).Items; n != 0 {
		t.Fatalf("%d items left", n)
	}
	if _, err := tn.user("lonely").c.MailboxCard(t.Context(), a.id.AccountKey()); !errors.Is(err, ErrNoRelays) {
		t.Fatalf("card without relays: %v", err)
	}
}
