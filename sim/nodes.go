package sim

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/node"
)

// SimConfig is the config of a simulated Madang node: the daemon's defaults with no listeners of its own
// (the mocknet host is given), DHT server mode (every sim node routes, as every raw DHT node does), no
// AutoNAT or hole punching (nothing to traverse on a mocknet), and per-member room rate limits lifted so
// that a benchmark publisher may send at the offered rate.
func SimConfig() config.Config {
	cfg := config.Default()
	cfg.Listen = nil
	cfg.API.Listen = "127.0.0.1:0"
	cfg.DHT.Mode = "server"
	cfg.Network.AutoNAT = false
	cfg.Network.HolePunching = false
	cfg.Log.Level = "error"
	cfg.Rooms.RatePerMinute = 1 << 20
	cfg.Rooms.Burst = 1 << 16
	return cfg
}

func linkOptions(c Config) mocknet.LinkOptions {
	return mocknet.LinkOptions{Latency: c.Latency, Bandwidth: c.Bandwidth}
}

// ours is a network of full Madang nodes.
type ours struct {
	net     *Network
	topo    Topology
	nodes   []*node.Node
	ids     []*identity.Identity
	tracers []*Tracer
	cancel  context.CancelFunc
	done    []chan error
	heap0   uint64 // live heap before the nodes were built (network and links included)
	gor0    int    // goroutines then
}

// extraFn sets up host i (i >= the number of full nodes: spammers) before the topology is dialled.
type extraFn func(ctx context.Context, i int, h host.Host) error

func noExtra(context.Context, int, host.Host) error { return nil }

// netOpts shape the nodes of a run.
type netOpts struct {
	// prefix selects the topics whose messages the tracers count.
	prefix string
	// configure adjusts node i's config (Madang nodes); the network's hosts exist already.
	configure func(i int, cfg *config.Config, net *Network)
	// extra sets up the hosts beyond the n full nodes (hostile peers).
	extra extraFn
	// tracer adjusts node i's tracer before the node starts (hooks).
	tracer func(i int, t *Tracer)
	// topologyOnly links only the topology's edges from the start: nobody can dial outside it (see
	// Network.Restrict).
	topologyOnly bool
}

func (o netOpts) newTracer(i int) *Tracer {
	t := &Tracer{Prefix: o.prefix}
	if o.tracer != nil {
		o.tracer(i, t)
	}
	return t
}

// startOurs builds n full Madang nodes (every registered feature) on a fresh mocknet with topo.N hosts,
// runs them, sets up the hosts beyond n, and dials the topology.
func startOurs(ctx context.Context, c Config, n int, topo Topology, no netOpts) (_ *ours, err error) {
	o := &ours{topo: topo}
	keys := make([]crypto.PrivKey, max(n, topo.N))
	for i := range keys {
		id, err := identity.New(fmt.Sprintf("sim%d", i))
		if err != nil {
			return nil, err
		}
		o.ids = append(o.ids, id)
		keys[i] = id.HostKey()
	}
	if o.net, err = NewNetwork(keys, linkOptions(c)); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			o.close()
		}
	}()
	if no.topologyOnly {
		o.net.Restrict(topo)
	}
	o.heap0, o.gor0 = heapInUse(), goroutines()
	rctx, cancel := context.WithCancel(ctx)
	o.cancel = cancel
	for i := range n {
		cfg := SimConfig()
		if no.configure != nil {
			no.configure(i, &cfg, o.net)
		}
		tr := no.newTracer(i)
		opts := []node.Option{node.WithHost(o.net.Hosts[i]), node.WithIdentity(o.ids[i]), node.WithoutAPI(),
			node.WithGossipTracer(tr), node.WithLogger(c.Log.With("node", i))}
		nd, err := node.New(rctx, "", cfg, opts...)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
		done := make(chan error, 1)
		go func() { done <- nd.Run(rctx) }()
		o.nodes = append(o.nodes, nd)
		o.tracers = append(o.tracers, tr)
		o.done = append(o.done, done)
	}
	for i := n; i < len(keys); i++ {
		if err := no.extra(rctx, i, o.net.Hosts[i]); err != nil {
			return nil, err
		}
	}
	if err := o.net.Connect(ctx, topo); err != nil {
		return nil, err
	}
	return o, nil
}

