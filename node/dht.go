package node

import (
	"context"
	"fmt"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/madang-p2p/madang/config"
)

// DHTPrefix makes Madang's DHT private: /madang/kad/1.0.0, never the public IPFS Amino DHT.
const DHTPrefix = "/madang"

func buildDHT(cfg config.Config, h host.Host, n *Node, validators map[string]record.Validator) (*dht.IpfsDHT, error) {
	boot, err := addrInfos(cfg.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	mode := dht.ModeAuto
	switch {
	case cfg.DHTServer():
		mode = dht.ModeServer
	case cfg.DHT.Mode == "client":
		mode = dht.ModeClient
	}
	opts := []dht.Option{
		dht.ProtocolPrefix(DHTPrefix),
		dht.Mode(mode),
		dht.Datastore(n.Store.Datastore("dht")),
		dht.BootstrapPeers(boot...),
	}
	for ns, v := range validators {
		opts = append(opts, dht.NamespacedValidator(ns, v))
	}
	if cfg.Network.PublicAddrsOnly {
		opts = append(opts,
			dht.QueryFilter(dht.PublicQueryFilter),
			dht.RoutingTableFilter(dht.PublicRoutingTableFilter),
			dht.AddressFilter(publicOnly))
	}
	kad, err := dht.New(h, opts...)
	if err != nil {
		return nil, fmt.Errorf("start dht: %w", err)
	}
	return kad, nil
}

func publicOnly(addrs []ma.Multiaddr) []ma.Multiaddr {
	out := addrs[:0:0]
	for _, a := range addrs {
		if manet.IsPublicAddr(a) {
			out = append(out, a)
		}
	}
	return out
}

// bootstrapLoop connects to the configured bootstrap peers (protected from trimming) and refreshes the DHT,
// then re-checks every 30 s and reconnects to any that dropped.
func (n *Node) bootstrapLoop(ctx context.Context) error {
	boot, _ := addrInfos(n.Config.Bootstrap)
	for _, ai := range boot {
		n.Host.ConnManager().Protect(ai.ID, "bootstrap")
	}
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		connected := false
		for _, ai := range boot {
			if n.Host.Network().Connectedness(ai.ID) == network.Connected {
				connected = true
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := n.Host.Connect(cctx, ai); err != nil {
				n.Log.Debug("Bootstrap peer unreachable", "peer", ai.ID, "err", err)
			} else {
				connected = true
			}
			cancel()
		}
		if connected || len(boot) == 0 {
			if err := n.DHT.Bootstrap(ctx); err != nil && ctx.Err() == nil {
				n.Log.Debug("DHT bootstrap", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Connect dials a peer by full multiaddr (with /p2p/) with a deadline and refreshes the DHT on success.
func (n *Node) Connect(ctx context.Context, addr string) (peer.ID, error) {
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		return "", fmt.Errorf("connect %q: %w", addr, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.Host.Connect(cctx, *ai); err != nil {
		return "", fmt.Errorf("connect %s: %w", ai.ID, err)
	}
	if n.DHT != nil {
		_ = n.DHT.Bootstrap(ctx)
	}
	return ai.ID, nil
}
