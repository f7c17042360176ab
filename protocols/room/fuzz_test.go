package room

import (
	"bytes"
	mrand "math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/room/pb"
	syncpb "github.com/madang-p2p/madang/protocols/roomsync/pb"
)

// FuzzDecodeManifest: no panic; anything that decodes re-verifies and hashes to its room ID.
func FuzzDecodeManifest(f *testing.F) {
	m := testManifest(f, key(1), pub(key(2)))
	f.Add(m.Raw)
	f.Add([]byte{})
	f.Add(m.Raw[:len(m.Raw)/2])
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := DecodeManifest(raw)
		if err != nil {
			return
		}
		if got.ID != DeriveID(got.Body.Owner, got.Body.Nonce) || !bytes.Equal(got.Raw, raw) {
			t.Fatal("decoded manifest inconsistent")
		}
	})
}

// FuzzDecodeItem covers room messages and moderation actions, the two bodies of a topic item.
func FuzzDecodeItem(f *testing.F) {
	g := testManifest(f, key(1))
	f.Add(testMessage(f, g.ID, key(2), 1, "hello").Raw)
	f.Add(testMod(f, g.ID, key(1), 1, nil, &pb.Ban{Persona: pub(key(3)), Reason: "spam"}).Raw)
	add := testMod(f, g.ID, key(1), 1, nil, &pb.AddModerator{Persona: pub(key(2))})
	f.Add(testMod(f, g.ID, key(2), 2, add.Raw, &pb.Hide{MessageId: make([]byte, 16)}).Raw)
	f.Add([]byte{0x0a, 0x00, 0x1a, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		msg, mod, err := DecodeItem(raw)
		if err != nil {
			return
		}
		if (msg == nil) == (mod == nil) {
			t.Fatal("decoded item must be exactly one of message or moderation")
		}
		if msg != nil && (len(msg.Body.Text) > MaxTextBytes || len(raw) > MaxMessageBytes) {
			t.Fatal("oversized message decoded")
		}
		if mod != nil {
			// The fold must never panic on a verified action, authorised or not.
			var l Log
			l.Insert(mod)
			_ = Fold(g, &l)
			_, _ = authorityFor(g, mod.Body)
		}
	})
}

// FuzzModerationLog folds logs built from fuzzed, then signed, bodies: arbitrary action fields, seqs
// and signers (owner, co-host, stranger) in arbitrary order.
func FuzzModerationLog(f *testing.F) {
	g := testManifest(f, key(1))
	seed, _ := proto.Marshal(&pb.ModBody{Seq: 3, Action: &pb.ModBody_Ban{Ban: &pb.Ban{Persona: pub(key(3))}}})
	f.Add(seed, uint8(0))
	f.Add([]byte{}, uint8(1))
	signers := []struct{ k []byte }{{key(1)}, {key(2)}, {key(3)}}
	f.Fuzz(func(t *testing.T, raw []byte, who uint8) {
		var b pb.ModBody
		if proto.Unmarshal(raw, &b) != nil {
			return
		}
		k := signers[int(who)%len(signers)].k
		b.Version, b.Room, b.Signer, b.TimeMs = 1, g.ID[:], pub(k), 1
		if b.Seq == 0 {
			b.Seq = 1
		}
		a, err := SignModAction(k, &b)
		if err != nil {
			return
		}
		var l Log
		l.Insert(testMod(t, g.ID, key(1), 1, nil, &pb.AddModerator{Persona: pub(key(2))}))
		l.Insert(a)
		st := Fold(g, &l)
		if st.Applied+st.Skipped != l.Len() {
			t.Fatal("fold lost entries")
		}
		if !st.IsOwner(pub(key(1))) {
			t.Fatal("owner changed")
		}
	})
}

// FuzzDecodeCard: the directory verifier of room cards.
func FuzzDecodeCard(f *testing.F) {
	g := testManifest(f, key(1))
	c, err := SignCard(key(1), &pb.CardBody{Version: 1, Manifest: g.Raw, Members: 3, TimeMs: 1700000000000})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Raw)
	f.Add([]byte{0x0a, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, raw []byte) {
		id, _, err := VerifyCard(raw)
		if err != nil {
			return
		}
		if _, err := ParseID(id); err != nil {
			t.Fatalf("card id %q", id)
		}
	})
}

