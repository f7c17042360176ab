package node

import (
	"context"

	record "github.com/libp2p/go-libp2p-record"

	"github.com/madang-p2p/madang/protocols/feed"
)

// The channels feature: merchant feeds (signed, hash-chained logs), their head records in the DHT, live
// topics, feed sync, discovery through the directory by neighbourhood and category, following, and pinning on
// relays.
func init() {
	RegisterFeature(Feature{
		Name:  "channels",
		Order: 40,
		DHTValidators: func() map[string]record.Validator {
			return map[string]record.Validator{feed.HeadNamespace: feed.HeadValidator{}}
		},
		Start: startChannels,
	})
}

// ProvideChannels is the name under which the channels feature provides its service (relay status reads
// PinnedCount from it).
const ProvideChannels = "channels"

// ChannelsService returns the node's channels service (nil without the channels feature).
func ChannelsService(n *Node) *feed.Service {
	v, _ := n.Lookup(ProvideChannels)
	s, _ := v.(*feed.Service)
	return s
}

func startChannels(ctx context.Context, n *Node) error {
	var dir feed.Directory
	if v, ok := n.Lookup("directory"); ok {
		dir, _ = v.(feed.Directory)
	}
	cc := n.Config.Channels
	o := feed.Options{
		Host: n.Host, Routing: n.DHT, Gossip: n.Gossip, Store: n.Store, NS: n.Store.Namespace("channels"),
		Events: n.Events, Secrets: n.Identity, Log: n.Log, Directory: dir, Relay: n.Config.IsRelay(),
		Mirror: cc.Mirror, SyncBatch: cc.SyncBatch, Refresh: cc.RefreshInterval, Republish: cc.RepublishInterval,
	}
	if n.Config.IsRelay() {
		o.PinFeeds = n.Config.Relay.PinFeeds
	}
	svc, err := feed.New(ctx, o)
	if err != nil {
		return err
	}
	n.OnClose(svc.Close)
	if err := svc.RegisterAPI(n.API); err != nil {
		return err
	}
	n.Provide(ProvideChannels, svc)
	n.Go("channels", svc.Run)
	return nil
}
