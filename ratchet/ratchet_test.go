package ratchet

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/madang-p2p/madang/ratchet/pb"
	"google.golang.org/protobuf/proto"
)

func TestRoundTrip(t *testing.T) {
	a, b, da, db := newPair(t)
	if !bytes.Equal(a.ID(), b.ID()) {
		t.Fatal("session ids differ")
	}
	if !a.IsInitiator() || b.IsInitiator() {
		t.Fatal("IsInitiator wrong")
	}
	if !a.PeerAccountKey().Equal(db.account.Public()) || !b.PeerAccountKey().Equal(da.account.Public()) {
		t.Fatal("PeerAccountKey wrong")
	}
	if !bytes.Equal(a.PeerIdentityDH(), db.keys.Bundle().IdentityDH) || !bytes.Equal(b.PeerIdentityDH(), da.keys.Bundle().IdentityDH) {
		t.Fatal("PeerIdentityDH wrong")
	}
	for i := range 5 {
		mustDecrypt(t, a, mustEncrypt(t, b, label(i), []byte("id")), label(i), []byte("id"))
		mustDecrypt(t, b, mustEncrypt(t, a, label(i), nil), label(i), nil)
	}
	// Empty plaintext and large plaintext.
	mustDecrypt(t, b, mustEncrypt(t, a, "", nil), "", nil)
	big := bytes.Repeat([]byte{7}, MaxPlaintextSize)
	msg, err := a.Encrypt(big, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := b.Decrypt(msg, nil)
	if err != nil || !bytes.Equal(pt, big) {
		t.Fatalf("max-size message: %v", err)
	}
	if _, err := a.Encrypt(make([]byte, MaxPlaintextSize+1), nil); err == nil {
		t.Fatal("oversized plaintext accepted")
	}
}

func TestInitHeaderUntilReply(t *testing.T) {
	a, b, _, _ := newPair(t)
	m1 := mustEncrypt(t, a, "second", nil)
	if isInit, acct, err := PeekInit(m1); err != nil || !isInit || !acct.Equal(b.PeerAccountKey()) {
		t.Fatalf("PeekInit before reply = %v %x %v", isInit, acct, err)
	}
	mustDecrypt(t, b, m1, "second", nil)
	mustDecrypt(t, a, mustEncrypt(t, b, "reply", nil), "reply", nil)
	m2 := mustEncrypt(t, a, "third", nil)
	if isInit, acct, err := PeekInit(m2); err != nil || isInit || acct != nil {
		t.Fatalf("PeekInit after reply = %v %x %v", isInit, acct, err)
	}
	mustDecrypt(t, b, m2, "third", nil)
	if _, _, err := PeekInit([]byte("garbage")); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("PeekInit(garbage) = %v", err)
	}
}

func TestAssociatedDataBinding(t *testing.T) {
	a, b, _, db := newPair(t)
	msg := mustEncrypt(t, a, "x", []byte("msg-1"))
	mustFail(t, b, msg, []byte("msg-2"), ErrDecrypt)
	mustFail(t, b, msg, nil, ErrDecrypt)
	mustDecrypt(t, b, msg, "x", []byte("msg-1"))

	// The first message's ad is checked by Accept too.
	c, err := Initiate(newDevice(t).keys, db.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	first := mustEncrypt(t, c, "hi", []byte("id-1"))
	if _, _, err := Accept(db.keys, first); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Accept with wrong ad: %v", err)
	}
	if _, pt, err := AcceptWithAD(db.keys, first, []byte("id-1")); err != nil || string(pt) != "hi" {
		t.Fatalf("AcceptWithAD: %q %v", pt, err)
	}
}

func TestOutOfOrder(t *testing.T) {
	a, b, _, _ := newPair(t)
	var msgs [][]byte
	for i := range 10 {
		msgs = append(msgs, mustEncrypt(t, a, label(i), nil))
	}
	for _, i := range []int{9, 3, 0, 8, 1, 2, 7, 4, 6, 5} {
		mustDecrypt(t, b, msgs[i], label(i), nil)
	}
	for i := range msgs {
		mustFail(t, b, msgs[i], nil, ErrDuplicate)
	}
}

