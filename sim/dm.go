package sim

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/protocol"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/dm"
	"github.com/madang-p2p/madang/protocols/mailbox"
)

func init() {
	register("dm", "end-to-end encrypted 1:1 messages between friends: latency and throughput direct (vs a plain libp2p stream with acks; with --churn friends go offline and come back meanwhile) and through a relay mailbox while the friend is offline",
		Config{Nodes: 10, Msgs: 100, Size: 256, Rates: []float64{20}, Publishers: 2, Warmup: time.Second, Settle: 30 * time.Second},
		runDM)
}

// rawDMProtocol is the raw baseline's stream protocol: length-prefixed messages, an 8-byte ack for each.
const rawDMProtocol = "/sim/raw-dm/1.0.0"

// dmPlan: pairs of friends (sender, receiver) among the nodes, the mailbox relay (an extra node that
// every receiver keeps a connection to), and who goes offline during the direct phase.
type dmPlan struct {
	n     int
	pairs [][2]int
	relay int
	topo  Topology      // over n+1 nodes: the relay last
	msgs  int           // per pair
	pace  time.Duration // between a pair's messages in the direct phase (all pairs together send at the rate)
	churn []churnWindow
}

func planDM(c Config) (dmPlan, error) {
	if 2*c.Publishers > c.Nodes {
		return dmPlan{}, fmt.Errorf("%w: dm needs two nodes per pair (--publishers %d, --nodes %d)", ErrBadConfig, c.Publishers, c.Nodes)
	}
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0xd3))
	perm := rng.Perm(c.Nodes)
	p := dmPlan{n: c.Nodes, relay: c.Nodes, msgs: max(c.Msgs/c.Publishers, 1)}
	for k := range c.Publishers {
		p.pairs = append(p.pairs, [2]int{perm[2*k], perm[2*k+1]})
	}
	p.topo = RandomTopology(c.Nodes, c.DegreeMin, c.DegreeMax, c.Seed)
	p.topo.N++
	for i := range c.Nodes {
		p.topo.Edges = append(p.topo.Edges, [2]int{i, p.relay})
	}
	p.topo = withSpammers(p.topo, c, rng) // hostile peers after the relay
	// Churn: round(churn × nodes) nodes go offline once while the direct phase sends, the friends first
	// (senders and receivers, in random order; a bystander going offline changes little for 1:1
	// messages). Each leaves within the first half of the phase and is back before it ends.
	p.pace = time.Duration(float64(time.Second) / c.Rate() * float64(len(p.pairs)))
	phase := time.Duration(p.msgs) * p.pace
	var friends, others []int
	for _, i := range perm {
		if slices.ContainsFunc(p.pairs, func(pr [2]int) bool { return pr[0] == i || pr[1] == i }) {
			friends = append(friends, i)
		} else {
			others = append(others, i)
		}
	}
	rng.Shuffle(len(friends), func(a, b int) { friends[a], friends[b] = friends[b], friends[a] })
	order := append(friends, others...)
	p.churn = churnWindows(rng, order[:min(int(math.Round(c.Churn*float64(c.Nodes))), len(order))], phase)
	return p, nil
}

// dmPhase is one measured phase (direct or mailbox) of one run.
type dmPhase struct {
	coll     *Collector
	expected int
	got      int
	dur      time.Duration // first send → last receipt
}

func (ph *dmPhase) throughput() float64 {
	if ph == nil || ph.got == 0 || ph.dur <= 0 {
		return math.NaN()
	}
	return float64(ph.got) / ph.dur.Seconds()
}

type dmOut struct {
	direct, burst, mailbox *dmPhase
	heapPerNode            float64
	cpu                    Usage
	stateDelivered         int                   // ours: messages the sender saw acked
	spamTried, spamOK      int64                 // hostile streams opened during the direct phase / answered
	bytes                  map[protocol.ID]int64 // stream bytes received during the direct and burst phases
}

