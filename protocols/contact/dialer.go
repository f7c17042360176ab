package contact

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/graph"
)

// Deadlines of reaching a friend's device.
const (
	ConnectTimeout  = 10 * time.Second
	FindPeerTimeout = 30 * time.Second
	StreamTimeout   = 10 * time.Second
)

// Router finds a peer's addresses (the DHT).
type Router interface {
	FindPeer(ctx context.Context, p peer.ID) (peer.AddrInfo, error)
}

// Dialer opens streams to a contact's devices: over an existing connection, else through the addresses we
// know (from earlier contact, and circuits through the relays their invite named), else through peer routing.
// Streams may run over relayed (limited) connections.
type Dialer struct {
	Host   host.Host
	Router Router // may be nil

	mu     sync.Mutex
	failed map[peer.ID]time.Time // devices that could not be reached at all, and when
}

// unreachableFor is how long a device that could be reached neither through known addresses nor through peer
// routing is not looked up again (a connection it makes itself is used at once).
const unreachableFor = 15 * time.Second

// ErrUnreachable is returned when no device of the contact could be reached.
var ErrUnreachable = errors.New("contact unreachable")

// Open opens a stream for proto to the first reachable device of c. It returns the stream and the dialable
// addresses that worked (to remember).
func (d *Dialer) Open(ctx context.Context, c graph.Contact, proto protocol.ID) (network.Stream, error) {
	var errs []error
	for _, dev := range c.Devices {
		s, err := d.openDevice(ctx, dev, c.RelayHints, proto)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: %s has no known device", ErrUnreachable, c.AccountID)
	}
	return nil, fmt.Errorf("%w: %w", ErrUnreachable, errors.Join(errs...))
}

// Hints returns the addresses known for a device: stored ones and circuits through relay hints.
func Hints(dev graph.Device, relayHints []string) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, s := range dev.Addrs {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		addr, _ := peer.SplitAddr(m)
		if addr != nil {
			out = append(out, addr)
		}
	}
	for _, s := range relayHints {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		out = append(out, m.Encapsulate(ma.StringCast("/p2p-circuit")))
	}
	return out
}

func (d *Dialer) openDevice(ctx context.Context, dev graph.Device, relayHints []string, proto protocol.ID) (network.Stream, error) {
	p := dev.PeerID
	if c := d.Host.Network().Connectedness(p); c != network.Connected && c != network.Limited {
		if err := d.connect(ctx, dev, relayHints); err != nil {
			return nil, err
		}
	}
	sctx, cancel := context.WithTimeout(ctx, StreamTimeout)
	defer cancel()
	s, err := d.Host.NewStream(network.WithAllowLimitedConn(sctx, "madang-friends"), p, proto)
	if err != nil {
		return nil, fmt.Errorf("open %s stream to %s: %w", proto, p, err)
	}
	return s, nil
}

func (d *Dialer) connect(ctx context.Context, dev graph.Device, relayHints []string) (err error) {
	p := dev.PeerID
	d.mu.Lock()
	if t, ok := d.failed[p]; ok && time.Since(t) < unreachableFor {
		d.mu.Unlock()
		return fmt.Errorf("%s was unreachable %s ago", p, time.Since(t).Round(time.Second))
	}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.failed == nil {
			d.failed = map[peer.ID]time.Time{}
		}
		if err != nil && ctx.Err() == nil {
			d.failed[p] = time.Now()
		} else {
			delete(d.failed, p)
		}
	}()
	if addrs := Hints(dev, relayHints); len(addrs) > 0 {
		d.Host.Peerstore().AddAddrs(p, addrs, peerstore.TempAddrTTL)
	}
	var errs []error
	if len(d.Host.Peerstore().Addrs(p)) > 0 {
		cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
		err := d.Host.Connect(cctx, peer.AddrInfo{ID: p})
		cancel()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if d.Router != nil && ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, FindPeerTimeout)
		ai, err := d.Router.FindPeer(fctx, p)
		cancel()
		if err == nil && len(ai.Addrs) > 0 {
			cctx, cancel := context.WithTimeout(ctx, ConnectTimeout)
			err = d.Host.Connect(cctx, ai)
			cancel()
			if err == nil {
				return nil
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("find peer: %w", err))
		}
	}
	if len(errs) == 0 {
		return fmt.Errorf("no addresses for %s", p)
	}
	return fmt.Errorf("connect %s: %w", p, errors.Join(errs...))
}

// RemoteAddrs are the addresses worth remembering for the peer of s: the dialled address of an outbound
// connection and the listen addresses the peer announced (identify).
func RemoteAddrs(h host.Host, s network.Stream) []ma.Multiaddr {
	var out []ma.Multiaddr
	if s.Stat().Direction == network.DirOutbound {
		out = append(out, s.Conn().RemoteMultiaddr())
	}
	return append(out, h.Peerstore().Addrs(s.Conn().RemotePeer())...)
}
