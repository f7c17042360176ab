package ratchet

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math"
	"slices"

	"github.com/madang-p2p/madang/ratchet/pb"
	"google.golang.org/protobuf/proto"
)

// adSize is the size of the session associated data:
// initiator account ‖ initiator IK ‖ responder account ‖ responder IK.
const adSize = 4 * 32

// span is the half-open counter range [start, end).
type span struct{ start, end uint32 }

// recvChain is a receiving chain. The current chain has a chain key and n is
// the next expected counter; a retired chain has no key and n is its length.
type recvChain struct {
	dh      key32
	ck      key32
	n       uint32
	evicted []span // sorted, disjoint, non-adjacent
}

func (c *recvChain) isEvicted(n uint32) bool {
	for _, s := range c.evicted {
		if n >= s.start && n < s.end {
			return true
		}
	}
	return false
}

// addEvicted records counters whose skipped keys were evicted, keeping at
// most maxEvictedSpans spans (the oldest are forgotten: those counters are
// then reported as duplicates).
func (c *recvChain) addEvicted(sp span) {
	if k := len(c.evicted); k == 0 || c.evicted[k-1].end < sp.start {
		c.evicted = append(c.evicted, sp)
	} else if c.evicted[k-1].end == sp.start {
		c.evicted = slices.Clone(c.evicted)
		c.evicted[k-1].end = sp.end
	} else {
		out := make([]span, 0, len(c.evicted)+1)
		inserted := false
		for _, e := range c.evicted {
			switch {
			case e.end < sp.start:
				out = append(out, e)
			case sp.end < e.start:
				if !inserted {
					out = append(out, sp)
					inserted = true
				}
				out = append(out, e)
			default:
				sp.start, sp.end = min(sp.start, e.start), max(sp.end, e.end)
			}
		}
		if !inserted {
			out = append(out, sp)
		}
		c.evicted = out
	}
	if len(c.evicted) > maxEvictedSpans {
		c.evicted = slices.Clone(c.evicted[len(c.evicted)-maxEvictedSpans:])
	}
}

// consumedErr classifies a counter below a chain's position whose key is not
// stored: evicted, or already received.
func (c *recvChain) consumedErr(n uint32) error {
	if c.isEvicted(n) {
		return fmt.Errorf("counter %d: %w", n, ErrTooManySkipped)
	}
	return fmt.Errorf("counter %d: %w", n, ErrDuplicate)
}

type skipID struct {
	dh key32
	n  uint32
}

type skippedKey struct {
	id skipID
	mk key32
}

// skippedStore holds skipped message keys in insertion (FIFO) order.
type skippedStore struct {
	order []skipID
	keys  map[skipID]key32
}

func (st *skippedStore) push(k skippedKey) {
	if st.keys == nil {
		st.keys = make(map[skipID]key32)
	}
	st.order = append(st.order, k.id)
	st.keys[k.id] = k.mk
}

func (st *skippedStore) popFront() skipID {
	id := st.order[0]
	st.order = st.order[1:]
	delete(st.keys, id)
	return id
}

func (st *skippedStore) remove(id skipID) {
	delete(st.keys, id)
	if i := slices.Index(st.order, id); i >= 0 {
		st.order = slices.Delete(st.order, i, i+1)
	}
}

// chainSpan is a span of counters of the chain with ratchet key dh.
type chainSpan struct {
	dh key32
	s  span
}

// chainState is everything Decrypt may change except the skipped keys. It is
// copied by value; the recvChain values it points to are never modified
// before a decryption has succeeded.
type chainState struct {
	rk     key32
	dhs    *ecdh.PrivateKey
	dhsPub []byte
	dhr    key32
	cks    key32
	ns, pn uint32
	recv   *recvChain   // nil until the first message is received
	prev   []*recvChain // retired receiving chains, newest first
}

func (cs *chainState) recordEvicted(dh key32, sp span) {
	if cs.recv != nil && cs.recv.dh == dh {
		cs.recv.addEvicted(sp)
		return
	}
	for _, p := range cs.prev {
		if p.dh == dh {
			p.addEvicted(sp)
			return
		}
	}
}

// Session is one Double Ratchet session with one peer device. It is not safe
// for concurrent use. See the package documentation for the persistence
// contract.
type Session struct {
	initiator bool
	id        key32
	ad        [adSize]byte
	pending   *pb.InitHeader // initiator: sent in every header until a reply is received
	st        chainState
	skipped   skippedStore
}

// ID identifies the session; both parties compute the same value. It is a
// hash of the associated data and the PQXDH init data.
func (s *Session) ID() []byte { return append([]byte(nil), s.id[:]...) }

