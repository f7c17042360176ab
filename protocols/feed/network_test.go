package feed_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/feed"
	"github.com/madang-p2p/madang/testnet"
)

type channelJSON struct {
	ChannelID string `json:"channel_id"`
	Name      string `json:"name"`
	Seq       uint64 `json:"seq"`
	KnownSeq  uint64 `json:"known_seq"`
	Unread    uint64 `json:"unread"`
	Following bool   `json:"following"`
	Pinned    bool   `json:"pinned"`
	Forked    bool   `json:"forked"`
	Followers int    `json:"followers"`
	Link      string `json:"link"`
}

type entryJSON struct {
	Seq   uint64    `json:"seq"`
	Kind  string    `json:"kind"`
	Title string    `json:"title"`
	Body  string    `json:"body"`
	Time  time.Time `json:"time"`
	ID    string    `json:"id"`
	Prev  string    `json:"prev"`
}

func do(t *testing.T, n *testnet.Node, method, path string, body, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := n.Client.Do(ctx, method, path, body, out); err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
}

// verifyWholeFeed re-checks a node's copy of a feed from scratch: every entry's signature by the channel
// key, its seq and its link to the entry before.
func verifyWholeFeed(t *testing.T, n *testnet.Node, id string, want uint64) {
	t.Helper()
	l, err := node.ChannelsService(n.Node).Log(feed.ChannelID(id))
	if err != nil {
		t.Fatal(err)
	}
	var prev []byte
	next := uint64(1)
	err = l.Range(t.Context(), 1, 0, func(seq uint64, raw []byte) error {
		e, err := feed.VerifyEntry(raw)
		if err != nil {
			return fmt.Errorf("entry %d: %w", seq, err)
		}
		if !e.Channel.Equal(l.Key()) || e.Seq != next || !bytes.Equal(e.Prev, prev) {
			return fmt.Errorf("entry %d does not link to entry %d", seq, seq-1)
		}
		prev, next = e.ID[:], next+1
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next-1 != want {
		t.Fatalf("feed has %d entries, want %d", next-1, want)
	}
}

// The scenario on real loopback nodes with the full daemon assembly and the HTTP API: merchant M,
// relay R pinning M's channel, users U1 and U2. U1 finds M by a nearby search with geohash and category,
// follows, and receives new posts live. M stops. U2 follows later and syncs the whole feed from R or U1,
// every signature and link verified. M comes back and counts both followers (U2's notice went to R).
func TestMerchantRelayUsersOnRealNodes(t *testing.T) {
	const relay, merchant, u1, u2 = 0, 1, 2, 3
	nodes := testnet.Start(t, 4, testnet.Options{Configure: func(i int, cfg *config.Config) {
		switch i {
		case relay:
			cfg.Role = config.RoleRelay
		case merchant:
			cfg.Role = config.RoleMerchant
		}
	}})
	r, m, a, b := nodes[relay], nodes[merchant], nodes[u1], nodes[u2]
	testnet.Connect(t, m, r)
	testnet.Connect(t, a, r)

	var created channelJSON
	do(t, m, "POST", "/api/v1/merchant/channels", map[string]any{
		"name": "Haenam Mart", "category": "mart", "geohash": "wydm9qy", "tags": []string{"kimchi", "fresh fish"},
		"address": "12 Sejong-daero", "hours": "08:00-22:00", "phone": "02-123-4567", "description": "Your neighbourhood mart",
	}, &created)
	id := created.ChannelID
	if _, err := feed.ParseID(id); err != nil || created.Link == "" {
		t.Fatalf("create: %+v", created)
	}
	postTo := func(title string) {
		var e entryJSON
		do(t, m, "POST", "/api/v1/merchant/channels/"+id+"/posts", map[string]any{"kind": "offer", "title": title, "body": "while stocks last", "price": "₩3,000"}, &e)
		if e.Title != title || e.Kind != "offer" {
			t.Fatalf("post: %+v", e)
		}
	}
	for i := 1; i <= 3; i++ {
		postTo(fmt.Sprintf("deal %d", i))
	}

	// R pins the channel: it mirrors the feed.
	var pinned channelJSON
	do(t, r, "POST", "/api/v1/channels/"+id+"/pin", nil, &pinned)
	testnet.Eventually(t, 20*time.Second, func() bool {
		var c channelJSON
		_ = r.Client.Do(t.Context(), "GET", "/api/v1/channels/"+id, nil, &c)
		return c.Pinned && c.Seq == 3
	}, "relay mirrored the feed")
	if n := node.ChannelsService(r.Node).PinnedCount(); n != 1 {
		t.Fatalf("PinnedCount %d", n)
	}

	// U1 finds the shop around the corner (same neighbourhood, category mart).
	var found struct {
		Channels []struct {
			ChannelID string   `json:"channel_id"`
			Name      string   `json:"name"`
			Distance  *float64 `json:"distance"`
		} `json:"channels"`
	}
	q := url.Values{"geohash": {"wydm9qx"}, "category": {"mart"}}
	start := time.Now()
	testnet.Eventually(t, 30*time.Second, func() bool {
		_ = a.Client.Do(t.Context(), "GET", "/api/v1/channels/nearby?"+q.Encode(), nil, &found)
		return len(found.Channels) == 1 && found.Channels[0].ChannelID == id
	}, "U1 finds the mart nearby")
	t.Logf("nearby search found the channel after %v", time.Since(start))
	if d := found.Channels[0].Distance; d == nil || *d > 1000 {
		t.Fatalf("distance %v", d)
	}

	// U1 follows and gets the feed, then new posts live.
	sub := a.Events.Subscribe(a.Events.Last(), []string{"channel.post"})
	defer sub.Close()
	var followed channelJSON
	do(t, a, "POST", "/api/v1/channels/follow", map[string]string{"target": id}, &followed)
	if !followed.Following || followed.Seq != 3 || followed.Unread != 3 {
		t.Fatalf("U1 after follow: %+v", followed)
	}
	testnet.Eventually(t, 10*time.Second, func() bool {
		return len(m.Gossip.PubSub().ListPeers(feed.Topic(feed.ChannelID(id)))) >= 2
	}, "M sees R and U1 on the live topic")
	testnet.Eventually(t, 20*time.Second, func() bool {
		var c struct {
			Syncing bool `json:"syncing"`
		}
		_ = a.Client.Do(t.Context(), "GET", "/api/v1/channels/"+id, nil, &c)
		return !c.Syncing
	}, "U1 idle (no catch-up that could fetch the next posts first)")
	postTo("deal 4")
	postTo("deal 5")
	live := 0
	deadline := time.After(15 * time.Second)
	for live < 2 {
		select {
		case ev := <-sub.C():
			var d struct {
				ChannelID string `json:"channel_id"`
				Live      bool   `json:"live"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			if d.ChannelID == id && d.Live {
				live++
			}
		case <-deadline:
			t.Fatalf("U1 got %d posts live, want 2", live)
		}
	}
	testnet.Eventually(t, 15*time.Second, func() bool {
		var c channelJSON
		_ = a.Client.Do(t.Context(), "GET", "/api/v1/channels/"+id, nil, &c)
		return c.Seq == 5
	}, "U1 has both new posts")
	var entries struct {
		Entries []entryJSON `json:"entries"`
	}
	do(t, a, "GET", "/api/v1/channels/"+id+"/entries?limit=10", nil, &entries)
	if len(entries.Entries) != 5 || entries.Entries[0].Seq != 5 || entries.Entries[0].Title != "deal 5" || entries.Entries[0].Body != "while stocks last" || entries.Entries[0].Time.IsZero() {
		t.Fatalf("U1 entries: %+v", entries.Entries)
	}
	testnet.Eventually(t, 20*time.Second, func() bool {
		var st struct {
			Followers int `json:"followers"`
		}
		_ = m.Client.Do(t.Context(), "GET", "/api/v1/merchant/channels/"+id+"/stats", nil, &st)
		return st.Followers == 1
	}, "M counts U1")
	testnet.Eventually(t, 20*time.Second, func() bool {
		var c channelJSON
		_ = r.Client.Do(t.Context(), "GET", "/api/v1/channels/"+id, nil, &c)
		return c.Seq == 5
	}, "R mirrored the live posts")

	// M goes offline. U2 (connected only to R) follows later and gets everything.
	m.Stop()
	testnet.Connect(t, b, r)
	var late channelJSON
	do(t, b, "POST", "/api/v1/channels/follow", map[string]string{"target": id}, &late)
	if late.Seq != 5 || late.KnownSeq != 5 || late.Name != "Haenam Mart" {
		t.Fatalf("U2 after follow: %+v", late)
	}
	verifyWholeFeed(t, b, id, 5)
	verifyWholeFeed(t, a, id, 5)
	var merged struct {
		Entries []entryJSON `json:"entries"`
	}
	do(t, b, "GET", "/api/v1/channels/feed?limit=3", nil, &merged)
	if len(merged.Entries) != 3 || merged.Entries[0].Seq != 5 {
		t.Fatalf("U2 merged feed: %+v", merged.Entries)
	}

	// M comes back and collects the follow notice U2 left with R: two followers.
	m.Restart()
	testnet.Connect(t, m, r)
	testnet.Eventually(t, 30*time.Second, func() bool {
		var st struct {
			Followers int `json:"followers"`
		}
		_ = m.Client.Do(t.Context(), "GET", "/api/v1/merchant/channels/"+id+"/stats?collect=true", nil, &st)
		return st.Followers == 2
	}, "M counts U1 and U2")
}
