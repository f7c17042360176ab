package node_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/testnet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Process-wide pools started by libraries on first use; they are not per-node.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/cockroachdb/pebble/v2/internal/cache.(*cleanupManager).mainLoop"),
	)
}

// TestThreeNodesConnectAndStop starts three full nodes in-process on loopback, connects them, checks the DHT
// server appears in the others' routing tables and the API serves node info, then stops them; TestMain's
// goleak check proves no goroutine outlives them.
func TestThreeNodesConnectAndStop(t *testing.T) {
	nodes := testnet.Start(t, 3, testnet.Options{})
	testnet.ConnectAll(t, nodes)
	for _, n := range nodes {
		testnet.Eventually(t, 10*time.Second, func() bool { return n.DHT.RoutingTable().Size() >= 2 },
			"routing table of %s", n.Host.ID())
	}
	var info node.NodeInfo
	if err := nodes[0].Client.Do(t.Context(), "GET", "/api/v1/node", nil, &info); err != nil {
		t.Fatal(err)
	}
	if info.PeerID != nodes[0].Host.ID().String() || info.Peers != 2 || info.DHTMode != "server" || len(info.Addrs) == 0 {
		t.Fatalf("node info %+v", info)
	}
	if !strings.HasPrefix(info.AccountID, "a") || !strings.Contains(info.Addrs[0], "/p2p/"+info.PeerID) {
		t.Fatalf("ids/addrs %+v", info)
	}
	// peers/connect with garbage is a clear 400, not a crash
	err := nodes[0].Client.Do(t.Context(), "POST", "/api/v1/peers/connect", map[string]string{"addr": "garbage"}, nil)
	var ae *apiclient.Error
	if !asAPIError(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Fatalf("connect garbage: %v", err)
	}
	for _, n := range nodes {
		n.Stop()
	}
}

func asAPIError(err error, target **apiclient.Error) bool {
	e, ok := err.(*apiclient.Error)
	if ok {
		*target = e
	}
	return ok
}

// TestOpenAPIMatchesRoutes checks that every route a fully assembled node serves is in the OpenAPI document
// and every documented operation is served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	nodes := testnet.Start(t, 1, testnet.Options{})
	if err := nodes[0].API.CheckSpec(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + nodes[0].APIAddr() + "/api/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("openapi.yaml: %d", resp.StatusCode)
	}
}

// TestInMemoryMocknetNodes assembles the same services on mocknet hosts.
func TestInMemoryMocknetNodes(t *testing.T) {
	mn, nodes := testnet.Mocknet(t, 5, testnet.Options{})
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		testnet.Eventually(t, 10*time.Second, func() bool { return n.DHT.RoutingTable().Size() >= 4 }, "mock routing table")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_ = ctx
	for _, n := range nodes {
		n.Stop()
	}
}