// bytesPerMessage is the stream bytes received by any node during the direct and burst phases on the
// protocols dm matches (or on all the others) per delivered message.
func (o *dmOut) bytesPerMessage(dm bool) float64 {
	var t int64
	for p, v := range o.bytes {
		if isDMProtocol(p) == dm {
			t += v
		}
	}
	return perOK(float64(t), o.direct.got+o.burst.got)
}

// isDMProtocol: the protocols that carry the messages and their acks (ours: direct, and deposits in and
// drains of the relay mailboxes).
func isDMProtocol(p protocol.ID) bool {
	return p == dm.ProtocolID || p == mailbox.ProtocolID || p == rawDMProtocol
}

func runDM(ctx context.Context, c Config) (*Result, error) {
	p, err := planDM(c)
	if err != nil {
		return nil, err
	}
	c.progress("dm: raw streams, %d pairs, %d messages each", len(p.pairs), p.msgs)
	r, err := labelled(ctx, "raw", func(ctx context.Context) (*dmOut, error) { return runDMRaw(ctx, c, p) })
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	c.progress("dm: madang friends, %d pairs", len(p.pairs))
	o, err := labelled(ctx, "ours", func(ctx context.Context) (*dmOut, error) { return runDMOurs(ctx, c, p) })
	if err != nil {
		return nil, fmt.Errorf("ours: %w", err)
	}
	res := &Result{Nodes: c.Nodes}
	lo, lr := o.direct.coll.Latencies(), r.direct.coll.Latencies()
	res.add("p50_ms", Percentile(lo, 50), Percentile(lr, 50), "send → received by the friend (direct)")
	res.add("p95_ms", Percentile(lo, 95), Percentile(lr, 95), "")
	res.add("p99_ms", Percentile(lo, 99), Percentile(lr, 99), "")
	res.add("delivery", frac(o.direct.got, o.direct.expected), frac(r.direct.got, r.direct.expected), "direct, within the run (with --churn: ours through mailboxes and outbox retries)")
	res.add("throughput_msgs_per_s", o.burst.throughput(), r.burst.throughput(), "one pair, a burst of messages sent at once")
	res.add("burst_delivery", frac(o.burst.got, o.burst.expected), frac(r.burst.got, r.burst.expected), "")
	res.add("mailbox_delivery", frac(o.mailbox.got, o.mailbox.expected), math.NaN(), "friend offline while sending, then back (raw has no mailbox)")
	ml := o.mailbox.coll.Latencies()
	res.add("mailbox_p50_ms", Percentile(ml, 50), math.NaN(), "friend back online → message received")
	res.add("mailbox_throughput_msgs_per_s", o.mailbox.throughput(), math.NaN(), "friend back online → last message received")
	res.add("acked", frac(o.stateDelivered, o.direct.expected+o.burst.expected+o.mailbox.expected), math.NaN(), "share of all messages the sender saw delivered (signed ack)")
	res.add("bytes_per_delivery", o.bytesPerMessage(true), r.bytesPerMessage(true), "message stream bytes received, both directions (acks included)")
	res.add("other_bytes_per_delivery", o.bytesPerMessage(false), r.bytesPerMessage(false), "everything else the nodes received meanwhile (DHT, identify, ...)")
	res.add("dups_per_delivery", math.NaN(), math.NaN(), "not applicable")
	if c.Spammers > 0 {
		res.add("hostile_streams", float64(o.spamTried), float64(r.spamTried), "junk streams hostile peers opened to the receivers during the direct phase")
		res.add("hostile_answered", float64(o.spamOK), float64(r.spamOK), "of those, answered by the receiver (ours refuses strangers before reading)")
	}
	res.add("heap_per_node_kib", o.heapPerNode/1024, r.heapPerNode/1024, "live heap after befriending")
	res.add("cpu_per_message_us", perOK(float64(o.cpu.CPU)/1e3, o.direct.got+o.burst.got), perOK(float64(r.cpu.CPU)/1e3, r.direct.got+r.burst.got), "process CPU, direct and burst phases")
	res.Ours = Series{Latencies: lo, Times: o.direct.coll.Times(), Expected: o.direct.expected}
	res.Raw = Series{Latencies: lr, Times: r.direct.coll.Times(), Expected: r.direct.expected}
	res.Params = []Param{{"pairs", float64(len(p.pairs))}}
	res.Notes = append(res.Notes, bytesNote("ours", o.bytes), bytesNote("raw", r.bytes))
	return res, nil
}

