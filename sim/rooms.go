package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/protocols/room/pb"
)

func init() {
	register("rooms", "an Open Chat room with every node a member: fan-out latency, delivery (live and after history repair), duplicates, bytes, CPU and heap vs a plain gossipsub topic",
		Config{Nodes: 50, Msgs: 200, Size: 1024, Rates: []float64{20}, Publishers: 1, Warmup: 3 * time.Second, Settle: 10 * time.Second},
		runRooms)
}

// RepairWait is how long the rooms scenario waits, after the live phase, for messages a node missed to
// arrive through history repair. Returning peers and gaps in an author's seqs start repairs within
// seconds; what nothing reveals (an author's last messages) waits for periodic anti-entropy, every 30–60 s
// at the default rooms.repair_interval (a quarter of that after losses), so the wait covers one interval.
var RepairWait = 65 * time.Second

const rawTopic = "/sim/raw/1"

func runRooms(ctx context.Context, c Config) (*Result, error) {
	res := &Result{Nodes: c.Nodes}
	sweep := len(c.Rates) > 1
	var first [2]*psMeasure
	for i, rate := range c.Rates {
		cc := c
		if c.sweepSeconds > 0 {
			cc.Msgs = int(rate * c.sweepSeconds)
		}
		p := planPubsub(cc, rate)
		c.progress("rooms: raw gossipsub, %d nodes, %d msgs at %g msg/s", p.n, p.msgs, rate)
		r, err := labelled(ctx, "raw", func(ctx context.Context) (*psMeasure, error) { return runRoomsRaw(ctx, cc, p) })
		if err != nil {
			return nil, fmt.Errorf("raw: %w", err)
		}
		c.progress("rooms: raw delivered %d/%d live; madang room, %d nodes", r.live, r.expected, p.n)
		o, err := labelled(ctx, "ours", func(ctx context.Context) (*psMeasure, error) { return runRoomsOurs(ctx, cc, p) })
		if err != nil {
			return nil, fmt.Errorf("ours: %w", err)
		}
		c.progress("rooms: madang delivered %d/%d live, %d after repair", o.live, o.expected, o.repaired)
		if i == 0 {
			first = [2]*psMeasure{o, r}
		}
		if sweep {
			res.Sweep = append(res.Sweep, SweepRow{
				Rate: rate, OursDelivery: frac(o.live, o.expected), RawDeliv: frac(r.live, r.expected),
				OursRepaired: frac(o.repaired, o.expected),
				OursP99:      Percentile(o.coll.Latencies(), 99), RawP99: Percentile(r.coll.Latencies(), 99),
			})
		}
	}
	addPubsubFigures(res, first[0], first[1])
	gl := first[0].gossip.Latencies()
	res.add("gossip_p50_ms", Percentile(gl, 50), math.NaN(), "ours: gossipsub delivery, before the room layer")
	res.add("gossip_p99_ms", Percentile(gl, 99), math.NaN(), "")
	res.add("sync_bytes_per_delivery", perOK(float64(first[0].syncBytes), first[0].repaired), math.NaN(), "history-sync bytes received")
	if sweep {
		ko, kr, krep := math.NaN(), math.NaN(), math.NaN()
		for _, s := range res.Sweep {
			if s.OursDelivery >= 1 {
				ko = s.Rate
			}
			if s.RawDeliv >= 1 {
				kr = s.Rate
			}
			if s.OursRepaired >= 1 {
				krep = s.Rate
			}
		}
		res.add("knee_msgs_per_s", ko, kr, "highest swept rate with 100% live delivery")
		res.add("knee_repaired_msgs_per_s", krep, kr, "highest swept rate with 100% after repair")
		res.Notes = append(res.Notes, fmt.Sprintf("figures above are for the first rate of the sweep (%g msg/s)", c.Rates[0]))
	}
	return res, nil
}

// rawPayload is message k of the raw run: its number, then padding to size.
func rawPayload(k, size int) []byte {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(b, uint64(k))
	return b
}

