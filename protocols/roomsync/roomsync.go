// Package roomsync is the history protocol of Open Chat rooms (/madang/room-sync/1.0.0): a node that joins
// a room, comes back online or meets a room peer again asks that peer (a member, or a relay that keeps the
// room) for the room's manifests, moderation log and a page of messages. One request, one response, on a
// fresh stream; bounded on both sides. This package moves bytes; package room decides what to serve and
// verifies every element it receives.
package roomsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/madang-p2p/madang/protocols/roomsync/pb"
)

// ProtocolID is the stream protocol of room history sync.
const ProtocolID = "/madang/room-sync/1.0.0"

// Limits.
const (
	MaxRequestBytes  = 1 << 10
	MaxResponseBytes = 2 << 20 // a page is cut at PageBytes; this leaves room for the manifests and log
	PageBytes        = 1 << 20 // messages per response, in bytes
	MaxLimit         = 500     // messages per response
	MaxModeration    = 1000    // moderation entries per response
	StreamTimeout    = 10 * time.Second
	serveTimeout     = 30 * time.Second
)

// Errors of Fetch. A Handler returns ErrLinkRequired to tell the requester so; any other error resets
// the stream (ErrRefused at the requester).
var (
	ErrRefused      = errors.New("roomsync: refused")
	ErrLinkRequired = errors.New("roomsync: the room is joined by link only")
)

const codeLinkRequired = "link_required"

// Handler answers one request from remote. It returns an error to refuse (the stream is reset).
type Handler func(ctx context.Context, remote peer.ID, req *pb.Request) (*pb.Response, error)

// Register serves h on the host until RemoveStreamHandler(ProtocolID). ctx bounds every answer.
func Register(ctx context.Context, hst host.Host, h Handler) {
	hst.SetStreamHandler(ProtocolID, func(s network.Stream) {
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(serveTimeout))
		var req pb.Request
		if err := pbio.NewDelimitedReader(s, MaxRequestBytes).ReadMsg(&req); err != nil {
			_ = s.Reset()
			return
		}
		if req.Limit > MaxLimit {
			req.Limit = MaxLimit
		}
		sctx, cancel := context.WithTimeout(ctx, serveTimeout)
		defer cancel()
		resp, err := h(sctx, s.Conn().RemotePeer(), &req)
		if errors.Is(err, ErrLinkRequired) {
			resp, err = &pb.Response{Error: codeLinkRequired}, nil
		}
		if err != nil || resp == nil {
			_ = s.Reset()
			return
		}
		if err := pbio.NewDelimitedWriter(s).WriteMsg(resp); err != nil {
			_ = s.Reset()
		}
	})
}

// Fetch sends req to p and reads the answer, within StreamTimeout (and ctx).
func Fetch(ctx context.Context, hst host.Host, p peer.ID, req *pb.Request) (*pb.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, StreamTimeout)
	defer cancel()
	s, err := hst.NewStream(ctx, p, ProtocolID)
	if err != nil {
		return nil, fmt.Errorf("room sync %s: %w", p, err)
	}
	defer s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	if err := pbio.NewDelimitedWriter(s).WriteMsg(req); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("room sync %s: write: %w", p, err)
	}
	_ = s.CloseWrite()
	var resp pb.Response
	if err := pbio.NewDelimitedReader(s, MaxResponseBytes).ReadMsg(&resp); err != nil {
		_ = s.Reset()
		if errors.Is(err, network.ErrReset) {
			return nil, fmt.Errorf("room sync %s: %w", p, ErrRefused)
		}
		return nil, fmt.Errorf("room sync %s: read: %w", p, err)
	}
	switch resp.Error {
	case "":
		return &resp, nil
	case codeLinkRequired:
		return nil, fmt.Errorf("room sync %s: %w", p, ErrLinkRequired)
	}
	return nil, fmt.Errorf("room sync %s: %w (%.64q)", p, ErrRefused, resp.Error)
}
