package node

import (
	"context"

	"github.com/madang-p2p/madang/protocols/directory"
	"github.com/madang-p2p/madang/protocols/room"
)

// The directory (generic signed-card directory over the DHT) is its own feature so that channels can use it
// even when rooms are not started; rooms and channels look it up as "directory".
func init() {
	RegisterFeature(Feature{
		Name:  "directory",
		Order: 29,
		Start: func(ctx context.Context, n *Node) error {
			n.directory(ctx)
			return nil
		},
	})
	RegisterFeature(Feature{Name: "rooms", Order: 30, Start: startRooms})
}

// directory returns the node's directory service, building it on first use.
func (n *Node) directory(ctx context.Context) *directory.Service {
	if v, ok := n.Lookup("directory"); ok {
		if d, ok := v.(*directory.Service); ok {
			return d
		}
	}
	dir := directory.New(ctx, n.Host, n.DHT, n.Store.Namespace("directory"), n.Log)
	n.Provide("directory", dir)
	n.Go("directory", dir.Run)
	return dir
}

// startRooms runs Open Chat: the room service (topics, history sync, moderation, directory cards), its API
// and, on relays, keeping the rooms listed in relay.keep_rooms.
func startRooms(ctx context.Context, n *Node) error {
	c := n.Config.Rooms
	cfg := room.Config{
		RatePerMinute: c.RatePerMinute, Burst: c.Burst, HistoryLimit: c.HistoryLimit, HistoryOnJoin: c.HistoryOnJoin,
		RepairInterval: c.RepairInterval,
	}
	if n.Config.IsRelay() {
		cfg.Keep = n.Config.Relay.KeepRooms
	}
	svc := room.New(room.Deps{
		Host: n.Host, Routing: n.DHT, Gossip: n.Gossip, Store: n.Store.Namespace("rooms"), DB: n.Store,
		Events: n.Events, Account: n.Identity, Directory: n.directory(ctx), Log: n.Log,
	}, cfg)
	if err := svc.RegisterAPI(n.API); err != nil {
		return err
	}
	n.Provide("rooms", svc)
	n.Go("rooms", svc.Run)
	return nil
}
