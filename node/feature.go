package node

import (
	"context"
	"fmt"
	"slices"
	"sync"

	record "github.com/libp2p/go-libp2p-record"
)

// Feature is one capability assembled into a node (friends, relay, rooms, channels). Each lives in its own
// file node/<feature>.go and registers itself from init(), so that features never edit each other's wiring.
type Feature struct {
	// Name identifies the feature in logs and lookups.
	Name string
	// Order sorts start-up: lower first (relay plumbing 10, friends 20, rooms 30, channels 40).
	Order int
	// DHTValidators are namespaced record validators the feature needs in the DHT ("inbox", "chanhead");
	// they must be known before the DHT is built.
	DHTValidators func() map[string]record.Validator
	// Start builds the feature's services on a node whose host, DHT, gossip router, store, events and API
	// already exist: it registers API routes and spec, subscribes topics, and hands long-running loops to
	// n.Go. It must not block.
	Start func(ctx context.Context, n *Node) error
}

var (
	featuresMu sync.Mutex
	features   []Feature
)

// RegisterFeature adds a feature to every node built after the call; call it from init().
func RegisterFeature(f Feature) {
	featuresMu.Lock()
	defer featuresMu.Unlock()
	for _, g := range features {
		if g.Name == f.Name {
			panic(fmt.Sprintf("node: feature %q registered twice", f.Name))
		}
	}
	features = append(features, f)
	slices.SortStableFunc(features, func(a, b Feature) int { return a.Order - b.Order })
}

func registeredFeatures() []Feature {
	featuresMu.Lock()
	defer featuresMu.Unlock()
	return slices.Clone(features)
}

// Provide makes a feature's service available to features that start after it (for example the mailbox
// client, used by the friends outbox). Consumers look it up by name and assert their own small interface.
func (n *Node) Provide(name string, v any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.shared[name] = v
}

// Lookup returns what a feature provided under name.
func (n *Node) Lookup(name string) (any, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.shared[name]
	return v, ok
}

// Go hands a long-running loop to the node: it runs under the node's errgroup from Run until the node stops.
// A loop that returns a non-nil error (other than on cancellation) stops the node.
func (n *Node) Go(name string, run func(ctx context.Context) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running {
		panic("node: Go called after Run started (call it from Feature.Start)")
	}
	n.loops = append(n.loops, loop{name: name, run: run})
}

// OnClose registers a cleanup that runs when the node shuts down, before the DHT, host and store close (in
// reverse order of registration).
func (n *Node) OnClose(fn func() error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.featureClosers = append(n.featureClosers, fn)
}
