package feedsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/feedsync/pb"
)

var chanKey = bytes.Repeat([]byte{7}, KeySize)

// memSource keeps n entries of one channel: entry i is "entry i".
type memSource struct {
	n    int
	skip map[uint64]bool
}

func (m *memSource) Info(ch []byte) (Info, bool) {
	if !bytes.Equal(ch, chanKey) {
		return Info{}, false
	}
	return Info{Head: []byte("head"), Profile: []byte("profile"), HaveSeq: uint64(m.n)}, true
}

func (m *memSource) Entries(_ context.Context, _ []byte, from uint64, limit int, fn func(uint64, []byte) error) error {
	for s := from; s <= uint64(m.n) && limit > 0; s++ {
		if m.skip[s] {
			return nil
		}
		if err := fn(s, []byte(fmt.Sprintf("entry %d", s))); err != nil {
			return err
		}
		limit--
	}
	return nil
}

func pair(t *testing.T, src Source) (host.Host, host.Host) {
	t.Helper()
	mn, err := mocknet.FullMeshConnected(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mn.Close() })
	hs := mn.Hosts()
	srv := NewServer(t.Context(), hs[0], src, nil)
	t.Cleanup(srv.Close)
	return hs[0], hs[1]
}

func TestFetchPagesAndResumes(t *testing.T) {
	server, client := pair(t, &memSource{n: 10})
	sess, err := Open(t.Context(), client, server.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	var got []string
	from := uint64(1)
	pages := 0
	for {
		pg, err := sess.Fetch(t.Context(), chanKey, from, 4, func(raw []byte) error {
			got = append(got, string(raw))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if string(pg.Info.Head) != "head" || pg.Info.HaveSeq != 10 {
			t.Fatalf("info %+v", pg.Info)
		}
		if !pg.More {
			break
		}
		from = pg.LastSeq + 1
	}
	if pages != 3 || len(got) != 10 || got[9] != "entry 10" {
		t.Fatalf("%d pages, %d entries", pages, len(got))
	}
	// A new session resumes from any seq.
	sess2, _ := Open(t.Context(), client, server.ID())
	defer sess2.Close()
	pg, err := sess2.Fetch(t.Context(), chanKey, 9, 100, func([]byte) error { return nil })
	if err != nil || pg.Count != 2 || pg.More || pg.LastSeq != 10 {
		t.Fatalf("resume: %v %+v", err, pg)
	}
	// Nothing after the end.
	pg, err = sess2.Fetch(t.Context(), chanKey, 11, 100, func([]byte) error { return nil })
	if err != nil || pg.Count != 0 || pg.More {
		t.Fatalf("past the end: %v %+v", err, pg)
	}
}

func TestUnknownChannelAndCallerAbort(t *testing.T) {
	server, client := pair(t, &memSource{n: 3})
	sess, err := Open(t.Context(), client, server.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if _, err := sess.Fetch(t.Context(), bytes.Repeat([]byte{1}, KeySize), 1, 10, func([]byte) error { return nil }); !errors.Is(err, ErrUnknownChannel) {
		t.Fatalf("unknown channel: %v", err)
	}
	// The session stays usable after "unknown".
	if _, err := sess.Fetch(t.Context(), chanKey, 1, 10, func([]byte) error { return nil }); err != nil {
		t.Fatalf("after unknown: %v", err)
	}
	boom := errors.New("bad entry")
	if _, err := sess.Fetch(t.Context(), chanKey, 1, 10, func([]byte) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("abort: %v", err)
	}
}

// A server that sends more than asked, frames out of order or oversized entries is cut off.
func TestReadPageRejectsProtocolViolations(t *testing.T) {
	frame := func(ms ...*pb.Response) []byte {
		var b bytes.Buffer
		w := pbio.NewDelimitedWriter(&b)
		for _, m := range ms {
			if err := w.WriteMsg(m); err != nil {
				t.Fatal(err)
			}
		}
		return b.Bytes()
	}
	ok := &pb.Response{Msg: &pb.Response_Header{Header: &pb.Header{Status: pb.Status_STATUS_OK}}}
	entry := &pb.Response{Msg: &pb.Response_Entry{Entry: []byte("e")}}
	end := &pb.Response{Msg: &pb.Response_End{End: &pb.End{}}}
	for name, c := range map[string][]byte{
		"no header":      frame(entry, end),
		"too many":       frame(ok, entry, entry, entry, end),
		"second header":  frame(ok, ok, end),
		"bad status":     frame(&pb.Response{Msg: &pb.Response_Header{Header: &pb.Header{Status: pb.Status_STATUS_BAD_REQUEST}}}),
		"truncated":      frame(ok, entry)[:5],
		"oversize frame": append([]byte{0xff, 0xff, 0xff, 0x7f}, make([]byte, 10)...),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := readPage(pbio.NewDelimitedReader(bytes.NewReader(c), MaxFrameBytes), 2, func([]byte) error { return nil })
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if pg, err := readPage(pbio.NewDelimitedReader(bytes.NewReader(frame(ok, entry, entry, end)), MaxFrameBytes), 2, func([]byte) error { return nil }); err != nil || pg.Count != 2 {
		t.Fatalf("valid page: %v %+v", err, pg)
	}
}

func FuzzReadPage(f *testing.F) {
	var b bytes.Buffer
	w := pbio.NewDelimitedWriter(&b)
	_ = w.WriteMsg(&pb.Response{Msg: &pb.Response_Header{Header: &pb.Header{Status: pb.Status_STATUS_OK, HaveSeq: 3}}})
	_ = w.WriteMsg(&pb.Response{Msg: &pb.Response_Entry{Entry: []byte("entry")}})
	_ = w.WriteMsg(&pb.Response{Msg: &pb.Response_End{End: &pb.End{LastSeq: 1, More: true}}})
	f.Add(b.Bytes())
	f.Add([]byte{})
	f.Add([]byte{0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		n := 0
		pg, err := readPage(pbio.NewDelimitedReader(bytes.NewReader(raw), MaxFrameBytes), 4, func(e []byte) error {
			if len(e) > MaxEntryBytes {
				t.Fatal("oversized entry passed on")
			}
			n++
			return nil
		})
		if err == nil && (pg.Count != n || n > 4) {
			t.Fatalf("count %d, passed %d", pg.Count, n)
		}
	})
}

func FuzzServeRequest(f *testing.F) {
	req, _ := proto.Marshal(&pb.Request{Channel: chanKey, FromSeq: 1, Limit: 2})
	f.Add(req)
	f.Add([]byte{0x10, 0x00})
	src := &memSource{n: 5}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r pb.Request
		if proto.Unmarshal(raw, &r) != nil {
			return
		}
		var b bytes.Buffer
		s := &Server{src: src}
		if err := s.serve(context.Background(), pbio.NewDelimitedWriter(&b), &r); err != nil {
			t.Fatal(err)
		}
		if _, err := readPage(pbio.NewDelimitedReader(&b, MaxFrameBytes), MaxLimit, func([]byte) error { return nil }); err != nil && !errors.Is(err, ErrUnknownChannel) && !errors.Is(err, ErrProtocol) {
			t.Fatalf("the server's own answer does not read back: %v", err)
		}
	})
}
