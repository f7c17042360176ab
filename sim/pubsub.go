package sim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
)

// psPlan is what the raw and Madang runs of a pubsub scenario share: topology (honest nodes first, then
// spammers), publishers, churn windows.
type psPlan struct {
	n, spammers int
	topo        Topology // over n+spammers nodes
	publishers  []int
	churn       []churnWindow
	rate        float64
	msgs        int
	publishTime time.Duration
}

// spamRate is how many invalid messages each hostile peer publishes per second.
const spamRate = 50

func planPubsub(c Config, rate float64) psPlan {
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x9b5))
	msgs := c.Msgs
	p := psPlan{n: c.Nodes, spammers: c.Spammers, rate: rate, msgs: msgs}
	p.publishTime = time.Duration(float64(msgs) / rate * float64(time.Second))
	p.topo = withSpammers(RandomTopology(c.Nodes, c.DegreeMin, c.DegreeMax, c.Seed), c, rng)
	perm := rng.Perm(c.Nodes)
	p.publishers = slices.Clone(perm[:c.Publishers])
	rest := perm[c.Publishers:]
	nChurn := min(int(math.Round(c.Churn*float64(c.Nodes))), len(rest))
	p.churn = churnWindows(rng, rest[:nChurn], p.publishTime)
	return p
}

// expected is the number of deliveries if every honest node but the sender gets every message.
func (p psPlan) expected() int { return p.msgs * (p.n - 1) }

// sendFn publishes message k from node pub and records it in the collector.
type sendFn func(ctx context.Context, pub, k int) error

// psMeasure is one measured run of a pubsub scenario (raw or Madang) at one rate.
type psMeasure struct {
	coll                  *Collector
	expected              int
	live, repaired        int
	usage                 Usage
	tot                   Totals
	heapPerNode           float64
	goroutinesPerNode     float64
	conns, topicPeers     float64
	sendErrs              int
	syncBytes             int64
	validateCalls         int64
	publishDur, settleDur time.Duration
	sendMS                []float64  // duration of each publish call
	gossip                *Collector // Madang: deliveries by the gossip layer
	protoBytes            map[protocol.ID]int64
	openErrs              int // failed pubsub stream opens over the whole run
}

// pubsubOpenErrors counts failed NewStream calls for gossipsub protocols on all peers.
func pubsubOpenErrors(n *Network) int {
	t := 0
	for _, b := range n.Bytes {
		for p, v := range b.OpenErrors() {
			if strings.HasPrefix(string(p), "/meshsub/") {
				t += v
			}
		}
	}
	return t
}

// protoBytes sums, over all peers, the bytes received per protocol.
func protoBytes(n *Network) map[protocol.ID]int64 {
	out := map[protocol.ID]int64{}
	for _, b := range n.Bytes {
		for p, v := range b.Snapshot() {
			out[p] += v
		}
	}
	return out
}

func diffBytes(after, before map[protocol.ID]int64) map[protocol.ID]int64 {
	out := map[protocol.ID]int64{}
	for p, v := range after {
		if d := v - before[p]; d > 0 {
			out[p] = d
		}
	}
	return out
}

