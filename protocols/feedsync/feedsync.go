// Package feedsync is /madang/feed-sync/1.0.0: fetching a channel's feed entries by seq range from any node
// that keeps the channel (the merchant, pinning relays, followers that mirror it).
//
// A stream carries a sequence of requests. Each Request{channel, from_seq, limit} is answered with a Header
// (what the server holds), up to limit entries in seq order, each exactly as stored (signed bytes), and an
// End. The package moves bytes only: the caller verifies every entry and its link (package feed), so a
// server can lie only by withholding, which the caller notices against the channel's signed head.
package feedsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/madang-p2p/madang/protocols/feedsync/pb"
)

// ProtocolID is the stream protocol.
const ProtocolID protocol.ID = "/madang/feed-sync/1.0.0"

// Limits.
const (
	// MaxEntryBytes bounds one signed entry (the feed's limit).
	MaxEntryBytes = 256 << 10
	// MaxFrameBytes bounds every frame read from the stream: one entry plus framing, or a header.
	MaxFrameBytes = MaxEntryBytes + 4<<10
	// MaxRequestBytes bounds a request frame.
	MaxRequestBytes = 512
	// MaxLimit is the most entries a server sends for one request.
	MaxLimit = 1024
	// KeySize is the size of a channel key.
	KeySize = 32
)

// Deadlines.
const (
	newStreamTimeout = 10 * time.Second
	idleTimeout      = 30 * time.Second
	pageTimeout      = 60 * time.Second
)

// Errors.
var (
	ErrUnknownChannel = errors.New("feedsync: the peer does not keep this channel")
	ErrProtocol       = errors.New("feedsync: protocol violation")
)

// Info is what a server reports about a channel.
type Info struct {
	Head    []byte // signed head record, may be nil
	Profile []byte // signed profile, may be nil
	HaveSeq uint64 // last seq of the server's contiguous log
}

// Source is what a server serves from: the node's feed store.
type Source interface {
	// Info reports whether the node keeps the channel, and what it holds.
	Info(channel []byte) (Info, bool)
	// Entries calls fn with the stored signed entries of channel from seq from on, in order, at most limit of
	// them, stopping at the first missing seq.
	Entries(ctx context.Context, channel []byte, from uint64, limit int, fn func(seq uint64, raw []byte) error) error
}

// Server answers feed-sync streams.
type Server struct {
	ctx context.Context
	h   host.Host
	src Source
	log *slog.Logger
}

// NewServer registers the protocol handler on h; ctx bounds the work of every stream. Close removes it.
func NewServer(ctx context.Context, h host.Host, src Source, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ctx: ctx, h: h, src: src, log: log.With("component", "feedsync")}
	h.SetStreamHandler(ProtocolID, s.handle)
	return s
}

// Close stops serving.
func (s *Server) Close() { s.h.RemoveStreamHandler(ProtocolID) }

func (s *Server) handle(st network.Stream) {
	defer st.Close()
	r := pbio.NewDelimitedReader(st, MaxRequestBytes)
	w := pbio.NewDelimitedWriter(st)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = st.Reset() })
	defer stop()
	for {
		_ = st.SetReadDeadline(time.Now().Add(idleTimeout))
		var req pb.Request
		if err := r.ReadMsg(&req); err != nil {
			if !errors.Is(err, io.EOF) {
				s.log.Debug("Feed sync read failed", "peer", st.Conn().RemotePeer(), "err", err)
				_ = st.Reset()
			}
			return
		}
		_ = st.SetWriteDeadline(time.Now().Add(pageTimeout))
		if err := s.serve(ctx, w, &req); err != nil {
			s.log.Debug("Feed sync write failed", "peer", st.Conn().RemotePeer(), "err", err)
			_ = st.Reset()
			return
		}
	}
}

func (s *Server) serve(ctx context.Context, w pbio.Writer, req *pb.Request) error {
	if len(req.Channel) != KeySize || req.FromSeq == 0 {
		return w.WriteMsg(&pb.Response{Msg: &pb.Response_Header{Header: &pb.Header{Status: pb.Status_STATUS_BAD_REQUEST}}})
	}
	info, ok := s.src.Info(req.Channel)
	if !ok {
		return w.WriteMsg(&pb.Response{Msg: &pb.Response_Header{Header: &pb.Header{Status: pb.Status_STATUS_UNKNOWN_CHANNEL}}})
	}
	if err := w.WriteMsg(&pb.Response{Msg: &pb.Response_Header{Header: &pb.Header{
		Status: pb.Status_STATUS_OK, Head: info.Head, Profile: info.Profile, HaveSeq: info.HaveSeq,
	}}}); err != nil {
		return err
	}
	limit := int(min(max(req.Limit, 1), MaxLimit))
	var last uint64
	err := s.src.Entries(ctx, req.Channel, req.FromSeq, limit, func(seq uint64, raw []byte) error {
		last = seq
		return w.WriteMsg(&pb.Response{Msg: &pb.Response_Entry{Entry: raw}})
	})
	if err != nil {
		return err
	}
	more := last != 0 && last < info.HaveSeq
	return w.WriteMsg(&pb.Response{Msg: &pb.Response_End{End: &pb.End{LastSeq: last, More: more}}})
}

