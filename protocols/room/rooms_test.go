package room_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/testnet"
)

// Five real nodes: the owner creates a room with tags, the other four find it by tag search, join, and all
// five send 100 messages each; every member stores every message exactly once, and each member's log
// shows each author's messages in the author's order.
func TestFiveNodesFindJoinDeliver(t *testing.T) {
	const perNode = 100
	nodes := startConnected(t, 5, fastRooms)
	ctx := t.Context()

	var created struct {
		RoomID string `json:"room_id"`
	}
	if err := nodes[0].Client.Do(ctx, "POST", "/api/v1/rooms", map[string]any{
		"name": "Seoul Gophers", "tags": []string{"#Golang", "seoul"}, "description": "Go in Seoul", "nick": "host",
	}, &created); err != nil {
		t.Fatal(err)
	}
	id, err := room.ParseID(created.RoomID)
	if err != nil {
		t.Fatal(err)
	}

	// Each member searches by tag until the room shows up (the owner's Provide runs in the background).
	createdAt := time.Now()
	var mu sync.Mutex
	var findTimes, lookupTimes []time.Duration
	var wg sync.WaitGroup
	for _, n := range nodes[1:] {
		wg.Go(func() {
			for time.Since(createdAt) < 15*time.Second {
				var res room.SearchResult
				start := time.Now()
				err := n.Client.Do(ctx, "GET", "/api/v1/directory/rooms?tag="+url.QueryEscape("golang"), nil, &res)
				took := time.Since(start)
				if err == nil && len(res.Cards) > 0 && res.Cards[0].RoomID == created.RoomID {
					mu.Lock()
					findTimes = append(findTimes, time.Since(createdAt))
					lookupTimes = append(lookupTimes, took)
					mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if len(findTimes) != 4 {
		t.Fatalf("only %d of 4 members found the room by tag", len(findTimes))
	}
	slices.Sort(findTimes)
	slices.Sort(lookupTimes)
	t.Logf("tag search: all 4 members found the room %v after creation (fastest %v); successful search call took %v–%v (goal < 3 s)",
		findTimes[3], findTimes[0], lookupTimes[0], lookupTimes[3])

	for i, n := range nodes[1:] {
		if err := n.Client.Do(ctx, "POST", "/api/v1/rooms/join", map[string]any{"room": created.RoomID, "nick": fmt.Sprintf("m%d", i+1)}, nil); err != nil {
			t.Fatalf("join %d: %v", i+1, err)
		}
	}
	counters := make([]*counter, len(nodes))
	for i, n := range nodes {
		counters[i] = watch(t, svc(t, n))
	}
	start := time.Now()
	for i, n := range nodes {
		wg.Go(func() {
			s := svc(t, n)
			for k := range perNode {
				if _, _, err := s.Send(ctx, id, fmt.Sprintf("n%d-%03d", i, k), ""); err != nil {
					t.Errorf("node %d send %d: %v", i, k, err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := perNode * len(nodes)
	for i, c := range counters {
		testnet.Eventually(t, 20*time.Second, func() bool { return c.textCount() >= want }, "node %d got %d of %d", i, c.textCount(), want)
	}
	t.Logf("%d messages (5 authors × %d) delivered to all 5 members in %v", want, perNode, time.Since(start))
	inversions, synced := 0, 0
	for i, c := range counters {
		if c.textCount() != want || c.dupes() != 0 {
			t.Fatalf("node %d: %d texts, %d duplicates; want %d and 0", i, c.textCount(), c.dupes(), want)
		}
		c.mu.Lock()
		synced += c.sync
		for _, ms := range c.text {
			for k := 1; k < len(ms); k++ {
				if ms[k].Body.Seq < ms[k-1].Body.Seq {
					inversions++
					t.Errorf("node %d received %q after %q", i, ms[k].Body.Text, ms[k-1].Body.Text)
				}
			}
		}
		c.mu.Unlock()
		// The log a member reads: every author's messages in the author's order, each once.
		log, err := svc(t, nodes[i]).Messages(ctx, id, 1000, "")
		if err != nil {
			t.Fatal(err)
		}
		byAuthor := map[string][]string{}
		seen := map[string]bool{}
		for _, m := range log {
			if m.Kind != "text" {
				continue
			}
			if seen[m.ID] {
				t.Fatalf("node %d: message %s twice in the log", i, m.ID)
			}
			seen[m.ID] = true
			byAuthor[m.Persona] = append(byAuthor[m.Persona], m.Text)
		}
		if len(byAuthor) != 5 {
			t.Fatalf("node %d: log has %d authors, want 5", i, len(byAuthor))
		}
		for p, texts := range byAuthor {
			if len(texts) != perNode || !sort.StringsAreSorted(texts) {
				t.Fatalf("node %d: author %s: %d messages, in order %v", i, p[:12], len(texts), sort.StringsAreSorted(texts))
			}
		}
	}
	t.Logf("delivery order: %d per-author inversions over %d deliveries (%d came through history sync)", inversions, want*5, synced)

	// The owner's card reflects the room after a refresh.
	in, err := svc(t, nodes[0]).Room(id)
	if err != nil || in.Members != 5 || in.Role != "owner" {
		t.Fatalf("owner's view: %+v, %v", in, err)
	}
}

// A member that was offline catches up when it comes back; a member joining late receives the last 200
// messages through history sync (and nothing older).
func TestHistoryOfflineCatchUpAndLateJoiner(t *testing.T) {
	nodes := startConnected(t, 3, fastRooms)
	ctx := t.Context()
	owner, m1, m2 := svc(t, nodes[0]), svc(t, nodes[1]), svc(t, nodes[2])
	in, err := owner.Create(ctx, room.CreateOptions{Name: "history", Tags: []string{"history"}, Nick: "o"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	for _, s := range []*room.Service{m1, m2} {
		if _, err := s.Join(ctx, in.RoomID, room.JoinOptions{Nick: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	send := func(s *room.Service, n int, prefix string) {
		for k := range n {
			if _, _, err := s.Send(ctx, id, fmt.Sprintf("%s-%03d", prefix, k), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(owner, 120, "a")
	send(m1, 120, "b")
	texts := func(s *room.Service) int {
		ms, err := s.Messages(ctx, id, 1000, "")
		if err != nil {
			return -1
		}
		n := 0
		for _, m := range ms {
			if m.Kind == "text" {
				n++
			}
		}
		return n
	}
	testnet.Eventually(t, 10*time.Second, func() bool { return texts(m2) == 240 }, "m2 has 240 (has %d)", texts(m2))

	// m2 goes offline; 80 messages are sent meanwhile; it comes back and catches up.
	nodes[2].Stop()
	send(owner, 40, "c")
	send(m1, 40, "d")
	nodes[2].Restart()
	m2 = svc(t, nodes[2])
	testnet.Connect(t, nodes[2], nodes[0])
	testnet.Eventually(t, 15*time.Second, func() bool { return texts(m2) == 320 }, "restarted m2 caught up (has %d of 320)", texts(m2))

	// A late joiner gets the newest 200 messages.
	late := testnet.Start(t, 1, testnet.Options{Configure: fastRooms})[0]
	testnet.Connect(t, late, nodes[1])
	testnet.Eventually(t, 10*time.Second, func() bool { return late.DHT.RoutingTable().Size() > 0 }, "late routing table")
	ls := svc(t, late)
	all, err := owner.Messages(ctx, id, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ls.Join(ctx, in.RoomID, room.JoinOptions{Nick: "late"}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, m := range all[len(all)-200:] {
		want[m.ID] = true
	}
	var got []room.View
	testnet.Eventually(t, 10*time.Second, func() bool {
		got, _ = ls.Messages(ctx, id, 1000, "")
		n := 0
		for _, m := range got {
			if want[m.ID] {
				n++
			}
		}
		return n == 200
	}, "late joiner has the last 200")
	// Give catch-ups from the other members a moment to (wrongly) reach further back.
	time.Sleep(500 * time.Millisecond)
	got, _ = ls.Messages(ctx, id, 1000, "")
	for _, m := range got {
		if !want[m.ID] && !m.Mine {
			t.Fatalf("late joiner has an older message %q", m.Text)
		}
	}
	t.Logf("late joiner: %d messages (the newest 200 of %d, plus its own join)", len(got), len(all))
}

// One account in two rooms signs with two unrelated persona keys, and no run of bytes it sends on one
// room's topic appears in its traffic on the other, except what it typed into both.
func TestPersonasUnlinkable(t *testing.T) {
	tr := &sendTracer{}
	nodes := testnet.Start(t, 2, testnet.Options{Configure: fastRooms, NodeOptions: tracerFor(1, tr)})
	testnet.ConnectAll(t, nodes)
	ctx := t.Context()
	owner, alice := svc(t, nodes[0]), svc(t, nodes[1])
	var ids []room.ID
	for _, name := range []string{"cats", "dogs"} {
		in, err := owner.Create(ctx, room.CreateOptions{Name: name, Tags: []string{name}, Nick: "o"})
		if err != nil {
			t.Fatal(err)
		}
		id, _ := room.ParseID(in.RoomID)
		ids = append(ids, id)
		if _, err := alice.Join(ctx, in.RoomID, room.JoinOptions{Nick: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	typed := []string{"same words in both rooms", "alice", "bye"}
	for i, id := range ids {
		for _, text := range []string{typed[0], []string{"cats purr", "dogs bark"}[i], "bye"} {
			if _, _, err := alice.Send(ctx, id, text, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	testnet.Eventually(t, 5*time.Second, func() bool { return len(tr.items(ids[0].Topic())) >= 4 && len(tr.items(ids[1].Topic())) >= 4 },
		"alice's traffic captured")

	in0, _ := alice.Room(ids[0])
	in1, _ := alice.Room(ids[1])
	if in0.Persona == in1.Persona {
		t.Fatal("same persona in two rooms")
	}
	// What an observer of both rooms can compare: every pubsub message alice sent on either topic.
	masked := func(topic string, fill byte) [][]byte {
		var out [][]byte
		for _, it := range tr.items(topic) {
			b := bytes.Clone(it)
			for _, s := range typed {
				for i := bytes.Index(b, []byte(s)); i >= 0; i = bytes.Index(b, []byte(s)) {
					copy(b[i:], bytes.Repeat([]byte{fill}, len(s)))
				}
			}
			out = append(out, b)
		}
		return out
	}
	const w = 12 // shorter than any key, ID, nonce or signature; longer than a timestamp and field tags
	windows := map[string]bool{}
	for _, b := range masked(ids[1].Topic(), 'B') {
		for i := 0; i+w <= len(b); i++ {
			windows[string(b[i:i+w])] = true
		}
	}
	for _, b := range masked(ids[0].Topic(), 'A') {
		for i := 0; i+w <= len(b); i++ {
			if windows[string(b[i:i+w])] {
				t.Fatalf("bytes %x of alice's traffic in room 1 also appear in room 2", b[i:i+w])
			}
		}
	}
	// Nor does anything identify the account or the device inside the messages.
	acct := nodes[1].Identity.AccountKey()
	pid := []byte(nodes[1].Host.ID())
	for _, id := range ids {
		for _, it := range tr.items(id.Topic()) {
			if bytes.Contains(it, acct) || bytes.Contains(it, pid) {
				t.Fatal("account key or peer ID inside a room message")
			}
		}
	}
	if tr.metadata() {
		t.Fatal("pubsub messages carry from/seqno/signature/key")
	}
	// A reveal proof links them only for whoever alice shows it to.
	proof, err := alice.Reveal(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	ri, err := room.VerifyReveal(proof)
	if err != nil || !bytes.Equal(ri.Account, acct) || room.PersonaString(ri.Persona) != in0.Persona {
		t.Fatalf("reveal: %+v %v", ri, err)
	}
}

// Moderation: a ban reaches every member within 5 s and the banned persona's new messages are dropped by
// every member; bans signed by someone who is not a co-host, or forged, are rejected.
func TestModerationBan(t *testing.T) {
	nodes := startConnected(t, 4, fastRooms)
	ctx := t.Context()
	owner := svc(t, nodes[0])
	in, err := owner.Create(ctx, room.CreateOptions{Name: "mod", Tags: []string{"mod"}, Nick: "o"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	var personas []string
	for i, n := range nodes[1:] {
		jin, err := svc(t, n).Join(ctx, in.RoomID, room.JoinOptions{Nick: fmt.Sprintf("m%d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		personas = append(personas, jin.Persona)
	}
	for _, n := range nodes {
		testnet.Eventually(t, 5*time.Second, func() bool { in, _ := svc(t, n).Room(id); return in.Members == 4 }, "members")
	}
	spammer := personas[1] // nodes[2]

	// A member who is not a co-host cannot ban (API) …
	err = nodes[3].Client.Do(ctx, "POST", "/api/v1/rooms/"+in.RoomID+"/moderation", map[string]any{"action": "ban", "persona": spammer}, nil)
	var ae *apiclient.Error
	if !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("non-moderator ban: %v, want 403", err)
	}
	// … and a ban it signs itself and injects anyway, or one forged in the owner's name, is rejected.
	atk := newAttacker(t, id.Topic(), nodes...)
	m3 := room.PersonaKey(nodes[3].Identity, id)
	sp, _ := room.ParsePersona(spammer)
	forged := func(signer ed25519.PrivateKey, claim []byte, seq uint64) []byte {
		a, err := room.SignModAction(signer, &pb.ModBody{Version: 1, Room: id[:], Signer: claim, Seq: seq, TimeMs: time.Now().UnixMilli(),
			Action: &pb.ModBody_Ban{Ban: &pb.Ban{Persona: sp}}})
		if err != nil {
			t.Fatal(err)
		}
		return a.Raw
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	atk.publish(t, forged(m3, m3.Public().(ed25519.PublicKey), 1))
	atk.publish(t, forged(otherKey, otherKey.Public().(ed25519.PublicKey), 2))
	// A co-host's authority cannot be claimed without the owner's signature.
	fake, _ := room.SignModAction(otherKey, &pb.ModBody{Version: 1, Room: id[:], Signer: otherKey.Public().(ed25519.PublicKey), Seq: 1,
		TimeMs: time.Now().UnixMilli(), Action: &pb.ModBody_AddModerator{AddModerator: &pb.AddModerator{Persona: m3.Public().(ed25519.PublicKey)}}})
	withAuth, _ := room.SignModAction(m3, &pb.ModBody{Version: 1, Room: id[:], Signer: m3.Public().(ed25519.PublicKey), Seq: 3,
		TimeMs: time.Now().UnixMilli(), Authority: fake.Raw, Action: &pb.ModBody_Ban{Ban: &pb.Ban{Persona: sp}}})
	atk.publish(t, withAuth.Raw)
	testnet.Eventually(t, 10*time.Second, func() bool { return atk.scoreBelow(nodes, -1000) }, "forgers penalised by every member")
	for i, n := range nodes {
		if log, _ := svc(t, n).ModLog(id); len(log) != 0 {
			t.Fatalf("node %d applied a forged or unauthorised ban: %+v", i, log)
		}
	}

	// The owner bans; every member has the ban within 5 s.
	start := time.Now()
	if _, err := owner.Moderate(ctx, id, room.Action{Action: "ban", Persona: "m2", Reason: "spam"}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool {
		for _, n := range nodes {
			ms, _ := svc(t, n).Members(id)
			banned := false
			for _, m := range ms {
				banned = banned || (m.Persona == spammer && m.Banned)
			}
			if !banned {
				return false
			}
		}
		return true
	}, "ban reached every member")
	t.Logf("ban reached all 4 members in %v", time.Since(start))

	// The banned member cannot send, and what its persona signs anyway is dropped by every member.
	if _, _, err := svc(t, nodes[2]).Send(ctx, id, "still here", ""); !errors.Is(err, room.ErrBanned) {
		t.Fatalf("banned send: %v", err)
	}
	bk := room.PersonaKey(nodes[2].Identity, id)
	for k := range 5 {
		msg, err := room.SignMessage(bk, &pb.MessageBody{Version: 1, Room: id[:], Persona: bk.Public().(ed25519.PublicKey),
			TimeMs: time.Now().UnixMilli(), Nonce: []byte(fmt.Sprintf("nonce-%03d", k)), Text: "banned words"})
		if err != nil {
			t.Fatal(err)
		}
		atk.publish(t, msg.Raw)
	}
	// Barrier: an honest message sent afterwards reaches everyone; the banned ones never do.
	if _, _, err := svc(t, nodes[1]).Send(ctx, id, "after the ban", ""); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		testnet.Eventually(t, 5*time.Second, func() bool { return hasText(t, svc(t, n), id, "after the ban") }, "node %d got the barrier", i)
		if hasText(t, svc(t, n), id, "banned words") {
			t.Fatalf("node %d stored a banned persona's message", i)
		}
	}
	// Unban restores it.
	if _, err := owner.Moderate(ctx, id, room.Action{Action: "unban", Persona: spammer}); err != nil {
		t.Fatal(err)
	}
	testnet.Eventually(t, 5*time.Second, func() bool {
		_, _, err := svc(t, nodes[2]).Send(ctx, id, "back again", "")
		return err == nil
	}, "unbanned member can send")
}

func hasText(t testing.TB, s *room.Service, id room.ID, text string) bool {
	ms, err := s.Messages(t.Context(), id, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(ms, func(v room.View) bool { return v.Text == text })
}

// Spam: a member publishing 100 messages/s is throttled at the first hop while honest delivery stays
// complete; a peer forwarding invalid signatures falls below the graylist threshold. Default run: 2 s of
// spam; -long: 20 s.
func TestSpamThrottledAndForgerGraylisted(t *testing.T) {
	nodes := startConnected(t, 3, nil) // default limits: 30/min, burst 10
	ctx := t.Context()
	owner := svc(t, nodes[0])
	in, err := owner.Create(ctx, room.CreateOptions{Name: "spam", Tags: []string{"spam"}, Nick: "o"})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	for _, n := range nodes[1:] {
		if _, err := svc(t, n).Join(ctx, in.RoomID, room.JoinOptions{Nick: "m"}); err != nil {
			t.Fatal(err)
		}
	}
	atk := newAttacker(t, id.Topic(), nodes...)
	_, spamKey, _ := ed25519.GenerateKey(rand.Reader)
	dur := 2 * time.Second
	if *long {
		dur = 20 * time.Second
	}
	done := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(10 * time.Millisecond) // 100 msg/s
		defer tick.Stop()
		for end := time.Now().Add(dur); time.Now().Before(end); n++ {
			<-tick.C
			msg, err := room.SignMessage(spamKey, &pb.MessageBody{Version: 1, Room: id[:], Persona: spamKey.Public().(ed25519.PublicKey),
				TimeMs: time.Now().UnixMilli() + int64(n), Nonce: []byte(fmt.Sprintf("spam%06d", n)), Text: "BUY NOW"})
			if err != nil {
				t.Error(err)
				break
			}
			_ = atk.topic.Publish(ctx, msg.Raw)
		}
		done <- n
	}()
	// Honest members keep talking, within their limits.
	honest := 8
	for k := range honest {
		if _, _, err := svc(t, nodes[1+k%2]).Send(ctx, id, fmt.Sprintf("honest %d", k), ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(dur / time.Duration(honest))
	}
	sent := <-done
	for i, n := range nodes {
		testnet.Eventually(t, 5*time.Second, func() bool {
			for k := range honest {
				if !hasText(t, svc(t, n), id, fmt.Sprintf("honest %d", k)) {
					return false
				}
			}
			return true
		}, "node %d got every honest message", i)
		ms, _ := svc(t, n).Messages(ctx, id, 1000, "")
		spam := 0
		for _, m := range ms {
			if m.Text == "BUY NOW" {
				spam++
			}
		}
		// Burst (10 + 2 validator slack) plus 30/min over the attack, plus rounding.
		limit := 12 + int(dur.Seconds()/2) + 1
		t.Logf("node %d: %d of %d spam messages accepted (limit %d)", i, spam, sent, limit)
		if spam > limit {
			t.Fatalf("node %d accepted %d spam messages, limit %d", i, spam, limit)
		}
	}

	// Invalid signatures: every member it is connected to graylists the forwarder.
	for k := range 5 {
		msg, _ := room.SignMessage(spamKey, &pb.MessageBody{Version: 1, Room: id[:], Persona: spamKey.Public().(ed25519.PublicKey),
			TimeMs: time.Now().UnixMilli(), Nonce: []byte(fmt.Sprintf("bad%06d", k)), Text: "forged"})
		raw := bytes.Clone(msg.Raw)
		raw[len(raw)-1] ^= 0xff // the signature is the last field
		atk.publish(t, raw)
	}
	testnet.Eventually(t, 20*time.Second, func() bool { return atk.scoreBelow(nodes, graylist()) }, "forwarder graylisted (scores %v)", atk.scores(nodes))
	t.Logf("forwarder of invalid signatures: scores %v (graylist threshold %v)", atk.scores(nodes), graylist())
	for i, n := range nodes {
		if hasText(t, svc(t, n), id, "forged") {
			t.Fatalf("node %d stored a forged message", i)
		}
		for _, m := range nodes {
			if m != n && n.Gossip.Score(m.Host.ID()) < 0 {
				t.Fatalf("honest peer %s has a negative score at node %d", m.Host.ID(), i)
			}
		}
	}
}
