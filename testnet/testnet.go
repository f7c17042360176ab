// Package testnet starts full Madang nodes in-process for tests: real libp2p hosts on 127.0.0.1 with temporary
// homes (transports, relay, the HTTP API), or nodes on a mocknet (protocol logic at scale). Every node runs the
// same assembly as the daemon (node.New + Run).
package testnet

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/node"
)

// Options shape the nodes of a network.
type Options struct {
	// Configure edits node i's config before it starts (role, relays, bootstrap …).
	Configure func(i int, cfg *config.Config)
	// Features limits the features started (nil = all registered).
	Features []string
	// NodeOptions are extra node options for node i.
	NodeOptions func(i int) []node.Option
}

// Node is one running test node.
type Node struct {
	*node.Node
	Home   string
	Client *apiclient.Client
	t      testing.TB
	cfg    config.Config
	opts   Options
	index  int
	mn     mocknet.Mocknet
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
}

// DefaultConfig is the config of a loopback test node: TCP on 127.0.0.1 port 0, API on a random port, DHT
// server mode (so that small networks route), no AutoNAT.
func DefaultConfig() config.Config {
	cfg := config.Default()
	cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	cfg.API.Listen = "127.0.0.1:0"
	cfg.DHT.Mode = "server"
	cfg.Network.AutoNAT = false
	cfg.Network.HolePunching = false
	cfg.Log.Level = "warn"
	return cfg
}

// Start starts n loopback nodes with temporary homes; they are stopped at test cleanup.
func Start(t testing.TB, n int, o Options) []*Node {
	t.Helper()
	out := make([]*Node, n)
	for i := range n {
		cfg := DefaultConfig()
		if o.Configure != nil {
			o.Configure(i, &cfg)
		}
		tn := &Node{t: t, cfg: cfg, opts: o, index: i, Home: t.TempDir()}
		if _, err := identity.Create(config.PathsFor(tn.Home).Identity, fmt.Sprintf("node%d", i)); err != nil {
			t.Fatalf("testnet: identity: %v", err)
		}
		if err := node.EnsureToken(config.PathsFor(tn.Home).Token); err != nil {
			t.Fatalf("testnet: token: %v", err)
		}
		tn.start()
		out[i] = tn
	}
	return out
}

func (tn *Node) start() {
	t := tn.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	opts := []node.Option{node.WithFeatures(tn.opts.Features...)}
	if tn.opts.Features == nil {
		opts = nil
	}
	if tn.opts.NodeOptions != nil {
		opts = append(opts, tn.opts.NodeOptions(tn.index)...)
	}
	if tn.mn != nil {
		opts = append(opts, node.WithoutAPI())
	}
	nd, err := node.New(ctx, tn.Home, tn.cfg, opts...)
	if err != nil {
		cancel()
		t.Fatalf("testnet: node %d: %v", tn.index, err)
	}
	tn.mu.Lock()
	tn.Node, tn.cancel, tn.done = nd, cancel, make(chan error, 1)
	tn.mu.Unlock()
	go func(done chan error) { done <- nd.Run(ctx) }(tn.done)
	if nd.APIAddr() != "" {
		tok, err := readToken(tn.Home)
		if err != nil {
			t.Fatalf("testnet: %v", err)
		}
		tn.Client = apiclient.New(nd.APIAddr(), tok)
	}
	t.Cleanup(func() { tn.Stop() })
}

// Stop stops the node and waits for it (idempotent). It fails the test if shutdown errs or takes over 5 s.
func (tn *Node) Stop() {
	tn.mu.Lock()
	cancel, done := tn.cancel, tn.done
	tn.cancel = nil
	tn.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			tn.t.Errorf("testnet: node %d stopped with error: %v", tn.index, err)
		}
	case <-time.After(5 * time.Second):
		tn.t.Errorf("testnet: node %d did not stop within 5s", tn.index)
	}
}

// Restart stops the node and starts it again on the same home (same identity and store; new port). Loopback
// nodes only: a mocknet node's host and in-memory store do not survive Stop.
func (tn *Node) Restart() {
	tn.Stop()
	tn.start()
}

// Addr is a dialable multiaddr of the node (first address, with /p2p/).
func (tn *Node) Addr() string {
	info := tn.AddrInfo()
	return info.Addrs[0].Encapsulate(ma.StringCast("/p2p/" + info.ID.String())).String()
}

// AddrInfo is the node's peer.AddrInfo.
func (tn *Node) AddrInfo() peer.AddrInfo {
	return peer.AddrInfo{ID: tn.Host.ID(), Addrs: tn.Host.Addrs()}
}

// Connect connects a to b and fails the test on error.
func Connect(t testing.TB, a, b *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := a.Host.Connect(ctx, b.AddrInfo()); err != nil {
		t.Fatalf("testnet: connect %d→%d: %v", a.index, b.index, err)
	}
}

// ConnectAll connects every pair of nodes.
func ConnectAll(t testing.TB, nodes []*Node) {
	t.Helper()
	for i := range nodes {
		for j := i + 1; j < len(nodes); j++ {
			Connect(t, nodes[i], nodes[j])
		}
	}
}

// Long reports whether long soak/attack variants should run (MADANG_LONG=1, or `go test ... -args -long` in
// a package that defines that flag).
func Long() bool {
	if os.Getenv("MADANG_LONG") == "1" {
		return true
	}
	f := flag.Lookup("long")
	return f != nil && f.Value.String() == "true"
}

// Eventually polls cond every 20 ms until it holds or timeout passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testnet: condition not met within %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Mocknet starts n nodes on an in-memory mocknet (no API listener, in-memory stores) with links between
// every pair but no connections; connect them with ConnectMock or mn.ConnectAllButSelf(). Use it for
// protocol logic at scale; anything about transports or relays needs Start.
func Mocknet(t testing.TB, n int, o Options) (mocknet.Mocknet, []*Node) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	out := make([]*Node, n)
	for i := range n {
		cfg := DefaultConfig()
		cfg.Listen = nil
		if o.Configure != nil {
			o.Configure(i, &cfg)
		}
		id, err := identity.New(fmt.Sprintf("mock%d", i))
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(id.HostKey(), ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.%d/tcp/4040", i>>16&0xff, i>>8&0xff, i&0xff)))
		if err != nil {
			t.Fatalf("testnet: mock peer: %v", err)
		}
		tn := &Node{t: t, cfg: cfg, opts: o, index: i, mn: mn}
		prev := o.NodeOptions
		tn.opts.NodeOptions = func(i int) []node.Option {
			opts := []node.Option{node.WithHost(h), node.WithIdentity(id)}
			if prev != nil {
				opts = append(opts, prev(i)...)
			}
			return opts
		}
		tn.start()
		out[i] = tn
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatalf("testnet: link: %v", err)
	}
	return mn, out
}

func readToken(home string) (string, error) {
	raw, err := os.ReadFile(config.PathsFor(home).Token)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(raw)), nil
}
