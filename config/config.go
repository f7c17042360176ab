// Package config loads, validates and documents Madang's configuration.
//
// It is the only package that uses viper. Values come from four layers, later layers winning:
// the defaults in code (Default), the YAML file (<home>/config.yaml or --config), environment
// variables MADANG_<KEY> and command-line flags (LoadOptions.Overrides).
//
// The Config struct is the single source of truth: keys, defaults, environment variable names,
// the commented sample file and type checks are all derived from its yaml, mapstructure and doc
// tags by reflection, so a new tagged field needs no other change in this package.
package config

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Roles a node can play.
const (
	RoleDesktop  = "desktop"
	RoleRelay    = "relay"
	RoleMerchant = "merchant"
)

// DHT modes accepted in dht.mode. The empty mode picks one by role.
const (
	dhtModeByRole = ""
	dhtModeAuto   = "auto"
	dhtModeClient = "client"
	dhtModeServer = "server"
)

// Config is Madang's configuration. Every field carries yaml and mapstructure tags with the same
// snake_case key and a doc tag that becomes its comment in the sample file.
type Config struct {
	Role      string          `yaml:"role" mapstructure:"role" doc:"Role of this node: desktop (a person's messenger), relay (a public, always-on node that relays connections, stores mailboxes and serves the DHT) or merchant."`
	Name      string          `yaml:"name" mapstructure:"name" doc:"Display name used when a new identity is created; for a relay, the public name it announces."`
	Listen    []string        `yaml:"listen" mapstructure:"listen" doc:"Multiaddrs to listen on."`
	Bootstrap []string        `yaml:"bootstrap" mapstructure:"bootstrap" doc:"Peers to connect to at start, as multiaddrs ending in /p2p/<peer ID>. There are no built-in bootstrap peers."`
	Relays    []string        `yaml:"relays" mapstructure:"relays" doc:"Static relays to reserve a slot on, as multiaddrs ending in /p2p/<peer ID>."`
	API       APIConfig       `yaml:"api" mapstructure:"api" doc:"Local HTTP API used by the command line and user interfaces."`
	Log       LogConfig       `yaml:"log" mapstructure:"log" doc:"Logging."`
	Network   NetworkConfig   `yaml:"network" mapstructure:"network" doc:"Network discovery and NAT traversal."`
	DHT       DHTConfig       `yaml:"dht" mapstructure:"dht" doc:"Kademlia DHT."`
	ConnMgr   ConnMgrConfig   `yaml:"connmgr" mapstructure:"connmgr" doc:"Connection manager: trims connections down to low_water once there are more than high_water."`
	Resources ResourcesConfig `yaml:"resources" mapstructure:"resources" doc:"Hard limits of the libp2p resource manager."`
	Pubsub    PubsubConfig    `yaml:"pubsub" mapstructure:"pubsub" doc:"Gossipsub."`
	Store     StoreConfig     `yaml:"store" mapstructure:"store" doc:"Local database."`
	Friends   FriendsConfig   `yaml:"friends" mapstructure:"friends" doc:"Direct messages between friends."`
	Relay     RelayConfig     `yaml:"relay" mapstructure:"relay" doc:"Services offered when role is relay."`
	Rooms     RoomsConfig     `yaml:"rooms" mapstructure:"rooms" doc:"Group rooms."`
	Channels  ChannelsConfig  `yaml:"channels" mapstructure:"channels" doc:"Broadcast channels."`
}

// APIConfig configures the local HTTP API.
type APIConfig struct {
	Listen       string   `yaml:"listen" mapstructure:"listen" doc:"host:port to serve the API on. The host must be loopback (127.0.0.1, ::1 or localhost); port 0 picks a free port, written to <home>/api."`
	AllowedHosts []string `yaml:"allowed_hosts" mapstructure:"allowed_hosts" doc:"Extra Host header values the API accepts besides the loopback names (protection against DNS rebinding)."`
}

// LogConfig configures logging.
type LogConfig struct {
	Level  string `yaml:"level" mapstructure:"level" doc:"Minimum level: debug, info, warn or error."`
	Format string `yaml:"format" mapstructure:"format" doc:"Output format: text or json."`
}

// NetworkConfig configures discovery and NAT traversal.
type NetworkConfig struct {
	MDNS            bool `yaml:"mdns" mapstructure:"mdns" doc:"Discover peers on the local network with mDNS."`
	NATPortMap      bool `yaml:"nat_port_map" mapstructure:"nat_port_map" doc:"Ask the router to forward a port with UPnP or NAT-PMP."`
	AutoNAT         bool `yaml:"autonat" mapstructure:"autonat" doc:"Ask other peers whether this node is reachable from the internet."`
	HolePunching    bool `yaml:"hole_punching" mapstructure:"hole_punching" doc:"Try direct connections through NATs (DCUtR) after connecting via a relay."`
	PublicAddrsOnly bool `yaml:"public_addrs_only" mapstructure:"public_addrs_only" doc:"Advertise and keep in the DHT only public addresses. Turn on for public relays."`
}

// DHTConfig configures the Kademlia DHT.
type DHTConfig struct {
	Mode string `yaml:"mode" mapstructure:"mode" doc:"auto, client or server. Empty picks by role: server for relays, auto otherwise."`
}

