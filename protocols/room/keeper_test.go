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

// History is bounded: a room keeps rooms.history_limit messages (plus up to 10% before pruning).
func TestHistoryLimitPrunes(t *testing.T) {
	nodes := testnet.Start(t, 1, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRooms(i, c)
		c.Rooms.HistoryLimit = 50
	}})
	s := svc(t, nodes[0])
	in, err := s.Create(t.Context(), room.CreateOptions{Name: "small", Tags: []string{"small"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	for k := range 120 {
		if _, _, err := s.Send(t.Context(), id, fmt.Sprintf("m%03d", k), ""); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 5*time.Second, func() bool { i, _ := s.Room(id); return i.Messages <= 55 }, "pruned to the limit")
	ms, _ := s.Messages(t.Context(), id, 1000, "")
	if len(ms) > 55 || ms[len(ms)-1].Text != "m119" || hasText(t, s, id, "m000") {
		t.Fatalf("after pruning: %d messages, newest %q", len(ms), ms[len(ms)-1].Text)
	}
}

// A message already stored is never stored or delivered again, whichever way it comes back: the filter
// that answers "not stored" from memory must hold every stored ID through its growth, through pruning
// and after a restart.
func TestStoredMessagesNeverStoredTwice(t *testing.T) {
	const limit, sent = 1000, 3000
	nodes := testnet.Start(t, 1, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRooms(i, c)
		c.Rooms.HistoryLimit = limit
	}})
	s := svc(t, nodes[0])
	in, err := s.Create(t.Context(), room.CreateOptions{Name: "busy", Tags: []string{"busy"}})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	if _, c, ok := room.StoredFilter(s, id); !ok || c > 1024 {
		t.Fatalf("new room: filter %v, capacity %d", ok, c)
	}
	for k := range sent {
		if _, _, err := s.Send(t.Context(), id, fmt.Sprintf("m%04d", k), ""); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 5*time.Second, func() bool { i, _ := s.Room(id); return i.Messages <= limit+limit/10 }, "pruned to the limit")
	check := func(when string) {
		t.Helper()
		n, c, ok := room.StoredFilter(s, id)
		if !ok || c <= 1024 || n > c {
			t.Fatalf("%s: filter %v holding %d IDs for a capacity of %d; want it grown past 1024", when, ok, n, c)
		}
		w := watch(t, s)
		offered, again, err := room.IngestStoredAgain(s, id)
		if err != nil {
			t.Fatal(err)
		}
		if offered < limit || again != 0 || w.all != 0 {
			t.Fatalf("%s: %d stored messages offered again: %d stored twice, %d delivered twice", when, offered, again, w.all)
		}
	}
	check("after growth and pruning")
	nodes[0].Restart()
	s = svc(t, nodes[0])
	testnet.Eventually(t, 5*time.Second, func() bool { _, err := s.Room(id); return err == nil }, "room reopened")
	check("after a restart")
}

// Messages typed while no member is reachable are shown at once as pending and reach the room when a
// member is back, even after the room moved on meanwhile.
func TestOutboxSendsWhenPeersReturn(t *testing.T) {
	nodes := startConnected(t, 2, fastRooms)
	ctx := t.Context()
	a, b := svc(t, nodes[0]), svc(t, nodes[1])
	in, err := a.Create(ctx, room.CreateOptions{Name: "outbox", Tags: []string{"outbox"}, Nick: "a"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	v, published, err := a.Send(ctx, id, "typed while alone", "")
	if err != nil || published || !v.Pending {
		t.Fatalf("send alone: published %v pending %v err %v", published, v.Pending, err)
	}
	if _, err := b.Join(ctx, in.RoomID, room.JoinOptions{Nick: "b"}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 10*time.Second, func() bool { return hasText(t, b, id, "typed while alone") }, "pending message delivered")
	ms, _ := b.Messages(ctx, id, 100, "")
	n := 0
	for _, m := range ms {
		if m.Text == "typed while alone" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("member has the pending message %d times", n)
	}
	testnet.Eventually(t, 5*time.Second, func() bool {
		ms, _ := a.Messages(ctx, id, 100, "")
		for _, m := range ms {
			if m.Text == "typed while alone" {
				return !m.Pending
			}
		}
		return false
	}, "owner's copy no longer pending")
	ms, _ = a.Messages(ctx, id, 100, "")
	n = 0
	for _, m := range ms {
		if m.Text == "typed while alone" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("owner has the message %d times after sending it", n)
	}
	// Publishing goes by the count of topic peers the room keeps from its peer events: with the member
	// gone it must drop to none again, and a message typed then waits in the outbox.
	if c := room.TopicPeers(a, id); c != 1 {
		t.Fatalf("owner counts %d topic peers, want 1", c)
	}
	nodes[1].Stop()
	testnet.Eventually(t, 10*time.Second, func() bool { return room.TopicPeers(a, id) == 0 }, "member gone from the count")
	v, published, err = a.Send(ctx, id, "typed after the member left", "")
	if err != nil || published || !v.Pending {
		t.Fatalf("send after the member left: published %v pending %v err %v", published, v.Pending, err)
	}
}
