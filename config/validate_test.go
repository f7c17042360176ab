package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const testPeer = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		key    string // "" means valid
		msg    string
	}{
		{"defaults", func(*Config) {}, "", ""},
		{"relay with peers", func(c *Config) {
			c.Role = RoleRelay
			c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/4040/p2p/" + testPeer, "/dns4/boot.example/udp/4040/quic-v1/p2p/" + testPeer}
			c.Relays = []string{"/ip6/::1/tcp/1/p2p/" + testPeer}
			c.API.Listen = "[::1]:0"
			c.DHT.Mode = "server"
		}, "", ""},
		{"api on localhost", func(c *Config) { c.API.Listen = "localhost:65535" }, "", ""},
		{"unknown role", func(c *Config) { c.Role = "admin" }, "role", `must be one of desktop, relay, merchant; got "admin"`},
		{"control character in name", func(c *Config) { c.Name = "a\x07b" }, "name", "control characters"},
		{"bad listen multiaddr", func(c *Config) { c.Listen = []string{"/ip4/127.0.0.1/tcp/1", "/ip4/999.0.0.1/tcp/1"} }, "listen", "item 2: invalid multiaddr"},
		{"relay without listen", func(c *Config) { c.Role = RoleRelay; c.Listen = nil }, "listen", "at least one address"},
		{"bootstrap without p2p", func(c *Config) { c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/4040"} }, "bootstrap", "must end with /p2p/<peer ID>"},
		{"bootstrap with p2p only", func(c *Config) { c.Bootstrap = []string{"/p2p/" + testPeer} }, "bootstrap", "no transport address"},
		{"bootstrap bad peer ID", func(c *Config) { c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/1/p2p/notapeer"} }, "bootstrap", "invalid multiaddr"},
		{"relays without p2p", func(c *Config) { c.Relays = []string{"/ip4/1.2.3.4/tcp/4040"} }, "relays", "must end with /p2p/<peer ID>"},
		{"api on all interfaces", func(c *Config) { c.API.Listen = "0.0.0.0:4041" }, "api.listen", "loopback"},
		{"api on public name", func(c *Config) { c.API.Listen = "example.com:4041" }, "api.listen", "loopback"},
		{"api without port", func(c *Config) { c.API.Listen = "127.0.0.1" }, "api.listen", "host:port"},
		{"api port too large", func(c *Config) { c.API.Listen = "127.0.0.1:65536" }, "api.listen", "0 to 65535"},
		{"api named port", func(c *Config) { c.API.Listen = "127.0.0.1:http" }, "api.listen", "0 to 65535"},
		{"blank allowed host", func(c *Config) { c.API.AllowedHosts = []string{"ok.example", " "} }, "api.allowed_hosts", "item 2"},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", "debug, info, warn, error"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "text, json"},
		{"dht mode", func(c *Config) { c.DHT.Mode = "full" }, "dht.mode", "auto, client, server"},
		{"low water not below high water", func(c *Config) { c.ConnMgr.LowWater = 192 }, "connmgr.low_water", "less than connmgr.high_water (192)"},
		{"zero high water", func(c *Config) { c.ConnMgr.LowWater, c.ConnMgr.HighWater = 0, 0 }, "", ""}, // several problems, checked below
		{"negative grace", func(c *Config) { c.ConnMgr.GracePeriod = -time.Second }, "connmgr.grace_period", "negative"},
		{"max conns not above high water", func(c *Config) { c.Resources.MaxConns = 192; c.Resources.MaxConnsInbound = 100 }, "resources.max_conns", "trimming would never happen"},
		{"inbound above max conns", func(c *Config) { c.Resources.MaxConnsInbound = 513 }, "resources.max_conns_inbound", "must not exceed resources.max_conns (512)"},
		{"zero streams", func(c *Config) { c.Resources.MaxStreams = 0 }, "resources.max_streams", "greater than 0"},
		{"pubsub too small", func(c *Config) { c.Pubsub.MaxMessageSize = 4095 }, "pubsub.max_message_size", "between 4096 and 4194304"},
		{"pubsub too large", func(c *Config) { c.Pubsub.MaxMessageSize = 4<<20 + 1 }, "pubsub.max_message_size", "between"},
		{"pubsub bounds", func(c *Config) { c.Pubsub.MaxMessageSize = 4096 }, "", ""},
		{"store cache", func(c *Config) { c.Store.CacheMiB = 0 }, "store.cache_mib", "greater than 0"},
		{"relay circuits", func(c *Config) { c.Relay.MaxCircuits = 0 }, "relay.max_circuits", "greater than 0"},
		{"relay ttl", func(c *Config) { c.Relay.MailboxTTL = 0 }, "relay.mailbox_ttl", "greater than 0"},
		{"relay blank room", func(c *Config) { c.Relay.KeepRooms = []string{""} }, "relay.keep_rooms", "item 1 is empty"},
		{"rooms burst", func(c *Config) { c.Rooms.Burst = 0 }, "rooms.burst", "greater than 0"},
		{"channels batch", func(c *Config) { c.Channels.SyncBatch = -1 }, "channels.sync_batch", "greater than 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.name == "zero high water" {
				if err == nil || !errors.Is(err, ErrInvalid) || len(flatten(err)) < 2 {
					t.Fatalf("want several problems, got %v", err)
				}
				return
			}
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			e := asError(t, err)
			if e.Key != tt.key || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got key %q msg %q, want key %q msg ~ %q", e.Key, e.Msg, tt.key, tt.msg)
			}
		})
	}
}

