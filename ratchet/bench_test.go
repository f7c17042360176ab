package ratchet

import (
	"testing"
)

func BenchmarkEncryptDecrypt(b *testing.B) {
	pt := make([]byte, 1024)
	b.Run("chain", func(b *testing.B) {
		// Steady state in one direction: symmetric ratchet only.
		x, y, _, _ := newPair(b)
		mustDecrypt(b, x, mustEncrypt(b, y, "r", nil), "r", nil)
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			msg, err := x.Encrypt(pt, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := y.Decrypt(msg, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ping-pong", func(b *testing.B) {
		// Alternating directions: a DH ratchet step on every message.
		x, y, _, _ := newPair(b)
		b.SetBytes(int64(len(pt)))
		b.ReportAllocs()
		for b.Loop() {
			msg, err := y.Encrypt(pt, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := x.Decrypt(msg, nil); err != nil {
				b.Fatal(err)
			}
			x, y = y, x
		}
	})
}

func BenchmarkInitiateAccept(b *testing.B) {
	da, db := newDevice(b), newDevice(b)
	bundle := db.keys.Bundle()
	b.ReportAllocs()
	for b.Loop() {
		s, err := Initiate(da.keys, bundle)
		if err != nil {
			b.Fatal(err)
		}
		msg, err := s.Encrypt([]byte("hello"), nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Accept(db.keys, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSessionMarshal(b *testing.B) {
	x, y, _, _ := newPair(b)
	mustDecrypt(b, x, mustEncrypt(b, y, "r", nil), "r", nil)
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := y.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
	// Worst case: a full skipped-key store.
	var last []byte
	for range MaxSkippedKeys + 1 {
		last = mustEncrypt(b, x, "s", nil)
	}
	mustDecrypt(b, y, last, "s", nil)
	b.Run("2000-skipped", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := y.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
	enc, _ := y.Marshal()
	b.Run("unmarshal-2000-skipped", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := UnmarshalSession(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
