package feed

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/directory"
	"github.com/madang-p2p/madang/store"
)

// tnode is one node of an in-process test network: a mocknet host with the DHT (chanhead validator), gossip,
// the directory and the channels service, assembled as node/channels.go does.
type tnode struct {
	h    host.Host
	kad  *dht.IpfsDHT
	dir  *directory.Service
	svc  *Service
	bus  *events.Bus
	id   *identity.Identity
	st   *store.Store
	stop func()
}

type netOpts struct {
	relay   func(i int) bool
	pin     []string // relay.pin_feeds of relay nodes
	refresh time.Duration
	batch   int
	noDir   bool
}

// testNet starts n nodes on a mocknet, linked and connected in a full mesh.
func testNet(t testing.TB, n int, o netOpts) (mocknet.Mocknet, []*tnode) {
	t.Helper()
	var out []*tnode
	// Stores close last, after the mocknet: stream handlers still running when a host closes may touch them.
	t.Cleanup(func() {
		for _, nd := range out {
			_ = nd.st.Close()
		}
	})
	mn := mocknet.New()
	t.Cleanup(func() { _ = mn.Close() })
	for i := range n {
		id, err := identity.New(fmt.Sprintf("n%d", i))
		if err != nil {
			t.Fatal(err)
		}
		h, err := mn.AddPeer(id.HostKey(), mustAddr(fmt.Sprintf("/ip4/10.0.0.%d/tcp/4040", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, startNode(t, h, id, o, i))
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	for _, nd := range out {
		waitFor(t, 10*time.Second, func() bool { return nd.kad.RoutingTable().Size() >= min(n-1, 1) }, "routing table")
	}
	return mn, out
}

// joinNet starts one more node on a test network and connects it to every node. (Its in-memory store is
// left to the garbage collector: closing it before the mocknet could crash late stream handlers.)
func joinNet(t testing.TB, mn mocknet.Mocknet, o netOpts, relay bool) *tnode {
	t.Helper()
	id, err := identity.New("late")
	if err != nil {
		t.Fatal(err)
	}
	h, err := mn.AddPeer(id.HostKey(), mustAddr(fmt.Sprintf("/ip4/10.0.3.%d/tcp/4040", len(mn.Hosts()))))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	nd := startNodeOn(t, h, id, o, relay, st)
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	return nd
}

func startNode(t testing.TB, h host.Host, id *identity.Identity, o netOpts, i int) *tnode {
	t.Helper()
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	return startNodeOn(t, h, id, o, o.relay != nil && o.relay(i), st)
}

// startNodeWithStore starts a node on a store the caller opened (and closes after stop).
func startNodeWithStore(t testing.TB, h host.Host, id *identity.Identity, o netOpts, st *store.Store) *tnode {
	return startNodeOn(t, h, id, o, false, st)
}

func startNodeOn(t testing.TB, h host.Host, id *identity.Identity, o netOpts, relay bool, st *store.Store) *tnode {
	t.Helper()
	kad, err := dht.New(h, dht.ProtocolPrefix("/madang"), dht.Mode(dht.ModeServer),
		dht.Datastore(st.Datastore("dht")), dht.NamespacedValidator(HeadNamespace, HeadValidator{}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs, err := gossip.New(ctx, h, gossip.Options{MaxMessageSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	nd := &tnode{h: h, kad: kad, bus: events.NewBus(1<<16, 0), id: id, st: st}
	var dir Directory
	if !o.noDir {
		nd.dir = directory.New(ctx, h, kad, st.Namespace("directory"), nil, directory.Options{RetryMin: 50 * time.Millisecond})
		dir = nd.dir
	}
	opts := Options{
		Host: h, Routing: kad, Gossip: gs, Store: st, NS: st.Namespace("channels"), Events: nd.bus, Secrets: id,
		Directory: dir, Relay: relay, SyncBatch: o.batch, Refresh: o.refresh,
	}
	if relay {
		opts.PinFeeds = o.pin
	}
	nd.svc, err = New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = nd.svc.Run(ctx); done <- struct{}{} }()
	if nd.dir != nil {
		go func() { _ = nd.dir.Run(ctx); done <- struct{}{} }()
	} else {
		done <- struct{}{}
	}
	var stopped bool
	nd.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		<-done
		<-done
		_ = nd.svc.Close()
		_ = kad.Close()
		_ = h.Close()
	}
	t.Cleanup(nd.stop)
	return nd
}

func waitFor(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, fmt.Sprintf(format, args...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// events collects a node's events of some types.
func watch(t testing.TB, bus *events.Bus, types ...string) func() []events.Event {
	sub := bus.Subscribe(bus.Last(), types)
	t.Cleanup(sub.Close)
	var got []events.Event
	return func() []events.Event {
		for {
			select {
			case ev, ok := <-sub.C():
				if !ok {
					return got
				}
				got = append(got, ev)
			default:
				return got
			}
		}
	}
}

func eventField(ev events.Event, key string) any {
	var m map[string]any
	_ = json.Unmarshal(ev.Data, &m)
	return m[key]
}

func mart() ProfileFields {
	return ProfileFields{Name: "Haenam Mart", Category: "mart", Tags: []string{"Kimchi", "#fresh fish"}, Geohash: "wydm9qy",
		Address: "12 Sejong-daero", Hours: "08-22", Phone: "02-123-4567", Description: "Neighbourhood mart"}
}

func (nd *tnode) priv(id ChannelID) ed25519.PrivateKey {
	nd.svc.mu.Lock()
	defer nd.svc.mu.Unlock()
	return nd.svc.chans[id].priv
}

func mustAddr(s string) ma.Multiaddr { return ma.StringCast(s) }
