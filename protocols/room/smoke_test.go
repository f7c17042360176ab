package room_test

import (
	"testing"
	"time"

	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/testnet"
)

func TestSmokeCreateSearchJoinSend(t *testing.T) {
	nodes := startConnected(t, 2, fastRooms)
	a, b := svc(t, nodes[0]), svc(t, nodes[1])
	in, err := a.Create(t.Context(), room.CreateOptions{Name: "Go Seoul", Tags: []string{"#Golang", "서울"}, Nick: "owner"})
	if err != nil {
		t.Fatal(err)
	}
	var found room.SearchResult
	testnet.Eventually(t, 10*time.Second, func() bool {
		found, err = b.Search(t.Context(), []string{"golang"}, "", 10)
		return err == nil && len(found.Cards) == 1
	}, "search")
	t.Logf("card: %s", mustJSON(t, found))
	jin, err := b.Join(t.Context(), in.RoomID, room.JoinOptions{Nick: "bee"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("joined: %s a=%s b=%s", mustJSON(t, jin), nodes[0].Host.ID(), nodes[1].Host.ID())
	id, _ := room.ParseID(in.RoomID)
	if _, _, err := b.Send(t.Context(), id, "hello", ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ms, err := a.Messages(t.Context(), id, 10, "")
		if err == nil && len(ms) == 3 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ms, _ := a.Messages(t.Context(), id, 10, "")
	t.Logf("%s", mustJSON(t, ms))
}
