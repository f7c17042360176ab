package sim

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/geo"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/directory"
	"github.com/madang-p2p/madang/protocols/feed"
)

func init() {
	register("feeds", "channels: discovering a shop by neighbourhood (vs plain find-providers of the same keys), feed sync throughput (vs the ed25519 verify rate), live post latency (vs a plain gossipsub topic)",
		Config{Nodes: 30, Msgs: 50, Size: 300, Rates: []float64{10}, Publishers: 5, Warmup: 3 * time.Second, Settle: 10 * time.Second},
		runFeeds)
}

// feedCategory is the shops' category in the feeds scenario.
const feedCategory = "mart"

// feedBacklog is how many entries per live post the synced channel holds (at least 1,000).
const feedBacklog = 20

const geohashAlphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

// shopGeohashes gives each shop a 7-character geohash in its own precision-5 cell.
func shopGeohashes(n int, seed int64) []string {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6e0))
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		b := make([]byte, 7)
		for i := range b {
			b[i] = geohashAlphabet[rng.IntN(len(geohashAlphabet))]
		}
		if !seen[string(b[:feed.AnnouncePrecision])] {
			seen[string(b[:feed.AnnouncePrecision])] = true
			out = append(out, string(b))
		}
	}
	return out
}

// searchKeys are the directory keys a neighbourhood search for gh looks up: its cell and the eight
// around it (as feed.Service.Nearby does).
func searchKeys(gh string) []string {
	cell := gh[:feed.AnnouncePrecision]
	ns, _ := geo.Neighbours(cell)
	keys := []string{feed.CellCategoryKey(cell, feedCategory)}
	for _, c := range ns {
		keys = append(keys, feed.CellCategoryKey(c, feedCategory))
	}
	return keys
}

type feedsOut struct {
	disc     *lookupStats
	syncRate float64 // entries per second (ours) or ed25519 verifies per second (raw)
	backlog  int
}

func runFeeds(ctx context.Context, c Config) (*Result, error) {
	if c.Publishers < 1 {
		return nil, fmt.Errorf("%w: feeds needs at least one shop (--publishers)", ErrBadConfig)
	}
	topo := RandomTopology(c.Nodes, c.DegreeMin, c.DegreeMax, c.Seed)
	plan := planDHT(c)
	ghs := shopGeohashes(len(plan.keys), c.Seed)
	for k := range plan.keys {
		plan.keys[k] = feed.CellCategoryKey(ghs[k][:feed.AnnouncePrecision], feedCategory)
	}
	backlog := max(feedBacklog*c.Msgs, 1000)

	c.progress("feeds: raw: find-providers of the 9 cell keys, %d nodes, %d shops", c.Nodes, len(plan.keys))
	rf, err := labelled(ctx, "raw", func(ctx context.Context) (*feedsOut, error) { return runFeedsRawDiscovery(ctx, c, topo, plan, ghs) })
	if err != nil {
		return nil, fmt.Errorf("raw: %w", err)
	}
	rf.syncRate = verifyRate(300*time.Millisecond, 200)
	c.progress("feeds: raw: single-core ed25519 verify rate %.0f/s; live topic", rf.syncRate)
	lp := planPubsub(c, c.Rate())
	lp.publishers = []int{plan.publishers[0]}
	lp.churn = slices.DeleteFunc(lp.churn, func(w churnWindow) bool { return w.node == plan.publishers[0] })
	rl, err := labelled(ctx, "raw", func(ctx context.Context) (*psMeasure, error) { return runRoomsRaw(ctx, c, lp) })
	if err != nil {
		return nil, fmt.Errorf("raw live: %w", err)
	}
	c.progress("feeds: madang channels, %d nodes", c.Nodes)
	var ol *psMeasure
	of, err := labelled(ctx, "ours", func(ctx context.Context) (of *feedsOut, err error) {
		of, ol, err = runFeedsOurs(ctx, c, topo, plan, ghs, lp, backlog)
		return of, err
	})
	if err != nil {
		return nil, fmt.Errorf("ours: %w", err)
	}
	res := &Result{Nodes: c.Nodes}
	addPubsubFigures(res, ol, rl)
	res.add("discover_p50_ms", Percentile(of.disc.lat, 50), Percentile(rf.disc.lat, 50), "search by neighbourhood (9 cells) until the shop's card is verified")
	res.add("discover_p99_ms", Percentile(of.disc.lat, 99), Percentile(rf.disc.lat, 99), "")
	res.add("discover_delivery", frac(of.disc.ok, of.disc.total), frac(rf.disc.ok, rf.disc.total), "searches that found the shop")
	res.add("discover_hops", mean(of.disc.hops), mean(rf.disc.hops), "query rounds to the first record holder")
	res.add("sync_entries_per_s", of.syncRate, rf.syncRate, "ours: feed sync of the backlog; raw: single-core ed25519 verifies/s (goal ratio ≥ 0.5)")
	res.Params = []Param{{"shops", float64(len(plan.keys))}, {"backlog", float64(backlog)}}
	return res, nil
}

