package node

import (
	_ "embed"
	"net/http"
	"slices"
	"strings"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/madang-p2p/madang/api"
)

//go:embed openapi.yaml
var nodeSpec []byte

// NodeInfo is GET /api/v1/node.
type NodeInfo struct {
	PeerID        string   `json:"peer_id"`
	AccountID     string   `json:"account_id"`
	Roles         []string `json:"roles"`
	Version       string   `json:"version"`
	UptimeSeconds float64  `json:"uptime_seconds"`
	ListenAddrs   []string `json:"listen_addrs"`
	Addrs         []string `json:"addrs"`
	ObservedAddrs []string `json:"observed_addrs"`
	Peers         int      `json:"peers"`
	DHTMode       string   `json:"dht_mode"`
	RoutingTable  int      `json:"routing_table_size"`
	RoutingPeers  []string `json:"routing_table_peers"`
	Protocols     []string `json:"protocols"`
	APIAddr       string   `json:"api_addr"`
}

// PeerInfo is one entry of GET /api/v1/peers.
type PeerInfo struct {
	PeerID    string   `json:"peer_id"`
	Addrs     []string `json:"addrs"`
	Direction string   `json:"direction"`
	Limited   bool     `json:"limited"`
	Protocols []string `json:"protocols,omitempty"`
}

func (n *Node) registerNodeAPI() error {
	if err := n.API.AddSpec(nodeSpec); err != nil {
		return err
	}
	n.API.Handle("GET /api/v1/node", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, n.Info())
	})
	n.API.Handle("GET /api/v1/peers", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"peers": n.Peers()})
	})
	n.API.Handle("POST /api/v1/peers/connect", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Addr string `json:"addr"`
		}
		if !api.DecodeJSON(w, r, &req) {
			return
		}
		if _, err := ma.NewMultiaddr(req.Addr); err != nil || !strings.Contains(req.Addr, "/p2p/") {
			api.WriteError(w, http.StatusBadRequest, "bad_addr", "addr must be a multiaddr ending in /p2p/<peer id>")
			return
		}
		id, err := n.Connect(r.Context(), req.Addr)
		if err != nil {
			api.WriteError(w, http.StatusBadGateway, "connect_failed", err.Error())
			return
		}
		n.Events.Publish("peer.connected", map[string]string{"peer_id": id.String()})
		api.WriteJSON(w, http.StatusOK, map[string]string{"peer_id": id.String()})
	})
	return nil
}

// Info describes the node.
func (n *Node) Info() NodeInfo {
	h := n.Host
	info := NodeInfo{
		PeerID:        h.ID().String(),
		AccountID:     string(n.Identity.AccountID()),
		Roles:         []string{n.Config.Role},
		Version:       Version(),
		UptimeSeconds: n.Uptime().Seconds(),
		ListenAddrs:   addrStrings(h.Network().ListenAddresses()),
		Peers:         len(h.Network().Peers()),
		DHTMode:       "client",
		APIAddr:       n.APIAddr(),
		Addrs:         []string{},
		ObservedAddrs: []string{},
		RoutingPeers:  []string{},
	}
	for _, a := range h.Addrs() {
		info.Addrs = append(info.Addrs, a.Encapsulate(ma.StringCast("/p2p/"+h.ID().String())).String())
	}
	if n.DHT != nil {
		if n.DHT.Mode() == dht.ModeServer {
			info.DHTMode = "server"
		}
		for _, p := range n.DHT.RoutingTable().ListPeers() {
			info.RoutingPeers = append(info.RoutingPeers, p.String())
		}
		info.RoutingTable = len(info.RoutingPeers)
	}
	// Addresses the host announces beyond its own listeners were observed by peers (identify) or mapped.
	for _, a := range h.Addrs() {
		if s := a.String(); !slices.Contains(info.ListenAddrs, s) {
			info.ObservedAddrs = append(info.ObservedAddrs, s)
		}
	}
	info.Protocols = protoStrings(h.Mux().Protocols())
	return info
}

// Peers lists connected peers.
func (n *Node) Peers() []PeerInfo {
	out := []PeerInfo{}
	for _, p := range n.Host.Network().Peers() {
		pi := PeerInfo{PeerID: p.String(), Addrs: []string{}}
		for _, c := range n.Host.Network().ConnsToPeer(p) {
			pi.Addrs = append(pi.Addrs, c.RemoteMultiaddr().String())
			pi.Direction = c.Stat().Direction.String()
			pi.Limited = pi.Limited || c.Stat().Limited
		}
		if protos, err := n.Host.Peerstore().GetProtocols(p); err == nil {
			pi.Protocols = protoStrings(protos)
		}
		out = append(out, pi)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.PeerID, b.PeerID) })
	return out
}

func addrStrings(as []ma.Multiaddr) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

func protoStrings(ps []protocol.ID) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, string(p))
	}
	slices.Sort(out)
	return out
}
