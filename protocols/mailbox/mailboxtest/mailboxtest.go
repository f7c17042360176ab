// Package mailboxtest turns an honest mailbox relay into a misbehaving one for tests, in the spirit of
// net/http/httptest: Misbehave wraps the relay's streams so that it drops, duplicates, reorders, replays,
// tampers with or truncates what it serves, while its receipts stay genuinely signed.
package mailboxtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-msgio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/mailbox"
	"github.com/madang-p2p/madang/protocols/mailbox/pb"
)

// Modes are the misbehaviours Misbehave knows.
var Modes = []string{"drop", "duplicate", "reorder", "replay", "tamper", "truncate"}

// maxFrame bounds one frame read from or written to a wrapped stream.
const maxFrame = 8 << 20

// Misbehave replaces h's mailbox handler with svc behind a wrapper acting out mode:
//
//	drop       takes deposits (signed receipts) but never serves them
//	duplicate  serves every item twice
//	reorder    serves each page backwards
//	replay     ignores acks (claims to delete) and serves the same items again on every drain
//	tamper     flips a bit in every sealed item it serves
//	truncate   cuts every sealed item in half and serves only the first half of each page
func Misbehave(h host.Host, svc *mailbox.Service, mode string) error {
	if !slices.Contains(Modes, mode) {
		return errors.New("mailboxtest: unknown mode " + mode)
	}
	h.SetStreamHandler(mailbox.ProtocolID, func(s network.Stream) {
		svc.HandleStream(&stream{Stream: s, mode: mode, r: msgio.NewVarintReaderSize(s, maxFrame)})
	})
	return nil
}

// stream sits between the relay's service and the peer: requests are read frame by frame (replay answers
// acks itself), responses are reassembled into frames, altered and written on.
type stream struct {
	network.Stream
	mode string
	r    msgio.ReadCloser
	in   bytes.Buffer // request frames for the service
	out  []byte       // response bytes from the service not yet a whole frame
	mu   sync.Mutex
}

func (s *stream) Read(p []byte) (int, error) {
	for s.in.Len() == 0 {
		frame, err := s.r.ReadMsg()
		if err != nil {
			return 0, err
		}
		var req pb.Request
		if s.mode == "replay" && proto.Unmarshal(frame, &req) == nil && req.GetAck() != nil {
			resp := &pb.Response{Result: &pb.Response_Acked{Acked: &pb.Acked{Deleted: uint32(len(req.GetAck().Ids))}}}
			if err := s.writeFrame(resp); err != nil {
				return 0, err
			}
			continue
		}
		s.in.Write(binary.AppendUvarint(nil, uint64(len(frame))))
		s.in.Write(frame)
	}
	return s.in.Read(p)
}

func (s *stream) Write(p []byte) (int, error) {
	s.out = append(s.out, p...)
	for {
		n, k := binary.Uvarint(s.out)
		if k <= 0 || uint64(len(s.out)-k) < n {
			return len(p), nil
		}
		if n > maxFrame {
			return 0, errors.New("mailboxtest: frame too large")
		}
		frame := s.out[k : k+int(n)]
		var resp pb.Response
		if err := proto.Unmarshal(frame, &resp); err != nil {
			return 0, err
		}
		if items := resp.GetItems(); items != nil {
			alter(s.mode, items)
		}
		if err := s.writeFrame(&resp); err != nil {
			return 0, err
		}
		s.out = s.out[k+int(n):]
	}
}

func (s *stream) writeFrame(m proto.Message) error {
	raw, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err = s.Stream.Write(append(binary.AppendUvarint(nil, uint64(len(raw))), raw...))
	return err
}

func alter(mode string, p *pb.Items) {
	switch mode {
	case "drop":
		p.Items, p.More = nil, false
	case "duplicate":
		var out []*pb.Item
		for _, it := range p.Items {
			out = append(out, it, proto.Clone(it).(*pb.Item))
		}
		p.Items = out
	case "reorder":
		slices.Reverse(p.Items)
	case "tamper":
		for _, it := range p.Items {
			it.Sealed = bytes.Clone(it.Sealed)
			it.Sealed[len(it.Sealed)/2] ^= 0x10
		}
	case "truncate":
		p.Items = p.Items[:len(p.Items)/2]
		p.More = false
		for _, it := range p.Items {
			it.Sealed = it.Sealed[:len(it.Sealed)/2]
		}
	}
}