// FuzzSyncResponse: a history answer from a room peer, as a joining node checks it.
func FuzzSyncResponse(f *testing.F) {
	g := testManifest(f, key(1))
	resp, _ := proto.Marshal(&syncpb.Response{
		Genesis:    g.Raw,
		Messages:   [][]byte{testMessage(f, g.ID, key(2), 1, "hi").Raw},
		Moderation: [][]byte{testMod(f, g.ID, key(1), 1, nil, &pb.Ban{Persona: pub(key(3))}).Raw},
	})
	f.Add(resp)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r syncpb.Response
		if proto.Unmarshal(raw, &r) != nil {
			return
		}
		b, err := verifyBootstrap(&r, Link{Room: g.ID}, "")
		if err != nil {
			return
		}
		for _, m := range b.messages {
			if m.Room != g.ID {
				t.Fatal("foreign message kept")
			}
		}
		_ = Fold(b.genesis, &b.log)
	})
}

// FuzzSyncRequest: a repair request as a peer serves it (summary check and comparison with a stored
// history); no panic, the listed IDs are bounded and belong to the history.
func FuzzSyncRequest(f *testing.F) {
	rng := mrand.New(mrand.NewPCG(5, 6))
	mine := randomHistory(rng, 300, 2000, 0)
	seed, _ := proto.Marshal(&pb.SyncRequest{Room: make([]byte, 20), Summary: summarise(mine[:200], 1000, 3000)})
	f.Add(seed)
	want, _ := proto.Marshal(&pb.SyncRequest{Want: [][]byte{make([]byte, 16)}})
	f.Add(want)
	f.Add([]byte{})
	known := ids(mine)
	f.Fuzz(func(t *testing.T, raw []byte) {
		var req pb.SyncRequest
		if proto.Unmarshal(raw, &req) != nil || checkSummary(req.Summary) != nil {
			return
		}
		have, more, _ := compareSummary(req.Summary, inWindow(mine, req.Summary.FromMs, req.Summary.ToMs), 50)
		if len(have) > 50 || (more != 0 && len(have) != 50) {
			t.Fatalf("%d IDs listed, more from %d", len(have), more)
		}
		for _, b := range have {
			if id, ok := msgIDFrom(b); !ok || !known[id] {
				t.Fatal("listed an ID not held")
			}
		}
	})
}

// FuzzSyncAnswer: a repair answer as a requester reads it (shape checks, then the items it asked for);
// no panic, and nothing not asked for, of another room or unparseable comes through.
func FuzzSyncAnswer(f *testing.F) {
	g := testManifest(f, key(1))
	m := testMessage(f, g.ID, key(2), 1, "hi")
	a := testMod(f, g.ID, key(1), 1, nil, &pb.Ban{Persona: pub(key(3))})
	for _, r := range []*pb.SyncResponse{
		{Done: 1, Messages: [][]byte{m.Raw}},
		{Done: 2, Moderation: [][]byte{a.Raw}},
		{Have: [][]byte{m.ID[:]}, MoreFromMs: 5},
	} {
		raw, _ := proto.Marshal(r)
		f.Add(raw, false)
		f.Add(raw, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, mods bool) {
		var resp pb.SyncResponse
		if proto.Unmarshal(raw, &resp) != nil {
			return
		}
		_ = checkSummaryAnswer(&resp)
		items, done, err := checkFetchAnswer(&resp, 2, mods)
		if err != nil {
			return
		}
		if done < 1 || done > 2 || len(items) > done {
			t.Fatalf("done %d with %d items", done, len(items))
		}
		got, err := pickWanted(items, map[MsgID]bool{m.ID: true, a.ID: true}, mods, g.ID)
		if err != nil {
			return
		}
		for _, d := range got {
			id, room := d.ID()
			if room != g.ID || (id != m.ID && id != a.ID) || (d.mod != nil) != mods {
				t.Fatal("unasked or foreign item picked")
			}
		}
	})
}