func dmText(k, size int) string {
	return fmt.Sprintf("%08d %s", k, strings.Repeat("m", max(size-9, 1)))
}

// runDMRaw: each sender opens one stream to its receiver and writes its messages (length-prefixed, padded
// to the size); the receiver acks each with 8 bytes. Latency is send → the receiver has read it.
func runDMRaw(ctx context.Context, c Config, p dmPlan) (*dmOut, error) {
	spam := &dmSpammers{proto: rawDMProtocol}
	r, err := startRaw(ctx, c, p.n, p.topo, false, false, netOpts{extra: func(ctx context.Context, i int, h host.Host) error {
		if i == p.relay {
			return nil // the raw run has no relay; its host stays idle
		}
		return spam.add(ctx, i, h)
	}})
	if err != nil {
		return nil, err
	}
	defer r.close()
	var coll atomicCollector
	for i, h := range r.net.Hosts[:p.n] {
		h.SetStreamHandler(rawDMProtocol, func(s network.Stream) {
			defer s.Close()
			var hdr [4]byte
			ack := make([]byte, 8)
			for {
				if _, err := io.ReadFull(s, hdr[:]); err != nil {
					return
				}
				n := binary.BigEndian.Uint32(hdr[:])
				if n > 1<<20 {
					_ = s.Reset()
					return
				}
				buf := make([]byte, n)
				if _, err := io.ReadFull(s, buf); err != nil {
					return
				}
				if cl := coll.Load(); cl != nil && len(buf) >= 8 {
					cl.Got(string(buf[:8]), i, time.Now(), true)
				}
				copy(ack, buf[:8])
				if _, err := s.Write(ack); err != nil {
					return
				}
			}
		})
	}
	heap := heapInUse()
	out := &dmOut{heapPerNode: float64(heap-min(heap, r.heap0)) / float64(p.n)}
	c.measured("raw")
	mark, bytes0 := markUsage(), protoBytes(r.net)
	// send writes keys to the receiver on one stream. Under churn a stream that breaks is opened again
	// for the next message, and the messages that could not be written are lost: the raw stack has no
	// store-and-forward.
	churn := len(p.churn) > 0
	send := func(ctx context.Context, pair [2]int, keys []string, pace time.Duration, cl *Collector) error {
		var (
			s              network.Stream
			readers        sync.WaitGroup
			written, acked atomic.Int64
		)
		open := func() error {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var err error
			if s, err = r.net.Hosts[pair[0]].NewStream(sctx, r.net.ID(pair[1]), rawDMProtocol); err != nil {
				s = nil
				return err
			}
			rs := s
			readers.Go(func() {
				ack := make([]byte, 8)
				for {
					if _, err := io.ReadFull(rs, ack); err != nil {
						return
					}
					acked.Add(1)
				}
			})
			return nil
		}
		start := time.Now()
		for k, key := range keys {
			if waitCtx(ctx, time.Until(start.Add(time.Duration(k)*pace))) != nil {
				return ctx.Err()
			}
			msg := []byte(key + dmText(k, c.Size)[8:])
			var hdr [4]byte
			binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
			cl.Sent(key, pair[0], time.Now())
			if s == nil {
				if err := open(); err != nil {
					if churn {
						continue
					}
					return err
				}
			}
			if _, err := s.Write(append(hdr[:], msg...)); err != nil {
				_ = s.Reset()
				s = nil
				if churn {
					continue
				}
				return err
			}
			written.Add(1)
		}
		if s != nil {
			_ = s.CloseWrite() // the receiver acks what it read, then closes on EOF
		}
		readers.Wait()
		if s != nil {
			_ = s.Close()
		}
		if !churn && acked.Load() != written.Load() {
			return fmt.Errorf("raw dm: %d of %d messages acked", acked.Load(), written.Load())
		}
		return nil
	}
	for _, pair := range p.pairs {
		spam.targets = append(spam.targets, r.net.ID(pair[1]))
	}
	stopSpam := spam.during(ctx)
	out.direct, err = dmPhaseRun(ctx, c, p, &coll, true, r.net, func(ctx context.Context, pair [2]int, k int, keys []string, cl *Collector) error {
		return send(ctx, pair, keys, p.pace, cl)
	})
	stopSpam()
	if err != nil {
		return nil, err
	}
	if out.burst, err = dmPhaseRun(ctx, c, p, &coll, false, nil, func(ctx context.Context, pair [2]int, k int, keys []string, cl *Collector) error {
		return send(ctx, pair, keys, 0, cl)
	}); err != nil {
		return nil, err
	}
	out.cpu, out.bytes = mark.since(), diffBytes(protoBytes(r.net), bytes0)
	out.spamTried, out.spamOK = spam.attempted.Load(), spam.accepted.Load()
	return out, nil
}

