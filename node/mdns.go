package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// MDNSService is the LAN discovery tag; only used when network.mdns is on.
const MDNSService = "madang"

func (n *Node) startMDNS() error {
	n.Go("mdns", func(ctx context.Context) error {
		s := mdns.NewMdnsService(n.Host, MDNSService, mdnsNotifee{n: n, ctx: ctx})
		if err := s.Start(); err != nil {
			return err
		}
		<-ctx.Done()
		return s.Close()
	})
	return nil
}

type mdnsNotifee struct {
	n   *Node
	ctx context.Context
}

func (m mdnsNotifee) HandlePeerFound(ai peer.AddrInfo) {
	if ai.ID == m.n.Host.ID() {
		return
	}
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	defer cancel()
	if err := m.n.Host.Connect(ctx, ai); err != nil {
		m.n.Log.Debug("LAN peer unreachable", "peer", ai.ID, "err", err)
	}
}
