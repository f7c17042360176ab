// Package node assembles a Madang node and owns its lifecycle: identity, store, libp2p host, private DHT,
// gossipsub, event bus, local API and the registered features (friends, relay, rooms, channels). New builds
// everything; Run serves until its context ends and then closes the parts in reverse order.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/madang-p2p/madang/api"
	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/events"
	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/store"
)

// version is set at link time (-ldflags "-X github.com/madang-p2p/madang/node.version=v1.2.3").
var version = ""

// Version is the build's version.
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Node is an assembled Madang node. Its exported parts are for features (node/<feature>.go) and tests.
type Node struct {
	Config   config.Config
	Home     string
	Log      *slog.Logger
	Identity *identity.Identity
	Store    *store.Store
	Host     host.Host
	DHT      *dht.IpfsDHT
	Gossip   *gossip.Router
	Events   *events.Bus
	API      *api.Server
	Metrics  *prometheus.Registry

	started   time.Time
	token     string
	apiLn     net.Listener
	psCancel  context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	ownStore  bool

	mu             sync.Mutex
	running        bool
	loops          []loop
	featureClosers []func() error
	shared         map[string]any
}

type loop struct {
	name string
	run  func(ctx context.Context) error
}

type options struct {
	host     host.Host
	store    *store.Store
	id       *identity.Identity
	log      *slog.Logger
	noAPI    bool
	tracer   pubsub.RawTracer
	features []string
}

// Option changes how New assembles a node.
type Option func(*options)

// WithHost runs the node on a host built elsewhere (mocknet for simulations); the node takes ownership and
// closes it. The host's key must be the identity's device key.
func WithHost(h host.Host) Option { return func(o *options) { o.host = h } }

// WithStore uses an already open store (the node takes ownership).
func WithStore(s *store.Store) Option { return func(o *options) { o.store = s } }

