package sim

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// Topology is an undirected random sparse graph: node i dials between DegreeMin and DegreeMax others, so
// the mean degree is about twice that. The same seed gives the same graph, so the raw baseline and the
// product run on identical links.
type Topology struct {
	N     int
	Edges [][2]int // (dialer, target)
}

// RandomTopology builds the graph of n nodes for a seed; each node dials dmin..dmax distinct others.
func RandomTopology(n, dmin, dmax int, seed int64) Topology {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x70b0))
	seen := map[[2]int]bool{}
	t := Topology{N: n}
	for i := range n {
		k := dmin
		if dmax > dmin {
			k += rng.IntN(dmax - dmin + 1)
		}
		k = min(k, n-1)
		for tries := 0; k > 0 && tries < 20*n; tries++ {
			j := rng.IntN(n)
			a, b := min(i, j), max(i, j)
			if j == i || seen[[2]int{a, b}] {
				continue
			}
			seen[[2]int{a, b}] = true
			t.Edges = append(t.Edges, [2]int{i, j})
			k--
		}
	}
	return t
}

// withSpammers returns topo over c.Nodes honest nodes plus c.Spammers hostile ones, each dialling
// DegreeMin..DegreeMax honest nodes drawn from rng (the honest part is topo unchanged).
func withSpammers(topo Topology, c Config, rng *rand.Rand) Topology {
	out := Topology{N: topo.N + c.Spammers, Edges: append([][2]int(nil), topo.Edges...)}
	for s := range c.Spammers {
		k := c.DegreeMin + rng.IntN(c.DegreeMax-c.DegreeMin+1)
		for _, j := range rng.Perm(topo.N)[:min(k, topo.N)] {
			out.Edges = append(out.Edges, [2]int{topo.N + s, j})
		}
	}
	return out
}

// Neighbours lists the nodes adjacent to i.
func (t Topology) Neighbours(i int) []int {
	var out []int
	for _, e := range t.Edges {
		switch i {
		case e[0]:
			out = append(out, e[1])
		case e[1]:
			out = append(out, e[0])
		}
	}
	return out
}

// MeanDegree is 2·edges/nodes.
func (t Topology) MeanDegree() float64 {
	if t.N == 0 {
		return 0
	}
	return 2 * float64(len(t.Edges)) / float64(t.N)
}

// Network is a mocknet whose every pair of peers is linked with the same latency and bandwidth (anyone may
// dial anyone, as on the internet) and whose initial connections follow a Topology. Hosts are wrapped so
// that the bytes each peer receives on its streams are counted by protocol.
type Network struct {
	mn    mocknet.Mocknet
	opts  mocknet.LinkOptions
	Hosts []host.Host
	Bytes []*ByteCounter
	ids   []peer.ID

	mu         sync.Mutex
	offline    map[int]bool
	restricted *Topology // links exist only along these edges
}

// NewNetwork adds one mocknet peer per key and links every pair with opts.
func NewNetwork(keys []crypto.PrivKey, opts mocknet.LinkOptions) (*Network, error) {
	n := &Network{mn: mocknet.New(), opts: opts, offline: map[int]bool{}}
	n.mn.SetLinkDefaults(opts)
	for i, k := range keys {
		// One /24 per peer, as for peers in different homes: identify rate-limits requests per /24 subnet
		// (burst 10, then one per 5 s) and gossipsub scores IP colocation.
		addr := ma.StringCast(fmt.Sprintf("/ip4/10.%d.%d.1/tcp/4040", i>>8&0xff, i&0xff))
		h, err := n.mn.AddPeer(k, addr)
		if err != nil {
			_ = n.Close()
			return nil, fmt.Errorf("mock peer %d: %w", i, err)
		}
		bc := &ByteCounter{}
		n.Hosts = append(n.Hosts, &countingHost{Host: h, c: bc})
		n.Bytes = append(n.Bytes, bc)
		n.ids = append(n.ids, h.ID())
	}
	for i := range n.ids {
		for j := i + 1; j < len(n.ids); j++ {
			if _, err := n.mn.LinkPeers(n.ids[i], n.ids[j]); err != nil {
				_ = n.Close()
				return nil, fmt.Errorf("link %d-%d: %w", i, j, err)
			}
		}
	}
	return n, nil
}

// ID is peer i's ID.
func (n *Network) ID(i int) peer.ID { return n.ids[i] }

// FullAddr is peer i's multiaddr with /p2p/.
func (n *Network) FullAddr(i int) string {
	return n.Hosts[i].Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + n.ids[i].String())).String()
}

// Connect dials the topology's edges (each dialer connects to its targets), a few at a time.
func (n *Network) Connect(ctx context.Context, t Topology) error {
	return n.dial(ctx, t.Edges)
}