func runRoomsRaw(ctx context.Context, c Config, p psPlan) (*psMeasure, error) {
	var spam []*pubsub.Topic
	var mu sync.Mutex
	r, err := startRaw(ctx, c, p.n, p.topo, true, false, netOpts{prefix: rawTopic, extra: func(ctx context.Context, i int, h host.Host) error {
		// A hostile peer: gossipsub without signatures; honest StrictSign peers reject what it sends.
		ps, err := pubsub.NewGossipSub(ctx, h, pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor())
		if err != nil {
			return err
		}
		t, err := ps.Join(rawTopic)
		if err != nil {
			return err
		}
		mu.Lock()
		spam = append(spam, t)
		mu.Unlock()
		return nil
	}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	topics := make([]*pubsub.Topic, p.n)
	subs := make([]*pubsub.Subscription, p.n)
	for i, ps := range r.ps {
		if topics[i], err = ps.Join(rawTopic); err != nil {
			return nil, err
		}
		if subs[i], err = topics[i].Subscribe(); err != nil {
			return nil, err
		}
	}
	if !poll(ctx, 30*time.Second, func() bool {
		for _, t := range topics {
			if len(t.ListPeers()) == 0 {
				return false
			}
		}
		return true
	}) {
		return nil, fmt.Errorf("raw: topic peers missing after 30s")
	}
	if err := waitCtx(ctx, c.Warmup); err != nil {
		return nil, err
	}
	m, coll := prepareMeasure(c, r.tracers, r.heap0, r.gor0, p.n, "raw")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	for i, s := range subs {
		go func() {
			for {
				msg, err := s.Next(rctx)
				if err != nil {
					return
				}
				if len(msg.Data) >= 8 {
					coll.Got(strconv.FormatUint(binary.BigEndian.Uint64(msg.Data), 10), i, time.Now(), true)
				}
			}
		}()
	}
	protoBefore := protoBytes(r.net)
	mark := markUsage()
	out := drive(ctx, c, p, r.net, coll, func(ctx context.Context, pub, k int) error {
		coll.Sent(strconv.Itoa(k), pub, time.Now())
		return topics[pub].Publish(ctx, rawPayload(k, c.Size))
	}, func(ctx context.Context, s int) {
		spamLoop(ctx, func(k int) error { return spam[s-p.n].Publish(ctx, rawPayload(-1-k, c.Size)) })
	}, 0)
	finishMeasure(out, m, mark, r.tracers, r.net, topics)
	out.protoBytes = diffBytes(protoBytes(r.net), protoBefore)
	out.openErrs = pubsubOpenErrors(r.net)
	return out, nil
}

// prepareMeasure measures heap and goroutines per node (after warm-up), resets the tracers and starts a
// collector.
func prepareMeasure(c Config, tracers []*Tracer, heap0 uint64, gor0, n int, which string) (*psMeasure, *Collector) {
	heap := heapInUse()
	m := &psMeasure{
		heapPerNode:       float64(heap-min(heap, heap0)) / float64(n),
		goroutinesPerNode: float64(goroutines()-gor0) / float64(n),
	}
	c.measured(which)
	for _, t := range tracers {
		t.Reset()
	}
	return m, NewCollector(time.Now())
}

func finishMeasure(out, m *psMeasure, mark usageMark, tracers []*Tracer, net *Network, topics []*pubsub.Topic) {
	out.usage = mark.since()
	out.tot = Sum(tracers)
	out.validateCalls = out.tot.Validated - out.tot.Rejected
	out.heapPerNode, out.goroutinesPerNode = m.heapPerNode, m.goroutinesPerNode
	out.conns = net.Conns()
	tp := 0
	for _, t := range topics {
		tp += len(t.ListPeers())
	}
	out.topicPeers = float64(tp) / float64(max(len(topics), 1))
}

// spamLoop calls publish spamRate times a second until ctx ends.
func spamLoop(ctx context.Context, publish func(k int) error) {
	t := time.NewTicker(time.Second / spamRate)
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = publish(k)
		}
	}
}