// Validation errors from Load name the file and line when the file set the value, and the source
// otherwise.
func TestLoadValidationSource(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		env   []string
		flags map[string]any
		key   string
		line  int // 0: no file expected
		msg   []string
	}{
		{"bad multiaddr in file", "role: desktop\nlisten:\n  - /ip4/127.0.0.1/tcp/1\n  - /ip5/x\n", nil, nil, "listen", 2, []string{"invalid multiaddr"}},
		{"bad multiaddr from flag", "", nil, map[string]any{"listen": []string{"/tcp/x"}}, "listen", 0, []string{"invalid multiaddr", "command-line flag"}},
		{"bootstrap without p2p in file", "bootstrap: [/ip4/1.2.3.4/tcp/1]\n", nil, nil, "bootstrap", 1, []string{"/p2p/"}},
		{"non-loopback api from env", "", []string{"MADANG_API_LISTEN=0.0.0.0:4041"}, nil, "api.listen", 0, []string{"loopback", "MADANG_API_LISTEN"}},
		{"connmgr and resources from file", "resources:\n  max_conns: 100\n  max_conns_inbound: 50\n", nil, nil, "resources.max_conns", 2, []string{"connmgr.high_water"}},
		{"file value overridden by flag", "role: nope\n", nil, map[string]any{"role": "king"}, "role", 0, []string{"command-line flag"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := writeConfig(t, tt.file)
			c, src, err := Load(LoadOptions{Home: home, Env: tt.env, Overrides: tt.flags})
			e := asError(t, err)
			wantFile := ""
			if tt.line > 0 {
				wantFile = filepath.Join(home, "config.yaml")
			}
			if e.Key != tt.key || e.File != wantFile || e.Line != tt.line {
				t.Errorf("got Key=%q File=%q Line=%d, want Key=%q File=%q Line=%d (%v)", e.Key, e.File, e.Line, tt.key, wantFile, tt.line, err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if src == nil || c.Validate() == nil {
				t.Errorf("Load should return the invalid config and its sources alongside the error")
			}
		})
	}
}

func TestRoleHelpers(t *testing.T) {
	tests := []struct {
		role, mode   string
		relay        bool
		server, auto bool
	}{
		{RoleDesktop, "", false, false, true},
		{RoleDesktop, "auto", false, false, true},
		{RoleDesktop, "client", false, false, false},
		{RoleDesktop, "server", false, true, false},
		{RoleRelay, "", true, true, false},
		{RoleRelay, "auto", true, true, false},
		{RoleRelay, "client", true, false, false},
		{RoleMerchant, "", false, false, true},
	}
	for _, tt := range tests {
		c := Default()
		c.Role, c.DHT.Mode = tt.role, tt.mode
		if c.IsRelay() != tt.relay || c.DHTServer() != tt.server || c.DHTModeAuto() != tt.auto {
			t.Errorf("role %q mode %q: IsRelay=%v DHTServer=%v DHTModeAuto=%v, want %v %v %v",
				tt.role, tt.mode, c.IsRelay(), c.DHTServer(), c.DHTModeAuto(), tt.relay, tt.server, tt.auto)
		}
	}
}

func TestPeerHelpers(t *testing.T) {
	c := Default()
	c.Bootstrap = []string{"/ip4/1.2.3.4/tcp/1/p2p/" + testPeer, "/ip4/1.2.3.4/udp/1/quic-v1/p2p/" + testPeer}
	infos, err := c.BootstrapPeers()
	if err != nil || len(infos) != 1 || len(infos[0].Addrs) != 2 || infos[0].ID.String() != testPeer {
		t.Errorf("BootstrapPeers = %v, %v; want one peer with two addresses", infos, err)
	}
	c.Relays = []string{"/ip4/1.2.3.4/tcp/1"}
	if _, err := c.StaticRelays(); !errors.Is(err, ErrInvalid) {
		t.Errorf("StaticRelays without /p2p/ = %v, want ErrInvalid", err)
	}
	if got := c.SlogLevel().String(); got != "INFO" {
		t.Errorf("SlogLevel = %s", got)
	}
	c.Log.Level = "warn"
	if got := c.SlogLevel().String(); got != "WARN" {
		t.Errorf("SlogLevel = %s", got)
	}
}