// WithIdentity uses this identity instead of loading <home>/identity.key.
func WithIdentity(id *identity.Identity) Option { return func(o *options) { o.id = id } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithoutAPI builds no HTTP listener (simulations); API routes are still registered on n.API.
func WithoutAPI() Option { return func(o *options) { o.noAPI = true } }

// WithGossipTracer attaches a raw pubsub tracer (simulations count bytes and duplicates with it).
func WithGossipTracer(t pubsub.RawTracer) Option { return func(o *options) { o.tracer = t } }

// WithFeatures limits the node to the named features (default: all registered).
func WithFeatures(names ...string) Option { return func(o *options) { o.features = names } }

// ErrNoIdentity is returned when the home has no identity and none was given.
var ErrNoIdentity = errors.New("no identity in home (run `madang init`)")

// New assembles a node from a validated config. home is the node's directory ("" = in memory: then an
// identity must be given with WithIdentity and no API address file is written). ctx bounds the lifetime of
// gossipsub; Run and Close end everything else.
func New(ctx context.Context, home string, cfg config.Config, opts ...Option) (_ *Node, err error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{Config: cfg, Home: home, Log: o.log, shared: map[string]any{}, started: time.Now()}
	if n.Log == nil {
		n.Log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	paths := config.PathsFor(home)

	n.Identity = o.id
	if n.Identity == nil {
		if home == "" {
			return nil, ErrNoIdentity
		}
		if n.Identity, err = identity.Load(paths.Identity); errors.Is(err, identity.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNoIdentity, home)
		} else if err != nil {
			return nil, err
		}
	}

	n.Store, n.ownStore = o.store, true
	if n.Store == nil {
		if n.Store, err = store.Open(paths.Store, store.Options{CacheMiB: cfg.Store.CacheMiB, InMemory: home == ""}); err != nil {
			return nil, err
		}
	}

	n.Metrics = prometheus.NewRegistry()
	n.Host = o.host
	if n.Host == nil {
		if n.Host, err = buildHost(cfg, n.Identity, n.Metrics); err != nil {
			return nil, err
		}
	}
	if n.Host.ID() != n.Identity.PeerID() {
		return nil, fmt.Errorf("host key is not the identity's device key (%s != %s)", n.Host.ID(), n.Identity.PeerID())
	}

	feats := selectFeatures(o.features)
	validators := map[string]record.Validator{}
	for _, f := range feats {
		if f.DHTValidators == nil {
			continue
		}
		for ns, v := range f.DHTValidators() {
			validators[ns] = v
		}
	}
	if n.DHT, err = buildDHT(cfg, n.Host, n, validators); err != nil {
		return nil, err
	}

	psCtx, cancel := context.WithCancel(ctx)
	n.psCancel = cancel
	if n.Gossip, err = gossip.New(psCtx, n.Host, gossip.Options{
		MaxMessageSize: cfg.Pubsub.MaxMessageSize, Log: n.Log.With("component", "pubsub"), Tracer: o.tracer,
	}); err != nil {
		return nil, err
	}

	n.Events = events.NewBus(events.DefaultCapacity, events.DefaultMaxBytes)
	// The token lives in <home>/api.token; an in-memory node gets a random one (APIToken) so tests can call
	// its handlers through n.API.Handler().
	if home != "" {
		if n.token, err = ensureToken(paths.Token); err != nil {
			return nil, err
		}
	} else {
		n.token = randomToken()
	}
	token := n.token
	n.API = api.New(api.Options{
		Token: token, Log: n.Log, Events: n.Events, Gatherer: n.Metrics,
		AllowedHosts: cfg.API.AllowedHosts,
	})
	if err := n.registerNodeAPI(); err != nil {
		return nil, err
	}
	n.registerMetrics()
	if cfg.Network.MDNS {
		if err := n.startMDNS(); err != nil {
			return nil, err
		}
	}
	for _, f := range feats {
		if err := f.Start(psCtx, n); err != nil {
			return nil, fmt.Errorf("start %s: %w", f.Name, err)
		}
	}
	if !o.noAPI {
		if n.apiLn, err = net.Listen("tcp", cfg.API.Listen); err != nil {
			return nil, fmt.Errorf("api listen %s: %w", cfg.API.Listen, err)
		}
	}
	return n, nil
}

func selectFeatures(names []string) []Feature {
	all := registeredFeatures()
	if names == nil {
		return all
	}
	var out []Feature
	for _, f := range all {
		for _, want := range names {
			if f.Name == want {
				out = append(out, f)
			}
		}
	}
	return out
}

// APIAddr is the bound address of the local API ("" without API).
func (n *Node) APIAddr() string {
	if n.apiLn == nil {
		return ""
	}
	return n.apiLn.Addr().String()
}

// APIToken is the bearer token of the local API.
func (n *Node) APIToken() string { return n.token }

// Uptime since New.
func (n *Node) Uptime() time.Duration { return time.Since(n.started) }

// Run serves the API and runs the node's loops until ctx ends or a loop fails, then shuts everything down in
// reverse order (API, features, DHT, host, pubsub, store). It returns nil on a clean shutdown.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	n.running = true
	loops := append([]loop{{name: "bootstrap", run: n.bootstrapLoop}}, n.loops...)
	n.mu.Unlock()

	g, gctx := errgroup.WithContext(ctx)
	if n.apiLn != nil {
		ln := n.apiLn
		g.Go(func() error { return n.API.Serve(gctx, ln) })
		if n.Home != "" {
			if err := writeFileAtomic(config.PathsFor(n.Home).APIAddr, []byte(ln.Addr().String()+"\n"), 0o600); err != nil {
				return errors.Join(err, n.Close())
			}
		}
	}
	for _, l := range loops {
		g.Go(func() error {
			if err := l.run(gctx); err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", l.name, err)
			}
			return nil
		})
	}
	n.Log.Info("Node running", "peer", n.Host.ID(), "account", n.Identity.AccountID(), "role", n.Config.Role, "api", n.APIAddr())
	err := g.Wait()
	return errors.Join(err, n.Close())
}

// Close releases everything New built, in reverse order. Safe to call more than once.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		var errs []error
		if n.apiLn != nil {
			_ = n.apiLn.Close()
			if n.Home != "" {
				_ = os.Remove(config.PathsFor(n.Home).APIAddr)
			}
		}
		n.mu.Lock()
		closers := n.featureClosers
		n.mu.Unlock()
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		if n.DHT != nil {
			errs = append(errs, n.DHT.Close())
		}
		if n.Host != nil {
			errs = append(errs, n.Host.Close())
		}
		if n.psCancel != nil {
			n.psCancel()
		}
		if n.Store != nil && n.ownStore {
			errs = append(errs, n.Store.Close())
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}