// forgedItem is a room message with a valid structure, a fresh persona and a broken signature: a node
// verifies it once at the first hop and rejects it.
func forgedItem(id room.ID, k, size int) []byte {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	m, err := room.SignMessage(priv, &pb.MessageBody{
		Version: 1, Room: id[:], Persona: priv.Public().(ed25519.PublicKey), TimeMs: time.Now().UnixMilli(),
		Nonce: nonce, Kind: pb.Kind_TEXT, Text: strings.Repeat("s", min(max(size, 1), room.MaxTextBytes)), Seq: uint64(k + 1),
	})
	if err != nil {
		return []byte("junk")
	}
	raw := append([]byte(nil), m.Raw...)
	raw[len(raw)-1] ^= 0xff
	return raw
}

func roomService(n interface{ Lookup(string) (any, bool) }) (*room.Service, error) {
	v, ok := n.Lookup("rooms")
	svc, _ := v.(*room.Service)
	if !ok || svc == nil {
		return nil, fmt.Errorf("node has no rooms service")
	}
	return svc, nil
}

// bfsParents orders the honest nodes breadth first from root over the topology; parent[i] is the
// neighbour through which i joins.
func bfsParents(t Topology, n, root int) (layers [][]int, parent []int) {
	parent = make([]int, n)
	for i := range parent {
		parent[i] = -1
	}
	adj := make([][]int, n)
	for _, e := range t.Edges {
		if e[0] < n && e[1] < n {
			adj[e[0]] = append(adj[e[0]], e[1])
			adj[e[1]] = append(adj[e[1]], e[0])
		}
	}
	seen := map[int]bool{root: true}
	cur := []int{root}
	for len(cur) > 0 {
		var next []int
		for _, u := range cur {
			for _, v := range adj[u] {
				if !seen[v] {
					seen[v] = true
					parent[v] = u
					next = append(next, v)
				}
			}
		}
		if len(next) > 0 {
			layers = append(layers, next)
		}
		cur = next
	}
	// Nodes the topology leaves unreachable from root join through root itself.
	var rest []int
	for i := range n {
		if !seen[i] {
			parent[i] = root
			rest = append(rest, i)
		}
	}
	if len(rest) > 0 {
		layers = append(layers, rest)
	}
	return layers, parent
}

