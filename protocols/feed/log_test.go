package feed

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/madang-p2p/madang/store"
)

var t0 = time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)

func seededKey(b byte) ed25519.PrivateKey {
	seed := bytes.Repeat([]byte{b}, ed25519.SeedSize)
	return ed25519.NewKeyFromSeed(seed)
}

func memDB(t testing.TB) *db {
	t.Helper()
	st, err := store.Open("", store.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return &db{st: st, ns: st.Namespace("channels")}
}

func fixedNow() time.Time { return t0.Add(24 * time.Hour) }

// chain signs n honest entries of a channel.
func chain(t testing.TB, priv ed25519.PrivateKey, n int) []*Entry {
	t.Helper()
	var out []*Entry
	var prev []byte
	for i := 1; i <= n; i++ {
		e, err := SignEntry(priv, uint64(i), prev, t0.Add(time.Duration(i)*time.Minute), Draft{Kind: "post", Title: fmt.Sprintf("entry %d", i), Body: "fresh bread"})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
		prev = e.ID[:]
	}
	return out
}

func TestEntryRoundTripAndLimits(t *testing.T) {
	k := seededKey(1)
	e, err := SignEntry(k, 1, nil, t0, Draft{Kind: "offer", Title: "Half-price kimchi", Body: "today only", Price: "₩3,000", ValidUntil: t0.Add(time.Hour), Media: [][]byte{bytes.Repeat([]byte{7}, 34)}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := VerifyEntry(e.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Kind != "offer" || got.Price != "₩3,000" || !got.ValidUntil.Equal(t0.Add(time.Hour)) || len(got.Media) != 1 {
		t.Fatalf("round trip lost fields: %+v", got)
	}
	cases := []struct {
		name string
		seq  uint64
		prev []byte
		d    Draft
	}{
		{"kind", 1, nil, Draft{Kind: "rumour", Title: "x"}},
		{"empty", 1, nil, Draft{Kind: "post"}},
		{"first with prev", 1, make([]byte, 32), Draft{Kind: "post", Title: "x"}},
		{"later without prev", 2, nil, Draft{Kind: "post", Title: "x"}},
		{"long title", 1, nil, Draft{Kind: "post", Title: string(bytes.Repeat([]byte{'a'}, MaxTitleBytes+1))}},
		{"too large", 1, nil, Draft{Kind: "post", Body: string(bytes.Repeat([]byte{'a'}, MaxEntryBytes))}},
		{"too many media", 1, nil, Draft{Kind: "post", Title: "x", Media: make([][]byte, MaxMedia+1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := SignEntry(k, c.seq, c.prev, t0, c.d); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// A body just under the limit is fine.
	if _, err := SignEntry(k, 1, nil, t0, Draft{Kind: "menu", Body: string(bytes.Repeat([]byte{'a'}, MaxEntryBytes-300))}); err != nil {
		t.Fatalf("entry just under 256 KiB: %v", err)
	}
}

func TestVerifyEntryRejectsForgeries(t *testing.T) {
	k, other := seededKey(1), seededKey(2)
	e := chain(t, k, 1)[0]
	// Every single-bit flip of the signed bytes is rejected.
	for i := range len(e.Raw) {
		for bit := range 8 {
			bad := bytes.Clone(e.Raw)
			bad[i] ^= 1 << bit
			if got, err := VerifyEntry(bad); err == nil && got.ID != e.ID {
				t.Fatalf("flip of byte %d bit %d accepted as a different entry", i, bit)
			}
		}
	}
	// A signature by another key over the same body is rejected.
	_, body, _, err := DecodeEntry(e.Raw)
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := marshalSigned(body, ed25519.Sign(other, signed(entryDomain, body)))
	if _, err := VerifyEntry(forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged signature: %v", err)
	}
}

func TestLogAppendDuplicateGapFork(t *testing.T) {
	d := memDB(t)
	k := seededKey(1)
	id := IDFromKey(k.Public().(ed25519.PublicKey))
	l, err := openLog(d, id, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	es := chain(t, k, 6)
	res, err := l.Apply(es[0], es[1])
	if err != nil || len(res.Appended) != 2 {
		t.Fatalf("append: %v %+v", err, res)
	}
	if res, _ := l.Apply(es[1]); res.Duplicates != 1 || len(res.Appended) != 0 {
		t.Fatalf("duplicate: %+v", res)
	}
	// A gap: 4 and 5 are held until 3 arrives, then all three follow in order.
	if res, _ := l.Apply(es[4], es[3]); res.Held != 2 || len(res.Appended) != 0 || l.State().Seq != 2 {
		t.Fatalf("gap: %+v, seq %d", res, l.State().Seq)
	}
	if st := l.State(); st.Target != 5 {
		t.Fatalf("target %d, want 5", st.Target)
	}
	res, _ = l.Apply(es[2])
	if len(res.Appended) != 3 || l.State().Seq != 5 {
		t.Fatalf("after filling the gap: %+v seq %d", res, l.State().Seq)
	}
	// Another key's entry is refused.
	if _, err := l.Apply(chain(t, seededKey(3), 1)[0]); !errors.Is(err, ErrWrongChannel) {
		t.Fatalf("wrong channel: %v", err)
	}
	// A second valid entry for seq 3 is a fork: kept as proof, the log is paused.
	fork, err := SignEntry(k, 3, es[1].ID[:], t0, Draft{Kind: "post", Title: "rewritten history"})
	if err != nil {
		t.Fatal(err)
	}
	res, err = l.Apply(fork)
	if err != nil || res.Fork == nil || res.Fork.Kind != ForkSameSeq || res.Fork.Seq != 3 {
		t.Fatalf("fork: %v %+v", err, res)
	}
	if _, err := l.Apply(es[5]); !errors.Is(err, ErrForked) {
		t.Fatalf("after a fork: %v", err)
	}
	proof, err := l.ForkProof(t.Context())
	if err != nil || len(proof) != 2 {
		t.Fatalf("proof: %v, %d entries", err, len(proof))
	}
	a, _ := VerifyEntry(proof[0])
	b, _ := VerifyEntry(proof[1])
	if a.Seq != 3 || b.Seq != 3 || a.ID == b.ID {
		t.Fatal("proof is not two valid entries with one seq")
	}
	// The fork survives a restart.
	l2, err := openLog(d, id, fixedNow)
	if err != nil {
		t.Fatal(err)
	}
	if st := l2.State(); st.Fork == nil || st.Seq != 5 {
		t.Fatalf("after reopen: %+v", st)
	}
}

func TestLogBrokenLinkIsFork(t *testing.T) {
	d := memDB(t)
	k := seededKey(1)
	l, _ := openLog(d, IDFromKey(k.Public().(ed25519.PublicKey)), fixedNow)
	es := chain(t, k, 2)
	if _, err := l.Apply(es[0]); err != nil {
		t.Fatal(err)
	}
	bad, err := SignEntry(k, 2, bytes.Repeat([]byte{9}, 32), t0, Draft{Kind: "notice", Title: "closed"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.Apply(bad)
	if err != nil || res.Fork == nil || res.Fork.Kind != ForkBrokenLink {
		t.Fatalf("broken link: %v %+v", err, res)
	}
	if l.State().Seq != 1 {
		t.Fatal("an entry with a wrong prev was appended")
	}
}

// model entry classes for FuzzFeedApply.
const (
	mHonest = iota
	mFork   // valid signature, same seq as an honest entry, correct prev, different content
	mBadPrev
)

type modelEntry struct {
	class int
	seq   uint64
	e     *Entry
}

// FuzzFeedApply drives a Log with random sequences of honest, duplicate, out-of-order, gapped, forged,
// corrupted, wrong-channel, forking and broken-link entries (single or batched) and restarts, and checks it
// against a simple model: the log is always a valid chain made only of entries the channel signed; without a
// fork it holds exactly the longest delivered prefix of the honest chain; a fork is reported only when one
// was delivered, always when both entries of one seq were delivered, and freezes the log.
func FuzzFeedApply(f *testing.F) {
	const n = 12
	k, other := seededKey(1), seededKey(2)
	honest := chain(f, k, n)
	var forks, badPrev []*Entry
	for i := 1; i <= n; i++ {
		var prev []byte
		if i > 1 {
			prev = honest[i-2].ID[:]
		}
		fe, err := SignEntry(k, uint64(i), prev, t0, Draft{Kind: "offer", Title: fmt.Sprintf("fork %d", i)})
		if err != nil {
			f.Fatal(err)
		}
		forks = append(forks, fe)
		if i > 1 {
			be, err := SignEntry(k, uint64(i), bytes.Repeat([]byte{byte(i)}, 32), t0, Draft{Kind: "post", Title: "bad prev"})
			if err != nil {
				f.Fatal(err)
			}
			badPrev = append(badPrev, be)
		} else {
			badPrev = append(badPrev, nil)
		}
	}
	stranger := chain(f, other, n)
	for _, seed := range [][]byte{
		{0, 0, 0, 1, 0, 2, 0, 3},                   // in order
		{0, 3, 0, 2, 0, 1, 0, 0},                   // reverse order
		{1, 0, 1, 4, 1, 8},                         // batches
		{0, 0, 0, 1, 2, 1},                         // fork after append
		{2, 0, 0, 0},                               // fork first, honest later
		{0, 0, 3, 1},                               // broken link
		{4, 0, 5, 3, 6, 2, 0, 0},                   // forged, corrupted, wrong channel
		{0, 5, 2, 5, 0, 0, 0, 1, 0, 2, 0, 3, 0, 4}, // both held, conflict while pending
		{0, 0, 7, 0, 0, 2, 0, 1},                   // restart in between
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		d := memDB(t)
		id := IDFromKey(k.Public().(ed25519.PublicKey))
		l, err := openLog(d, id, fixedNow)
		if err != nil {
			t.Fatal(err)
		}
		delivered := map[[32]byte]modelEntry{} // delivered and not lost to a restart
		deliver := func(me modelEntry) {
			res, err := l.Apply(me.e)
			if err != nil && !errors.Is(err, ErrForked) {
				t.Fatalf("apply %d/%d: %v", me.class, me.seq, err)
			}
			if err == nil || l.State().Fork == nil {
				delivered[me.e.ID] = me
			}
			_ = res
		}
		var frozen *State
		for i := 0; i+1 < len(ops); i += 2 {
			op, j := ops[i]%8, int(ops[i+1])%n
			switch op {
			case 0:
				deliver(modelEntry{mHonest, uint64(j + 1), honest[j]})
			case 1:
				var raws [][]byte
				for x := j; x < min(j+4, n); x++ {
					raws = append(raws, honest[x].Raw)
				}
				if _, err := l.ApplyRaw(raws); err != nil && !errors.Is(err, ErrForked) {
					t.Fatal(err)
				}
				if l.State().Fork == nil || frozen == nil {
					for x := j; x < min(j+4, n); x++ {
						delivered[honest[x].ID] = modelEntry{mHonest, uint64(x + 1), honest[x]}
					}
				}
			case 2:
				deliver(modelEntry{mFork, uint64(j + 1), forks[j]})
			case 3:
				if badPrev[j] != nil {
					deliver(modelEntry{mBadPrev, uint64(j + 1), badPrev[j]})
				}
			case 4: // the channel's entry re-signed by another key: rejected before the log
				_, body, _, _ := DecodeEntry(honest[j].Raw)
				raw, _ := marshalSigned(body, ed25519.Sign(other, signed(entryDomain, body)))
				if _, err := l.ApplyRaw([][]byte{raw}); !errors.Is(err, ErrBadSignature) {
					t.Fatalf("forged entry: %v", err)
				}
			case 5: // a corrupted copy
				raw := bytes.Clone(honest[j].Raw)
				raw[int(ops[i+1])%len(raw)] ^= 0x40
				if es, err := verifyAll([][]byte{raw}); err == nil && es[0].ID != honest[j].ID {
					t.Fatal("a corrupted entry verified as a different entry")
				}
			case 6: // another channel's valid entry
				if _, err := l.ApplyRaw([][]byte{stranger[j].Raw}); !errors.Is(err, ErrWrongChannel) && !errors.Is(err, ErrForked) {
					t.Fatalf("wrong channel: %v", err)
				}
			case 7: // restart: held entries are lost, the log and its fork flag are not
				before := l.State()
				if l, err = openLog(d, id, fixedNow); err != nil {
					t.Fatal(err)
				}
				after := l.State()
				if after.Seq != before.Seq || (after.Fork == nil) != (before.Fork == nil) {
					t.Fatalf("restart changed the log: %+v → %+v", before, after)
				}
				for eid, me := range delivered {
					if me.seq > after.Seq {
						delete(delivered, eid)
					}
				}
			}
			st := l.State()
			checkChain(t, l, k.Public().(ed25519.PublicKey), st.Seq)
			if frozen != nil && (st.Seq != frozen.Seq || st.Fork == nil) {
				t.Fatalf("the log changed after a fork: %d → %d", frozen.Seq, st.Seq)
			}
			if st.Fork != nil && frozen == nil {
				s := st
				frozen = &s
			}
			forkDelivered := false
			for _, me := range delivered {
				if me.class != mHonest {
					forkDelivered = true
				}
			}
			if st.Fork != nil && !forkDelivered && frozen == nil {
				t.Fatal("fork reported without a conflicting entry")
			}
			if st.Fork != nil {
				continue
			}
			if !forkDelivered {
				want := uint64(0)
				for want < n {
					if _, ok := delivered[honest[want].ID]; !ok {
						break
					}
					want++
				}
				if st.Seq != want {
					t.Fatalf("head %d, want %d (longest delivered prefix)", st.Seq, want)
				}
			}
			for x := range n {
				_, h := delivered[honest[x].ID]
				_, fk := delivered[forks[x].ID]
				if h && fk {
					t.Fatalf("entries %d and its fork were both delivered but no fork was reported", x+1)
				}
				if badPrev[x] != nil {
					if _, b := delivered[badPrev[x].ID]; b && st.Seq >= uint64(x) {
						t.Fatalf("a broken link at %d was delivered and the log reached %d, no fork reported", x+1, st.Seq)
					}
				}
			}
		}
	})
}

// checkChain verifies every stored entry of the log: signature, channel, seq and link.
func checkChain(t *testing.T, l *Log, key ed25519.PublicKey, head uint64) {
	t.Helper()
	var prev []byte
	next := uint64(1)
	err := l.Range(context.Background(), 1, 0, func(seq uint64, raw []byte) error {
		e, err := VerifyEntry(raw)
		if err != nil {
			return fmt.Errorf("stored entry %d: %w", seq, err)
		}
		if !e.Channel.Equal(key) || e.Seq != seq || seq != next || !bytes.Equal(e.Prev, prev) {
			return fmt.Errorf("stored entry %d breaks the chain", seq)
		}
		prev, next = e.ID[:], next+1
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next-1 != head {
		t.Fatalf("log holds %d entries, head says %d", next-1, head)
	}
}
