package node_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/testnet"
)

// BenchmarkDMThroughput: end-to-end direct messages between two real loopback nodes (TCP, Noise, on-disk
// stores with fsync): b.N messages sent one after another, timed until the last is acknowledged
// (delivered). Reports messages per second.
func BenchmarkDMThroughput(b *testing.B) {
	nodes := testnet.Start(b, 2, testnet.Options{Configure: fastRetries})
	a, r := nodes[0], nodes[1]
	testnet.Connect(b, a, r)
	befriend(b, a, r)
	s := node.DMService(a.Node)
	to := r.Identity.AccountID()
	text := string(make([]byte, 200))
	// Warm up the session (PQXDH start) outside the timing.
	if _, err := s.Send(b.Context(), to, "warmup", text); err != nil {
		b.Fatal(err)
	}
	wait := func() {
		testnet.Eventually(b, 5*time.Minute, func() bool {
			n, err := s.Pending(b.Context(), to)
			return err == nil && n == 0
		}, "outbox drains")
	}
	wait()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := s.Send(b.Context(), to, fmt.Sprintf("m%d", i), text); err != nil {
			b.Fatal(err)
		}
	}
	wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
