package ratchet

import (
	"bytes"
	"errors"
	"testing"
)

// established returns a pair where a has received a reply, so a's next
// messages start a fresh chain at counter 0 without init data.
func established(t *testing.T) (a, b *Session) {
	t.Helper()
	a, b, _, _ = newPair(t)
	mustDecrypt(t, a, mustEncrypt(t, b, "reply", nil), "reply", nil)
	return a, b
}

func TestSkippedKeyCap(t *testing.T) {
	a, b := established(t)
	msgs := make([][]byte, MaxSkippedKeys+2)
	for i := range msgs {
		msgs[i] = mustEncrypt(t, a, label(i), nil)
	}
	// Receiving the last one skips MaxSkippedKeys+1 = 2,001 keys: the oldest is evicted.
	mustDecrypt(t, b, msgs[len(msgs)-1], label(len(msgs)-1), nil)
	if got := len(b.skipped.order); got != MaxSkippedKeys {
		t.Fatalf("%d skipped keys stored, want %d", got, MaxSkippedKeys)
	}
	mustFail(t, b, msgs[0], nil, ErrTooManySkipped)
	mustDecrypt(t, b, msgs[1], label(1), nil)
	mustDecrypt(t, b, msgs[MaxSkippedKeys], label(MaxSkippedKeys), nil)
	mustFail(t, b, msgs[1], nil, ErrDuplicate)

	// Eviction is FIFO across chains and survives a restart.
	b = restart(t, b)
	mustFail(t, b, msgs[0], nil, ErrTooManySkipped)
	mustDecrypt(t, a, mustEncrypt(t, b, "r", nil), "r", nil)
	next := make([][]byte, 5)
	for i := range next {
		next[i] = mustEncrypt(t, a, label(i), nil)
	}
	// b holds 1,998 keys of the old chain; 4 more new-chain keys evict msgs[2], msgs[3].
	mustDecrypt(t, b, next[4], label(4), nil)
	mustFail(t, b, msgs[2], nil, ErrTooManySkipped)
	mustFail(t, b, msgs[3], nil, ErrTooManySkipped)
	mustDecrypt(t, b, msgs[4], label(4), nil)
	for i := range 4 {
		mustDecrypt(t, b, next[i], label(i), nil)
	}
}

func TestForwardJumpCap(t *testing.T) {
	a, b := established(t)
	var msgs [][]byte
	for i := range MaxForwardJump + 2 {
		msgs = append(msgs, mustEncrypt(t, a, label(i), nil))
	}
	// Counter 25,001 on a new chain would skip 25,001 keys.
	mustFail(t, b, msgs[MaxForwardJump+1], nil, ErrTooFarAhead)
	// Counter 25,000 skips exactly 25,000: allowed.
	mustDecrypt(t, b, msgs[MaxForwardJump], label(MaxForwardJump), nil)
	mustDecrypt(t, b, msgs[MaxForwardJump+1], label(MaxForwardJump+1), nil)
	mustDecrypt(t, b, msgs[MaxForwardJump-1], label(MaxForwardJump-1), nil)
	mustDecrypt(t, b, msgs[MaxForwardJump-MaxSkippedKeys], label(MaxForwardJump-MaxSkippedKeys), nil)
	mustFail(t, b, msgs[MaxForwardJump-MaxSkippedKeys-1], nil, ErrTooManySkipped)
	mustFail(t, b, msgs[0], nil, ErrTooManySkipped)

	// Within the current chain: position is now MaxForwardJump+2.
	var more [][]byte
	for i := range MaxForwardJump + 2 {
		more = append(more, mustEncrypt(t, a, label(i), nil))
	}
	mustFail(t, b, more[MaxForwardJump+1], nil, ErrTooFarAhead)
	mustDecrypt(t, b, more[MaxForwardJump], label(MaxForwardJump), nil)

	// Previous-chain jump (PN) is capped too: b replies, a sends 25,001 more
	// on its old chain but b receives only a message of a's next chain.
	c, d := established(t)
	for range MaxForwardJump + 1 {
		mustEncrypt(t, c, "lost", nil)
	}
	mustDecrypt(t, c, mustEncrypt(t, d, "r", nil), "r", nil)
	mustFail(t, d, mustEncrypt(t, c, "new chain", nil), nil, ErrTooFarAhead)
}

