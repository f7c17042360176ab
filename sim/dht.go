package sim

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/routing"

	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/directory"
)

func init() {
	register("dht", "directory lookups (find providers in the DHT, fetch and verify the cards) vs plain find-providers",
		Config{Nodes: 100, Msgs: 100, Size: 0, Rates: []float64{10}, Publishers: 10, Warmup: time.Second, Settle: 30 * time.Second},
		runDHT)
}

// dhtPlan is what both runs share: who announces which key, who looks up what and when, who churns.
type dhtPlan struct {
	keys       []string
	publishers []int         // publishers[k] announces keys[k]
	lookups    [][2]int      // (looker, key index)
	churn      []churnWindow // nodes going offline during the lookups
	phase      time.Duration
}

func planDHT(c Config) dhtPlan {
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0xd47))
	perm := rng.Perm(c.Nodes)
	p := dhtPlan{phase: time.Duration(float64(c.Msgs) / c.Rate() * float64(time.Second))}
	for k := range c.Publishers {
		p.publishers = append(p.publishers, perm[k])
		p.keys = append(p.keys, fmt.Sprintf("sim/%d/key-%d", c.Seed, k))
	}
	rest := perm[c.Publishers:]
	nChurn := min(int(math.Round(c.Churn*float64(c.Nodes))), len(rest)-1)
	p.churn = churnWindows(rng, rest[:max(nChurn, 0)], p.phase)
	lookers := rest[max(nChurn, 0):]
	for range c.Msgs {
		p.lookups = append(p.lookups, [2]int{lookers[rng.IntN(len(lookers))], rng.IntN(len(p.keys))})
	}
	return p
}

// lookupStats are the measurements of one run of the dht scenario.
type lookupStats struct {
	lat                 []float64 // ms, successful lookups, sorted
	times               []float64 // s since the first lookup, successful lookups
	ok, total           int
	hops, queried       []float64
	bytes               int64 // DHT and directory bytes received by all nodes during the lookups
	heapPerNode         float64
	cpu                 time.Duration
	rtSize, conns       float64
	holdersPerKey       float64
	lookupErrs, timeout int
	// ours with --spammers: directory requests the hostile peers answered with forged cards / left hanging
	spamForged, spamStalled int64
}

// lookupFn performs one lookup of key k from looker and reports whether the publisher was found.
type lookupFn func(ctx context.Context, looker, k int) (bool, error)

func runDHT(ctx context.Context, c Config) (*Result, error) {
	if c.Publishers < 1 {
		return nil, fmt.Errorf("%w: dht needs at least one publisher", ErrBadConfig)
	}
	topo := withSpammers(RandomTopology(c.Nodes, c.DegreeMin, c.DegreeMax, c.Seed), c, rand.New(rand.NewPCG(uint64(c.Seed), 0x5a7)))
	plan := planDHT(c)
	c.progress("dht: raw kad-dht, %d nodes, %d keys, %d lookups", c.Nodes, len(plan.keys), len(plan.lookups))
	rs, err := labelled(ctx, "raw", func(ctx context.Context) (*lookupStats, error) { return runDHTRaw(ctx, c, topo, plan) })
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	c.progress("dht: madang directory, %d nodes", c.Nodes)
	ou, err := labelled(ctx, "ours", func(ctx context.Context) (*lookupStats, error) { return runDHTOurs(ctx, c, topo, plan) })
	if err != nil {
		return nil, fmt.Errorf("ours: %w", err)
	}
	res := &Result{}
	pct := func(s []float64, p float64) float64 { return Percentile(s, p) }
	res.add("p50_ms", pct(ou.lat, 50), pct(rs.lat, 50), "lookup latency (ours: find providers + fetch and verify cards)")
	res.add("p95_ms", pct(ou.lat, 95), pct(rs.lat, 95), "")
	res.add("p99_ms", pct(ou.lat, 99), pct(rs.lat, 99), "")
	res.add("delivery", frac(ou.ok, ou.total), frac(rs.ok, rs.total), "lookups that found the announcer")
	res.add("hops_mean", mean(ou.hops), mean(rs.hops), "query rounds to the first peer holding the record")
	res.add("hops_max", maxOf(ou.hops), maxOf(rs.hops), "")
	res.add("peers_queried", mean(ou.queried), mean(rs.queried), "DHT peers asked per lookup")
	res.add("bytes_per_delivery", perOK(float64(ou.bytes), ou.ok), perOK(float64(rs.bytes), rs.ok), "DHT+directory bytes received per successful lookup")
	res.add("dups_per_delivery", math.NaN(), math.NaN(), "not applicable")
	res.add("heap_per_node_kib", ou.heapPerNode/1024, rs.heapPerNode/1024, "live heap after warm-up")
	res.add("cpu_per_lookup_ms", perOK(float64(ou.cpu)/1e6, ou.total), perOK(float64(rs.cpu)/1e6, rs.total), "process CPU during lookups")
	res.add("routing_table", ou.rtSize, rs.rtSize, "mean routing-table size")
	res.add("conns_per_node", ou.conns, rs.conns, "mean connections after the run")
	res.add("record_holders", ou.holdersPerKey, rs.holdersPerKey, "peers holding each provider record")
	res.Ours = Series{Latencies: ou.lat, Times: ou.times, Expected: ou.total}
	res.Raw = Series{Latencies: rs.lat, Times: rs.times, Expected: rs.total}
	res.Params = []Param{{"keys", float64(len(plan.keys))}}
	if c.Spammers > 0 {
		res.add("hostile_forged_answers", float64(ou.spamForged), math.NaN(), "directory requests hostile providers answered with forged cards")
		res.add("hostile_silent_requests", float64(ou.spamStalled), math.NaN(), "directory requests hostile providers never answered")
	}
	if ou.lookupErrs+rs.lookupErrs > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("lookup errors: ours %d, raw %d", ou.lookupErrs, rs.lookupErrs))
	}
	return res, nil
}