// ConnMgrConfig configures the connection manager.
type ConnMgrConfig struct {
	LowWater    int           `yaml:"low_water" mapstructure:"low_water" doc:"Number of connections to trim down to."`
	HighWater   int           `yaml:"high_water" mapstructure:"high_water" doc:"Number of connections above which trimming starts."`
	GracePeriod time.Duration `yaml:"grace_period" mapstructure:"grace_period" doc:"How long a new connection is safe from trimming."`
}

// ResourcesConfig configures the libp2p resource manager.
type ResourcesConfig struct {
	MaxConns        int `yaml:"max_conns" mapstructure:"max_conns" doc:"Maximum connections; must be greater than connmgr.high_water."`
	MaxConnsInbound int `yaml:"max_conns_inbound" mapstructure:"max_conns_inbound" doc:"Maximum inbound connections; at most max_conns."`
	MaxStreams      int `yaml:"max_streams" mapstructure:"max_streams" doc:"Maximum open streams."`
	MaxMemoryMiB    int `yaml:"max_memory_mib" mapstructure:"max_memory_mib" doc:"Memory libp2p may reserve, in MiB."`
	MaxFDs          int `yaml:"max_fds" mapstructure:"max_fds" doc:"File descriptors libp2p may use."`
}

// PubsubConfig configures gossipsub.
type PubsubConfig struct {
	MaxMessageSize int `yaml:"max_message_size" mapstructure:"max_message_size" doc:"Largest pubsub message accepted or sent, in bytes (4096 to 4194304)."`
}

// StoreConfig configures the local database.
type StoreConfig struct {
	CacheMiB int `yaml:"cache_mib" mapstructure:"cache_mib" doc:"Database block cache, in MiB."`
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Role:   RoleDesktop,
		Listen: []string{"/ip4/0.0.0.0/tcp/4040", "/ip4/0.0.0.0/udp/4040/quic-v1"},
		API:    APIConfig{Listen: "127.0.0.1:4041"},
		Log:    LogConfig{Level: "info", Format: "text"},
		Network: NetworkConfig{
			AutoNAT:      true,
			HolePunching: true,
		},
		DHT:     DHTConfig{Mode: dhtModeByRole},
		ConnMgr: ConnMgrConfig{LowWater: 64, HighWater: 192, GracePeriod: time.Minute},
		Resources: ResourcesConfig{
			MaxConns:        512,
			MaxConnsInbound: 256,
			MaxStreams:      4096,
			MaxMemoryMiB:    512,
			MaxFDs:          1024,
		},
		Pubsub:   PubsubConfig{MaxMessageSize: 1 << 20},
		Store:    StoreConfig{CacheMiB: 32},
		Friends:  defaultFriends(),
		Relay:    defaultRelay(),
		Rooms:    defaultRooms(),
		Channels: defaultChannels(),
	}
}

// IsRelay reports whether the node runs as a relay.
func (c Config) IsRelay() bool { return c.Role == RoleRelay }

// DHTServer reports whether the DHT runs in server mode: dht.mode server, or an empty or auto
// mode on a relay.
func (c Config) DHTServer() bool {
	switch c.DHT.Mode {
	case dhtModeServer:
		return true
	case dhtModeByRole, dhtModeAuto:
		return c.IsRelay()
	default:
		return false
	}
}

// DHTModeAuto reports whether the DHT decides between client and server mode itself, by
// reachability: an empty or auto mode on a node that is not a relay.
func (c Config) DHTModeAuto() bool {
	return (c.DHT.Mode == dhtModeByRole || c.DHT.Mode == dhtModeAuto) && !c.IsRelay()
}

// SlogLevel returns log.level as a slog.Level; unknown levels give slog.LevelInfo.
func (c Config) SlogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Log.Level)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// BootstrapPeers returns the bootstrap addresses grouped by peer.
func (c Config) BootstrapPeers() ([]peer.AddrInfo, error) { return addrInfos("bootstrap", c.Bootstrap) }

// StaticRelays returns the static relay addresses grouped by peer.
func (c Config) StaticRelays() ([]peer.AddrInfo, error) { return addrInfos("relays", c.Relays) }

// addrInfos parses p2p multiaddrs (from key) and groups them by peer, keeping the order of first
// appearance.
func addrInfos(key string, addrs []string) ([]peer.AddrInfo, error) {
	out := make([]peer.AddrInfo, 0, len(addrs))
	pos := make(map[peer.ID]int, len(addrs))
	for _, s := range addrs {
		info, err := parsePeerAddr(s)
		if err != nil {
			return nil, &Error{Key: key, Msg: err.Error(), cause: err}
		}
		if i, ok := pos[info.ID]; ok {
			out[i].Addrs = append(out[i].Addrs, info.Addrs...)
			continue
		}
		pos[info.ID] = len(out)
		out = append(out, *info)
	}
	return out, nil
}

// parseMultiaddr parses s, naming it in the error.
func parseMultiaddr(s string) (ma.Multiaddr, error) {
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return nil, fmt.Errorf("invalid multiaddr %q: %w", s, err)
	}
	return m, nil
}
