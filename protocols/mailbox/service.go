package mailbox

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

const (
	// streamIdle is how long a stream may wait for the next request.
	streamIdle = 30 * time.Second
	// maxRequestsPerStream bounds one stream; a client opens another for more.
	maxRequestsPerStream = 4096
	maxFetchLimit        = 1024
	// maxLimiters bounds the rate limiter tables; idle entries are pruned.
	maxLimiters = 100_000
)

// ServiceOptions configure the relay side.
type ServiceOptions struct {
	// DepositsPerMinute is the rate accepted per sending peer and per capability (burst: a sixth of it,
	// at least 10).
	DepositsPerMinute int
	Log               *slog.Logger
	Now               func() time.Time
	// OnDeposit is called after each stored (non-duplicate) deposit with its size; metrics hook.
	OnDeposit func(bytes int)
	// OnDelete is called with the number of items an owner deleted or the sweeper expired.
	OnDelete func(acked, expired int)
}

// Service is the relay side of /madang/mailbox/1.0.0.
type Service struct {
	ctx   context.Context // lifetime of the service: bounds storage scans of stream handlers
	h     host.Host
	st    *Store
	o     ServiceOptions
	log   *slog.Logger
	sign  func([]byte) ([]byte, error)
	peers *limiters
	caps  *limiters

	refusals sync.Map // reason → *atomic.Uint64
}

// NewService serves the mailbox protocol on h from st until ctx ends or Close is called.
func NewService(ctx context.Context, h host.Host, st *Store, o ServiceOptions) (*Service, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.DepositsPerMinute <= 0 {
		o.DepositsPerMinute = 600
	}
	priv := h.Peerstore().PrivKey(h.ID())
	if priv == nil {
		return nil, errors.New("mailbox: host has no private key")
	}
	per := rate.Limit(float64(o.DepositsPerMinute) / 60)
	burst := max(10, o.DepositsPerMinute/6)
	s := &Service{
		ctx: ctx, h: h, st: st, o: o, log: o.Log.With("component", "mailbox"), sign: priv.Sign,
		peers: newLimiters(per, burst), caps: newLimiters(per, burst),
	}
	for _, r := range RefusalReasons() {
		s.refusals.Store(r, new(atomic.Uint64))
	}
	h.SetStreamHandler(ProtocolID, s.handle)
	return s, nil
}

// Close stops serving the protocol.
func (s *Service) Close() { s.h.RemoveStreamHandler(ProtocolID) }

// Store is the service's store.
func (s *Service) Store() *Store { return s.st }

// Refusals returns the number of refused requests by reason since start.
func (s *Service) Refusals() map[string]uint64 {
	out := map[string]uint64{}
	s.refusals.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}