func frac(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

func perOK(v float64, n int) float64 {
	if n == 0 {
		return math.NaN()
	}
	return v / float64(n)
}

func mean(s []float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	t := 0.0
	for _, v := range s {
		t += v
	}
	return t / float64(len(s))
}

func maxOf(s []float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	return slices.Max(s)
}

// queryTracker follows one DHT lookup's query events and works out its depth: peers the lookup starts
// from are at depth 1, a peer first learned from the answer of a peer at depth d is at d+1. The lookup's
// hop count is the depth of the first queried peer that holds the provider record.
type queryTracker struct {
	holders map[peer.ID]bool
	self    peer.ID
	depth   map[peer.ID]int
	queried int
	hops    int
	done    chan struct{}
}

func trackQuery(ctx context.Context, self peer.ID, holders map[peer.ID]bool) (context.Context, context.CancelFunc, *queryTracker) {
	cctx, cancel := context.WithCancel(ctx)
	ectx, ch := routing.RegisterForQueryEvents(cctx)
	q := &queryTracker{holders: holders, self: self, depth: map[peer.ID]int{}, hops: -1, done: make(chan struct{})}
	if holders[self] {
		q.hops = 0
	}
	go func() {
		defer close(q.done)
		for ev := range ch {
			switch ev.Type {
			case routing.SendingQuery:
				q.queried++
				d, ok := q.depth[ev.ID]
				if !ok {
					d = 1
					q.depth[ev.ID] = d
				}
				if q.holders[ev.ID] && (q.hops < 0 || d < q.hops) {
					q.hops = d
				}
			case routing.PeerResponse:
				d := max(q.depth[ev.ID], 1)
				for _, ai := range ev.Responses {
					if _, ok := q.depth[ai.ID]; !ok {
						q.depth[ai.ID] = d + 1
					}
				}
			}
		}
	}()
	return ectx, cancel, q
}

// result waits for the event stream to end (after cancel) and returns hops (-1: no holder queried) and
// the number of peers queried.
func (q *queryTracker) result() (int, int) {
	<-q.done
	return q.hops, q.queried
}

// driveLookups starts the plan's lookups at the configured rate (each in its own goroutine), churns nodes
// as planned, and collects latencies, hops and success.
func driveLookups(ctx context.Context, c Config, plan dhtPlan, net *Network, topo Topology,
	ids func(int) peer.ID, holders []map[peer.ID]bool, fn lookupFn) *lookupStats {
	st := &lookupStats{total: len(plan.lookups)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	net.Churn(ctx, &wg, topo, start, plan.churn, c.progress)
	interval := time.Duration(float64(time.Second) / c.Rate())
	for i, lk := range plan.lookups {
		if waitCtx(ctx, time.Until(start.Add(time.Duration(i)*interval))) != nil {
			break
		}
		wg.Go(func() {
			lctx, cancel, q := trackQuery(ctx, ids(lk[0]), holders[lk[1]])
			t0 := time.Now()
			ok, err := fn(lctx, lk[0], lk[1])
			t1 := time.Now()
			cancel()
			hops, queried := q.result()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				st.lookupErrs++
			}
			st.queried = append(st.queried, float64(queried))
			if ok {
				st.ok++
				st.lat = append(st.lat, float64(t1.Sub(t0))/float64(time.Millisecond))
				st.times = append(st.times, t1.Sub(start).Seconds())
				if hops >= 0 {
					st.hops = append(st.hops, float64(hops))
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(st.lat)
	slices.Sort(st.times)
	return st
}

// holdersOf lists, per key, the peers whose provider store holds the announcer's record.
func holdersOf(ctx context.Context, dhts []*dht.IpfsDHT, cids []cid.Cid, announcer func(k int) peer.ID) ([]map[peer.ID]bool, float64) {
	out := make([]map[peer.ID]bool, len(cids))
	total := 0
	for k, c := range cids {
		out[k] = map[peer.ID]bool{}
		for _, d := range dhts {
			provs, err := d.ProviderStore().GetProviders(ctx, c.Hash())
			if err != nil {
				continue
			}
			for _, p := range provs {
				if p.ID == announcer(k) {
					out[k][d.PeerID()] = true
					total++
				}
			}
		}
	}
	return out, float64(total) / float64(max(len(cids), 1))
}

func dhtBytes(net *Network, match func(protocol.ID) bool) int64 {
	var t int64
	for _, b := range net.Bytes {
		for p, v := range b.Snapshot() {
			if match(p) {
				t += v
			}
		}
	}
	return t
}

func meanRT(dhts []*dht.IpfsDHT) float64 {
	t := 0
	for _, d := range dhts {
		t += d.RoutingTable().Size()
	}
	return float64(t) / float64(max(len(dhts), 1))
}

// startRawProvided starts plain DHT nodes on the topology, refreshes their routing tables and has each
// publisher of the plan provide its key (as directory.KeyCID).
func startRawProvided(ctx context.Context, c Config, topo Topology, plan dhtPlan) (_ *raw, _ []cid.Cid, err error) {
	spam := &dhtSpammers{}
	r, err := startRaw(ctx, c, c.Nodes, topo, false, true, netOpts{extra: spam.add})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	refreshDHT(ctx, r.dhts)
	cids := make([]cid.Cid, len(plan.keys))
	var wg sync.WaitGroup
	errs := make([]error, len(plan.keys))
	for k, key := range plan.keys {
		cids[k] = directory.KeyCID(key)
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, directory.ProvideTimeout)
			defer cancel()
			errs[k] = r.dhts[plan.publishers[k]].Provide(pctx, cids[k], true)
		})
	}
	wg.Wait()
	for k, err := range errs {
		if err != nil {
			return nil, nil, fmt.Errorf("provide %s: %w", plan.keys[k], err)
		}
	}
	if err := spam.provide(ctx, cids); err != nil {
		return nil, nil, err
	}
	return r, cids, nil
}

func runDHTRaw(ctx context.Context, c Config, topo Topology, plan dhtPlan) (*lookupStats, error) {
	r, cids, err := startRawProvided(ctx, c, topo, plan)
	if err != nil {
		return nil, err
	}
	defer r.close()
	if err := waitCtx(ctx, c.Warmup); err != nil {
		return nil, err
	}
	announcer := func(k int) peer.ID { return r.net.ID(plan.publishers[k]) }
	holders, hpk := holdersOf(ctx, r.dhts, cids, announcer)
	heap := heapInUse()
	c.measured("raw")
	before := dhtBytes(r.net, isDHTProto)
	mark := markUsage()
	st := driveLookups(ctx, c, plan, r.net, topo, r.net.ID, holders, func(ctx context.Context, looker, k int) (bool, error) {
		fctx, cancel := context.WithTimeout(ctx, directory.FindTimeout)
		defer cancel()
		found := false
		for ai := range r.dhts[looker].FindProvidersAsync(fctx, cids[k], directory.MaxProviders) {
			if ai.ID == announcer(k) {
				found = true
			}
		}
		return found, nil
	})
	st.cpu = mark.since().CPU
	st.bytes = dhtBytes(r.net, isDHTProto) - before
	st.heapPerNode = float64(heap-min(heap, r.heap0)) / float64(c.Nodes)
	st.rtSize, st.conns, st.holdersPerKey = meanRT(r.dhts), r.net.Conns(), hpk
	return st, nil
}

func isDHTProto(p protocol.ID) bool {
	s := string(p)
	return strings.Contains(s, "/kad/") || s == directory.ProtocolID
}

func runDHTOurs(ctx context.Context, c Config, topo Topology, plan dhtPlan) (*lookupStats, error) {
	spam := &dhtSpammers{prefix: node.DHTPrefix, directory: true}
	o, err := startOurs(ctx, c, c.Nodes, topo, netOpts{extra: spam.add})
	if err != nil {
		return nil, err
	}
	defer o.close()
	c.progress("dht: ours: %d nodes up and connected", len(o.nodes))
	dirs := make([]*directory.Service, len(o.nodes))
	for i, n := range o.nodes {
		v, ok := n.Lookup("directory")
		d, _ := v.(*directory.Service)
		if !ok || d == nil {
			return nil, fmt.Errorf("node %d has no directory service", i)
		}
		d.RegisterKind(CardKind, VerifyCard)
		dirs[i] = d
	}
	refreshDHT(ctx, o.dhts())
	c.progress("dht: ours: routing tables refreshed")
	cids := make([]cid.Cid, len(plan.keys))
	wantID := make([]string, len(plan.keys))
	for k, key := range plan.keys {
		cids[k] = directory.KeyCID(key)
		priv := ed25519.NewKeyFromSeed(o.ids[plan.publishers[k]].DeriveSecret("madang/sim-card/v1", []byte(key))[:32])
		card := SignCard(priv, fmt.Sprintf("card-%d", k), time.Now())
		id, _, err := VerifyCard(card)
		if err != nil {
			return nil, err
		}
		wantID[k] = id
		if err := dirs[plan.publishers[k]].Announce(key, CardKind, card); err != nil {
			return nil, fmt.Errorf("announce %s: %w", key, err)
		}
	}
	if !poll(ctx, directory.ProvideTimeout, func() bool {
		for k, key := range plan.keys {
			if !dirs[plan.publishers[k]].Provided(key) {
				return false
			}
		}
		return true
	}) {
		return nil, fmt.Errorf("directory keys not provided within %v", directory.ProvideTimeout)
	}
	if err := spam.provide(ctx, cids); err != nil {
		return nil, err
	}
	if err := waitCtx(ctx, c.Warmup); err != nil {
		return nil, err
	}
	c.progress("dht: ours: keys provided")
	announcer := func(k int) peer.ID { return o.net.ID(plan.publishers[k]) }
	holders, hpk := holdersOf(ctx, o.dhts(), cids, announcer)
	heap := heapInUse()
	c.measured("ours")
	before := dhtBytes(o.net, isDHTProto)
	mark := markUsage()
	st := driveLookups(ctx, c, plan, o.net, topo, o.net.ID, holders, func(ctx context.Context, looker, k int) (bool, error) {
		cards, err := dirs[looker].Lookup(ctx, plan.keys[k], 0)
		for _, cd := range cards {
			if cd.Kind == CardKind && cd.ID == wantID[k] && cd.From == announcer(k) {
				return true, nil
			}
		}
		return false, err
	})
	st.cpu = mark.since().CPU
	st.bytes = dhtBytes(o.net, isDHTProto) - before
	st.heapPerNode = float64(heap-min(heap, o.heap0)) / float64(c.Nodes)
	st.rtSize, st.conns, st.holdersPerKey = meanRT(o.dhts()), o.net.Conns(), hpk
	st.spamForged, st.spamStalled = spam.forged.Load(), spam.stalled.Load()
	return st, nil
}
