package room

import (
	"crypto/sha256"
	"encoding/binary"
	mrand "math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/room/pb"
)

func heldID(n int) MsgID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	s := sha256.Sum256(b[:])
	var id MsgID
	copy(id[:], s[:])
	return id
}

// randomHistory is n messages with times in [1000, 1000+span), several per millisecond when n > span.
func randomHistory(rng *mrand.Rand, n, span, base int) []held {
	out := make([]held, n)
	for i := range out {
		out[i] = held{t: int64(1000 + rng.IntN(span)), id: heldID(base + i)}
	}
	slices.SortFunc(out, cmpHeld)
	return out
}

func ids(hs []held) map[MsgID]bool {
	m := map[MsgID]bool{}
	for _, h := range hs {
		m[h.id] = true
	}
	return m
}

// The peer lists every message the requester lacks (and, when histories are equal, nothing), whatever
// the sizes, overlaps and clustering in time; lists cut at the limit continue from moreFrom until done
// (a list advances unless more than limit messages share one millisecond; the requester then stops).
func TestSummaryFindsEveryMissingMessage(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for round := range 300 {
		span := 100 + rng.IntN(5000) // at most ~60 messages in one millisecond: lists cut at 100 advance
		common := randomHistory(rng, rng.IntN(3000), span, 0)
		onlyMine := randomHistory(rng, rng.IntN(50), span, 1_000_000)
		onlyTheirs := randomHistory(rng, rng.IntN(300)*rng.IntN(2), span, 2_000_000)
		mine := slices.SortedFunc(slices.Values(append(slices.Clone(common), onlyMine...)), cmpHeld)
		theirs := slices.SortedFunc(slices.Values(append(slices.Clone(common), onlyTheirs...)), cmpHeld)
		from, to := int64(1000), int64(1000+span)
		limit := []int{maxHave, 200, 100}[round%3]
		lacking := ids(onlyTheirs)
		for pass := 0; ; pass++ {
			if pass > 2000 {
				t.Fatalf("round %d: no progress", round)
			}
			sum := summarise(inWindow(mine, from, to), from, to)
			if err := checkSummary(sum); err != nil {
				t.Fatalf("round %d: own summary invalid: %v", round, err)
			}
			if len(sum.Buckets) > maxBuckets {
				t.Fatalf("round %d: %d buckets", round, len(sum.Buckets))
			}
			have, more, _ := compareSummary(sum, inWindow(theirs, from, to), limit)
			if len(have) > limit {
				t.Fatalf("round %d: %d IDs listed, limit %d", round, len(have), limit)
			}
			for _, raw := range have {
				id, _ := msgIDFrom(raw)
				delete(lacking, id)
			}
			if more == 0 {
				break
			}
			if more <= from {
				t.Fatalf("round %d: moreFrom %d does not advance from %d", round, more, from)
			}
			from = more
		}
		if len(lacking) > 0 {
			t.Fatalf("round %d: %d of %d missing messages never listed", round, len(lacking), len(onlyTheirs))
		}
		if len(onlyMine) == 0 && len(onlyTheirs) == 0 {
			sum := summarise(common, 1000, int64(1000+span))
			if have, more, theirs := compareSummary(sum, common, maxHave); len(have) > 0 || more != 0 || theirs {
				t.Fatalf("round %d: equal histories differ (%d listed)", round, len(have))
			}
		}
	}
}

func inWindow(hs []held, from, to int64) []held {
	var out []held
	for _, h := range hs {
		if h.t >= from && h.t < to {
			out = append(out, h)
		}
	}
	return out
}

// A summary of equal histories costs about 20 bytes per bucket: the 5,000 messages a room keeps by
// default are summarised in under 2 KiB, and one missing message costs one bucket's IDs.
func TestSummarySize(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(3, 4))
	hs := randomHistory(rng, 5000, 3_600_000, 0)
	sum := summarise(hs, 0, 5_000_000)
	raw, _ := proto.Marshal(&pb.SyncRequest{Room: make([]byte, 20), Summary: sum})
	if len(raw) > 2048 {
		t.Fatalf("summary of 5000 messages is %d bytes", len(raw))
	}
	have, _, theirs := compareSummary(sum, append(slices.Clone(hs[:2500]), hs[2501:]...), maxHave)
	if len(have) == 0 || len(have) > 2*bucketItems || !theirs {
		t.Fatalf("one message missing at the peer: %d IDs listed (theirs %v)", len(have), theirs)
	}
	t.Logf("5000 messages: %d buckets, %d bytes", len(sum.Buckets), len(raw))
}

