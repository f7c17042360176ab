package node

import (
	"fmt"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	noise "github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/identity"
)

// buildHost assembles the libp2p host: TCP and QUIC, Noise and TLS, yamux, identify and ping, a resource
// manager whose limits come from config and sit above the connection manager's high water, relay client with
// the configured static relays, hole punching, AutoNAT; NAT port mapping only when configured.
func buildHost(cfg config.Config, id *identity.Identity, reg prometheus.Registerer) (host.Host, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	scaled := limits.AutoScale()
	r := cfg.Resources
	if r.MaxConns <= cfg.ConnMgr.HighWater {
		return nil, fmt.Errorf("resources.max_conns (%d) must be above connmgr.high_water (%d), or trimming never happens",
			r.MaxConns, cfg.ConnMgr.HighWater)
	}
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns:         rcmgr.LimitVal(r.MaxConns),
			ConnsInbound:  rcmgr.LimitVal(r.MaxConnsInbound),
			ConnsOutbound: rcmgr.LimitVal(r.MaxConns),
			Streams:       rcmgr.LimitVal(r.MaxStreams),
			Memory:        rcmgr.LimitVal64(int64(r.MaxMemoryMiB) << 20),
			FD:            rcmgr.LimitVal(r.MaxFDs),
		},
	}
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(scaled)),
		rcmgr.WithMetricsDisabled())
	if err != nil {
		return nil, fmt.Errorf("resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(cfg.ConnMgr.LowWater, cfg.ConnMgr.HighWater,
		connmgr.WithGracePeriod(cfg.ConnMgr.GracePeriod))
	if err != nil {
		return nil, fmt.Errorf("connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(id.HostKey()),
		libp2p.ListenAddrStrings(cfg.Listen...),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Security(libp2ptls.ID, libp2ptls.New),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.UserAgent("madang/" + Version()),
		libp2p.PrometheusRegisterer(reg),
		libp2p.Ping(true),
		libp2p.EnableRelay(),
		libp2p.NonPublicAddrPublishing(!cfg.Network.PublicAddrsOnly),
	}
	if cfg.Network.HolePunching {
		opts = append(opts, libp2p.EnableHolePunching())
	}
	if cfg.Network.NATPortMap {
		opts = append(opts, libp2p.NATPortMap())
	}
	if cfg.Network.AutoNAT {
		opts = append(opts, libp2p.EnableAutoNATv2())
		if cfg.Role == "relay" {
			opts = append(opts, libp2p.EnableNATService())
		}
	}
	if relays, err := addrInfos(cfg.Relays); err != nil {
		return nil, fmt.Errorf("relays: %w", err)
	} else if len(relays) > 0 {
		opts = append(opts, libp2p.EnableAutoRelayWithStaticRelays(relays))
	}
	if cfg.Role == "relay" {
		// A community relay is public by definition: do not wait for AutoNAT before serving.
		opts = append(opts, libp2p.ForceReachabilityPublic())
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, nil
}

func addrInfos(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, a := range addrs {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", a, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}