// IsInitiator reports whether this side called Initiate.
func (s *Session) IsInitiator() bool { return s.initiator }

// PeerAccountKey is the peer's account key, bound into every message.
func (s *Session) PeerAccountKey() ed25519.PublicKey {
	if s.initiator {
		return append(ed25519.PublicKey(nil), s.ad[64:96]...)
	}
	return append(ed25519.PublicKey(nil), s.ad[0:32]...)
}

// PeerIdentityDH is the peer device's X25519 identity key.
func (s *Session) PeerIdentityDH() []byte {
	if s.initiator {
		return append([]byte(nil), s.ad[96:128]...)
	}
	return append([]byte(nil), s.ad[32:64]...)
}

// SendsInit reports whether the messages this session encrypts still carry the PQXDH init data (an
// initiator before the peer's first reply or Confirm).
func (s *Session) SendsInit() bool { return s.pending != nil }

// Confirm stops the init data after the peer authentically acknowledged msg, a message this session
// encrypted that carried it: the peer holds the session, so later messages need not carry the PQXDH init
// data (about 1.2 KB with the ML-KEM ciphertext) until the peer's first reply, as they otherwise would. The
// caller must have verified the acknowledgement (signed by the peer's account key). It reports whether the
// session changed; persist it then. A message of another session, one without init data, or bytes that
// do not parse change nothing.
func (s *Session) Confirm(msg []byte) bool {
	if !s.SendsInit() {
		return false
	}
	m, err := parseMessage(msg)
	if err != nil || m.init == nil || !proto.Equal(m.init, s.pending) {
		return false
	}
	s.pending = nil
	return true
}

// Encrypt encrypts plaintext as the next message of the sending chain. ad is
// extra associated data (e.g. a message id); the receiver must pass the same
// bytes to Decrypt. Persist the session (Marshal, write with Sync) before
// sending the result. On error the session is unchanged.
func (s *Session) Encrypt(plaintext, ad []byte) ([]byte, error) {
	if len(plaintext) > MaxPlaintextSize {
		return nil, fmt.Errorf("ratchet: encrypt: plaintext of %d bytes exceeds %d", len(plaintext), MaxPlaintextSize)
	}
	if s.st.ns == math.MaxUint32 {
		return nil, fmt.Errorf("ratchet: encrypt: sending chain exhausted")
	}
	header, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.Header{
		Version:         headerVersion,
		RatchetKey:      s.st.dhsPub,
		PreviousCounter: s.st.pn,
		Counter:         s.st.ns,
		Init:            s.pending,
	})
	if err != nil {
		return nil, fmt.Errorf("ratchet: encrypt: header: %w", err)
	}
	mk, next := kdfCK(s.st.cks)
	out, err := encodeMessage(header, seal(mk, s.ad[:], header, plaintext, ad))
	if err != nil {
		return nil, fmt.Errorf("ratchet: encrypt: envelope: %w", err)
	}
	s.st.cks = next
	s.st.ns++
	return out, nil
}

// Decrypt authenticates and decrypts a message of this session. ad must equal
// the ad given to Encrypt. On any error the session is unchanged. A message
// whose counter was already consumed gives ErrDuplicate; a message carrying
// init data of another session gives ErrWrongSession. Persist the session
// before acknowledging the message.
func (s *Session) Decrypt(msg, ad []byte) ([]byte, error) {
	m, err := parseMessage(msg)
	if err != nil {
		return nil, fmt.Errorf("ratchet: decrypt: %w", err)
	}
	pt, err := s.decrypt(m, ad)
	if err != nil {
		return nil, fmt.Errorf("ratchet: decrypt: %w", err)
	}
	return pt, nil
}

