package room

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
)

// LinkScheme prefixes room links: madang://room/<roomID>[?s=<secret>][&p=<multiaddr>…].
const LinkScheme = "madang://room/"

// maxLinkPeers bounds the peer hints in a link.
const maxLinkPeers = 3

// Link is a parsed room link (or a bare room ID).
type Link struct {
	Room   ID
	Secret []byte          // link-only rooms
	Peers  []peer.AddrInfo // where members were reachable when the link was made
}

// String formats the link. Peer hints carry the link maker's device address: the link is shared
// deliberately, by hand.
func (l Link) String() string {
	q := url.Values{}
	if len(l.Secret) > 0 {
		q.Set("s", strings.ToLower(b32.EncodeToString(l.Secret)))
	}
	for i, p := range l.Peers {
		if i == maxLinkPeers {
			break
		}
		addrs, err := peer.AddrInfoToP2pAddrs(&p)
		if err == nil && len(addrs) > 0 {
			q.Add("p", addrs[0].String())
		}
	}
	s := LinkScheme + l.Room.String()
	if len(q) > 0 {
		s += "?" + q.Encode()
	}
	return s
}

// ParseLink parses a room link or a bare room ID.
func ParseLink(s string) (Link, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, LinkScheme) {
		id, err := ParseID(s)
		return Link{Room: id}, err
	}
	if len(s) > 2048 {
		return Link{}, fmt.Errorf("room link too long")
	}
	rest := strings.TrimPrefix(s, LinkScheme)
	idStr, query, _ := strings.Cut(rest, "?")
	id, err := ParseID(idStr)
	if err != nil {
		return Link{}, err
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return Link{}, fmt.Errorf("room link: %w", err)
	}
	l := Link{Room: id}
	if sec := q.Get("s"); sec != "" {
		if l.Secret, err = b32.DecodeString(strings.ToUpper(sec)); err != nil || len(l.Secret) < 16 || len(l.Secret) > 64 {
			return Link{}, fmt.Errorf("room link: bad secret")
		}
	}
	for i, a := range q["p"] {
		if i == maxLinkPeers {
			break
		}
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return Link{}, fmt.Errorf("room link: bad peer address: %w", err)
		}
		l.Peers = append(l.Peers, *ai)
	}
	return l, nil
}
