package room

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
)

// History repair compares what two room peers hold without sending it: the requester summarises the
// messages of a time window in buckets of about bucketItems consecutive messages (start time, count and an
// additive fingerprint of the IDs); the peer computes the same figures over the same time ranges and lists
// its IDs in the buckets that differ; the requester then asks for the IDs it lacks. Equal histories cost
// one summary (about 20 bytes per bucket) and an empty answer.

// Summary limits.
const (
	bucketItems = 64   // messages per bucket (more when a window holds over maxBuckets*bucketItems)
	maxBuckets  = 512  // per summary
	maxHave     = 4096 // IDs listed per answer; the rest is asked for in another round
	maxHaveMod  = 1000 // moderation IDs listed per answer (the newest)
	maxWant     = 1024 // IDs asked for per request
)

// held is a stored message as the summary sees it: its time and ID.
type held struct {
	t  int64
	id MsgID
}

func cmpHeld(a, b held) int {
	if c := cmp.Compare(a.t, b.t); c != 0 {
		return c
	}
	return slices.Compare(a.id[:], b.id[:])
}

// fingerprint is what one ID adds to a bucket's fingerprint.
func fingerprint(id MsgID) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

// held lists the stored messages with time in [from, to), oldest first, leaving out what is not handed on
// (messages hidden by a host, and our own messages waiting in the outbox). It reads the ID index (small
// values), not the messages.
func (r *roomRT) held(ctx context.Context, from, to int64) ([]held, error) {
	hidden := r.state.Load().Hidden
	var pending map[string]bool
	if r.hasPending() {
		pending = map[string]bool{}
		prefix := "o/" + r.key + "/"
		for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: prefix}) {
			if err != nil {
				return nil, err
			}
			if _, id, ok := strings.Cut(strings.TrimPrefix(e.Key, prefix), "/"); ok {
				pending[id] = true
			}
		}
	}
	prefix := "x/" + r.key + "/"
	var out []held
	for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: prefix}) {
		if err != nil {
			return nil, err
		}
		hexID := e.Key[len(prefix):]
		t, err := strconv.ParseInt(string(e.Value), 10, 64)
		if err != nil || t < from || t >= to || pending[hexID] {
			continue
		}
		id, err := ParseMsgID(hexID)
		if err != nil || hidden[id] {
			continue
		}
		out = append(out, held{t: t, id: id})
	}
	slices.SortFunc(out, cmpHeld)
	return out, nil
}

// summarise cuts hs (sorted, all in [from, to)) into buckets. A bucket ends only where the time changes,
// since buckets are time ranges.
func summarise(hs []held, from, to int64) *pb.Summary {
	per := max(bucketItems, (len(hs)+maxBuckets-2)/(maxBuckets-1))
	s := &pb.Summary{FromMs: from, ToMs: to}
	cur := &pb.Bucket{StartMs: from}
	for i, h := range hs {
		if int(cur.Count) >= per && h.t > hs[i-1].t {
			s.Buckets = append(s.Buckets, cur)
			cur = &pb.Bucket{StartMs: h.t}
		}
		cur.Count++
		cur.Fingerprint += fingerprint(h.id)
	}
	s.Buckets = append(s.Buckets, cur)
	return s
}

// checkSummary enforces the shape summarise produces: a window, and 1 to maxBuckets buckets with strictly
// increasing starts inside it, the first at its start.
func checkSummary(s *pb.Summary) error {
	switch {
	case s == nil:
		return invalid("no summary")
	case s.FromMs < 0 || s.ToMs <= s.FromMs:
		return invalid("summary window")
	case len(s.Buckets) == 0 || len(s.Buckets) > maxBuckets:
		return invalid("summary of %d buckets", len(s.Buckets))
	case s.Buckets[0].StartMs != s.FromMs:
		return invalid("summary first bucket")
	}
	for i := 1; i < len(s.Buckets); i++ {
		if st := s.Buckets[i].StartMs; st <= s.Buckets[i-1].StartMs || st >= s.ToMs {
			return invalid("summary bucket %d", i)
		}
	}
	return nil
}

// compareSummary computes mine (sorted, all in the summary's window) over the summary's buckets. It lists
// my IDs in the buckets that differ, oldest first, at most limit of them; if the list is cut, moreFrom is
// the time to continue from. theirs reports a bucket where the other side holds something I do not (more
// messages, or as many but other ones).
func compareSummary(s *pb.Summary, mine []held, limit int) (have [][]byte, moreFrom int64, theirs bool) {
	k := len(s.Buckets)
	bucket := make([]int, len(mine))
	counts := make([]uint32, k)
	fps := make([]uint64, k)
	for i, h := range mine {
		b := sort.Search(k, func(j int) bool { return s.Buckets[j].StartMs > h.t }) - 1
		bucket[i] = b
		counts[b]++
		fps[b] += fingerprint(h.id)
	}
	for j, b := range s.Buckets {
		if b.Count > counts[j] || (b.Count == counts[j] && b.Fingerprint != fps[j]) {
			theirs = true
		}
	}
	for i, h := range mine {
		b := s.Buckets[bucket[i]]
		if b.Count == counts[bucket[i]] && b.Fingerprint == fps[bucket[i]] {
			continue
		}
		if len(have) == limit {
			return have, h.t, theirs
		}
		have = append(have, slices.Clone(h.id[:]))
	}
	return have, 0, theirs
}

// modSummary is the count and fingerprint of a moderation log.
func modSummary(l *Log) (uint32, uint64) {
	var fp uint64
	for _, a := range l.entries {
		fp += fingerprint(a.ID)
	}
	return uint32(len(l.entries)), fp
}

func msgIDFrom(b []byte) (MsgID, bool) {
	var id MsgID
	if len(b) != len(id) {
		return id, false
	}
	copy(id[:], b)
	return id, true
}