// dmPhaseRun runs one phase: every pair (or, unless all, the first) sends p.msgs messages through send and
// the phase ends when every receiver has them all or Settle passed. With net, the plan's churn plays
// during the phase, and every churned node is back online when it ends.
func dmPhaseRun(ctx context.Context, c Config, p dmPlan, coll *atomicCollector, all bool, net *Network,
	send func(ctx context.Context, pair [2]int, k int, keys []string, cl *Collector) error) (*dmPhase, error) {
	pairs := p.pairs
	if !all {
		pairs = pairs[:1]
	}
	ph := &dmPhase{coll: NewCollector(time.Now()), expected: len(pairs) * p.msgs}
	coll.Store(ph.coll)
	defer coll.Store(nil)
	start := time.Now()
	var wg sync.WaitGroup
	if net != nil {
		var churn sync.WaitGroup
		net.Churn(ctx, &churn, p.topo, start, p.churn, c.progress)
		defer churn.Wait()
	}
	errs := make([]error, len(pairs))
	for k, pair := range pairs {
		keys := make([]string, p.msgs)
		for i := range keys {
			keys[i] = fmt.Sprintf("%02d%06d", k, i)
		}
		wg.Go(func() { errs[k] = send(ctx, pair, k, keys, ph.coll) })
	}
	wg.Wait()
	poll(ctx, c.Settle, func() bool { return ph.coll.Count() >= ph.expected })
	ph.got = ph.coll.Count()
	ph.dur = lastReceipt(ph.coll, start)
	for _, err := range errs {
		if err != nil {
			return ph, err
		}
	}
	return ph, nil
}

func lastReceipt(cl *Collector, start time.Time) time.Duration {
	ts := cl.Times()
	if len(ts) == 0 {
		return 0
	}
	return time.Duration(ts[len(ts)-1]*float64(time.Second)) + cl.start.Sub(start)
}

// atomicCollector points at the collector of the running phase.
type atomicCollector struct {
	mu sync.Mutex
	c  *Collector
}

func (a *atomicCollector) Load() *Collector {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.c
}

func (a *atomicCollector) Store(c *Collector) {
	a.mu.Lock()
	a.c = c
	a.mu.Unlock()
}

