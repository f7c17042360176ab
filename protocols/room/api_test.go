package room_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/testnet"
)

func apiStatus(err error) int {
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	if err == nil {
		return http.StatusOK
	}
	return -1
}

// The API documents every route, maps errors to statuses, enforces the sender's own rate limit, and
// round-trips a persona reveal proof.
func TestAPIErrorsRateLimitAndReveal(t *testing.T) {
	nodes := testnet.Start(t, 1, testnet.Options{}) // default limits: burst 10
	n := nodes[0]
	ctx := t.Context()
	if err := n.API.CheckSpec(); err != nil {
		t.Fatal(err)
	}
	cl := n.Client
	cases := []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", "/api/v1/rooms", map[string]any{"name": "x", "join_policy": "secret"}, 400},
		{"POST", "/api/v1/rooms", map[string]any{"name": ""}, 400},
		{"POST", "/api/v1/rooms", map[string]any{"name": "x", "tags": []string{"🙂"}}, 400},
		{"GET", "/api/v1/rooms/nope", nil, 400},
		{"GET", "/api/v1/rooms/raaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", nil, 404},
		{"GET", "/api/v1/directory/rooms", nil, 400},
		{"POST", "/api/v1/rooms/join", map[string]any{"room": "madang://room/zz"}, 400},
		{"POST", "/api/v1/rooms/reveal/verify", map[string]any{"proof": "AAAA"}, 400},
	}
	for _, c := range cases {
		if got := apiStatus(cl.Do(ctx, c.method, c.path, c.body, nil)); got != c.want {
			t.Errorf("%s %s: status %d, want %d", c.method, c.path, got, c.want)
		}
	}
	var created struct {
		RoomID string `json:"room_id"`
	}
	if err := cl.Do(ctx, "POST", "/api/v1/rooms", map[string]any{"name": "solo", "tags": []string{"solo"}}, &created); err != nil {
		t.Fatal(err)
	}
	// The owner alone: messages are stored at once (not published, nobody to reach), then the burst runs out.
	sent, limited := 0, false
	for range 20 {
		err := cl.Do(ctx, "POST", "/api/v1/rooms/"+created.RoomID+"/messages", map[string]string{"text": "hi"}, nil)
		if apiStatus(err) == http.StatusTooManyRequests {
			limited = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if !limited || sent < 8 || sent > 10 {
		t.Fatalf("sent %d before the rate limit (limited %v); the join message takes one token of the burst of 10", sent, limited)
	}
	var rv struct {
		Proof string `json:"proof"`
	}
	if err := cl.Do(ctx, "GET", "/api/v1/rooms/"+created.RoomID+"/reveal", nil, &rv); err != nil {
		t.Fatal(err)
	}
	var ver struct {
		AccountID string `json:"account_id"`
		RoomID    string `json:"room_id"`
	}
	if err := cl.Do(ctx, "POST", "/api/v1/rooms/reveal/verify", map[string]string{"proof": rv.Proof}, &ver); err != nil {
		t.Fatal(err)
	}
	if ver.AccountID != string(n.Identity.AccountID()) || ver.RoomID != created.RoomID {
		t.Fatalf("reveal verified as %+v", ver)
	}
}

// Co-hosts, hidden messages, slow mode, manifest updates and closing, across three members and a late
// joiner.
func TestModerationCohostHideSlowUpdateClose(t *testing.T) {
	nodes := startConnected(t, 4, fastRooms)
	ctx := t.Context()
	owner, co, member := svc(t, nodes[0]), svc(t, nodes[1]), svc(t, nodes[2])
	in, err := owner.Create(ctx, room.CreateOptions{Name: "Busan Hikers", Tags: []string{"hiking"}, Nick: "host"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	coIn, err := co.Join(ctx, in.RoomID, room.JoinOptions{Nick: "co"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := member.Join(ctx, in.RoomID, room.JoinOptions{Nick: "mem"}); err != nil {
		t.Fatal(err)
	}
	// The member is not a co-host yet.
	if _, err := member.Moderate(ctx, id, room.Action{Action: "pin", Text: "x"}); !errors.Is(err, room.ErrNotModerator) {
		t.Fatalf("member pin: %v", err)
	}
	if _, err := owner.Moderate(ctx, id, room.Action{Action: "add", Persona: "co"}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool { i, _ := co.Room(id); return i.Role == "moderator" }, "co became a co-host")
	// A co-host hides a message; everyone shows it hidden.
	v, _, err := member.Send(ctx, id, "something rude", "")
	if err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool { return hasText(t, co, id, "something rude") }, "co got it")
	if _, err := co.Moderate(ctx, id, room.Action{Action: "hide", MessageID: v.ID}); err != nil {
		t.Fatal(err)
	}
	for i, s := range []*room.Service{owner, co, member} {
		testnet.Eventually(t, 5*time.Second, func() bool { return !hasText(t, s, id, "something rude") }, "node %d hides it", i)
	}
	// A co-host cannot take owner-only actions, nor ban the host's persona.
	if _, err := co.Moderate(ctx, id, room.Action{Action: "close"}); !errors.Is(err, room.ErrOwnerOnly) {
		t.Fatalf("co close: %v", err)
	}
	if _, err := co.Moderate(ctx, id, room.Action{Action: "ban", Persona: "host"}); !errors.Is(err, room.ErrOwnerOnly) {
		t.Fatalf("co banning the host: %v", err)
	}
	// Slow mode from a co-host applies to members, not to hosts.
	if _, err := co.Moderate(ctx, id, room.Action{Action: "slow", Seconds: 60}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool { i, _ := member.Room(id); return i.SlowMode == 60 }, "slow mode reached the member")
	// (The member's last message, the hidden one, was less than a minute ago.)
	if _, _, err := member.Send(ctx, id, "too soon", ""); !errors.Is(err, room.ErrSlowMode) {
		t.Fatalf("message in slow mode: %v", err)
	}
	if _, _, err := co.Send(ctx, id, "hosts are not slowed", ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := co.Send(ctx, id, "really", ""); err != nil {
		t.Fatal(err)
	}
	// A late joiner receives the moderation log with the history: co-host, hidden message, slow mode.
	late := svc(t, nodes[3])
	lin, err := late.Join(ctx, in.RoomID, room.JoinOptions{Nick: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if lin.SlowMode != 60 || !contains(lin.Moderators, coIn.Persona) || hasText(t, late, id, "something rude") {
		t.Fatalf("late joiner's view: %+v", lin)
	}
	// The owner renames and retags the room: search follows the new tag.
	name, tags := "Busan Trail Runners", []string{"running"}
	if _, err := owner.Moderate(ctx, id, room.Action{Action: "update", Name: &name, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool { i, _ := late.Room(id); return i.Name == name }, "rename reached the late joiner")
	testnet.Eventually(t, 10*time.Second, func() bool {
		res, err := late.Search(ctx, []string{"running"}, "", 10)
		return err == nil && len(res.Cards) == 1 && res.Cards[0].Name == name
	}, "found under the new tag")
	if i, _ := co.Room(id); i.Role != "moderator" {
		t.Fatal("co-host lost its role with the manifest update")
	}
	// Closing: nobody can send any more, and the room leaves the directory.
	if _, err := owner.Moderate(ctx, id, room.Action{Action: "close"}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool {
		_, _, err := member.Send(ctx, id, "anyone?", "")
		return errors.Is(err, room.ErrClosed)
	}, "closed for the member")
	testnet.Eventually(t, 10*time.Second, func() bool {
		res, err := late.Search(ctx, []string{"running"}, "", 10)
		return err == nil && len(res.Cards) == 0
	}, "closed room withdrawn from the directory")
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