func TestTamper(t *testing.T) {
	a, b := established(t)
	mustDecrypt(t, b, mustEncrypt(t, a, "warm", nil), "warm", nil)
	// Same-chain message and a message that starts a DH ratchet step.
	same := mustEncrypt(t, a, "same chain", []byte("ad"))
	mustDecrypt(t, a, mustEncrypt(t, b, "turn", nil), "turn", nil)
	step := mustEncrypt(t, a, "new chain", []byte("ad"))
	for _, tc := range []struct {
		name, pt string
		msg      []byte
	}{{"step", "new chain", step}, {"same", "same chain", same}} {
		flipAll(t, tc.msg, false, func(bad []byte) { mustFail(t, b, bad, []byte("ad"), nil) })
		mustDecrypt(t, b, tc.msg, tc.pt, []byte("ad"))
	}
	// Truncations and extensions.
	m := mustEncrypt(t, a, "len", nil)
	for n := range len(m) {
		mustFail(t, b, m[:n], nil, nil)
	}
	mustFail(t, b, append(bytes.Clone(m), 0), nil, nil)
	mustFail(t, b, append(bytes.Clone(m), 0x1a, 0), nil, nil) // unknown field 3
	mustDecrypt(t, b, m, "len", nil)
}

func TestTamperInit(t *testing.T) {
	da, db := newDevice(t), newDevice(t)
	a, err := Initiate(da.keys, db.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	first := mustEncrypt(t, a, "first", nil)
	second := mustEncrypt(t, a, "second", nil)
	// Accept is costly (ML-KEM, ed25519): without -long, flip every bit of
	// the first and last 64 bytes and one bit of every other byte.
	sparse := !*long
	flipAll(t, first, sparse, func(bad []byte) {
		if s, pt, err := Accept(db.keys, bad); err == nil {
			t.Fatalf("tampered init message accepted: %q", pt)
		} else if s != nil {
			t.Fatal("session returned with error")
		}
	})
	b, pt, err := Accept(db.keys, first)
	if err != nil || string(pt) != "first" {
		t.Fatalf("Accept = %q, %v", pt, err)
	}
	// On the existing responder session, every flip of an init message fails
	// and leaves the state unchanged.
	flipAll(t, second, false, func(bad []byte) { mustFail(t, b, bad, nil, nil) })
	mustDecrypt(t, b, second, "second", nil)
}

// flipAll calls f with msg with each single bit flipped. If sparse, only
// the first and last 64 bytes get all their bits flipped, every other byte
// one (rotating) bit.
func flipAll(t *testing.T, msg []byte, sparse bool, f func([]byte)) {
	t.Helper()
	bad := bytes.Clone(msg)
	for bit := range len(msg) * 8 {
		i := bit / 8
		if sparse && i >= 64 && i < len(msg)-64 && bit%8 != i%8 {
			continue
		}
		bad[i] ^= 1 << (bit % 8)
		f(bad)
		bad[i] ^= 1 << (bit % 8)
	}
}

func TestDuplicateVsEvictedClassification(t *testing.T) {
	c := &recvChain{}
	c.addEvicted(span{5, 10})
	c.addEvicted(span{10, 12})
	c.addEvicted(span{0, 2})
	c.addEvicted(span{3, 5})
	c.addEvicted(span{20, 21})
	want := []span{{0, 2}, {3, 12}, {20, 21}}
	if len(c.evicted) != len(want) {
		t.Fatalf("spans %v, want %v", c.evicted, want)
	}
	for i := range want {
		if c.evicted[i] != want[i] {
			t.Fatalf("spans %v, want %v", c.evicted, want)
		}
	}
	if !errors.Is(c.consumedErr(2), ErrDuplicate) || !errors.Is(c.consumedErr(11), ErrTooManySkipped) {
		t.Fatal("classification wrong")
	}
	for i := range maxEvictedSpans + 5 {
		c.addEvicted(span{uint32(100 + 2*i), uint32(101 + 2*i)})
	}
	if len(c.evicted) != maxEvictedSpans {
		t.Fatalf("%d spans kept, want %d", len(c.evicted), maxEvictedSpans)
	}
}