func (n *Network) dial(ctx context.Context, edges [][2]int) error {
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	var first atomic.Pointer[error]
	for _, e := range edges {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.connect(ctx, e[0], e[1]); err != nil {
				first.CompareAndSwap(nil, &err)
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return nil
}

// connect dials a→b. On a busy mocknet (hundreds of DHT nodes refreshing their routing tables as the first
// peers appear) identify can take seconds, so each attempt gets 30 s and a failed one is retried twice.
func (n *Network) connect(ctx context.Context, a, b int) error {
	var err error
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = n.Hosts[a].Connect(cctx, peer.AddrInfo{ID: n.ids[b], Addrs: n.Hosts[b].Addrs()})
		cancel()
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("connect %d→%d: %w", a, b, err)
	}
	return nil
}

// Offline takes peer i off the network: its links are removed (nobody can dial it, it can dial nobody) and
// its connections closed. Its process state (store, keys) stays, as when a phone loses its connection.
func (n *Network) Offline(i int) {
	n.mu.Lock()
	if n.offline[i] {
		n.mu.Unlock()
		return
	}
	n.offline[i] = true
	n.mu.Unlock()
	for j := range n.ids {
		if j != i {
			_ = n.mn.UnlinkPeers(n.ids[i], n.ids[j])
		}
	}
	for _, c := range n.Hosts[i].Network().Conns() {
		_ = c.Close()
	}
}

// churnWindow takes a node offline at a phase's start + off, for dur.
type churnWindow struct {
	node     int
	off, dur time.Duration
}

// churnWindows plans one window for each of nodes: offline at a random point of the first half of a
// phase of length phase, for 20–50 % of it (so back before the phase ends).
func churnWindows(rng *rand.Rand, nodes []int, phase time.Duration) []churnWindow {
	ws := make([]churnWindow, 0, len(nodes))
	for _, n := range nodes {
		off := time.Duration(rng.Float64() * 0.5 * float64(phase))
		ws = append(ws, churnWindow{node: n, off: off, dur: time.Duration((0.2 + 0.3*rng.Float64()) * float64(phase))})
	}
	return ws
}

// Churn plays the windows from start in goroutines added to wg: each node goes offline at its offset
// and comes back online (relinked, its topology neighbours in t dialled again) dur later. A node that
// cannot come back is reported through progress.
func (n *Network) Churn(ctx context.Context, wg *sync.WaitGroup, t Topology, start time.Time, ws []churnWindow,
	progress func(format string, args ...any)) {
	for _, cw := range ws {
		wg.Go(func() {
			if waitCtx(ctx, time.Until(start.Add(cw.off))) != nil {
				return
			}
			n.Offline(cw.node)
			if waitCtx(ctx, cw.dur) != nil {
				return
			}
			if err := n.Online(ctx, cw.node, t); err != nil {
				progress("churn: node %d back online: %v", cw.node, err)
			}
		})
	}
}

// Online brings peer i back: links to every peer that is online, then dials its topology neighbours again.
func (n *Network) Online(ctx context.Context, i int, t Topology) error {
	n.mu.Lock()
	if !n.offline[i] {
		n.mu.Unlock()
		return nil
	}
	delete(n.offline, i)
	off := maps.Clone(n.offline)
	restricted := n.restricted
	n.mu.Unlock()
	peers := make([]int, 0, len(n.ids))
	if restricted != nil {
		peers = restricted.Neighbours(i)
	} else {
		for j := range n.ids {
			peers = append(peers, j)
		}
	}
	for _, j := range peers {
		if j != i && !off[j] {
			if _, err := n.mn.LinkPeers(n.ids[i], n.ids[j]); err != nil {
				return fmt.Errorf("relink %d-%d: %w", i, j, err)
			}
		}
	}
	var edges [][2]int
	for _, j := range t.Neighbours(i) {
		if !off[j] {
			edges = append(edges, [2]int{i, j})
		}
	}
	return n.dial(ctx, edges)
}

// Trim closes every connection that is not an edge of t (the DHT's routing-table refresh connects each
// node to most others on a small network; a real room's members are a sparse subset of the DHT). It
// returns how many connections it closed.
func (n *Network) Trim(t Topology) int {
	adj := make([]map[peer.ID]bool, len(n.Hosts))
	for i := range adj {
		adj[i] = map[peer.ID]bool{}
	}
	for _, e := range t.Edges {
		adj[e[0]][n.ids[e[1]]] = true
		adj[e[1]][n.ids[e[0]]] = true
	}
	closed := 0
	for i, h := range n.Hosts {
		for _, c := range h.Network().Conns() {
			if !adj[i][c.RemotePeer()] {
				_ = c.Close()
				closed++
			}
		}
	}
	return closed
}

// Settle trims the connections to t until none came back for quiet (the DHT's provides and refreshes
// dial peers outside the topology for a while after nodes join), or timeout passed. It returns the
// connections closed.
func (n *Network) Settle(ctx context.Context, t Topology, quiet, timeout time.Duration) int {
	total := 0
	deadline := time.Now().Add(timeout)
	calm := time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if c := n.Trim(t); c > 0 {
			total += c
			calm = time.Now()
		} else if time.Since(calm) >= quiet {
			break
		}
		_ = waitCtx(ctx, 250*time.Millisecond)
	}
	return total
}

