package ratchet

import (
	"bytes"
	"errors"
	"testing"
)

// peerSessions implements the documented multi-session rule for one peer:
// try the active session, then the previous ones, then Accept; the session
// that was created or decrypted most recently becomes active.
type peerSessions struct {
	keys     *LocalKeys
	sessions []*Session // sessions[0] is active
}

func (ps *peerSessions) promote(i int) {
	s := ps.sessions[i]
	ps.sessions = append(ps.sessions[:i], ps.sessions[i+1:]...)
	ps.sessions = append([]*Session{s}, ps.sessions...)
}

func (ps *peerSessions) receive(msg []byte) ([]byte, error) {
	for i, s := range ps.sessions {
		pt, err := s.Decrypt(msg, nil)
		if err == nil {
			ps.promote(i)
			return pt, nil
		}
		if errors.Is(err, ErrDuplicate) {
			return nil, err
		}
	}
	isInit, _, err := PeekInit(msg)
	if err != nil {
		return nil, err
	}
	if !isInit {
		return nil, ErrDecrypt
	}
	s, pt, err := Accept(ps.keys, msg)
	if err != nil {
		return nil, err
	}
	ps.sessions = append([]*Session{s}, ps.sessions...)
	return pt, nil
}

func (ps *peerSessions) send(t *testing.T, pt string) []byte {
	return mustEncrypt(t, ps.sessions[0], pt, nil)
}

func TestSimultaneousInitiation(t *testing.T) {
	da, db := newDevice(t), newDevice(t)
	sa, err := Initiate(da.keys, db.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Initiate(db.keys, da.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	A := &peerSessions{keys: da.keys, sessions: []*Session{sa}}
	B := &peerSessions{keys: db.keys, sessions: []*Session{sb}}

	recv := func(p *peerSessions, msg []byte, want string) {
		t.Helper()
		pt, err := p.receive(msg)
		if err != nil || string(pt) != want {
			t.Fatalf("receive %q: %q, %v", want, pt, err)
		}
	}
	// Both init messages cross.
	a1, b1 := A.send(t, "a1"), B.send(t, "b1")
	// The other side's init is not for the own initiated session.
	if _, err := sa.Decrypt(b1, nil); !errors.Is(err, ErrWrongSession) {
		t.Fatalf("initiator session given peer's init: %v", err)
	}
	recv(A, b1, "b1")
	recv(B, a1, "a1")
	if len(A.sessions) != 2 || len(B.sessions) != 2 {
		t.Fatal("each side should hold two sessions")
	}
	// Crossing traffic: every message decrypts wherever it was sent.
	for range 3 {
		x, y := A.send(t, "ax"), B.send(t, "by")
		recv(B, x, "ax")
		recv(A, y, "by")
	}
	// One side speaks twice in a row: the sides converge.
	x := A.send(t, "a-first")
	recv(B, x, "a-first")
	y := B.send(t, "b-reply")
	recv(A, y, "b-reply")
	if !bytes.Equal(A.sessions[0].ID(), B.sessions[0].ID()) {
		t.Fatal("sides did not converge on one session")
	}
	for range 5 {
		recv(B, A.send(t, "m"), "m")
		recv(A, B.send(t, "n"), "n")
	}
	// Late stragglers of the other session still decrypt.
	recv(A, mustEncrypt(t, B.sessions[1], "straggler", nil), "straggler")

	// A re-delivered init message is a duplicate, not a new session.
	if _, err := B.receive(a1); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("re-delivered init: %v", err)
	}
}

func TestPeerReinitiates(t *testing.T) {
	// A loses its state and starts over; B's rule switches to the new session.
	a, b, da, db := newPair(t)
	mustDecrypt(t, a, mustEncrypt(t, b, "r", nil), "r", nil)
	B := &peerSessions{keys: db.keys, sessions: []*Session{b}}
	a2, err := Initiate(da.keys, db.keys.Bundle())
	if err != nil {
		t.Fatal(err)
	}
	pt, err := B.receive(mustEncrypt(t, a2, "fresh", nil))
	if err != nil || string(pt) != "fresh" {
		t.Fatalf("%q %v", pt, err)
	}
	mustDecrypt(t, a2, B.send(t, "welcome back"), "welcome back", nil)
}
