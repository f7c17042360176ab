package ratchet

import (
	"bytes"
	"testing"
)

// fuzzFixture is a responder session with skipped keys, retired chains and
// pending messages, persisted, plus real messages to seed the corpus.
type fuzzFixture struct {
	keys      *LocalKeys
	initiator []byte // persisted initiator session (pending init data)
	responder []byte // persisted responder session
	messages  [][]byte
}

func newFuzzFixture(tb testing.TB) fuzzFixture {
	da, db := newDevice(tb), newDevice(tb)
	a, err := Initiate(da.keys, db.keys.Bundle())
	if err != nil {
		tb.Fatal(err)
	}
	var fx fuzzFixture
	fx.keys = db.keys
	init0 := mustEncrypt(tb, a, "init 0", nil)
	init1 := mustEncrypt(tb, a, "init 1", []byte("ad"))
	init2 := mustEncrypt(tb, a, "init 2", nil)
	fx.initiator = snapshot(tb, a)
	b, _, err := Accept(db.keys, init2)
	if err != nil {
		tb.Fatal(err)
	}
	mustDecrypt(tb, a, mustEncrypt(tb, b, "reply", nil), "reply", nil)
	n0 := mustEncrypt(tb, a, "next 0", nil)
	n1 := mustEncrypt(tb, a, "next 1", nil)
	n2 := mustEncrypt(tb, a, "next 2", nil)
	mustDecrypt(tb, b, n2, "next 2", nil)
	fx.responder = snapshot(tb, b)
	// init0 and n0 are pending (skipped keys), init2/n2 are duplicates, n1 too;
	// a fresh chain message exercises the DH ratchet path.
	mustDecrypt(tb, a, mustEncrypt(tb, b, "reply 2", nil), "reply 2", nil)
	step := mustEncrypt(tb, a, "step", nil)
	fx.messages = [][]byte{init0, init1, init2, n0, n1, n2, step}
	return fx
}

func FuzzDecryptMessage(f *testing.F) {
	fx := newFuzzFixture(f)
	for _, m := range fx.messages {
		f.Add(m, []byte(nil))
	}
	f.Add(fx.messages[1], []byte("ad"))
	f.Add([]byte{}, []byte(nil))
	f.Add([]byte{0x0a, 0x00, 0x12, 0x00}, []byte(nil))
	f.Fuzz(func(t *testing.T, msg, ad []byte) {
		s, err := UnmarshalSession(fx.responder)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Decrypt(msg, ad); err != nil {
			if after := snapshot(t, s); !bytes.Equal(after, fx.responder) {
				t.Fatalf("failed Decrypt changed the session: %v", err)
			}
		} else if _, err := s.Decrypt(msg, ad); err == nil {
			t.Fatal("message decrypted twice")
		}
		if s, _, err := AcceptWithAD(fx.keys, msg, ad); err == nil {
			if _, err := s.Decrypt(msg, ad); err == nil {
				t.Fatal("accepted message decrypted twice")
			}
		}
		_, _, _ = PeekInit(msg)
	})
}

func FuzzUnmarshalBundle(f *testing.F) {
	b, err := MarshalBundle(newDevice(f).keys.Bundle())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		bun, err := UnmarshalBundle(data)
		if err != nil {
			return
		}
		if err := bun.Verify(); err != nil {
			t.Fatalf("UnmarshalBundle returned an unverifiable bundle: %v", err)
		}
		enc, err := MarshalBundle(bun)
		if err != nil {
			t.Fatal(err)
		}
		bun2, err := UnmarshalBundle(enc)
		if err != nil || !equalBundles(bun, bun2) {
			t.Fatalf("bundle does not round-trip: %v", err)
		}
	})
}

func FuzzUnmarshalSession(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.initiator)
	f.Add(fx.responder)
	f.Add([]byte{})
	f.Add([]byte{0x08, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := UnmarshalSession(data)
		if err != nil {
			return
		}
		enc := snapshot(t, s)
		s2, err := UnmarshalSession(enc)
		if err != nil {
			t.Fatalf("re-encoded session rejected: %v", err)
		}
		if !bytes.Equal(snapshot(t, s2), enc) {
			t.Fatal("session does not round-trip")
		}
		// A decoded session must be usable without panicking.
		for _, m := range fx.messages {
			_, _ = s.Decrypt(m, nil)
		}
		_, _ = s.Encrypt([]byte("x"), nil)
	})
}
