package feed

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/multiformats/go-multibase"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/feed/pb"
)

// LinkPrefix starts every channel link.
const LinkPrefix = "madang://channel/"

const (
	maxLinkBytes = 2048
	maxLinkAddrs = 2
)

// ErrBadLink is returned for strings that are neither a channel ID nor a channel link.
var ErrBadLink = errors.New("not a channel id or link")

// Link is a parsed channel link: the channel, the name it was shared with, and where its feed was kept.
type Link struct {
	Channel ed25519.PublicKey
	Name    string
	Peers   []peer.AddrInfo
}

// FormatLink builds a shareable link: madang://channel/<multibase base58btc of a pb.Link>. At most two
// addresses are kept, so the link stays short enough for a QR code.
func FormatLink(channel ed25519.PublicKey, name string, addrs []ma.Multiaddr) (string, error) {
	l := &pb.Link{Version: 1, Channel: channel, Name: name}
	for _, a := range addrs {
		if len(l.Addrs) == maxLinkAddrs {
			break
		}
		l.Addrs = append(l.Addrs, a.Bytes())
	}
	raw, err := proto.Marshal(l)
	if err != nil {
		return "", fmt.Errorf("format link: %w", err)
	}
	s, err := multibase.Encode(multibase.Base58BTC, raw)
	if err != nil {
		return "", fmt.Errorf("format link: %w", err)
	}
	return LinkPrefix + s, nil
}

// ParseLink accepts a channel ID or a channel link.
func ParseLink(s string) (*Link, error) {
	s = strings.TrimSpace(s)
	if pub, err := ParseID(s); err == nil {
		return &Link{Channel: pub}, nil
	}
	rest, ok := strings.CutPrefix(s, LinkPrefix)
	if !ok || len(rest) > maxLinkBytes {
		return nil, fmt.Errorf("%w: %q", ErrBadLink, s)
	}
	_, raw, err := multibase.Decode(rest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadLink, err)
	}
	var l pb.Link
	if err := proto.Unmarshal(raw, &l); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadLink, err)
	}
	if l.Version != 1 || len(l.Channel) != ed25519.PublicKeySize || len(l.Addrs) > maxLinkAddrs || len(l.Name) > MaxNameBytes {
		return nil, fmt.Errorf("%w: bad payload", ErrBadLink)
	}
	out := &Link{Channel: l.Channel, Name: l.Name}
	var addrs []ma.Multiaddr
	for _, b := range l.Addrs {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			return nil, fmt.Errorf("%w: address: %v", ErrBadLink, err)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) > 0 {
		infos, err := peer.AddrInfosFromP2pAddrs(addrs...)
		if err != nil {
			return nil, fmt.Errorf("%w: address: %v", ErrBadLink, err)
		}
		out.Peers = infos
	}
	return out, nil
}