// verifyRate measures single-core ed25519 verifications per second on messages of size bytes for about d.
func verifyRate(d time.Duration, size int) float64 {
	_, priv, _ := ed25519.GenerateKey(nil)
	msg := make([]byte, size)
	sig := ed25519.Sign(priv, msg)
	pub := priv.Public().(ed25519.PublicKey)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		for range 100 {
			ed25519.Verify(pub, msg, sig)
		}
		n += 100
	}
	return float64(n) / time.Since(start).Seconds()
}

func runFeedsRawDiscovery(ctx context.Context, c Config, topo Topology, plan dhtPlan, ghs []string) (*feedsOut, error) {
	r, cids, err := startRawProvided(ctx, c, topo, plan)
	if err != nil {
		return nil, err
	}
	defer r.close()
	announcer := func(k int) peer.ID { return r.net.ID(plan.publishers[k]) }
	holders, _ := holdersOf(ctx, r.dhts, cids, announcer)
	st := driveLookups(ctx, c, plan, r.net, topo, r.net.ID, holders, func(ctx context.Context, looker, k int) (bool, error) {
		fctx, cancel := context.WithTimeout(ctx, directory.FindTimeout)
		defer cancel()
		var found sync.Map
		var lw sync.WaitGroup
		for _, key := range searchKeys(ghs[k]) {
			lw.Go(func() {
				for ai := range r.dhts[looker].FindProvidersAsync(fctx, directory.KeyCID(key), directory.MaxProviders) {
					found.Store(ai.ID, true)
				}
			})
		}
		lw.Wait()
		_, ok := found.Load(announcer(k))
		return ok, nil
	})
	return &feedsOut{disc: st}, nil
}

func feedService(n *node.Node) (*feed.Service, error) {
	s := node.ChannelsService(n)
	if s == nil {
		return nil, fmt.Errorf("node has no channels service")
	}
	return s, nil
}

// linkVia is a channel link whose peer hint is node via.
func linkVia(o *ours, ch ed25519.PublicKey, via int) (string, error) {
	h := o.net.Hosts[via]
	var addrs []ma.Multiaddr
	for _, a := range h.Addrs() {
		addrs = append(addrs, a.Encapsulate(ma.StringCast("/p2p/"+h.ID().String())))
	}
	return feed.FormatLink(ch, "sim", addrs)
}

func channelKey(id feed.ChannelID) (ed25519.PublicKey, error) { return feed.ParseID(string(id)) }

func runFeedsOurs(ctx context.Context, c Config, topo Topology, plan dhtPlan, ghs []string, lp psPlan, backlog int) (*feedsOut, *psMeasure, error) {
	// Hostile peers (--spammers) are in the network from the start, on the live plan's edges; they run
	// Madang's gossip settings without validation and publish forged posts once the channel is live.
	var spam spammers
	o, err := startOurs(ctx, c, c.Nodes, lp.topo, netOpts{prefix: "/madang/feed/", extra: spam.add})
	if err != nil {
		return nil, nil, err
	}
	defer o.close()
	svcs := make([]*feed.Service, c.Nodes)
	for i, n := range o.nodes {
		if svcs[i], err = feedService(n); err != nil {
			return nil, nil, fmt.Errorf("node %d: %w", i, err)
		}
	}
	refreshDHT(ctx, o.dhts())
	// Shops open their channels; each is filed in the directory under its cell and category.
	chans := make([]feed.ChannelID, len(plan.keys))
	for k := range plan.keys {
		info, err := svcs[plan.publishers[k]].Create(ctx, feed.ProfileFields{
			Name: fmt.Sprintf("shop %d", k), Category: feedCategory, Geohash: ghs[k], Description: "fresh food",
		})
		if err != nil {
			return nil, nil, fmt.Errorf("create channel: %w", err)
		}
		chans[k] = feed.ChannelID(info.ChannelID)
	}
	dirOf := func(i int) *directory.Service {
		v, _ := o.nodes[i].Lookup("directory")
		d, _ := v.(*directory.Service)
		return d
	}
	if !poll(ctx, directory.ProvideTimeout, func() bool {
		for k, key := range plan.keys {
			if d := dirOf(plan.publishers[k]); d == nil || !d.Provided(key) {
				return false
			}
		}
		return true
	}) {
		return nil, nil, fmt.Errorf("shop cards not provided within %v", directory.ProvideTimeout)
	}
	c.progress("feeds: ours: %d shops filed in the directory", len(chans))
	cids := make([]cid.Cid, len(plan.keys))
	for k, key := range plan.keys {
		cids[k] = directory.KeyCID(key)
	}
	holders, _ := holdersOf(ctx, o.dhts(), cids, func(k int) peer.ID { return o.net.ID(plan.publishers[k]) })
	disc := driveLookups(ctx, c, plan, o.net, topo, o.net.ID, holders, func(ctx context.Context, looker, k int) (bool, error) {
		found, err := svcs[looker].Nearby(ctx, ghs[k], feedCategory, "", 20)
		for _, f := range found {
			if f.Card != nil && f.Card.Profile != nil && f.Card.Profile.ID() == chans[k] {
				return true, nil
			}
		}
		return false, err
	})
	out := &feedsOut{disc: disc, backlog: backlog}

	// Sync throughput: a neighbour of shop 0 follows a channel with a long backlog.
	shop := plan.publishers[0]
	bl, err := svcs[shop].Create(ctx, feed.ProfileFields{Name: "backlog", Category: feedCategory, Geohash: ghs[0]})
	if err != nil {
		return nil, nil, err
	}
	blID := feed.ChannelID(bl.ChannelID)
	pad := strings.Repeat("x", max(c.Size-40, 1))
	for i := range backlog {
		if _, err := svcs[shop].Post(ctx, blID, feed.Draft{Kind: "post", Title: fmt.Sprintf("%08d", i), Body: pad}); err != nil {
			return nil, nil, fmt.Errorf("post backlog: %w", err)
		}
	}
	follower := topo.Neighbours(shop)[0]
	key, _ := channelKey(blID)
	link, err := linkVia(o, key, shop)
	if err != nil {
		return nil, nil, err
	}
	t0 := time.Now()
	if _, err := svcs[follower].Follow(ctx, link, 2*time.Minute); err != nil {
		return nil, nil, fmt.Errorf("follow backlog: %w", err)
	}
	if !poll(ctx, 2*time.Minute, func() bool {
		info, err := svcs[follower].Describe(blID)
		return err == nil && info.Seq >= uint64(backlog)
	}) {
		return nil, nil, fmt.Errorf("backlog of %d entries not synced within 2m", backlog)
	}
	out.syncRate = float64(backlog) / time.Since(t0).Seconds()
	c.progress("feeds: ours: %d entries synced at %.0f/s", backlog, out.syncRate)

	live, err := runFeedsLive(ctx, c, o, svcs, lp, chans[0], &spam)
	return out, live, err
}

