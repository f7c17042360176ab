package feed

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/madang-p2p/madang/protocols/feedsync"
)

func post(t testing.TB, nd *tnode, id ChannelID, title string) *Entry {
	t.Helper()
	e, err := nd.svc.Post(t.Context(), id, Draft{Kind: "offer", Title: title, Body: "while stocks last", Price: "₩1,000"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func seqOf(nd *tnode, id ChannelID) uint64 {
	in, err := nd.svc.Describe(id)
	if err != nil {
		return 0
	}
	return in.Seq
}

// M owns a channel; F1 follows it by ID and gets new posts live; F2 follows later by link and syncs the whole
// feed; the merchant counts both followers through their unlinkable customer keys; unread counts, the merged
// feed and unfollowing behave.
func TestFollowLiveSyncAndFollowers(t *testing.T) {
	_, nodes := testNet(t, 3, netOpts{})
	m, f1, f2 := nodes[0], nodes[1], nodes[2]
	in, err := m.svc.Create(t.Context(), mart())
	if err != nil {
		t.Fatal(err)
	}
	id := ChannelID(in.ChannelID)
	if in.Geohash != "wydm9qy" || len(in.Tags) != 2 || in.Tags[1] != "fresh-fish" {
		t.Fatalf("profile not normalised: %+v", in)
	}
	for i := range 3 {
		post(t, m, id, fmt.Sprintf("deal %d", i+1))
	}
	live := watch(t, f1.bus, "channel.post", "operation.progress")
	fin, err := f1.svc.Follow(t.Context(), string(id), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if fin.Seq != 3 || fin.Name != "Haenam Mart" || fin.Unread != 3 {
		t.Fatalf("after follow: %+v", fin)
	}
	// F1 is on the live topic: new posts arrive without a sync (once no catch-up is running that could
	// fetch them first).
	waitFor(t, 10*time.Second, func() bool { in, _ := f1.svc.Describe(id); return !in.Syncing }, "f1 idle")
	waitFor(t, 10*time.Second, func() bool { return len(f1.svc.o.Gossip.PubSub().ListPeers(Topic(id))) > 0 }, "f1 in the topic mesh")
	waitFor(t, 10*time.Second, func() bool { return len(m.svc.o.Gossip.PubSub().ListPeers(Topic(id))) > 0 }, "m sees f1 on the topic")
	post(t, m, id, "deal 4")
	post(t, m, id, "deal 5")
	waitFor(t, 10*time.Second, func() bool { return seqOf(f1, id) == 5 }, "f1 got the live posts (seq %d)", seqOf(f1, id))
	// The events are published right after the entries are stored: collect until both are there.
	liveSeen, progress := 0, 0
	waitFor(t, 10*time.Second, func() bool {
		liveSeen, progress = 0, 0
		for _, ev := range live() { // everything received so far
			if ev.Type == "channel.post" && eventField(ev, "live") == true {
				liveSeen++
			}
			if ev.Type == "operation.progress" {
				progress++
			}
		}
		return liveSeen >= 2
	}, "two live channel.post events (got %d)", liveSeen)
	if liveSeen != 2 || progress == 0 {
		t.Fatalf("live channel.post events %d (want 2), progress events %d", liveSeen, progress)
	}

	// F2 follows by link (with M's address as a hint) and gets the whole verified feed.
	link, err := m.svc.Link(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f2.svc.Follow(t.Context(), link, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := seqOf(f2, id); got != 5 {
		t.Fatalf("f2 seq %d", got)
	}
	l2, _ := f2.svc.Log(id)
	checkChain(t, l2, l2.key, 5)

	// Both customers are counted; their customer keys differ from each other and from another channel's.
	waitFor(t, 15*time.Second, func() bool {
		n, _ := m.svc.Followers(t.Context(), id)
		return n == 2
	}, "two followers")
	other := IDFromKey(seededKey(9).Public().(ed25519.PublicKey))
	if bytes.Equal(CustomerKey(f1.id, id).Public().(ed25519.PublicKey), CustomerKey(f1.id, other).Public().(ed25519.PublicKey)) ||
		bytes.Equal(CustomerKey(f1.id, id).Public().(ed25519.PublicKey), CustomerKey(f2.id, id).Public().(ed25519.PublicKey)) {
		t.Fatal("customer keys are linkable")
	}

	// Unread, read markers, merged feed.
	in1, _ := f1.svc.MarkRead(id, 4)
	if in1.Unread != 1 {
		t.Fatalf("unread after reading 4 of 5: %d", in1.Unread)
	}
	merged, err := f1.svc.Merged(t.Context(), time.Time{}, 3)
	if err != nil || len(merged) != 3 || merged[0].Seq != 5 || !merged[0].Unread || merged[1].Unread {
		t.Fatalf("merged feed: %v %+v", err, merged)
	}
	es, err := f2.svc.Entries(t.Context(), id, 0, 2)
	if err != nil || len(es) != 2 || es[0].Seq != 5 || es[0].Title != "deal 5" || es[0].Kind != "offer" {
		t.Fatalf("entries: %v %+v", err, es)
	}

	// Unfollow: the feed is gone locally and the merchant counts one follower.
	if err := f2.svc.Unfollow(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := f2.svc.Describe(id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after unfollow: %v", err)
	}
	if es, _ := f2.svc.Merged(t.Context(), time.Time{}, 10); len(es) != 0 {
		t.Fatalf("merged feed after unfollow: %d entries", len(es))
	}
	waitFor(t, 15*time.Second, func() bool {
		n, _ := m.svc.Followers(t.Context(), id)
		return n == 1
	}, "one follower after unfollow")
}

// A channel that signs a second entry for a seq is caught: the proof is kept, the user is told (event and
// API field) and following pauses.
func TestForkPausesFollowing(t *testing.T) {
	_, nodes := testNet(t, 2, netOpts{})
	m, f := nodes[0], nodes[1]
	in, err := m.svc.Create(t.Context(), mart())
	if err != nil {
		t.Fatal(err)
	}
	id := ChannelID(in.ChannelID)
	var es []*Entry
	for i := range 3 {
		es = append(es, post(t, m, id, fmt.Sprintf("deal %d", i+1)))
	}
	forks := watch(t, f.bus, "channel.fork")
	if _, err := f.svc.Follow(t.Context(), string(id), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return len(m.svc.o.Gossip.PubSub().ListPeers(Topic(id))) > 0 }, "mesh")
	// The channel key signs another entry 2 (say, a second device with a copy of the key).
	fork, err := SignEntry(m.priv(id), 2, es[0].ID[:], time.Now(), Draft{Kind: "notice", Title: "history rewritten"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.svc.chans[id].currentTopic().Publish(t.Context(), fork.Raw); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		in, _ := f.svc.Describe(id)
		return in.Forked && in.Paused && in.Fork != nil && in.Fork.Seq == 2
	}, "fork flagged")
	waitFor(t, 5*time.Second, func() bool { return len(forks()) == 1 }, "channel.fork event")
	l, _ := f.svc.Log(id)
	proof, err := l.ForkProof(t.Context())
	if err != nil || len(proof) != 2 {
		t.Fatalf("proof: %v %d", err, len(proof))
	}
	// Following is paused: new posts are not taken any more, and a sync does nothing.
	post(t, m, id, "deal 4")
	if _, err := f.svc.Sync(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if got := seqOf(f, id); got != 3 {
		t.Fatalf("a paused channel advanced to %d", got)
	}
}

// The feed-sync server refuses channels it does not keep, and a client never accepts entries that do not
// continue its log (gaps from a lying server).
func TestSyncRejectsUnknownAndGaps(t *testing.T) {
	_, nodes := testNet(t, 2, netOpts{batch: 2})
	m, f := nodes[0], nodes[1]
	in, _ := m.svc.Create(t.Context(), mart())
	id := ChannelID(in.ChannelID)
	for i := range 7 {
		post(t, m, id, fmt.Sprintf("deal %d", i+1))
	}
	// Small pages: the client keeps asking until it has everything.
	if _, err := f.svc.Follow(t.Context(), string(id), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := seqOf(f, id); got != 7 {
		t.Fatalf("seq %d after paged sync", got)
	}
	// A node that does not keep a channel answers "unknown".
	stranger := IDFromKey(seededKey(5).Public().(ed25519.PublicKey))
	ch, err := f.svc.getOrOpen(stranger)
	if err != nil {
		t.Fatal(err)
	}
	_ = ch.log.Update(func(st *State) { st.Following = true })
	err = f.svc.syncFrom(t.Context(), ch, m.h.ID(), &progress{s: f.svc})
	if err == nil || !errors.Is(err, feedsync.ErrUnknownChannel) {
		t.Fatalf("sync of an unknown channel: %v", err)
	}
}

func TestCreatePostErrors(t *testing.T) {
	_, nodes := testNet(t, 1, netOpts{noDir: true})
	s := nodes[0].svc
	bad := mart()
	bad.Category = "casino"
	if _, err := s.Create(t.Context(), bad); !errors.Is(err, ErrInvalidProfile) {
		t.Fatalf("bad category: %v", err)
	}
	bad = mart()
	bad.Geohash = "wyd"
	if _, err := s.Create(t.Context(), bad); !errors.Is(err, ErrInvalidProfile) {
		t.Fatalf("short geohash: %v", err)
	}
	other := IDFromKey(seededKey(4).Public().(ed25519.PublicKey))
	if _, err := s.Post(t.Context(), other, Draft{Kind: "post", Title: "x"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("post to unknown: %v", err)
	}
	if _, err := s.Pin(t.Context(), other); !errors.Is(err, ErrNotRelay) {
		t.Fatalf("pin on a desktop: %v", err)
	}
	in, _ := s.Create(t.Context(), mart())
	if _, err := s.Follow(t.Context(), in.ChannelID, 0); !errors.Is(err, ErrOwnChannel) {
		t.Fatalf("follow own: %v", err)
	}
	if _, err := s.Nearby(t.Context(), "wydm9", "", "", 10); !errors.Is(err, ErrNoDir) {
		t.Fatalf("nearby without directory: %v", err)
	}
	up, err := s.UpdateProfile(t.Context(), ChannelID(in.ChannelID), ProfileFields{Hours: "24h", Tags: []string{"open late"}})
	if err != nil || up.Hours != "24h" || up.Name != "Haenam Mart" || len(up.Tags) != 1 {
		t.Fatalf("update: %v %+v", err, up)
	}
}

// A relay pins the channels listed in relay.pin_feeds at start: it mirrors them, serves them, republishes
// their head record and announces their card, so that the shop is found and followed while offline.
func TestRelayPinsConfiguredFeeds(t *testing.T) {
	mn, nodes := testNet(t, 2, netOpts{})
	m, u := nodes[0], nodes[1]
	in, err := m.svc.Create(t.Context(), mart())
	if err != nil {
		t.Fatal(err)
	}
	id := ChannelID(in.ChannelID)
	for i := range 4 {
		post(t, m, id, fmt.Sprintf("deal %d", i+1))
	}
	r := joinNet(t, mn, netOpts{pin: []string{string(id)}}, true)
	if r.svc.PinnedCount() != 1 {
		t.Fatalf("PinnedCount %d", r.svc.PinnedCount())
	}
	waitFor(t, 15*time.Second, func() bool { return seqOf(r, id) == 4 }, "relay mirrored the pinned feed (seq %d)", seqOf(r, id))
	waitFor(t, 15*time.Second, func() bool {
		l, _ := r.svc.Log(id)
		return l != nil && l.State().HeadRecord != nil && r.dir.Provided(CellKey("wydm9"))
	}, "relay holds the head record and announces the card")

	// The merchant goes away; a user still finds the shop and gets its feed from the relay.
	m.stop()
	waitFor(t, 15*time.Second, func() bool {
		found, _ := u.svc.Nearby(t.Context(), "wydm9qy", "mart", "", 5)
		return len(found) == 1 && found[0].Card.Head != nil && found[0].Card.Head.Seq == 4
	}, "card served by the relay")
	if _, err := u.svc.Follow(t.Context(), string(id), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := seqOf(u, id); got != 4 {
		t.Fatalf("follower got %d entries from the relay", got)
	}
	// A relay refuses an invalid pin list; a desktop refuses to pin.
	bad := memDB(t)
	if _, err := New(t.Context(), Options{Host: u.h, Routing: u.kad, Gossip: u.svc.o.Gossip, Store: bad.st, NS: bad.ns, PinFeeds: []string{"nope"}}); err == nil {
		t.Fatal("a bad pin_feeds entry accepted")
	}
	if _, err := u.svc.Pin(t.Context(), id); !errors.Is(err, ErrNotRelay) {
		t.Fatalf("desktop pin: %v", err)
	}
	if err := r.svc.Unpin(t.Context(), id); err != nil || r.svc.PinnedCount() != 0 {
		t.Fatalf("unpin: %v, %d pinned", err, r.svc.PinnedCount())
	}
}

// A profile update reaches followers: the head record carries the profile revision, the periodic refresh
// sees it and the sync answer brings the new profile.
func TestProfileUpdateReachesFollowers(t *testing.T) {
	_, nodes := testNet(t, 2, netOpts{refresh: 100 * time.Millisecond, noDir: true})
	m, f := nodes[0], nodes[1]
	in, err := m.svc.Create(t.Context(), mart())
	if err != nil {
		t.Fatal(err)
	}
	id := ChannelID(in.ChannelID)
	post(t, m, id, "opening day")
	if _, err := f.svc.Follow(t.Context(), string(id), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := m.svc.UpdateProfile(t.Context(), id, ProfileFields{Hours: "open 24 hours", Tags: []string{"late night"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() bool {
		in, _ := f.svc.Describe(id)
		return in.Hours == "open 24 hours" && len(in.Tags) == 1 && in.Tags[0] == "late-night"
	}, "follower has the new profile")
}