// bytesNote lists the stream bytes received during the measured phase, by protocol, largest first.
func bytesNote(which string, m map[protocol.ID]int64) string {
	type kv struct {
		p protocol.ID
		v int64
	}
	var all []kv
	for p, v := range m {
		all = append(all, kv{p, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return int(b.v - a.v) })
	var parts []string
	for _, e := range all {
		name := string(e.p)
		if name == "" {
			name = "(unnegotiated)"
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MB", name, float64(e.v)/1e6))
	}
	return which + " stream bytes received while measuring: " + strings.Join(parts, ", ")
}

// drive runs the measured phase: it publishes the plan's messages at its rate (message k from
// publishers[k mod P] at start + k/rate), churns nodes, keeps spammers busy, waits until every expected
// delivery arrived live or settle passed since the last publish, then (if repair is set) waits up to
// repair for deliveries through history sync.
func drive(ctx context.Context, c Config, p psPlan, net *Network, coll *Collector, send sendFn,
	spam func(ctx context.Context, s int), repair time.Duration) *psMeasure {
	m := &psMeasure{coll: coll, expected: p.expected()}
	start := coll.start
	var wg sync.WaitGroup
	sctx, stopSpam := context.WithCancel(ctx)
	for s := range p.spammers {
		wg.Go(func() { spam(sctx, p.n+s) })
	}
	net.Churn(ctx, &wg, p.topo, start, p.churn, c.progress)
	interval := time.Duration(float64(time.Second) / p.rate)
	var errMu sync.Mutex
	var pwg sync.WaitGroup
	for i, pub := range p.publishers {
		pwg.Go(func() {
			for k := i; k < p.msgs; k += len(p.publishers) {
				if waitCtx(ctx, time.Until(start.Add(time.Duration(k)*interval))) != nil {
					return
				}
				t0 := time.Now()
				err := send(ctx, pub, k)
				errMu.Lock()
				m.sendMS = append(m.sendMS, float64(time.Since(t0))/float64(time.Millisecond))
				if err != nil {
					m.sendErrs++
				}
				errMu.Unlock()
			}
		})
	}
	pwg.Wait()
	m.publishDur = time.Since(start)
	last := time.Now()
	prev := -1
	for ctx.Err() == nil {
		n := coll.Live()
		if n >= m.expected {
			break
		}
		if n != prev {
			prev, last = n, time.Now()
		}
		// Give up when nothing arrived for settle/4 or settle has passed since publishing ended.
		if time.Since(last) > c.Settle/4 || time.Since(start) > m.publishDur+c.Settle {
			break
		}
		_ = waitCtx(ctx, 20*time.Millisecond)
	}
	stopSpam()
	m.settleDur = time.Since(start) - m.publishDur
	coll.Freeze()
	m.live = coll.Live()
	if repair > 0 && coll.Count() < m.expected {
		c.progress("waiting up to %v for history repair (%d of %d delivered)", repair, coll.Count(), m.expected)
		poll(ctx, repair, func() bool { return coll.Count() >= m.expected })
	}
	m.repaired = coll.Count()
	wg.Wait()
	return m
}

// goroutines returns the number of goroutines after a short settle.
func goroutines() int {
	runtime.Gosched()
	return runtime.NumGoroutine()
}

// addPubsubFigures fills the common figures of a pubsub scenario (rooms, feeds) from both runs.
func addPubsubFigures(res *Result, o, r *psMeasure) {
	lo, lr := o.coll.Latencies(), r.coll.Latencies()
	res.add("p50_ms", Percentile(lo, 50), Percentile(lr, 50), "publish → delivered at a receiver")
	res.add("p95_ms", Percentile(lo, 95), Percentile(lr, 95), "")
	res.add("p99_ms", Percentile(lo, 99), Percentile(lr, 99), "")
	ln, rn := o.coll.LastNode(), r.coll.LastNode()
	res.add("last_node_p50_ms", Percentile(ln, 50), Percentile(rn, 50), "per message, its slowest receiver")
	res.add("delivery", frac(o.live, o.expected), frac(r.live, r.expected), "live, within the run")
	res.add("delivery_repaired", frac(o.repaired, o.expected), frac(r.repaired, r.expected), "eventually: late live copies, and (ours) history sync")
	res.add("bytes_per_delivery", perOK(float64(o.tot.RecvBytes), o.repaired), perOK(float64(r.tot.RecvBytes), r.repaired), "pubsub RPC bytes received (control included)")
	res.add("dups_per_delivery", perOK(float64(o.tot.Dups), o.repaired), perOK(float64(r.tot.Dups), r.repaired), "")
	res.add("rpcs_per_delivery", perOK(float64(o.tot.RecvRPCs), o.repaired), perOK(float64(r.tot.RecvRPCs), r.repaired), "pubsub RPCs received")
	res.add("ihave_per_delivery", perOK(float64(o.tot.IHave), o.repaired), perOK(float64(r.tot.IHave), r.repaired), "message IDs announced in IHAVE")
	res.add("iwant_per_delivery", perOK(float64(o.tot.IWant), o.repaired), perOK(float64(r.tot.IWant), r.repaired), "message IDs asked for in IWANT")
	res.add("idontwant_per_delivery", perOK(float64(o.tot.IDontWant), o.repaired), perOK(float64(r.tot.IDontWant), r.repaired), "")
	res.add("validations_per_delivery", perOK(float64(o.validateCalls), o.repaired), perOK(float64(r.validateCalls), r.repaired), "messages entering validation (one signature check each)")
	res.add("heap_per_node_kib", o.heapPerNode/1024, r.heapPerNode/1024, "live heap after warm-up")
	res.add("cpu_per_delivery_us", perOK(float64(o.usage.CPU)/1e3, o.repaired), perOK(float64(r.usage.CPU)/1e3, r.repaired), "process CPU while publishing and settling")
	res.add("cpu_per_node_pct", 100*float64(o.usage.CPU)/float64(max(o.usage.Wall, 1))/float64(res.Nodes),
		100*float64(r.usage.CPU)/float64(max(r.usage.Wall, 1))/float64(res.Nodes), "of one core")
	res.add("goroutines_per_node", o.goroutinesPerNode, r.goroutinesPerNode, "")
	res.add("alloc_kib_per_delivery", perOK(float64(o.usage.Alloc)/1024, o.repaired), perOK(float64(r.usage.Alloc)/1024, r.repaired), "heap allocated while publishing and settling")
	res.add("gc_cycles", float64(o.usage.GCCycles), float64(r.usage.GCCycles), "collections meanwhile (one heap: each marks every node)")
	res.add("gc_cpu_share", o.usage.gcShare(), r.usage.gcShare(), "of the CPU, by the runtime's estimate")
	so, sr := slices.Sorted(slices.Values(o.sendMS)), slices.Sorted(slices.Values(r.sendMS))
	res.add("publish_call_p50_ms", Percentile(so, 50), Percentile(sr, 50), "time the publish call takes")
	res.add("publish_call_p99_ms", Percentile(so, 99), Percentile(sr, 99), "")
	res.add("dropped_rpcs", float64(o.tot.DroppedRPCs), float64(r.tot.DroppedRPCs), "outbound RPCs dropped (queue full, or no queue for the peer)")
	res.add("rejected", float64(o.tot.Rejected), float64(r.tot.Rejected), "invalid messages rejected (signature checks and validators)")
	res.add("rejected_by_validator", float64(o.tot.ValidatorRejected), float64(r.tot.ValidatorRejected), "rejected by a topic validator (ours: the feature's own)")
	res.add("conns_per_node", o.conns, r.conns, "")
	res.add("topic_peers_per_node", o.topicPeers, r.topicPeers, "")
	res.Ours = Series{Latencies: lo, Times: o.coll.Times(), Expected: o.expected}
	res.Raw = Series{Latencies: lr, Times: r.coll.Times(), Expected: r.expected}
	if o.sendErrs+r.sendErrs > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("publish errors: ours %d, raw %d", o.sendErrs, r.sendErrs))
	}
	if o.openErrs+r.openErrs > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("gossipsub streams that failed to open: ours %d, raw %d", o.openErrs, r.openErrs))
	}
	if len(o.protoBytes) > 0 {
		res.Notes = append(res.Notes, bytesNote("ours", o.protoBytes), bytesNote("raw", r.protoBytes))
	}
	if u := o.coll.Unknown() + r.coll.Unknown(); u > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d copies of unrecorded messages", u))
	}
}
