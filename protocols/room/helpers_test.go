package room_test

import (
	"encoding/json"
	"flag"
	"sync"
	"testing"
	"time"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/testnet"
)

var long = flag.Bool("long", false, "run the long variants (more messages, longer attacks)")

func svc(t testing.TB, n *testnet.Node) *room.Service {
	t.Helper()
	v, ok := n.Lookup("rooms")
	if !ok {
		t.Fatal("no rooms service")
	}
	return v.(*room.Service)
}

// fastRooms lifts the per-persona rate limit so that tests can send bursts.
func fastRooms(_ int, c *config.Config) {
	c.Rooms.RatePerMinute = 600000
	c.Rooms.Burst = 100000
}

// startConnected starts n loopback nodes, connects every pair and waits for their DHT routing tables.
func startConnected(t *testing.T, n int, configure func(int, *config.Config)) []*testnet.Node {
	t.Helper()
	nodes := testnet.Start(t, n, testnet.Options{Configure: configure})
	testnet.ConnectAll(t, nodes)
	for _, nd := range nodes {
		testnet.Eventually(t, 10*time.Second, func() bool { return nd.DHT.RoutingTable().Size() >= n-1 }, "routing table of %s", nd.Host.ID())
	}
	return nodes
}

// counter records every delivery of a node.
type counter struct {
	mu   sync.Mutex
	seen map[room.MsgID]int
	text map[string][]*room.Message // persona → text messages in delivery order
	all  int
	sync int // deliveries that came through history sync
}

func watch(t testing.TB, s *room.Service) *counter {
	c := &counter{seen: map[room.MsgID]int{}, text: map[string][]*room.Message{}}
	stop := s.Watch(func(d room.Delivery) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.seen[d.Message.ID]++
		c.all++
		if !d.Live {
			c.sync++
		}
		if d.Message.Body.Kind == 0 {
			p := room.PersonaString(d.Message.Body.Persona)
			c.text[p] = append(c.text[p], d.Message)
		}
	})
	t.Cleanup(stop)
	return c
}

func (c *counter) textCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ms := range c.text {
		n += len(ms)
	}
	return n
}

func (c *counter) dupes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := 0
	for _, n := range c.seen {
		if n > 1 {
			d += n - 1
		}
	}
	return d
}

func mustJSON(t testing.TB, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