func TestLostMessages(t *testing.T) {
	a, b, _, _ := newPair(t)
	for round := range 6 {
		for i := range 5 {
			m := mustEncrypt(t, a, label(i), nil)
			if i%2 == 0 {
				mustDecrypt(t, b, m, label(i), nil)
			}
		}
		// b's reply is lost half of the time; the ratchet still advances.
		r := mustEncrypt(t, b, "reply", nil)
		if round%2 == 0 {
			mustDecrypt(t, a, r, "reply", nil)
		}
	}
	mustDecrypt(t, b, mustEncrypt(t, a, "end", nil), "end", nil)
}

func TestInterleavedWithRatchetSteps(t *testing.T) {
	a, b, _, _ := newPair(t)
	// Each side sends bursts; old-chain messages arrive after newer chains.
	a1 := mustEncrypt(t, a, "a1", nil)
	a2 := mustEncrypt(t, a, "a2", nil)
	mustDecrypt(t, b, a2, "a2", nil)
	b1 := mustEncrypt(t, b, "b1", nil) // new ratchet key for b
	b2 := mustEncrypt(t, b, "b2", nil)
	mustDecrypt(t, a, b2, "b2", nil)
	a3 := mustEncrypt(t, a, "a3", nil) // new ratchet key for a
	mustDecrypt(t, b, a3, "a3", nil)   // b steps; a1 now on a retired chain
	b3 := mustEncrypt(t, b, "b3", nil)
	mustDecrypt(t, b, a1, "a1", nil)
	mustDecrypt(t, a, b3, "b3", nil)
	mustDecrypt(t, a, b1, "b1", nil)
	mustFail(t, a, b1, nil, ErrDuplicate)
	mustFail(t, b, a1, nil, ErrDuplicate)
	mustFail(t, b, a2, nil, ErrDuplicate)
	for i := range 20 {
		mustDecrypt(t, b, mustEncrypt(t, a, label(i), nil), label(i), nil)
		mustDecrypt(t, a, mustEncrypt(t, b, label(i), nil), label(i), nil)
	}
}

func TestSessionMarshalRoundTrip(t *testing.T) {
	a, b, _, _ := newPair(t)
	var pending [][]byte
	for i := range 4 {
		pending = append(pending, mustEncrypt(t, a, label(i), nil))
	}
	mustDecrypt(t, b, pending[3], label(3), nil) // leaves 3 skipped keys
	a, b = restart(t, a), restart(t, b)
	for i := range 3 {
		mustDecrypt(t, b, pending[i], label(i), nil)
	}
	mustFail(t, b, pending[3], nil, ErrDuplicate)
	mustDecrypt(t, a, mustEncrypt(t, b, "r", nil), "r", nil)
	a = restart(t, a)
	mustDecrypt(t, b, mustEncrypt(t, a, "s", nil), "s", nil)
}

func TestWrongSession(t *testing.T) {
	a, b, _, db := newPair(t)
	// Another initiator towards b: its init message is not b's session's.
	c, err := Initiate(newDevice(t).keys, db.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	mustFail(t, b, mustEncrypt(t, c, "x", nil), nil, ErrWrongSession)
	// Normal messages of another session fail to authenticate.
	a3, b3, _, _ := newPair(t)
	mustDecrypt(t, a3, mustEncrypt(t, b3, "r", nil), "r", nil)
	mustFail(t, b, mustEncrypt(t, a3, "y", nil), nil, ErrDecrypt)
	// An init message to an initiator session.
	mustFail(t, a, mustEncrypt(t, c, "z", nil), nil, ErrWrongSession)
}

func TestAcceptRejects(t *testing.T) {
	a, b, da, db := newPair(t)
	_ = b
	// Not an init message.
	mustDecrypt(t, a, mustEncrypt(t, b, "r", nil), "r", nil)
	if _, _, err := Accept(db.keys, mustEncrypt(t, a, "plain", nil)); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("Accept(normal message) = %v", err)
	}
	// Wrong recipient (prekey ids unknown).
	c, err := Initiate(da.keys, db.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	init := mustEncrypt(t, c, "hi", nil)
	if _, _, err := Accept(newDevice(t).keys, init); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("Accept by another device = %v", err)
	}
	// Identity key signed by another account: re-sign the init header's
	// identity key with a foreign account (message re-encoded).
	other := newDevice(t)
	forged := rewriteInit(t, init, func(in *pb.InitHeader) {
		in.IdentityDhSig = ed25519.Sign(other.account, identitySigMessage(in.IdentityDh))
	})
	if _, _, err := Accept(db.keys, forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Accept(foreign identity signature) = %v", err)
	}
	if _, _, err := PeekInit(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("PeekInit(foreign identity signature) = %v", err)
	}
	// Claiming another account with that account's valid signature over our
	// identity key still fails: the AD binds the account keys.
	claimed := rewriteInit(t, init, func(in *pb.InitHeader) {
		in.AccountKey = other.account.Public().(ed25519.PublicKey)
		in.IdentityDhSig = ed25519.Sign(other.account, identitySigMessage(in.IdentityDh))
	})
	if _, _, err := Accept(db.keys, claimed); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Accept(re-claimed account) = %v", err)
	}
	// Low-order ephemeral key.
	low := rewriteInit(t, init, func(in *pb.InitHeader) { in.EphemeralKey = make([]byte, 32) })
	if _, _, err := Accept(db.keys, low); !errors.Is(err, ErrBadMessage) {
		t.Fatalf("Accept(zero ephemeral) = %v", err)
	}
	if _, pt, err := Accept(db.keys, init); err != nil || string(pt) != "hi" {
		t.Fatalf("Accept(original) = %q %v", pt, err)
	}
}