func (s *Session) decrypt(m *parsedMessage, ad []byte) ([]byte, error) {
	if m.init != nil {
		if s.initiator {
			return nil, fmt.Errorf("init message from the peer: %w", ErrWrongSession)
		}
		var peerAD [adSize]byte
		copy(peerAD[:], m.init.AccountKey)
		copy(peerAD[32:], m.init.IdentityDh)
		copy(peerAD[64:], s.ad[64:])
		if sessionID(peerAD[:], m.init) != s.id {
			return nil, fmt.Errorf("init data of another session: %w", ErrWrongSession)
		}
	}
	if m.n == math.MaxUint32 {
		return nil, badMessage("counter overflow")
	}

	id := skipID{m.dh, m.n}
	if mk, ok := s.skipped.keys[id]; ok {
		pt, err := open(mk, s.ad[:], m.headerBytes, m.ciphertext, ad)
		if err != nil {
			return nil, err
		}
		s.skipped.remove(id)
		s.pending = nil
		return pt, nil
	}

	next := s.st
	var (
		add   []skippedKey
		drops []chainSpan
		mk    key32
	)
	if c := next.recv; c != nil && c.dh == m.dh {
		if m.n < c.n {
			return nil, c.consumedErr(m.n)
		}
		if m.n-c.n > MaxForwardJump {
			return nil, fmt.Errorf("jump of %d: %w", m.n-c.n, ErrTooFarAhead)
		}
		nc := *c
		var ck key32
		ck, add, drops = skipKeys(m.dh, c.ck, c.n, m.n, add, drops)
		mk, nc.ck = kdfCK(ck)
		nc.n = m.n + 1
		next.recv = &nc
	} else {
		for _, p := range next.prev {
			if p.dh == m.dh {
				if m.n < p.n {
					return nil, p.consumedErr(m.n)
				}
				return nil, fmt.Errorf("counter %d beyond the end of a retired chain: %w", m.n, ErrDecrypt)
			}
		}
		if m.n > MaxForwardJump {
			return nil, fmt.Errorf("jump of %d: %w", m.n, ErrTooFarAhead)
		}
		if c := next.recv; c != nil {
			if m.pn < c.n {
				return nil, badMessage("previous chain length %d below received counter %d", m.pn, c.n)
			}
			if m.pn-c.n > MaxForwardJump {
				return nil, fmt.Errorf("previous-chain jump of %d: %w", m.pn-c.n, ErrTooFarAhead)
			}
			_, add, drops = skipKeys(c.dh, c.ck, c.n, m.pn, add, drops)
			retired := &recvChain{dh: c.dh, n: m.pn, evicted: c.evicted}
			prev := make([]*recvChain, 0, MaxPreviousChains)
			prev = append(prev, retired)
			prev = append(prev, next.prev[:min(len(next.prev), MaxPreviousChains-1)]...)
			next.prev = prev
		}
		dhRecv, err := dh(next.dhs, m.dh[:])
		if err != nil {
			return nil, err
		}
		rk, ckr := kdfRK(next.rk, dhRecv)
		dhs, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("ratchet key: %w", err)
		}
		dhSend, err := dh(dhs, m.dh[:])
		if err != nil {
			return nil, err
		}
		next.rk, next.cks = kdfRK(rk, dhSend)
		next.pn, next.ns = next.ns, 0
		next.dhs, next.dhsPub, next.dhr = dhs, dhs.PublicKey().Bytes(), m.dh
		nc := &recvChain{dh: m.dh}
		var ck key32
		ck, add, drops = skipKeys(m.dh, ckr, 0, m.n, add, drops)
		mk, nc.ck = kdfCK(ck)
		nc.n = m.n + 1
		next.recv = nc
	}
	pt, err := open(mk, s.ad[:], m.headerBytes, m.ciphertext, ad)
	if err != nil {
		return nil, err
	}
	s.commit(next, add, drops)
	s.pending = nil
	return pt, nil
}

// skipKeys derives the message keys of chain (dh, ck) for counters
// [from, to) and returns the chain key at to. Only the last MaxSkippedKeys
// keys are returned in add (the others would be evicted at once); the
// counters before them are returned in drops.
func skipKeys(dh, ck key32, from, to uint32, add []skippedKey, drops []chainSpan) (key32, []skippedKey, []chainSpan) {
	keepFrom := from
	if to-from > MaxSkippedKeys {
		keepFrom = to - MaxSkippedKeys
		drops = append(drops, chainSpan{dh, span{from, keepFrom}})
	}
	for i := from; i < to; i++ {
		mk, next := kdfCK(ck)
		if i >= keepFrom {
			add = append(add, skippedKey{skipID{dh, i}, mk})
		}
		ck = next
	}
	return ck, add, drops
}

// commit installs the state computed by a successful decryption and stores
// the new skipped keys, evicting the oldest beyond MaxSkippedKeys.
func (s *Session) commit(next chainState, add []skippedKey, drops []chainSpan) {
	s.st = next
	over := len(s.skipped.order) + len(add) - MaxSkippedKeys
	for over > 0 && len(s.skipped.order) > 0 {
		id := s.skipped.popFront()
		s.st.recordEvicted(id.dh, span{id.n, id.n + 1})
		over--
	}
	for _, d := range drops {
		s.st.recordEvicted(d.dh, d.s)
	}
	for _, k := range add {
		if over > 0 {
			s.st.recordEvicted(k.id.dh, span{k.id.n, k.id.n + 1})
			over--
			continue
		}
		s.skipped.push(k)
	}
}
