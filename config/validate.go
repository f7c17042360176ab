package config

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Validate checks the configuration. Every problem is reported, as *Error values naming the key,
// joined with errors.Join when there are several; all of them wrap ErrInvalid.
func (c Config) Validate() error {
	var p problems
	p.oneOf("role", c.Role, RoleDesktop, RoleRelay, RoleMerchant)
	if !utf8.ValidString(c.Name) || strings.ContainsFunc(c.Name, unicode.IsControl) {
		p.add("name", "must be valid UTF-8 without control characters")
	}

	for i, s := range c.Listen {
		if _, err := parseMultiaddr(s); err != nil {
			p.add("listen", "item %d: %v", i+1, err)
		}
	}
	if c.IsRelay() && len(c.Listen) == 0 {
		p.add("listen", "a relay must listen on at least one address")
	}
	for _, list := range []struct {
		key   string
		addrs []string
	}{{"bootstrap", c.Bootstrap}, {"relays", c.Relays}} {
		for i, s := range list.addrs {
			if _, err := parsePeerAddr(s); err != nil {
				p.add(list.key, "item %d: %v", i+1, err)
			}
		}
	}

	if err := checkLoopback(c.API.Listen); err != nil {
		p.add("api.listen", "%v", err)
	}
	for i, h := range c.API.AllowedHosts {
		if h == "" || strings.ContainsFunc(h, func(r rune) bool { return unicode.IsSpace(r) || r == '/' }) {
			p.add("api.allowed_hosts", "item %d: %q is not a host name or host:port", i+1, h)
		}
	}

	p.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	p.oneOf("log.format", c.Log.Format, "text", "json")
	if c.DHT.Mode != dhtModeByRole {
		p.oneOf("dht.mode", c.DHT.Mode, dhtModeAuto, dhtModeClient, dhtModeServer)
	}

	p.positive("connmgr.low_water", int64(c.ConnMgr.LowWater))
	p.positive("connmgr.high_water", int64(c.ConnMgr.HighWater))
	if c.ConnMgr.LowWater > 0 && c.ConnMgr.LowWater >= c.ConnMgr.HighWater {
		p.add("connmgr.low_water", "must be less than connmgr.high_water (%d), got %d", c.ConnMgr.HighWater, c.ConnMgr.LowWater)
	}
	if c.ConnMgr.GracePeriod < 0 {
		p.add("connmgr.grace_period", "must not be negative, got %s", c.ConnMgr.GracePeriod)
	}

	r := c.Resources
	p.positive("resources.max_conns", int64(r.MaxConns))
	p.positive("resources.max_conns_inbound", int64(r.MaxConnsInbound))
	p.positive("resources.max_streams", int64(r.MaxStreams))
	p.positive("resources.max_memory_mib", int64(r.MaxMemoryMiB))
	p.positive("resources.max_fds", int64(r.MaxFDs))
	if r.MaxConns > 0 && r.MaxConns <= c.ConnMgr.HighWater {
		p.add("resources.max_conns", "must be greater than connmgr.high_water (%d), got %d: the resource manager would refuse connections before the connection manager starts trimming, so trimming would never happen", c.ConnMgr.HighWater, r.MaxConns)
	}
	if r.MaxConns > 0 && r.MaxConnsInbound > r.MaxConns {
		p.add("resources.max_conns_inbound", "must not exceed resources.max_conns (%d), got %d", r.MaxConns, r.MaxConnsInbound)
	}

	const minMsg, maxMsg = 4 << 10, 4 << 20
	if s := c.Pubsub.MaxMessageSize; s < minMsg || s > maxMsg {
		p.add("pubsub.max_message_size", "must be between %d and %d bytes, got %d", minMsg, maxMsg, s)
	}
	p.positive("store.cache_mib", int64(c.Store.CacheMiB))

	p.addErr(c.Friends.validate())
	p.addErr(c.Relay.validate())
	p.addErr(c.Rooms.validate())
	p.addErr(c.Channels.validate())
	return p.err()
}

// oneOf records a problem when v is not one of allowed.
func (p *problems) oneOf(key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		p.add(key, "must be one of %s; got %q", strings.Join(allowed, ", "), v)
	}
}

// nonEmptyItems records a problem for every blank item of a list.
func (p *problems) nonEmptyItems(key string, items []string) {
	for i, s := range items {
		if strings.TrimSpace(s) == "" {
			p.add(key, "item %d is empty", i+1)
		}
	}
}

// parsePeerAddr parses a multiaddr that must carry a transport address and end in /p2p/<peer ID>.
func parsePeerAddr(s string) (*peer.AddrInfo, error) {
	m, err := parseMultiaddr(s)
	if err != nil {
		return nil, err
	}
	info, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return nil, fmt.Errorf("%q must end with /p2p/<peer ID>: %w", s, err)
	}
	if err := info.ID.Validate(); err != nil {
		return nil, fmt.Errorf("%q has an invalid peer ID: %w", s, err)
	}
	if len(info.Addrs) == 0 {
		return nil, fmt.Errorf("%q has no transport address before /p2p/", s)
	}
	return info, nil
}

// checkLoopback checks that hostport is host:port with a loopback host and a port 0–65535.
func checkLoopback(hostport string) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", hostport)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", port)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("host must be loopback (127.0.0.1, ::1 or localhost) so that the API is not reachable from other machines, got %q", host)
	}
	return nil
}
