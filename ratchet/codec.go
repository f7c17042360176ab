package ratchet

import (
	"crypto/ecdh"
	"fmt"

	"github.com/madang-p2p/madang/ratchet/pb"
	"google.golang.org/protobuf/proto"
)

const sessionVersion = 1

func chainToPB(c *recvChain, current bool) *pb.ReceiveChain {
	out := &pb.ReceiveChain{RatchetKey: append([]byte(nil), c.dh[:]...), Counter: c.n}
	if current {
		out.ChainKey = append([]byte(nil), c.ck[:]...)
	}
	for _, e := range c.evicted {
		out.Evicted = append(out.Evicted, &pb.Span{Start: e.start, End: e.end})
	}
	return out
}

// Marshal encodes the whole session state (protobuf). The result contains
// secret keys. Write it durably (with Sync) after Encrypt and before sending,
// and after Decrypt and before acknowledging.
func (s *Session) Marshal() ([]byte, error) {
	m := &pb.Session{
		Version:             sessionVersion,
		Initiator:           s.initiator,
		SessionId:           append([]byte(nil), s.id[:]...),
		AssociatedData:      append([]byte(nil), s.ad[:]...),
		RootKey:             append([]byte(nil), s.st.rk[:]...),
		RatchetPrivate:      s.st.dhs.Bytes(),
		RemoteRatchetKey:    append([]byte(nil), s.st.dhr[:]...),
		SendChainKey:        append([]byte(nil), s.st.cks[:]...),
		SendCounter:         s.st.ns,
		PreviousSendCounter: s.st.pn,
		PendingInit:         s.pending,
	}
	if s.st.recv != nil {
		m.ReceiveChain = chainToPB(s.st.recv, true)
	}
	for _, p := range s.st.prev {
		m.PreviousReceiveChains = append(m.PreviousReceiveChains, chainToPB(p, false))
	}
	m.SkippedKeys = make([]*pb.SkippedKey, 0, len(s.skipped.order))
	for _, id := range s.skipped.order {
		mk := s.skipped.keys[id]
		m.SkippedKeys = append(m.SkippedKeys, &pb.SkippedKey{
			RatchetKey: append([]byte(nil), id.dh[:]...),
			Counter:    id.n,
			MessageKey: mk[:],
		})
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("ratchet: marshal session: %w", err)
	}
	return out, nil
}

// UnmarshalSession decodes a session written by Marshal, validating every
// size and cap.
func UnmarshalSession(data []byte) (*Session, error) {
	s, err := unmarshalSession(data)
	if err != nil {
		return nil, fmt.Errorf("ratchet: unmarshal session: %w", err)
	}
	return s, nil
}

func get32(b []byte, what string) (key32, error) {
	if len(b) != 32 {
		return key32{}, badMessage("%s of %d bytes", what, len(b))
	}
	return key32(b), nil
}

func chainFromPB(c *pb.ReceiveChain, current bool) (*recvChain, error) {
	var (
		out recvChain
		err error
	)
	if out.dh, err = get32(c.RatchetKey, "chain ratchet key"); err != nil {
		return nil, err
	}
	if current {
		if out.ck, err = get32(c.ChainKey, "receive chain key"); err != nil {
			return nil, err
		}
		if c.Counter == 0 {
			return nil, badMessage("current receive chain at counter 0")
		}
	} else if len(c.ChainKey) != 0 {
		return nil, badMessage("retired chain with a chain key")
	}
	out.n = c.Counter
	if len(c.Evicted) > maxEvictedSpans {
		return nil, badMessage("%d evicted spans", len(c.Evicted))
	}
	for i, e := range c.Evicted {
		if e.Start >= e.End || e.End > c.Counter || (i > 0 && e.Start <= c.Evicted[i-1].End) {
			return nil, badMessage("invalid evicted span")
		}
		out.evicted = append(out.evicted, span{e.Start, e.End})
	}
	return &out, nil
}

func unmarshalSession(data []byte) (*Session, error) {
	if len(data) > maxSessionSize {
		return nil, badMessage("session of %d bytes", len(data))
	}
	var m pb.Session
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, badMessage("%v", err)
	}
	if m.Version != sessionVersion {
		return nil, badMessage("session version %d", m.Version)
	}
	s := &Session{initiator: m.Initiator}
	var err error
	if s.id, err = get32(m.SessionId, "session id"); err != nil {
		return nil, err
	}
	if len(m.AssociatedData) != adSize {
		return nil, badMessage("associated data of %d bytes", len(m.AssociatedData))
	}
	copy(s.ad[:], m.AssociatedData)
	if s.st.rk, err = get32(m.RootKey, "root key"); err != nil {
		return nil, err
	}
	if len(m.RatchetPrivate) != dhKeySize {
		return nil, badMessage("ratchet key of %d bytes", len(m.RatchetPrivate))
	}
	if s.st.dhs, err = ecdh.X25519().NewPrivateKey(m.RatchetPrivate); err != nil {
		return nil, badMessage("ratchet key: %v", err)
	}
	s.st.dhsPub = s.st.dhs.PublicKey().Bytes()
	if s.st.dhr, err = get32(m.RemoteRatchetKey, "remote ratchet key"); err != nil {
		return nil, err
	}
	if s.st.cks, err = get32(m.SendChainKey, "send chain key"); err != nil {
		return nil, err
	}
	s.st.ns, s.st.pn = m.SendCounter, m.PreviousSendCounter
	if m.ReceiveChain != nil {
		if s.st.recv, err = chainFromPB(m.ReceiveChain, true); err != nil {
			return nil, err
		}
	}
	if len(m.PreviousReceiveChains) > MaxPreviousChains {
		return nil, badMessage("%d previous chains", len(m.PreviousReceiveChains))
	}
	for _, c := range m.PreviousReceiveChains {
		rc, err := chainFromPB(c, false)
		if err != nil {
			return nil, err
		}
		s.st.prev = append(s.st.prev, rc)
	}
	if len(m.SkippedKeys) > MaxSkippedKeys {
		return nil, badMessage("%d skipped keys", len(m.SkippedKeys))
	}
	for _, k := range m.SkippedKeys {
		var sk skippedKey
		if sk.id.dh, err = get32(k.RatchetKey, "skipped ratchet key"); err != nil {
			return nil, err
		}
		if sk.mk, err = get32(k.MessageKey, "skipped message key"); err != nil {
			return nil, err
		}
		sk.id.n = k.Counter
		if _, dup := s.skipped.keys[sk.id]; dup {
			return nil, badMessage("duplicate skipped key")
		}
		s.skipped.push(sk)
	}
	if m.PendingInit != nil {
		if !s.initiator {
			return nil, badMessage("pending init data on a responder session")
		}
		if err := checkInit(m.PendingInit); err != nil {
			return nil, err
		}
		s.pending = m.PendingInit
	}
	return s, nil
}