// refreshDHT fills every node's routing table now (nodes refresh at start, before the sim dials them).
func refreshDHT(ctx context.Context, ds []*dht.IpfsDHT) {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			select {
			case <-d.RefreshRoutingTable():
			case <-ctx.Done():
			case <-time.After(60 * time.Second):
			}
		})
	}
	wg.Wait()
}

func (o *ours) dhts() []*dht.IpfsDHT {
	out := make([]*dht.IpfsDHT, len(o.nodes))
	for i, n := range o.nodes {
		out[i] = n.DHT
	}
	return out
}

// close stops every node and the mocknet.
func (o *ours) close() error {
	if o.cancel != nil {
		o.cancel()
	}
	var errs []error
	for i, d := range o.done {
		select {
		case err := <-d:
			if err != nil {
				errs = append(errs, fmt.Errorf("node %d: %w", i, err))
			}
		case <-time.After(10 * time.Second):
			errs = append(errs, fmt.Errorf("node %d did not stop within 10s", i))
		}
	}
	if o.net != nil {
		errs = append(errs, o.net.Close())
	}
	return errors.Join(errs...)
}

// rawPubsub starts the raw baseline's gossipsub: the library defaults plus flood publishing. Diagnostics
// may swap it (for example for Madang's gossip settings without the rest of the node).
var rawPubsub = func(ctx context.Context, h host.Host, tr *Tracer) (*pubsub.PubSub, error) {
	return pubsub.NewGossipSub(ctx, h, pubsub.WithRawTracer(tr), pubsub.WithFloodPublish(true))
}

// raw is a network of bare libp2p hosts with ed25519 keys running only the library under comparison.
type raw struct {
	net     *Network
	topo    Topology
	ps      []*pubsub.PubSub
	dhts    []*dht.IpfsDHT
	tracers []*Tracer
	cancel  context.CancelFunc
	heap0   uint64
	gor0    int
}

// startRaw builds bare hosts with ed25519 keys on a fresh mocknet with the same topology; on the first n,
// withPubsub starts gossipsub with the library defaults (StrictSign with ed25519, 32-RPC queues) plus flood
// publishing, as the reference baseline did, and withDHT a plain kad-dht in server mode; extra sets up
// the hosts beyond n.
func startRaw(ctx context.Context, c Config, n int, topo Topology, withPubsub, withDHT bool, no netOpts) (_ *raw, err error) {
	r := &raw{topo: topo}
	keys := make([]crypto.PrivKey, max(n, topo.N))
	for i := range keys {
		if keys[i], _, err = crypto.GenerateEd25519Key(nil); err != nil {
			return nil, fmt.Errorf("raw key: %w", err)
		}
	}
	if r.net, err = NewNetwork(keys, linkOptions(c)); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	r.heap0, r.gor0 = heapInUse(), goroutines()
	rctx, cancel := context.WithCancel(ctx)
	r.cancel = cancel
	for i := range n {
		h := r.net.Hosts[i]
		if withDHT {
			d, err := dht.New(h, dht.Mode(dht.ModeServer))
			if err != nil {
				return nil, fmt.Errorf("raw dht %d: %w", i, err)
			}
			r.dhts = append(r.dhts, d)
		}
		if withPubsub {
			tr := no.newTracer(i)
			ps, err := rawPubsub(rctx, h, tr)
			if err != nil {
				return nil, fmt.Errorf("raw pubsub %d: %w", i, err)
			}
			r.ps = append(r.ps, ps)
			r.tracers = append(r.tracers, tr)
		}
	}
	for i := n; i < len(keys); i++ {
		if err := no.extra(rctx, i, r.net.Hosts[i]); err != nil {
			return nil, err
		}
	}
	if err := r.net.Connect(ctx, topo); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *raw) close() error {
	var errs []error
	for _, d := range r.dhts {
		errs = append(errs, d.Close())
	}
	if r.cancel != nil {
		r.cancel()
	}
	if r.net != nil {
		errs = append(errs, r.net.Close())
	}
	return errors.Join(errs...)
}
