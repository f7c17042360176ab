package ratchet

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"testing"
)

var long = flag.Bool("long", false, "run the long property and tamper tests")

type device struct {
	account ed25519.PrivateKey
	keys    *LocalKeys
}

func newDevice(tb testing.TB) device {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	k, err := GenerateLocalKeys(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return device{priv, k}
}

// newPair returns an established pair: a initiated, b accepted a's first message.
// The initiator a has not yet received a reply.
func newPair(tb testing.TB) (a, b *Session, da, db device) {
	tb.Helper()
	da, db = newDevice(tb), newDevice(tb)
	a, err := Initiate(da.keys, db.keys.Bundle())
	if err != nil {
		tb.Fatal(err)
	}
	first := mustEncrypt(tb, a, "hello", nil)
	b, pt, err := Accept(db.keys, first)
	if err != nil {
		tb.Fatal(err)
	}
	if string(pt) != "hello" {
		tb.Fatalf("Accept plaintext %q", pt)
	}
	return a, b, da, db
}

func mustEncrypt(tb testing.TB, s *Session, pt string, ad []byte) []byte {
	tb.Helper()
	msg, err := s.Encrypt([]byte(pt), ad)
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

func mustDecrypt(tb testing.TB, s *Session, msg []byte, want string, ad []byte) {
	tb.Helper()
	pt, err := s.Decrypt(msg, ad)
	if err != nil {
		tb.Fatalf("Decrypt(%q): %v", want, err)
	}
	if string(pt) != want {
		tb.Fatalf("Decrypt = %q, want %q", pt, want)
	}
}

func snapshot(tb testing.TB, s *Session) []byte {
	tb.Helper()
	b, err := s.Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mustFail decrypts msg, requires an error matching want (if non-nil) and
// requires the session state to be unchanged.
func mustFail(tb testing.TB, s *Session, msg, ad []byte, want error) error {
	tb.Helper()
	before := snapshot(tb, s)
	pt, err := s.Decrypt(msg, ad)
	if err == nil {
		tb.Fatalf("Decrypt succeeded (%q), want error %v", pt, want)
	}
	if want != nil && !errors.Is(err, want) {
		tb.Fatalf("Decrypt error %v, want %v", err, want)
	}
	if after := snapshot(tb, s); !bytes.Equal(before, after) {
		tb.Fatalf("session changed by failed Decrypt (%v)", err)
	}
	return err
}

func restart(tb testing.TB, s *Session) *Session {
	tb.Helper()
	b := snapshot(tb, s)
	r, err := UnmarshalSession(b)
	if err != nil {
		tb.Fatal(err)
	}
	if b2 := snapshot(tb, r); !bytes.Equal(b, b2) {
		tb.Fatal("Marshal(UnmarshalSession(b)) != b")
	}
	return r
}

func label(i int) string { return fmt.Sprintf("message %d", i) }