// Restrict removes the links between peers that are not neighbours in t, so that nobody can dial outside
// the topology any more (the measured phase of a pubsub scenario runs on exactly the raw run's graph), and
// closes the connections outside it. Online then relinks a peer to its neighbours only.
func (n *Network) Restrict(t Topology) {
	adj := map[[2]int]bool{}
	for _, e := range t.Edges {
		adj[[2]int{min(e[0], e[1]), max(e[0], e[1])}] = true
	}
	n.mu.Lock()
	n.restricted = &t
	off := maps.Clone(n.offline)
	n.mu.Unlock()
	for i := range n.ids {
		for j := i + 1; j < len(n.ids); j++ {
			if !adj[[2]int{i, j}] && !off[i] && !off[j] {
				_ = n.mn.UnlinkPeers(n.ids[i], n.ids[j])
			}
		}
	}
	n.Trim(t)
}

// IsOffline reports whether peer i is currently off the network.
func (n *Network) IsOffline(i int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.offline[i]
}

// Conns is the mean number of connections per peer.
func (n *Network) Conns() float64 {
	if len(n.Hosts) == 0 {
		return 0
	}
	total := 0
	for _, h := range n.Hosts {
		total += len(h.Network().Conns())
	}
	return float64(total) / float64(len(n.Hosts))
}

// Close shuts the mocknet (every host) down.
func (n *Network) Close() error { return n.mn.Close() }

// ByteCounter counts the bytes a peer reads from its streams, by protocol, and the streams it failed to
// open.
type ByteCounter struct {
	mu       sync.Mutex
	by       map[protocol.ID]*atomic.Int64
	openErrs map[protocol.ID]int
}

// OpenErrors returns the number of failed NewStream calls per (first) protocol asked for.
func (b *ByteCounter) OpenErrors() map[protocol.ID]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return maps.Clone(b.openErrs)
}

func (b *ByteCounter) counter(p protocol.ID) *atomic.Int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.by == nil {
		b.by = map[protocol.ID]*atomic.Int64{}
	}
	c := b.by[p]
	if c == nil {
		c = &atomic.Int64{}
		b.by[p] = c
	}
	return c
}

// Snapshot returns the bytes received so far per protocol.
func (b *ByteCounter) Snapshot() map[protocol.ID]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[protocol.ID]int64, len(b.by))
	for p, c := range b.by {
		out[p] = c.Load()
	}
	return out
}

// countingHost wraps a host so that every stream it opens or accepts counts received bytes.
type countingHost struct {
	host.Host
	c *ByteCounter
}

func (h *countingHost) NewStream(ctx context.Context, p peer.ID, pids ...protocol.ID) (network.Stream, error) {
	s, err := h.Host.NewStream(ctx, p, pids...)
	if err != nil {
		if len(pids) > 0 {
			h.c.mu.Lock()
			if h.c.openErrs == nil {
				h.c.openErrs = map[protocol.ID]int{}
			}
			h.c.openErrs[pids[0]]++
			h.c.mu.Unlock()
		}
		return nil, err
	}
	return &countingStream{Stream: s, c: h.c}, nil
}

func (h *countingHost) SetStreamHandler(pid protocol.ID, handler network.StreamHandler) {
	h.Host.SetStreamHandler(pid, func(s network.Stream) { handler(&countingStream{Stream: s, c: h.c}) })
}

func (h *countingHost) SetStreamHandlerMatch(pid protocol.ID, m func(protocol.ID) bool, handler network.StreamHandler) {
	h.Host.SetStreamHandlerMatch(pid, m, func(s network.Stream) { handler(&countingStream{Stream: s, c: h.c}) })
}

type countingStream struct {
	network.Stream
	c   *ByteCounter
	ctr atomic.Pointer[atomic.Int64]
}

func (s *countingStream) Read(p []byte) (int, error) {
	n, err := s.Stream.Read(p)
	if n > 0 {
		c := s.ctr.Load()
		if c == nil {
			c = s.c.counter(s.Stream.Protocol())
			if s.Stream.Protocol() != "" {
				s.ctr.Store(c)
			}
		}
		c.Add(int64(n))
	}
	return n, err
}