func rewriteInit(t *testing.T, msg []byte, f func(*pb.InitHeader)) []byte {
	t.Helper()
	var env pb.Message
	var h pb.Header
	if err := proto.Unmarshal(msg, &env); err != nil {
		t.Fatal(err)
	}
	if err := proto.Unmarshal(env.Header, &h); err != nil {
		t.Fatal(err)
	}
	f(h.Init)
	hb, err := proto.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	out, err := proto.Marshal(&pb.Message{Header: hb, Ciphertext: env.Ciphertext})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBundle(t *testing.T) {
	d := newDevice(t)
	bun := d.keys.Bundle()
	if err := bun.Verify(); err != nil {
		t.Fatal(err)
	}
	enc, err := MarshalBundle(bun)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := UnmarshalBundle(enc)
	if err != nil {
		t.Fatal(err)
	}
	if enc2, _ := MarshalBundle(dec); !bytes.Equal(enc, enc2) {
		t.Fatal("bundle round trip differs")
	}

	// Every single bit flip of any signature, key or id is rejected.
	fields := []struct {
		name string
		get  func(*PrekeyBundle) []byte
	}{
		{"IdentityDHSig", func(b *PrekeyBundle) []byte { return b.IdentityDHSig }},
		{"SignedPrekeySig", func(b *PrekeyBundle) []byte { return b.SignedPrekeySig }},
		{"KEMPrekeySig", func(b *PrekeyBundle) []byte { return b.KEMPrekeySig }},
		{"IdentityDH", func(b *PrekeyBundle) []byte { return b.IdentityDH }},
		{"SignedPrekey", func(b *PrekeyBundle) []byte { return b.SignedPrekey }},
		{"AccountKey", func(b *PrekeyBundle) []byte { return b.AccountKey }},
	}
	for _, f := range fields {
		for bit := range len(f.get(&bun)) * 8 {
			b := d.keys.Bundle()
			f.get(&b)[bit/8] ^= 1 << (bit % 8)
			if err := b.Verify(); err == nil {
				t.Fatalf("%s bit %d flipped: Verify ok", f.name, bit)
			}
		}
	}
	for _, mut := range []func(*PrekeyBundle){
		func(b *PrekeyBundle) { b.SignedPrekeyID++ },
		func(b *PrekeyBundle) { b.KEMPrekeyID ^= 1 << 31 },
		func(b *PrekeyBundle) { b.KEMPrekey[100] ^= 1 },
		func(b *PrekeyBundle) { b.KEMPrekey = b.KEMPrekey[:100] },
		func(b *PrekeyBundle) { b.SignedPrekey = append(b.SignedPrekey, 0) },
		func(b *PrekeyBundle) { b.IdentityDHSig = nil },
	} {
		b := d.keys.Bundle()
		mut(&b)
		if err := b.Verify(); err == nil {
			t.Fatal("mutated bundle verified")
		}
		if _, err := Initiate(newDevice(t).keys, b); err == nil {
			t.Fatal("Initiate accepted a mutated bundle")
		}
		if enc, err := MarshalBundle(b); err == nil {
			if _, err := UnmarshalBundle(enc); err == nil {
				t.Fatal("UnmarshalBundle accepted a mutated bundle")
			}
		}
	}
}

func TestBundleIdentitySignedByAnotherAccount(t *testing.T) {
	victim, mallory := newDevice(t), newDevice(t)
	// Mallory's device keys presented under the victim's account.
	b := mallory.keys.Bundle()
	b.AccountKey = victim.account.Public().(ed25519.PublicKey)
	if err := b.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify = %v, want ErrBadSignature", err)
	}
	// The victim's bundle with Mallory's identity key (signed by Mallory's account).
	mb := mallory.keys.Bundle()
	b = victim.keys.Bundle()
	b.IdentityDH, b.IdentityDHSig = mb.IdentityDH, mb.IdentityDHSig
	if err := b.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify = %v, want ErrBadSignature", err)
	}
	// Even correctly signed by the victim, prekeys of one device cannot be
	// combined with the identity key of another device of the same account.
	other, err := GenerateLocalKeys(victim.account)
	if err != nil {
		t.Fatal(err)
	}
	b = victim.keys.Bundle()
	ob := other.Bundle()
	b.IdentityDH, b.IdentityDHSig = ob.IdentityDH, ob.IdentityDHSig
	if err := b.Verify(); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("mixed-device bundle: Verify = %v, want ErrBadSignature", err)
	}
	if _, err := Initiate(mallory.keys, b); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Initiate = %v, want ErrBadSignature", err)
	}
}