func runDMOurs(ctx context.Context, c Config, p dmPlan) (*dmOut, error) {
	// The relay is a full Madang node too (role relay); it is node p.relay, after the others.
	n := p.n + 1
	ospam := &dmSpammers{proto: dm.ProtocolID}
	o, err := startOurs(ctx, c, n, p.topo, netOpts{extra: ospam.add, configure: func(i int, cfg *config.Config, net *Network) {
		cfg.Friends.RetryMin = 50 * time.Millisecond
		cfg.Friends.RetryMax = time.Second
		if i == p.relay {
			cfg.Role = config.RoleRelay
			cfg.Listen = []string{net.Hosts[i].Addrs()[0].String()} // required of relays; the mock host is given
		} else {
			cfg.Relays = []string{net.FullAddr(p.relay)}
		}
	}})
	if err != nil {
		return nil, err
	}
	defer o.close()
	contacts := func(i int) *contactSvc { return &contactSvc{n: o.nodes[i]} }
	for _, pair := range p.pairs {
		if err := befriend(ctx, contacts(pair[0]), contacts(pair[1])); err != nil {
			return nil, err
		}
	}
	c.progress("dm: ours: %d pairs of friends", len(p.pairs))
	var coll atomicCollector
	stopWatch := watchReceived(ctx, o, &coll)
	defer stopWatch()
	var acked sync.Map
	stopAcks := watchAcked(ctx, o, p, &acked)
	defer stopAcks()
	heap := heapInUse()
	out := &dmOut{heapPerNode: float64(heap-min(heap, o.heap0)) / float64(n)}
	c.measured("ours")
	send := func(ctx context.Context, pair [2]int, keys []string, pace time.Duration, cl *Collector) error {
		s := node.DMService(o.nodes[pair[0]])
		to := o.nodes[pair[1]].Identity.AccountID()
		start := time.Now()
		for k, key := range keys {
			if waitCtx(ctx, time.Until(start.Add(time.Duration(k)*pace))) != nil {
				return ctx.Err()
			}
			cl.Sent(key, pair[0], time.Now())
			if _, err := s.Send(ctx, to, key, dmText(k, c.Size)); err != nil {
				return err
			}
		}
		return nil
	}
	mark, bytes0 := markUsage(), protoBytes(o.net)
	for _, pair := range p.pairs {
		ospam.targets = append(ospam.targets, o.net.ID(pair[1]))
		ospam.accounts = append(ospam.accounts, o.nodes[pair[1]].Identity.AccountKey())
	}
	stopSpam := ospam.during(ctx)
	out.direct, err = dmPhaseRun(ctx, c, p, &coll, true, o.net, func(ctx context.Context, pair [2]int, k int, keys []string, cl *Collector) error {
		return send(ctx, pair, keys, p.pace, cl)
	})
	stopSpam()
	if err != nil {
		return nil, err
	}
	if out.burst, err = dmPhaseRun(ctx, c, p, &coll, false, nil, func(ctx context.Context, pair [2]int, k int, keys []string, cl *Collector) error {
		for i := range keys {
			keys[i] = "b" + keys[i]
		}
		return send(ctx, pair, keys, 0, cl)
	}); err != nil {
		return nil, err
	}
	out.cpu, out.bytes = mark.since(), diffBytes(protoBytes(o.net), bytes0)
	out.spamTried, out.spamOK = ospam.attempted.Load(), ospam.accepted.Load()
	c.progress("dm: ours: direct %d/%d, burst %d/%d", out.direct.got, out.direct.expected, out.burst.got, out.burst.expected)

	// Mailbox: the first pair's receiver goes offline; its friend sends; the messages wait in its relay's
	// mailbox ("sent"); the receiver comes back and drains them.
	pair := p.pairs[0]
	o.net.Offline(pair[1])
	mkeys := make([]string, p.msgs)
	for i := range mkeys {
		mkeys[i] = fmt.Sprintf("m%07d", i)
	}
	mcoll := NewCollector(time.Now())
	coll.Store(mcoll)
	sender := node.DMService(o.nodes[pair[0]])
	to := o.nodes[pair[1]].Identity.AccountID()
	for k, key := range mkeys {
		if _, err := sender.Send(ctx, to, key, dmText(k, c.Size)); err != nil {
			return nil, err
		}
	}
	deposited := poll(ctx, 2*time.Minute, func() bool {
		for _, key := range mkeys {
			if m, err := sender.Message(to, "", key); err != nil || m.State != dm.StateSent {
				return false
			}
		}
		return true
	})
	c.progress("dm: ours: %d messages deposited in the mailbox: %v", len(mkeys), deposited)
	back := time.Now()
	for _, key := range mkeys {
		mcoll.Sent(key, pair[0], back)
	}
	if err := o.net.Online(ctx, pair[1], p.topo); err != nil {
		return nil, err
	}
	poll(ctx, 2*time.Minute, func() bool { return mcoll.Count() >= len(mkeys) })
	out.mailbox = &dmPhase{coll: mcoll, expected: len(mkeys), got: mcoll.Count(), dur: lastReceipt(mcoll, back)}
	poll(ctx, c.Settle, func() bool { return countMap(&acked) >= out.direct.expected+out.burst.expected+out.mailbox.expected })
	out.stateDelivered = countMap(&acked)
	return out, nil
}