func runRoomsOurs(ctx context.Context, c Config, p psPlan) (*psMeasure, error) {
	var spam spammers
	gl := &gossipLayer{}
	// The room lives on the raw run's graph from the start (topologyOnly): members join through topology
	// neighbours, and the DHT's dials outside the topology (refreshes, provides) fail instead of adding
	// connections that would later have to be closed.
	o, err := startOurs(ctx, c, p.n, p.topo, netOpts{prefix: room.TopicPrefix, tracer: gl.hook, topologyOnly: true, extra: spam.add})
	if err != nil {
		return nil, err
	}
	defer o.close()
	svcs := make([]*room.Service, p.n)
	for i, n := range o.nodes {
		if svcs[i], err = roomService(n); err != nil {
			return nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	id, err := setupRoom(ctx, c, o, svcs, p)
	if err != nil {
		return nil, err
	}
	if err := spam.join(id.Topic()); err != nil {
		return nil, err
	}
	// Measure on the topology, as the raw run does: drop the extra connections the DHT made.
	if err := onTopology(ctx, c, o, p.topo, id.Topic()); err != nil {
		return nil, err
	}
	m, coll := prepareMeasure(c, o.tracers, o.heap0, o.gor0, p.n, "ours")
	gcoll := NewCollector(coll.start)
	gl.on.Store(true)
	for i, s := range svcs {
		// A callback, not a buffered channel: the raw run reads its subscriptions directly, and a buffer
		// per node large enough to never lose a delivery would be tens of MB for the GC to scan.
		unwatch := s.Watch(func(d room.Delivery) {
			if d.Room == id && d.Message.Body.Kind == pb.Kind_TEXT {
				coll.Got(d.Message.ID.String(), i, d.Received, d.Live)
			}
		})
		defer unwatch()
	}
	syncBefore := dhtBytes(o.net, isRoomSync)
	protoBefore := protoBytes(o.net)
	pad := strings.Repeat("x", max(c.Size-9, 1))
	mark := markUsage()
	out := drive(ctx, c, p, o.net, coll, func(ctx context.Context, pub, k int) error {
		t0 := time.Now()
		v, _, err := svcs[pub].Send(ctx, id, fmt.Sprintf("%08d %s", k, pad), "")
		if err != nil {
			return err
		}
		coll.Sent(v.ID, pub, t0)
		gcoll.Sent(strconv.Itoa(k), pub, t0)
		return nil
	}, func(ctx context.Context, s int) {
		spamLoop(ctx, func(k int) error { return spam.publish(ctx, s-p.n, forgedItem(id, k, c.Size)) })
	}, RepairWait)
	out.syncBytes = dhtBytes(o.net, isRoomSync) - syncBefore
	out.protoBytes = diffBytes(protoBytes(o.net), protoBefore)
	gl.flush(gcoll)
	out.gossip = gcoll
	out.openErrs = pubsubOpenErrors(o.net)
	finishMeasureOurs(out, m, mark, o, id.Topic())
	return out, nil
}

// onTopology puts the Madang network on the raw run's graph for the measured phase: it closes the
// connections outside the topology until the network is quiet (the DHT's provides after joining dial
// peers for a while; see Network.Settle), removes the links outside it (see Network.Restrict), then waits
// for every node to have a topic peer and for the mesh to form.
func onTopology(ctx context.Context, c Config, o *ours, t Topology, topic string) error {
	closed := o.net.Settle(ctx, t, 2*time.Second, 20*time.Second)
	o.net.Restrict(t)
	c.progress("%d connections outside the topology closed; links restricted to the topology", closed)
	if !poll(ctx, 30*time.Second, func() bool {
		for _, n := range o.nodes {
			if len(n.Gossip.PubSub().ListPeers(topic)) == 0 {
				return false
			}
		}
		return true
	}) {
		return fmt.Errorf("topic peers missing after 30s")
	}
	if err := waitCtx(ctx, c.Warmup); err != nil {
		return err
	}
	if n := o.net.Trim(t); n > 0 {
		c.progress("%d more connections outside the topology closed", n)
	}
	return nil
}

func finishMeasureOurs(out, m *psMeasure, mark usageMark, o *ours, topic string) {
	out.usage = mark.since()
	out.tot = Sum(o.tracers)
	out.validateCalls = out.tot.Validated - out.tot.Rejected
	out.heapPerNode, out.goroutinesPerNode = m.heapPerNode, m.goroutinesPerNode
	out.conns = o.net.Conns()
	tp := 0
	for _, n := range o.nodes {
		tp += len(n.Gossip.PubSub().ListPeers(topic))
	}
	out.topicPeers = float64(tp) / float64(max(len(o.nodes), 1))
}

func isRoomSync(p protocol.ID) bool { return strings.HasPrefix(string(p), "/madang/room-sync/") }

// setupRoom has node 0 create an open room and every other node join it through a link whose peer hint is
// a topology neighbour that already joined (breadth first), so that joining adds no connections beyond the
// topology's.
func setupRoom(ctx context.Context, c Config, o *ours, svcs []*room.Service, p psPlan) (room.ID, error) {
	capacity := min(max(2*p.n, room.DefaultCapacity), room.MaxCapacity)
	info, err := svcs[0].Create(ctx, room.CreateOptions{Name: "sim room", Tags: []string{"sim"}, Capacity: capacity, Nick: "sim0"})
	if err != nil {
		return room.ID{}, fmt.Errorf("create room: %w", err)
	}
	id, err := room.ParseID(info.RoomID)
	if err != nil {
		return room.ID{}, err
	}
	layers, parent := bfsParents(p.topo, p.n, 0)
	for _, layer := range layers {
		sem := make(chan struct{}, 8)
		var wg sync.WaitGroup
		errs := make(chan error, len(layer))
		for _, i := range layer {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				h := o.net.Hosts[parent[i]]
				link := room.Link{Room: id, Peers: []peer.AddrInfo{{ID: h.ID(), Addrs: h.Addrs()}}}
				jctx, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				if _, err := svcs[i].Join(jctx, link.String(), room.JoinOptions{Nick: fmt.Sprintf("sim%d", i)}); err != nil {
					errs <- fmt.Errorf("node %d joins via %d: %w", i, parent[i], err)
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return room.ID{}, err
		}
	}
	c.progress("rooms: %d members joined room %s", p.n, id)
	return id, nil
}

// gossipLayer measures, in the Madang run, when gossipsub itself delivers each message to a node (after
// the topic validator accepted it, before the room service stores and hands it on), so that the latency
// of the room layer can be told apart from that of the gossip layer. Messages are recognised by the
// number the sim writes at the start of their text.
//
// The hook runs inside each node's pubsub loop, on the forwarding path, so it must cost ours (almost)
// nothing the raw run does not pay: it reads what the validator decoded instead of parsing the message
// again, and it appends to the node's own log (a lock no other node takes) instead of a collector shared by
// all nodes; flush hands the logs to the collector after the run.
type gossipLayer struct {
	on   atomic.Bool
	mu   sync.Mutex
	logs map[int]*gossipLog
}

type gossipLog struct {
	mu  sync.Mutex
	got []gossipGot
}

type gossipGot struct {
	k  int
	at time.Time
}

func (g *gossipLayer) hook(i int, t *Tracer) {
	l := &gossipLog{}
	g.mu.Lock()
	if g.logs == nil {
		g.logs = map[int]*gossipLog{}
	}
	g.logs[i] = l
	g.mu.Unlock()
	t.OnDeliver = func(m *pubsub.Message) {
		if !g.on.Load() || m.Local {
			return
		}
		now := time.Now()
		msg := room.Validated(m)
		if msg == nil || len(msg.Body.Text) < 8 {
			return
		}
		if k, err := strconv.Atoi(msg.Body.Text[:8]); err == nil {
			l.mu.Lock()
			l.got = append(l.got, gossipGot{k: k, at: now})
			l.mu.Unlock()
		}
	}
}

// flush stops recording and hands every node's deliveries to c.
func (g *gossipLayer) flush(c *Collector) {
	g.on.Store(false)
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, l := range g.logs {
		l.mu.Lock()
		for _, d := range l.got {
			c.Got(strconv.Itoa(d.k), i, d.at, true)
		}
		l.got = nil
		l.mu.Unlock()
	}
}

// spammers are hostile peers: Madang's own gossip settings but no validation; once they join a topic they
// publish whatever the scenario forges.
type spammers struct {
	mu      sync.Mutex
	routers []*gossip.Router
	topics  []*pubsub.Topic
}

// add is a netOpts.extra: it starts the gossip router of hostile host i.
func (s *spammers) add(ctx context.Context, _ int, h host.Host) error {
	r, err := gossip.New(ctx, h, gossip.Options{})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.routers = append(s.routers, r)
	s.mu.Unlock()
	return nil
}

// join subscribes every hostile peer to topic (without a validator).
func (s *spammers) join(topic string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.routers {
		t, err := r.Join(topic, nil, nil)
		if err != nil {
			return fmt.Errorf("spammer joins %s: %w", topic, err)
		}
		s.topics = append(s.topics, t)
	}
	return nil
}

// publish sends data from hostile peer k on the topic it joined.
func (s *spammers) publish(ctx context.Context, k int, data []byte) error {
	s.mu.Lock()
	t := s.topics[k]
	s.mu.Unlock()
	return t.Publish(ctx, data)
}
