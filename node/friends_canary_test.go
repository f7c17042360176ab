package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	ds "github.com/ipfs/go-datastore"
	"github.com/ipfs/go-datastore/query"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/dm"
	"github.com/madang-p2p/madang/store"
	"github.com/madang-p2p/madang/testnet"
)

// tap records every byte written to or read from the streams of a host (mocknet streams are not
// encrypted, so this is what crosses the link).
type tap struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *tap) add(p []byte) {
	t.mu.Lock()
	t.buf.Write(p)
	t.mu.Unlock()
}

func (t *tap) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.buf.Bytes(), []byte(s))
}

type tapStream struct {
	network.Stream
	t *tap
}

func (s *tapStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	s.t.add(p[:n])
	return n, err
}

func (s *tapStream) Write(p []byte) (int, error) {
	s.t.add(p)
	return s.Stream.Write(p)
}

type tapHost struct {
	host.Host
	t *tap
}

func (h *tapHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		return nil, err
	}
	return &tapStream{Stream: s, t: h.t}, nil
}

func (h *tapHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(&tapStream{Stream: s, t: h.t}) })
}

func (h *tapHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, func(s network.Stream) { handler(&tapStream{Stream: s, t: h.t}) })
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestCanaryNeverLeaks: no plaintext of a message appears in any byte sent over the wire, in any log line, or
// anywhere in either node's store except the two conversation histories.
func TestCanaryNeverLeaks(t *testing.T) {
	mn := mocknet.New()
	defer mn.Close()
	wire := &tap{}
	logs := &syncBuffer{}
	var nodes []*node.Node
	for i := range 2 {
		id, err := identity.New(fmt.Sprintf("canary%d", i))
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(id.HostKey(), ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 4100+i)))
		if err != nil {
			t.Fatal(err)
		}
		cfg := testnet.DefaultConfig()
		cfg.Listen = nil
		fastRetries(i, &cfg)
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		ctx, cancel := context.WithCancel(t.Context())
		nd, err := node.New(ctx, "", cfg, node.WithHost(&tapHost{Host: h, t: wire}), node.WithIdentity(id),
			node.WithoutAPI(), node.WithLogger(log))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- nd.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node %d: %v", i, err)
			}
		})
		nodes = append(nodes, nd)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	a, b := nodes[0], nodes[1]
	rec, err := node.ContactService(a).CreateInvite(time.Hour, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := node.ContactService(b).AcceptInvite(t.Context(), rec.Link); err != nil || c.State != "friend" {
		t.Fatalf("accept: %v %v", c.State, err)
	}

	var canaries []string
	for i := range 6 {
		from, to := nodes[i%2], nodes[1-i%2]
		r := make([]byte, 12)
		_, _ = rand.Read(r)
		canary := "CANARY-" + hex.EncodeToString(r)
		canaries = append(canaries, canary)
		if _, err := node.DMService(from).Send(t.Context(), to.Identity.AccountID(), fmt.Sprintf("canary-msg-%d", i), canary); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		from, to := nodes[i%2], nodes[1-i%2]
		testnet.Eventually(t, 20*time.Second, func() bool {
			m, err := node.DMService(from).Message(to.Identity.AccountID(), "", fmt.Sprintf("canary-msg-%d", i))
			return err == nil && m.State == dm.StateDelivered
		}, "c%d delivered", i)
	}
	// Read receipts travel too.
	if _, err := node.DMService(b).MarkRead(t.Context(), a.Identity.AccountID(), ""); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 20*time.Second, func() bool {
		m, err := node.DMService(a).Message(b.Identity.AccountID(), "", "canary-msg-0")
		return err == nil && m.State == dm.StateRead
	}, "read receipt")

	for i := range canaries {
		if !wire.contains(fmt.Sprintf("canary-msg-%d", i)) {
			t.Fatalf("the tap did not see DM payload %d: the test would prove nothing", i)
		}
	}
	for _, c := range canaries {
		if wire.contains(c) {
			t.Errorf("canary %s crossed the wire in plaintext", c)
		}
		if strings.Contains(logs.String(), c) {
			t.Errorf("canary %s appears in the logs", c)
		}
	}
	for i, nd := range nodes {
		inHistory := 0
		for name := range store.Namespaces {
			res, err := nd.Store.Datastore(name).Query(t.Context(), query.Query{})
			if err != nil {
				t.Fatal(err)
			}
			entries, err := res.Rest()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				for _, c := range canaries {
					if !bytes.Contains(e.Value, []byte(c)) && !strings.Contains(e.Key, c) {
						continue
					}
					if name == "dm" && strings.HasPrefix(e.Key, ds.NewKey("/m/").String()) {
						inHistory++
						continue
					}
					t.Errorf("node %d: canary %s stored outside the history: %s/%s", i, c, name, e.Key)
				}
			}
		}
		if inHistory != len(canaries) {
			t.Errorf("node %d: %d canaries in the history, want %d (the scan would prove nothing)", i, inHistory, len(canaries))
		}
	}
}