func TestCheckSummaryRejectsMalformed(t *testing.T) {
	ok := &pb.Summary{FromMs: 10, ToMs: 100, Buckets: []*pb.Bucket{{StartMs: 10}, {StartMs: 50}}}
	if err := checkSummary(ok); err != nil {
		t.Fatal(err)
	}
	bad := []*pb.Summary{
		nil,
		{FromMs: 10, ToMs: 10, Buckets: []*pb.Bucket{{StartMs: 10}}},
		{FromMs: -1, ToMs: 10, Buckets: []*pb.Bucket{{StartMs: -1}}},
		{FromMs: 10, ToMs: 100},
		{FromMs: 10, ToMs: 100, Buckets: []*pb.Bucket{{StartMs: 11}}},
		{FromMs: 10, ToMs: 100, Buckets: []*pb.Bucket{{StartMs: 10}, {StartMs: 10}}},
		{FromMs: 10, ToMs: 100, Buckets: []*pb.Bucket{{StartMs: 10}, {StartMs: 100}}},
		{FromMs: 0, ToMs: 1 << 40, Buckets: make([]*pb.Bucket, maxBuckets+1)},
	}
	for i, s := range bad {
		if checkSummary(s) == nil {
			t.Errorf("malformed summary %d accepted", i)
		}
	}
}

// Answers a requester reads: shapes no honest peer sends are refused before any item is parsed.
func TestRepairAnswerChecks(t *testing.T) {
	g := testManifest(t, key(1))
	m := testMessage(t, g.ID, key(2), 1, "hi")
	if _, _, err := checkFetchAnswer(&pb.SyncResponse{Done: 0}, 3, false); err == nil {
		t.Error("answer without progress accepted")
	}
	if _, _, err := checkFetchAnswer(&pb.SyncResponse{Done: 4}, 3, false); err == nil {
		t.Error("answer handling more IDs than asked accepted")
	}
	if _, _, err := checkFetchAnswer(&pb.SyncResponse{Done: 1, Messages: [][]byte{m.Raw, m.Raw}}, 3, false); err == nil {
		t.Error("more items than IDs handled accepted")
	}
	if _, _, err := checkFetchAnswer(&pb.SyncResponse{Done: 1, Moderation: [][]byte{m.Raw}}, 3, false); err == nil {
		t.Error("moderation in a message answer accepted")
	}
	if err := checkSummaryAnswer(&pb.SyncResponse{Have: make([][]byte, maxHave+1)}); err == nil {
		t.Error("over-long have list accepted")
	}
	if err := checkSummaryAnswer(&pb.SyncResponse{Messages: [][]byte{m.Raw}}); err == nil {
		t.Error("unasked items with a summary answer accepted")
	}
	// Items not asked for are dropped unread; asked ones come back once; foreign ones are invalid.
	other := testMessage(t, g.ID, key(3), 1, "other")
	got, err := pickWanted([][]byte{other.Raw, m.Raw, m.Raw}, map[MsgID]bool{m.ID: true}, false, g.ID)
	if err != nil || len(got) != 1 || got[0].msg.ID != m.ID {
		t.Fatalf("pickWanted: %v, %d items", err, len(got))
	}
	if _, err := pickWanted([][]byte{m.Raw}, map[MsgID]bool{m.ID: true}, false, ID{1}); err == nil {
		t.Error("item of another room accepted")
	}
	if _, err := pickWanted([][]byte{m.Raw}, map[MsgID]bool{m.ID: true}, true, g.ID); err == nil {
		t.Error("message in a moderation answer accepted")
	}
	if _, err := pickWanted([][]byte{[]byte("junk")}, map[MsgID]bool{}, false, g.ID); err == nil {
		t.Error("malformed item accepted")
	}
}

// BenchmarkSummaryCompare: what a repair costs both sides in CPU for a room at the default history limit
// (5,000 messages) when the two histories differ by one message: the requester's summary and the
// peer's comparison (the store scans of the ID index come on top).
func BenchmarkSummaryCompare(b *testing.B) {
	rng := mrand.New(mrand.NewPCG(7, 8))
	hs := randomHistory(rng, 5000, 3_600_000, 0)
	theirs := append(slices.Clone(hs), held{t: hs[2500].t, id: heldID(9_999_999)})
	slices.SortFunc(theirs, cmpHeld)
	for b.Loop() {
		sum := summarise(hs, 0, 5_000_000)
		if have, _, _ := compareSummary(sum, theirs, maxHave); len(have) == 0 {
			b.Fatal("difference not found")
		}
	}
}