// Run sweeps expired items every interval (a minute, or less for short TTLs) and prunes idle rate limiters
// until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	every := min(time.Minute, max(s.st.Limits().TTL/4, time.Second))
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := s.st.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("Mailbox sweep failed", "err", err)
		} else if n > 0 {
			s.log.Debug("Mailbox items expired", "items", n)
			if s.o.OnDelete != nil {
				s.o.OnDelete(0, n)
			}
		}
		s.peers.prune(s.o.Now())
		s.caps.prune(s.o.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// session is the state of one stream.
type session struct {
	remote peer.ID
	owner  ed25519.PublicKey // set by Open
	nonce  []byte            // challenge sent, awaiting Auth
	authed bool
	mb     MailboxID
}

// HandleStream serves one mailbox stream (NewService registers it on the host). It is exported so that the
// service can be mounted behind a wrapper, as package mailboxtest does to inject faults.
func (s *Service) HandleStream(str network.Stream) { s.handle(str) }

func (s *Service) handle(str network.Stream) {
	defer func() { _ = str.Close() }()
	r := pbio.NewDelimitedReader(str, maxRequestBytes)
	w := pbio.NewDelimitedWriter(str)
	sess := &session{remote: str.Conn().RemotePeer()}
	for range maxRequestsPerStream {
		_ = str.SetDeadline(time.Now().Add(streamIdle))
		var req pb.Request
		if err := r.ReadMsg(&req); err != nil {
			return
		}
		resp, fatal := s.dispatch(s.ctx, sess, &req)
		if e := resp.GetError(); e != nil {
			s.refused(e.Code)
		}
		if err := w.WriteMsg(resp); err != nil || fatal {
			return
		}
	}
}

func (s *Service) refused(c pb.Code) {
	if v, ok := s.refusals.Load(codeName(c)); ok {
		v.(*atomic.Uint64).Add(1)
	}
}

func refusal(c pb.Code, msg string) *pb.Response {
	return &pb.Response{Result: &pb.Response_Error{Error: &pb.Error{Code: c, Message: msg}}}
}

func rateLimited(wait time.Duration) *pb.Response {
	return &pb.Response{Result: &pb.Response_Error{Error: &pb.Error{
		Code: pb.Code_CODE_RATE_LIMITED, Message: "too many requests", RetryAfterMs: uint64(max(wait, time.Millisecond).Milliseconds()),
	}}}
}

// dispatch answers one request; fatal ends the stream after the answer.
func (s *Service) dispatch(ctx context.Context, sess *session, req *pb.Request) (resp *pb.Response, fatal bool) {
	switch op := req.Op.(type) {
	case *pb.Request_Deposit:
		return s.deposit(sess, op.Deposit), false
	case *pb.Request_Open:
		if ok, wait := s.peers.allow(string(sess.remote), s.o.Now()); !ok {
			return rateLimited(wait), true
		}
		if len(op.Open.OwnerKey) != ed25519.PublicKeySize || sess.owner != nil {
			return refusal(pb.Code_CODE_BAD_REQUEST, "bad open"), true
		}
		sess.owner = op.Open.OwnerKey
		sess.mb = MailboxIDOf(sess.owner)
		sess.nonce = make([]byte, nonceLen)
		_, _ = rand.Read(sess.nonce)
		return &pb.Response{Result: &pb.Response_Challenge{Challenge: &pb.Challenge{Nonce: sess.nonce}}}, false
	case *pb.Request_Auth:
		if sess.nonce == nil || sess.authed ||
			!ed25519.Verify(sess.owner, authMessage(s.h.ID(), sess.nonce, sess.owner), op.Auth.Signature) {
			return refusal(pb.Code_CODE_UNAUTHENTICATED, "challenge not answered by the mailbox owner"), true
		}
		sess.authed, sess.nonce = true, nil
		items, bytes := s.st.MailboxStats(sess.mb)
		return &pb.Response{Result: &pb.Response_Session{Session: &pb.Session{Items: items, Bytes: bytes}}}, false
	case *pb.Request_Fetch:
		if !sess.authed {
			return refusal(pb.Code_CODE_UNAUTHENTICATED, "fetch needs an owner session"), true
		}
		limit := int(op.Fetch.Limit)
		if limit <= 0 || limit > maxFetchLimit {
			limit = maxFetchLimit
		}
		maxBytes := int(min(op.Fetch.MaxBytes, maxPageBytes))
		if maxBytes <= 0 {
			maxBytes = maxPageBytes
		}
		p, err := s.st.List(ctx, sess.mb, op.Fetch.After, limit, maxBytes)
		if err != nil {
			s.log.Warn("Mailbox list failed", "err", err)
			return refusal(pb.Code_CODE_INTERNAL, "storage error"), true
		}
		return &pb.Response{Result: &pb.Response_Items{Items: &pb.Items{
			Items: p.Items, More: p.More, Total: uint64(p.Total), Cursor: p.Cursor,
		}}}, false
	case *pb.Request_Ack:
		if !sess.authed {
			return refusal(pb.Code_CODE_UNAUTHENTICATED, "ack needs an owner session"), true
		}
		if len(op.Ack.Ids) > maxFetchLimit {
			return refusal(pb.Code_CODE_BAD_REQUEST, "too many ids"), true
		}
		n, err := s.st.Delete(sess.mb, op.Ack.Ids)
		if err != nil {
			s.log.Warn("Mailbox delete failed", "err", err)
			return refusal(pb.Code_CODE_INTERNAL, "storage error"), true
		}
		if s.o.OnDelete != nil && n > 0 {
			s.o.OnDelete(n, 0)
		}
		return &pb.Response{Result: &pb.Response_Acked{Acked: &pb.Acked{Deleted: uint32(n)}}}, false
	case *pb.Request_Revoke:
		if !sess.authed {
			return refusal(pb.Code_CODE_UNAUTHENTICATED, "revoke needs an owner session"), true
		}
		if len(op.Revoke.CapIds) > maxFetchLimit {
			return refusal(pb.Code_CODE_BAD_REQUEST, "too many ids"), true
		}
		if err := s.st.Revoke(sess.mb, op.Revoke.CapIds); err != nil {
			return refusal(pb.Code_CODE_INTERNAL, "storage error"), true
		}
		return &pb.Response{Result: &pb.Response_Acked{Acked: &pb.Acked{Deleted: uint32(len(op.Revoke.CapIds))}}}, false
	}
	return refusal(pb.Code_CODE_BAD_REQUEST, "unknown request"), true
}

func (s *Service) deposit(sess *session, d *pb.Deposit) *pb.Response {
	now := s.o.Now()
	if ok, wait := s.peers.allow(string(sess.remote), now); !ok {
		return rateLimited(wait)
	}
	c, err := VerifyCapability(d.Capability, now)
	if err != nil {
		return refusal(pb.Code_CODE_NO_CAPABILITY, "a deposit needs a capability from the mailbox owner")
	}
	if len(d.ItemId) != idLen || len(d.Sealed) == 0 {
		return refusal(pb.Code_CODE_BAD_REQUEST, "bad item")
	}
	if len(d.Sealed) > s.st.Limits().MaxItemBytes {
		return refusal(pb.Code_CODE_TOO_LARGE, fmt.Sprintf("items are limited to %d bytes", s.st.Limits().MaxItemBytes))
	}
	if revoked, err := s.st.Revoked(c.Mailbox, c.ID); err != nil {
		return refusal(pb.Code_CODE_INTERNAL, "storage error")
	} else if revoked {
		return refusal(pb.Code_CODE_REVOKED, "the mailbox owner revoked this capability")
	}
	if ok, wait := s.caps.allow(string(c.Mailbox[:])+string(c.ID), now); !ok {
		return rateLimited(wait)
	}
	stored, err := s.st.Put(c.Mailbox, d.ItemId, d.Sealed)
	switch {
	case errors.Is(err, errQuotaItems):
		return refusal(pb.Code_CODE_QUOTA_ITEMS, err.Error())
	case errors.Is(err, errQuotaBytes):
		return refusal(pb.Code_CODE_QUOTA_BYTES, err.Error())
	case errors.Is(err, errRelayFull):
		return refusal(pb.Code_CODE_RELAY_FULL, err.Error())
	case errors.Is(err, errItemLarge):
		return refusal(pb.Code_CODE_TOO_LARGE, err.Error())
	case err != nil:
		s.log.Warn("Mailbox deposit failed", "err", err)
		return refusal(pb.Code_CODE_INTERNAL, "storage error")
	}
	h := sha256.Sum256(stored.Sealed)
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&pb.ReceiptBody{
		Version: 1, RelayPeer: []byte(s.h.ID()), MailboxId: c.Mailbox[:], ItemId: d.ItemId, SealedHash: h[:],
		StoredUnix: stored.At.Unix(), ExpiresUnix: stored.Expires.Unix(), Duplicate: stored.Duplicate,
	})
	if err != nil {
		return refusal(pb.Code_CODE_INTERNAL, "receipt")
	}
	sig, err := s.sign(signedMessage(domainReceipt, body))
	if err != nil {
		return refusal(pb.Code_CODE_INTERNAL, "receipt")
	}
	raw, err := proto.Marshal(&pb.Signed{Body: body, Signature: sig})
	if err != nil {
		return refusal(pb.Code_CODE_INTERNAL, "receipt")
	}
	if !stored.Duplicate && s.o.OnDeposit != nil {
		s.o.OnDeposit(len(d.Sealed))
	}
	return &pb.Response{Result: &pb.Response_Receipt{Receipt: raw}}
}

// limiters is a table of token buckets keyed by peer or capability, pruned when idle.
type limiters struct {
	mu    sync.Mutex
	per   rate.Limit
	burst int
	m     map[string]*limiterEntry
}

type limiterEntry struct {
	l    *rate.Limiter
	seen time.Time
}

func newLimiters(per rate.Limit, burst int) *limiters {
	return &limiters{per: per, burst: burst, m: map[string]*limiterEntry{}}
}

// allow takes a token for key; when none is left it reports how long to wait.
func (l *limiters) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[key]
	if e == nil {
		if len(l.m) >= maxLimiters {
			return false, time.Second
		}
		e = &limiterEntry{l: rate.NewLimiter(l.per, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	if e.l.AllowN(now, 1) {
		return true, 0
	}
	return false, time.Duration(float64(time.Second) / float64(l.per))
}

// prune drops buckets idle long enough to have refilled.
func (l *limiters) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	idle := time.Duration(float64(l.burst)/float64(l.per)*float64(time.Second)) + time.Minute
	for k, e := range l.m {
		if now.Sub(e.seen) > idle {
			delete(l.m, k)
		}
	}
}