// Session is a client stream to one peer.
type Session struct {
	st   network.Stream
	r    pbio.ReadCloser
	w    pbio.WriteCloser
	peer peer.ID
}

// Open opens a session to p.
func Open(ctx context.Context, h host.Host, p peer.ID) (*Session, error) {
	sctx, cancel := context.WithTimeout(ctx, newStreamTimeout)
	defer cancel()
	st, err := h.NewStream(network.WithAllowLimitedConn(sctx, "feed-sync"), p, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("feed sync: open stream to %s: %w", p, err)
	}
	return &Session{st: st, r: pbio.NewDelimitedReader(st, MaxFrameBytes), w: pbio.NewDelimitedWriter(st), peer: p}, nil
}

// Peer is the session's remote peer.
func (s *Session) Peer() peer.ID { return s.peer }

// Close ends the session.
func (s *Session) Close() error { return s.st.Close() }

// Page is the answer to one Fetch.
type Page struct {
	Info    Info
	LastSeq uint64
	More    bool
	Count   int
}

// Fetch requests up to limit entries of channel from seq from on and calls fn with each raw entry in the order
// received. An error from fn aborts the session (the stream is reset). The caller verifies the entries.
func (s *Session) Fetch(ctx context.Context, channel []byte, from uint64, limit int, fn func(raw []byte) error) (Page, error) {
	if limit <= 0 || limit > MaxLimit {
		limit = MaxLimit
	}
	deadline := time.Now().Add(pageTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.st.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = s.st.Reset() })
	defer stop()
	fail := func(err error) (Page, error) {
		_ = s.st.Reset()
		if ctx.Err() != nil {
			return Page{}, ctx.Err()
		}
		return Page{}, err
	}
	if err := s.w.WriteMsg(&pb.Request{Channel: channel, FromSeq: from, Limit: uint32(limit)}); err != nil {
		return fail(fmt.Errorf("feed sync: send request: %w", err))
	}
	pg, err := readPage(s.r, limit, fn)
	switch {
	case errors.Is(err, ErrUnknownChannel):
		return pg, err
	case err != nil:
		return fail(err)
	}
	return pg, nil
}

// readPage reads one answer: a header, at most limit entries (each passed to fn), an end.
func readPage(r pbio.Reader, limit int, fn func(raw []byte) error) (Page, error) {
	var pg Page
	var resp pb.Response
	if err := r.ReadMsg(&resp); err != nil {
		return pg, fmt.Errorf("feed sync: read header: %w", err)
	}
	hdr := resp.GetHeader()
	if hdr == nil {
		return pg, fmt.Errorf("%w: expected a header", ErrProtocol)
	}
	switch hdr.Status {
	case pb.Status_STATUS_OK:
	case pb.Status_STATUS_UNKNOWN_CHANNEL:
		return pg, ErrUnknownChannel
	default:
		return pg, fmt.Errorf("%w: status %v", ErrProtocol, hdr.Status)
	}
	pg.Info = Info{Head: hdr.Head, Profile: hdr.Profile, HaveSeq: hdr.HaveSeq}
	for {
		resp.Reset()
		if err := r.ReadMsg(&resp); err != nil {
			return pg, fmt.Errorf("feed sync: read: %w", err)
		}
		switch m := resp.Msg.(type) {
		case *pb.Response_Entry:
			if pg.Count >= limit {
				return pg, fmt.Errorf("%w: more entries than requested", ErrProtocol)
			}
			if len(m.Entry) > MaxEntryBytes {
				return pg, fmt.Errorf("%w: entry of %d bytes", ErrProtocol, len(m.Entry))
			}
			pg.Count++
			if err := fn(m.Entry); err != nil {
				return pg, err
			}
		case *pb.Response_End:
			pg.LastSeq, pg.More = m.End.LastSeq, m.End.More
			return pg, nil
		default:
			return pg, fmt.Errorf("%w: unexpected frame", ErrProtocol)
		}
	}
}
