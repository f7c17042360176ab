package node

import (
	"context"

	"github.com/madang-p2p/madang/protocols/directory"
)

// The directory (generic signed-card directory over the DHT) is its own feature so that channels can use it
// even when rooms are not started; rooms and channels look it up as "directory".
func init() {
	RegisterFeature(Feature{
		Name:  "directory",
		Order: 29,
		Start: func(_ context.Context, n *Node) error {
			dir := directory.New(n.Host, n.DHT, n.Store.Namespace("directory"), n.Log)
			n.Provide("directory", dir)
			n.Go("directory", dir.Run)
			return nil
		},
	})
}
