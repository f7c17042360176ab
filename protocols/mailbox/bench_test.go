package mailbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/madang-p2p/madang/store"
)

// diskRelay is a relay whose store is on disk, so deposits pay for fsync as on a real relay.
func (tn *testNet) diskRelay(b *testing.B) *testRelay {
	b.Helper()
	r := tn.relay(Limits{QuotaItems: 1 << 20, QuotaBytes: 1 << 40}, 1<<30)
	st, err := store.Open(b.TempDir(), store.Options{CacheMiB: 32})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	r.svc.Close()
	r.st = st
	if r.ms, err = OpenStore(b.Context(), st, st.Namespace("mailbox"), Limits{QuotaItems: 1 << 20, QuotaBytes: 1 << 40}, tn.clock.Now); err != nil {
		b.Fatal(err)
	}
	if r.svc, err = NewService(b.Context(), r.h, r.ms, ServiceOptions{DepositsPerMinute: 1 << 30, Now: tn.clock.Now}); err != nil {
		b.Fatal(err)
	}
	return r
}

// BenchmarkDeposit measures one sender depositing 1 KiB messages into a friend's mailbox on one relay
// (seal with HPKE, stream round trip over mocknet, capability check, fsynced batch, signed receipt).
func BenchmarkDeposit(b *testing.B) {
	tn := newTestNet(b)
	r := tn.diskRelay(b)
	a, bob := tn.user("a"), tn.user("b", r)
	card := cardFor(b, bob, a)
	payload := bytes.Repeat([]byte("x"), 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := a.c.Deposit(b.Context(), card, strconv.Itoa(i), payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkDepositParallel is BenchmarkDeposit with many senders at once (one per goroutine, GOMAXPROCS×8),
// as a relay sees them: concurrent deposits share WAL syncs.
func BenchmarkDepositParallel(b *testing.B) {
	tn := newTestNet(b)
	r := tn.diskRelay(b)
	bob := tn.user("b", r)
	payload := bytes.Repeat([]byte("x"), 1024)
	var senders []*testUser
	var cards [][]byte
	for i := range 64 {
		u := tn.user(fmt.Sprintf("s%d", i))
		senders = append(senders, u)
		cards = append(cards, cardFor(b, bob, u))
	}
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		k := int(next.Add(1)-1) % len(senders)
		for i := 0; pb.Next(); i++ {
			if _, err := senders[k].c.Deposit(b.Context(), cards[k], fmt.Sprintf("%d-%d", k, i), payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkDrain measures the owner draining its mailbox: fetch pages, open each item, hand it to a sink,
// record it as delivered, ack-delete on the relay.
func BenchmarkDrain(b *testing.B) {
	tn := newTestNet(b)
	r := tn.diskRelay(b)
	a, bob := tn.user("a"), tn.user("b", r)
	card := cardFor(b, bob, a)
	payload := bytes.Repeat([]byte("x"), 1024)
	for i := range b.N {
		if _, err := a.c.Deposit(b.Context(), card, strconv.Itoa(i), payload); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	res, err := bob.c.Drain(b.Context(), func(context.Context, []byte) error { n++; return nil }, nil)
	b.StopTimer()
	if err != nil || n != b.N || res.Delivered != b.N {
		b.Fatalf("drained %d of %d: %v", n, b.N, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkRelayQueued10k fills a relay with 10,000 queued 1 KiB items (100 mailboxes × 100) through the
// protocol and reports the Go heap in use and the process RSS with them queued (the relay keeps only
// per-mailbox totals in memory; items live in pebble).
func BenchmarkRelayQueued10k(b *testing.B) {
	for range b.N {
		tn := newTestNet(b)
		r := tn.diskRelay(b)
		a := tn.user("a")
		payload := bytes.Repeat([]byte("x"), 1024)
		var cards [][]byte
		for m := range 100 {
			cards = append(cards, cardFor(b, tn.user(fmt.Sprintf("u%d", m), r), a))
		}
		runtime.GC()
		debug.FreeOSMemory()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		rssBefore := rssKiB()
		for _, card := range cards {
			for i := range 100 {
				if _, err := a.c.Deposit(b.Context(), card, strconv.Itoa(i), payload); err != nil {
					b.Fatal(err)
				}
			}
		}
		if st := r.ms.Stats(b.Context()); st.Items != 10000 {
			b.Fatalf("%d items queued", st.Items)
		}
		runtime.GC()
		debug.FreeOSMemory()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/(1<<20), "heap-growth-MiB")
		b.ReportMetric(float64(rssKiB())/1024, "rss-MiB")
		b.ReportMetric(float64(rssKiB()-rssBefore)/1024, "rss-growth-MiB")
	}
}

func rssKiB() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "VmRSS:" {
			n, _ := strconv.ParseInt(string(f[1]), 10, 64)
			return n
		}
	}
	return 0
}