func countMap(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}

// watchEvents calls fn for every event of the given types on the buses of the listed nodes until the
// returned function is called.
func watchEvents(ctx context.Context, o *ours, nodes []int, types []string, fn func(i int, ev events.Event)) func() {
	rctx, stop := context.WithCancel(ctx)
	for _, i := range nodes {
		n := o.nodes[i]
		sub := n.Events.Subscribe(n.Events.Last(), types)
		go func() {
			defer sub.Close()
			for {
				select {
				case <-rctx.Done():
					return
				case ev, ok := <-sub.C():
					if !ok {
						return
					}
					fn(i, ev)
				}
			}
		}()
	}
	return stop
}

func allNodes(o *ours) []int {
	out := make([]int, len(o.nodes))
	for i := range out {
		out[i] = i
	}
	return out
}

// watchReceived records every message.received event of every node in the current collector.
func watchReceived(ctx context.Context, o *ours, coll *atomicCollector) func() {
	return watchEvents(ctx, o, allNodes(o), []string{dm.EventReceived}, func(i int, ev events.Event) {
		var m dm.Message
		if cl := coll.Load(); cl != nil && json.Unmarshal(ev.Data, &m) == nil {
			cl.Got(m.ID, i, ev.Time, true)
		}
	})
}

// watchAcked records the ids of messages whose senders saw them delivered (signed ack).
func watchAcked(ctx context.Context, o *ours, p dmPlan, acked *sync.Map) func() {
	var senders []int
	for _, pair := range p.pairs {
		senders = append(senders, pair[0])
	}
	return watchEvents(ctx, o, senders, []string{dm.EventState}, func(_ int, ev events.Event) {
		var st struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if json.Unmarshal(ev.Data, &st) == nil && st.State == dm.StateDelivered {
			acked.Store(st.ID, true)
		}
	})
}

// contactSvc is a node's contact service and graph.
type contactSvc struct{ n *node.Node }

// befriend makes a and b friends as users do: a creates an invite, b accepts it; both then list the other
// as a friend and a knows b's mailbox card.
func befriend(ctx context.Context, a, b *contactSvc) error {
	ca, cb := node.ContactService(a.n), node.ContactService(b.n)
	if ca == nil || cb == nil {
		return fmt.Errorf("node has no friends feature")
	}
	inv, err := ca.CreateInvite(time.Hour, 1)
	if err != nil {
		return fmt.Errorf("invite: %w", err)
	}
	if _, err := cb.AcceptInvite(ctx, inv.Link); err != nil {
		return fmt.Errorf("accept invite: %w", err)
	}
	aid, bid := a.n.Identity.AccountID(), b.n.Identity.AccountID()
	if !poll(ctx, time.Minute, func() bool {
		x, err1 := ca.Graph().Contact(bid)
		y, err2 := cb.Graph().Contact(aid)
		return err1 == nil && err2 == nil && x.State == graph.StateFriend && y.State == graph.StateFriend && len(x.MailboxCard) > 0
	}) {
		return fmt.Errorf("%s and %s not friends (with %s knowing the other's mailbox card) within 1m", aid, bid, aid)
	}
	return nil
}