// runFeedsLive has every node follow shop 0's channel (breadth first, each through a neighbour that
// already has it), trims the connections to the topology, and measures live posts.
func runFeedsLive(ctx context.Context, c Config, o *ours, svcs []*feed.Service, p psPlan, ch feed.ChannelID, spam *spammers) (*psMeasure, error) {
	shop := p.publishers[0]
	key, _ := channelKey(ch)
	layers, parent := bfsParents(p.topo, p.n, shop)
	for _, layer := range layers {
		var wg sync.WaitGroup
		errs := make(chan error, len(layer))
		sem := make(chan struct{}, 8)
		for _, i := range layer {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				link, err := linkVia(o, key, parent[i])
				if err == nil {
					_, err = svcs[i].Follow(ctx, link, 30*time.Second)
				}
				if err != nil {
					errs <- fmt.Errorf("node %d follows via %d: %w", i, parent[i], err)
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	c.progress("feeds: ours: %d followers", p.n-1)
	topic := feed.Topic(ch)
	if err := spam.join(topic); err != nil {
		return nil, err
	}
	if err := onTopology(ctx, c, o, p.topo, topic); err != nil {
		return nil, err
	}
	m, coll := prepareMeasure(c, o.tracers, o.heap0, o.gor0, p.n, "ours")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	stopWatch := watchEvents(rctx, o, allNodes(o), []string{"channel.post"}, func(i int, ev events.Event) {
		var d struct {
			ChannelID string `json:"channel_id"`
			Seq       uint64 `json:"seq"`
			Live      bool   `json:"live"`
		}
		if json.Unmarshal(ev.Data, &d) == nil && d.ChannelID == string(ch) {
			coll.Got(strconv.FormatUint(d.Seq, 10), i, ev.Time, d.Live)
		}
	})
	defer stopWatch()
	pad := strings.Repeat("x", max(c.Size-40, 1))
	mark := markUsage()
	out := drive(ctx, c, p, o.net, coll, func(ctx context.Context, pub, k int) error {
		t0 := time.Now()
		e, err := svcs[pub].Post(ctx, ch, feed.Draft{Kind: "post", Title: fmt.Sprintf("%08d", k), Body: pad})
		if err != nil {
			return err
		}
		coll.Sent(strconv.FormatUint(e.Seq, 10), pub, t0)
		return nil
	}, func(ctx context.Context, s int) {
		spamLoop(ctx, func(k int) error { return spam.publish(ctx, s-p.n, forgedEntry(k, c.Size)) })
	}, RepairWait)
	finishMeasureOurs(out, m, mark, o, topic)
	return out, nil
}

// forgedEntry is a well-formed channel post signed by a throwaway key, not the channel's: the channel's
// validator must reject it (and penalise whoever forwarded it).
func forgedEntry(k, size int) []byte {
	_, priv, _ := ed25519.GenerateKey(crand.Reader)
	e, err := feed.SignEntry(priv, uint64(k+1), nil, time.Now(), feed.Draft{Kind: "post", Title: "forged", Body: strings.Repeat("s", max(size-40, 1))})
	if err != nil {
		return []byte("junk")
	}
	return e.Raw
}
