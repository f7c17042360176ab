package feed

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/store"
)

// fillChannel appends n signed entries to an owned channel directly (no live publish), in batches.
func fillChannel(tb testing.TB, nd *tnode, id ChannelID, n int) {
	tb.Helper()
	ch := nd.svc.chans[id]
	st := ch.log.State()
	prev, seq := st.HeadID, st.Seq
	at := time.Now().Add(-time.Hour)
	var batch []*Entry
	for range n {
		seq++
		e, err := SignEntry(ch.priv, seq, prev, at, Draft{Kind: "post", Title: fmt.Sprintf("post %d", seq), Body: "Today's specials: fresh mackerel, napa cabbage, tofu. Open until ten."})
		if err != nil {
			tb.Fatal(err)
		}
		prev = e.ID[:]
		batch = append(batch, e)
		if len(batch) == 1000 {
			if _, err := ch.log.Apply(batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := ch.log.Apply(batch...); err != nil {
		tb.Fatal(err)
	}
	h, err := SignHead(ch.priv, seq, prev, at, 1)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := ch.log.NoteHead(h); err != nil {
		tb.Fatal(err)
	}
}

// verifyRate measures single-core ed25519 verifications per second on feed-entry-sized messages.
func verifyRate(tb testing.TB) float64 {
	k := seededKey(1)
	msg := make([]byte, 160)
	sig := ed25519.Sign(k, msg)
	pub := k.Public().(ed25519.PublicKey)
	const n = 3000
	start := time.Now()
	for range n {
		if !ed25519.Verify(pub, msg, sig) {
			tb.Fatal("verify")
		}
	}
	return n / time.Since(start).Seconds()
}

// BenchmarkSync10k syncs a 10,000-entry feed from a merchant to a fresh follower over feed sync on a
// mocknet (on-disk pebble store, synced batches), verifying every signature and link, and reports
// entries/s next to the single-core ed25519 verify rate measured in the same run (goal: sync ≥ 50 % of it).
func BenchmarkSync10k(b *testing.B) {
	const n = 10000
	var stores []*store.Store
	dir, err := os.MkdirTemp("", "feedbench")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { // after the mocknet is closed (cleanups run last-in first-out)
		for _, st := range stores {
			_ = st.Close()
		}
		_ = os.RemoveAll(dir)
	})
	mn, nodes := testNet(b, 1, netOpts{noDir: true, batch: 256})
	m := nodes[0]
	in, err := m.svc.Create(b.Context(), mart())
	if err != nil {
		b.Fatal(err)
	}
	id := ChannelID(in.ChannelID)
	fillChannel(b, m, id, n)
	// The machine is shared: the verify rate is sampled right before and after every sync and averaged.
	var vrSum float64
	var vrN int
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		idn, err := identity.New("follower")
		if err != nil {
			b.Fatal(err)
		}
		h, err := mn.AddPeer(idn.HostKey(), mustAddr(fmt.Sprintf("/ip4/10.0.2.%d/tcp/4040", i%250+1)))
		if err != nil {
			b.Fatal(err)
		}
		st, err := store.Open(filepath.Join(dir, fmt.Sprint(i)), store.Options{})
		if err != nil {
			b.Fatal(err)
		}
		stores = append(stores, st)
		f := startNodeWithStore(b, h, idn, netOpts{noDir: true, batch: 256}, st)
		if err := mn.LinkAll(); err != nil {
			b.Fatal(err)
		}
		if _, err := mn.ConnectPeers(h.ID(), m.h.ID()); err != nil {
			b.Fatal(err)
		}
		ch, err := f.svc.getOrOpen(id)
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.log.Update(func(st *State) { st.Following = true }); err != nil {
			b.Fatal(err)
		}
		vrSum += verifyRate(b)
		b.StartTimer()
		start := time.Now()
		if err := f.svc.syncChannel(b.Context(), ch, []peer.ID{m.h.ID()}); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		b.StopTimer()
		vrSum += verifyRate(b)
		vrN += 2
		if got := ch.log.State().Seq; got != n {
			b.Fatalf("synced %d of %d", got, n)
		}
		f.stop()
		b.StartTimer()
	}
	rate := float64(n*b.N) / total.Seconds()
	vr := vrSum / float64(vrN)
	b.ReportMetric(rate, "entries/s")
	b.ReportMetric(vr, "verify/s(1core)")
	b.ReportMetric(100*rate/vr, "%ofverify")
}
