package room_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/testnet"
)

// A relay configured with relay.keep_rooms ["#golang"] keeps every open room under the tag: it joins
// silently, stores the history, and serves it to a member joining after everyone else has gone.
func TestRelayKeepsRoomsByTag(t *testing.T) {
	nodes := startConnected(t, 3, func(i int, c *config.Config) {
		fastRooms(i, c)
		if i == 0 {
			c.Role = config.RoleRelay
			c.Relay.KeepRooms = []string{"#golang"}
		}
	})
	ctx := t.Context()
	relay, owner, member := svc(t, nodes[0]), svc(t, nodes[1]), svc(t, nodes[2])
	in, err := owner.Create(ctx, room.CreateOptions{Name: "kept", Tags: []string{"golang"}, Nick: "o"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	testnet.Eventually(t, 15*time.Second, func() bool { return relay.KeptCount() == 1 }, "relay keeps the room")
	if info, err := relay.Room(id); err != nil || info.Role != "keeper" || info.Persona != "" {
		t.Fatalf("relay's view: %+v %v", info, err)
	}
	if _, err := member.Join(ctx, in.RoomID, room.JoinOptions{Nick: "m"}); err != nil {
		t.Fatal(err)
	}
	for k := range 30 {
		s := []*room.Service{owner, member}[k%2]
		if _, _, err := s.Send(ctx, id, fmt.Sprintf("kept %d", k), ""); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 10*time.Second, func() bool { return hasText(t, relay, id, "kept 29") }, "relay stored the history")
	// The relay sent nothing into the room: no persona of it appears.
	ms, _ := relay.Messages(ctx, id, 1000, "")
	for _, m := range ms {
		if m.Mine {
			t.Fatal("relay posted in a kept room")
		}
	}
	nodes[1].Stop()
	nodes[2].Stop()

	late := testnet.Start(t, 1, testnet.Options{Configure: fastRooms})[0]
	testnet.Connect(t, late, nodes[0])
	testnet.Eventually(t, 10*time.Second, func() bool { return late.DHT.RoutingTable().Size() > 0 }, "routing table")
	ls := svc(t, late)
	res, err := ls.Search(ctx, []string{"golang"}, "", 10)
	if err != nil || len(res.Cards) != 1 {
		t.Fatalf("search through the relay's copy of the card: %+v %v", res, err)
	}
	if _, err := ls.Join(ctx, in.RoomID, room.JoinOptions{Nick: "late"}); err != nil {
		t.Fatal(err)
	}
	for k := range 30 {
		if !hasText(t, ls, id, fmt.Sprintf("kept %d", k)) {
			t.Fatalf("late member lacks message %d served by the relay", k)
		}
	}
}
