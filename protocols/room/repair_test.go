package room_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/protocols/room"
	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/testnet"
)

// roomNet starts n nodes on a mocknet, connected; node 0 creates a room (open, or joined by link only)
// and the others join it (through a link naming node 0).
func roomNet(t *testing.T, n int, linkOnly bool, repair func(i int) time.Duration) (mocknet.Mocknet, []*testnet.Node, []*room.Service, room.ID) {
	t.Helper()
	mn, nodes := testnet.Mocknet(t, n, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRooms(i, c)
		c.Rooms.RepairInterval = repair(i)
	}})
	if err := mn.ConnectAllButSelf(); err != nil {
		t.Fatal(err)
	}
	svcs := make([]*room.Service, n)
	for i, nd := range nodes {
		svcs[i] = svc(t, nd)
	}
	ctx := t.Context()
	in, err := svcs[0].Create(ctx, room.CreateOptions{Name: "repair", Tags: []string{"repair"}, Nick: "o", LinkOnly: linkOnly})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	link, err := svcs[0].Link(id)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < n; i++ {
		if _, err := svcs[i].Join(ctx, link, room.JoinOptions{Nick: fmt.Sprintf("m%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range svcs {
		testnet.Eventually(t, 10*time.Second, func() bool {
			in, err := s.Room(id)
			return err == nil && in.Peers == n-1
		}, "node %d sees every room peer", i)
	}
	return mn, nodes, svcs, id
}

// stored is the set of message IDs a service holds in the room.
func stored(t testing.TB, s *room.Service, id room.ID) map[string]bool {
	ms, err := s.Messages(t.Context(), id, 1000, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range ms {
		out[m.ID] = true
	}
	return out
}

func missing(have, want map[string]bool) int {
	n := 0
	for k := range want {
		if !have[k] {
			n++
		}
	}
	return n
}

func sendN(t testing.TB, s *room.Service, id room.ID, n int, prefix string) {
	t.Helper()
	for k := range n {
		if _, _, err := s.Send(t.Context(), id, fmt.Sprintf("%s-%03d", prefix, k), ""); err != nil {
			t.Fatal(err)
		}
	}
}

const hour = time.Hour

// A member partitioned while messages are published, and back within catchUpEvery (15 s) of its last
// repair session with each peer, gets every message: the catch-up its return starts is deferred until
// due, not dropped. Nothing is published after its return and periodic repair is off, so only that
// catch-up can bring them; it brings only what was missed.
func TestRepairCatchUpDeferredAfterPartition(t *testing.T) {
	t.Parallel() // mostly waiting for the deferred catch-up
	mn, nodes, svcs, id := roomNet(t, 3, false, func(int) time.Duration { return hour })
	o, a, m := svcs[0], svcs[1], svcs[2]
	sendN(t, o, id, 50, "before")
	want := stored(t, o, id)
	testnet.Eventually(t, 10*time.Second, func() bool { return missing(stored(t, m, id), want) == 0 }, "m has the first 50 live")
	// m's catch-ups after joining (with o, then a) are its last sessions with them.
	testnet.Eventually(t, 15*time.Second, func() bool { n, _, _ := room.RepairCounters(m); return n >= 2 }, "m's catch-ups after joining")
	_, recv0, _ := room.RepairCounters(m)

	// Mocknet does not always cut pubsub streams that are already open when peers are disconnected (now
	// and then some of the messages below still reached m): m also drops every live copy of them, so that
	// it misses all 60 whatever the timing, and the partition below is what makes it return.
	room.SetDropLive(m, func(msg *room.Message) bool { return strings.HasPrefix(msg.Body.Text, "during-") })
	me := nodes[2].Host.ID()
	for _, other := range nodes[:2] {
		if err := mn.UnlinkPeers(me, other.Host.ID()); err != nil {
			t.Fatal(err)
		}
		// Mocknet streams outlive a closed connection: reset them first, on both sides, so that the
		// partition holds for streams already open (pubsub's among them).
		for _, pair := range [][2]*testnet.Node{{nodes[2], other}, {other, nodes[2]}} {
			for _, c := range pair[0].Host.Network().ConnsToPeer(pair[1].Host.ID()) {
				for _, st := range c.GetStreams() {
					_ = st.Reset()
				}
			}
			if err := mn.DisconnectPeers(pair[0].Host.ID(), pair[1].Host.ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	testnet.Eventually(t, 10*time.Second, func() bool { // both sides have dropped every connection
		for _, other := range nodes[:2] {
			if len(nodes[2].Host.Network().ConnsToPeer(other.Host.ID())) > 0 || len(other.Host.Network().ConnsToPeer(me)) > 0 {
				return false
			}
		}
		return true
	}, "m partitioned")
	sendN(t, o, id, 30, "during-o")
	sendN(t, a, id, 30, "during-a")
	testnet.Eventually(t, 10*time.Second, func() bool {
		so, sa := stored(t, o, id), stored(t, a, id)
		return len(so) == len(want)+60 && missing(so, sa) == 0 && missing(sa, so) == 0
	}, "o and a have each other's messages")
	want = stored(t, o, id)
	missed := missing(stored(t, m, id), want)
	if missed != 60 {
		t.Fatalf("partitioned m misses %d messages, want 60", missed)
	}
	for _, other := range nodes[:2] {
		if _, err := mn.LinkPeers(me, other.Host.ID()); err != nil {
			t.Fatal(err)
		}
		if _, err := mn.ConnectPeers(me, other.Host.ID()); err != nil {
			t.Fatal(err)
		}
	}
	testnet.Eventually(t, 30*time.Second, func() bool { return missing(stored(t, m, id), want) == 0 },
		"m has every message after its return")
	if _, recv, _ := room.RepairCounters(m); recv-recv0 > int64(missed) {
		t.Fatalf("repair moved %d items for %d missed messages", recv-recv0, missed)
	}
}

// A member that stays connected but loses an author's last messages (nothing later from that author
// reveals the gap) gets them through periodic anti-entropy, and only them.
func TestRepairPeriodicAntiEntropy(t *testing.T) {
	t.Parallel()
	_, _, svcs, id := roomNet(t, 3, false, func(i int) time.Duration {
		if i == 2 {
			return 300 * time.Millisecond
		}
		return hour
	})
	o, m := svcs[0], svcs[2]
	room.SetDropLive(m, func(msg *room.Message) bool { return strings.HasPrefix(msg.Body.Text, "tail-") })
	// Let the catch-ups after joining pass, so that what follows is periodic repair's work.
	testnet.Eventually(t, 15*time.Second, func() bool { n, _, _ := room.RepairCounters(m); return n >= 3 }, "m's first sessions")
	_, recv0, _ := room.RepairCounters(m)
	sendN(t, o, id, 30, "body")
	sendN(t, o, id, 10, "tail")
	want := stored(t, o, id)
	testnet.Eventually(t, 20*time.Second, func() bool { return missing(stored(t, m, id), want) == 0 },
		"m gets the lost tail")
	if _, recv, _ := room.RepairCounters(m); recv-recv0 > 12 {
		t.Fatalf("repair moved %d items for 10 lost messages", recv-recv0)
	}
}

// A member that loses messages in the middle of an author's sequence repairs soon after the live stream
// skips the gap, without periodic repair (in a room joined by link: repair proves the link secret).
func TestRepairOnGap(t *testing.T) {
	t.Parallel()
	_, _, svcs, id := roomNet(t, 2, true, func(int) time.Duration { return hour })
	o, m := svcs[0], svcs[1]
	room.SetDropLive(m, func(msg *room.Message) bool { return strings.HasPrefix(msg.Body.Text, "lost-") })
	sendN(t, o, id, 10, "a")
	sendN(t, o, id, 10, "lost")
	sendN(t, o, id, 10, "b")
	want := stored(t, o, id)
	testnet.Eventually(t, 20*time.Second, func() bool { return missing(stored(t, m, id), want) == 0 },
		"m repairs the gap")
}

// evilSync serves the repair protocol with invalid answers.
type evilSync struct {
	from    peer.ID // the member under test (other peers' sessions are not counted)
	mode    string
	claim   [][]byte          // IDs it says it holds
	items   map[string][]byte // what it sends for an ID asked for
	mu      sync.Mutex
	streams int
	maxReqs int
	asked   map[string]int
}

func (e *evilSync) handle(s network.Stream) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(30 * time.Second))
	rd, w := pbio.NewDelimitedReader(s, 1<<20), pbio.NewDelimitedWriter(s)
	counted := s.Conn().RemotePeer() == e.from
	e.mu.Lock()
	if counted {
		e.streams++
	}
	e.mu.Unlock()
	reqs := 0
	defer func() {
		e.mu.Lock()
		if counted {
			e.maxReqs = max(e.maxReqs, reqs)
		}
		e.mu.Unlock()
	}()
	for {
		var req pb.SyncRequest
		if rd.ReadMsg(&req) != nil {
			return
		}
		reqs++
		resp := &pb.SyncResponse{}
		switch {
		case req.Summary != nil && e.mode == "oversized":
			_, _ = s.Write(binary.AppendUvarint(nil, 3<<20))
			_, _ = s.Write(make([]byte, 4096))
			return
		case req.Summary != nil && e.mode == "endless":
			for range 64 {
				id := make([]byte, 16)
				_, _ = rand.Read(id)
				resp.Have = append(resp.Have, id)
			}
			resp.MoreFromMs = req.Summary.FromMs + 1
		case req.Summary != nil:
			resp.Have = e.claim
		default:
			resp.Done = uint32(len(req.Want) + len(req.WantMod))
			e.mu.Lock()
			for _, id := range req.Want {
				if counted {
					e.asked[string(id)]++
				}
				if it, ok := e.items[string(id)]; ok {
					resp.Messages = append(resp.Messages, it)
				}
			}
			e.mu.Unlock()
		}
		if w.WriteMsg(resp) != nil {
			return
		}
	}
}

func (e *evilSync) counts() (streams, maxReqs int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.streams, e.maxReqs
}

func signedBy(t *testing.T, id room.ID, priv ed25519.PrivateKey, text string) *room.Message {
	t.Helper()
	m, err := room.SignMessage(priv, &pb.MessageBody{
		Version: 1, Room: id[:], Persona: priv.Public().(ed25519.PublicKey), TimeMs: time.Now().UnixMilli(),
		Nonce: []byte("evilnonce"), Kind: pb.Kind_TEXT, Text: text, Seq: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A hostile repair peer cannot make a member store junk, nor keep it busy: forged items and oversized
// answers end the session and the peer is avoided; messages of a banned persona are refused and not
// asked for again; items not asked for are dropped unread; an endless stream of IDs is cut by the
// per-session caps. The member keeps repairing with its honest peer meanwhile.
func TestRepairHostilePeer(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"forged", "oversized", "banned", "endless"} {
		t.Run(mode, func(t *testing.T) {
			_, nodes, svcs, id := roomNet(t, 3, false, func(i int) time.Duration {
				if i == 0 {
					return 200 * time.Millisecond
				}
				return hour
			})
			h, evil := svcs[0], nodes[2]
			_, bannedKey, _ := ed25519.GenerateKey(rand.Reader)
			_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)
			if _, err := h.Moderate(t.Context(), id, room.Action{Action: "ban", Persona: room.PersonaString(bannedKey.Public().(ed25519.PublicKey))}); err != nil {
				t.Fatal(err)
			}
			e := &evilSync{from: nodes[0].Host.ID(), mode: mode, items: map[string][]byte{}, asked: map[string]int{}}
			var junk []room.MsgID
			switch mode {
			case "forged":
				m := signedBy(t, id, strangerKey, "forged")
				raw := append([]byte(nil), m.Raw...)
				raw[len(raw)-1] ^= 0xff
				e.claim, e.items[string(m.ID[:])] = [][]byte{m.ID[:]}, raw
				junk = append(junk, m.ID)
			case "banned":
				// b: valid, from a banned persona; for the claimed c it sends x instead (valid, not asked for).
				b := signedBy(t, id, bannedKey, "banned")
				c := signedBy(t, id, strangerKey, "claimed")
				x := signedBy(t, id, strangerKey, "not asked for")
				e.claim = [][]byte{b.ID[:], c.ID[:]}
				e.items[string(b.ID[:])], e.items[string(c.ID[:])] = b.Raw, x.Raw
				junk = append(junk, b.ID, x.ID)
			}
			evil.Host.SetStreamHandler(room.SyncProtocolID, e.handle)
			switch mode {
			case "forged", "oversized":
				testnet.Eventually(t, 20*time.Second, func() bool { return room.IsHostile(h, evil.Host.ID()) }, "evil peer marked")
				streams, _ := e.counts()
				before, _, _ := room.RepairCounters(h)
				testnet.Eventually(t, 20*time.Second, func() bool { n, _, _ := room.RepairCounters(h); return n >= before+5 }, "h keeps repairing")
				if now, _ := e.counts(); now != streams {
					t.Fatalf("h went back to the hostile peer (%d sessions, then %d)", streams, now)
				}
			case "banned", "endless":
				testnet.Eventually(t, 20*time.Second, func() bool { s, _ := e.counts(); return s >= 3 }, "h's sessions with the evil peer")
				if room.IsHostile(h, evil.Host.ID()) {
					t.Fatal("valid answers marked hostile")
				}
			}
			_, maxReqs := e.counts()
			if maxReqs > room.MaxRepairRequests {
				t.Fatalf("a session made %d requests (cap %d)", maxReqs, room.MaxRepairRequests)
			}
			if mode == "banned" {
				e.mu.Lock()
				n := e.asked[string(junk[0][:])]
				e.mu.Unlock()
				if n != 1 {
					t.Fatalf("the banned persona's message was asked for %d times, want once", n)
				}
			}
			have := stored(t, h, id)
			for _, j := range junk {
				if have[j.String()] {
					t.Fatalf("junk message %s stored", j)
				}
			}
		})
	}
}

// BenchmarkRepairSessionInSync: one repair session between two members that hold the same 5,000
// messages (the default history limit): both sides scan their ID index, one summary and an empty answer
// cross the (mock) network. This is what periodic anti-entropy costs when nothing was lost.
func BenchmarkRepairSessionInSync(b *testing.B) {
	mn, nodes := testnet.Mocknet(b, 2, testnet.Options{Configure: func(i int, c *config.Config) {
		fastRooms(i, c)
		c.Rooms.RepairInterval = hour
	}})
	if err := mn.ConnectAllButSelf(); err != nil {
		b.Fatal(err)
	}
	o, m := svc(b, nodes[0]), svc(b, nodes[1])
	in, err := o.Create(b.Context(), room.CreateOptions{Name: "bench", Tags: []string{"bench"}})
	if err != nil {
		b.Fatal(err)
	}
	id, _ := room.ParseID(in.RoomID)
	h := nodes[0].Host
	if _, err := m.Join(b.Context(), room.Link{Room: id, Peers: []peer.AddrInfo{{ID: h.ID(), Addrs: h.Addrs()}}}.String(), room.JoinOptions{}); err != nil {
		b.Fatal(err)
	}
	sendN(b, o, id, 5000, strings.Repeat("x", 200))
	testnet.Eventually(b, 60*time.Second, func() bool {
		_, _ = room.Repair(m, id, h.ID())
		in, _ := m.Room(id)
		return in.Messages == 5002
	}, "member has the history (both joins and 5000 texts)")
	for b.Loop() {
		if n, err := room.Repair(m, id, h.ID()); err != nil || n != 0 {
			b.Fatalf("stored %d, %v", n, err)
		}
	}
}
