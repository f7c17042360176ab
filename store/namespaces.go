package store

import "fmt"

// Namespaces is the complete list of key spaces in a node's store, with their owners. A feature that needs a
// new one adds it here, so that this file is the map of everything a node keeps.
var Namespaces = map[string]string{
	"dht":       "node: the DHT's provider and value records (go-datastore view)",
	"node":      "node: small node-level state (first start time, counters)",
	"graph":     "graph: my profile and contacts",
	"invites":   "graph: invites I created and their remaining uses",
	"dm":        "protocols/dm: conversations, messages, ratchet sessions, outbox",
	"mailbox":   "protocols/mailbox: items held by a relay for recipients, and their expiry index",
	"inbox":     "protocols/mailbox: client side: my inbox relays, capabilities, drained item ids",
	"relaykeep": "relay: rooms and feeds a relay keeps for others",
	"rooms":     "protocols/room: joined rooms, manifests, personas, messages, moderation log",
	"directory": "protocols/directory: cards this node announces and holds for others",
	"channels":  "protocols/feed: channels I own or follow, feed entries, heads, fork proofs",
	"sim":       "sim: scratch space for simulations",
}

func mustKnow(name string) {
	if _, ok := Namespaces[name]; !ok {
		panic(fmt.Sprintf("store: unknown namespace %q (declare it in store/namespaces.go)", name))
	}
}