func TestLocalKeysMarshal(t *testing.T) {
	a, _, da, db := newPair(t)
	enc, err := db.keys.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	k, err := UnmarshalLocalKeys(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !equalBundles(k.Bundle(), db.keys.Bundle()) {
		t.Fatal("bundle differs after round trip")
	}
	// The restored keys accept a new session.
	c, err := Initiate(da.keys, k.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Accept(k, mustEncrypt(t, c, "x", nil)); err != nil {
		t.Fatal(err)
	}
	_ = a
	for i := range enc {
		bad := bytes.Clone(enc)
		bad[i] ^= 0x40
		if k2, err := UnmarshalLocalKeys(bad); err == nil && equalBundles(k2.Bundle(), db.keys.Bundle()) {
			// A flip in a private scalar's clamped bits can decode to the same key.
			continue
		} else if err == nil {
			t.Fatalf("byte %d flipped: keys decoded to a different bundle without error", i)
		}
	}
	if _, err := UnmarshalLocalKeys(make([]byte, maxLocalKeysSize+1)); err == nil {
		t.Fatal("oversized local keys accepted")
	}
}

func equalBundles(x, y PrekeyBundle) bool {
	a, _ := MarshalBundle(x)
	b, _ := MarshalBundle(y)
	return bytes.Equal(a, b)
}

// TestConfirmStopsInitData: an acknowledged init message of this session ends the init data; later messages
// are smaller, carry no init header, and the peer that accepted the first one decrypts them. Messages of
// another session, without init data, or garbage change nothing.
func TestConfirmStopsInitData(t *testing.T) {
	a, b, _, _ := newPair(t)
	first := mustEncrypt(t, a, "again", nil) // still carries the init data: no reply yet
	if isInit, _, err := PeekInit(first); err != nil || !isInit {
		t.Fatalf("before Confirm: init %v, %v", isInit, err)
	}
	other, _, _, _ := newPair(t)
	if other.Confirm(first) {
		t.Fatal("another session took the confirmation")
	}
	fromB := mustEncrypt(t, b, "reply", nil)
	if a.Confirm(fromB) || a.Confirm([]byte("garbage")) {
		t.Fatal("a message without our init data confirmed the session")
	}
	if !a.SendsInit() || b.SendsInit() {
		t.Fatal("before Confirm only the initiator sends init data")
	}
	if !a.Confirm(first) || a.SendsInit() {
		t.Fatal("Confirm of our own acknowledged init message did nothing")
	}
	if a.Confirm(first) {
		t.Fatal("second Confirm reported a change")
	}
	a = restart(t, a) // the confirmation is part of the persisted state
	next := mustEncrypt(t, a, "no init", nil)
	if isInit, _, err := PeekInit(next); err != nil || isInit {
		t.Fatalf("after Confirm: init %v, %v", isInit, err)
	}
	if len(next) >= len(first)-1000 {
		t.Fatalf("after Confirm %d bytes, before %d: the init data should be gone", len(next), len(first))
	}
	mustDecrypt(t, b, first, "again", nil)
	mustDecrypt(t, b, next, "no init", nil)
}
