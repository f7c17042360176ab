// Package benches compares Madang's features with the bare libraries they are built on, in the same
// process and on the same topology, and prints the figures as ratios (see
// ../../../shared/reference/performance-anchors.md for the raw baselines and goals). The default run is a
// short smoke version; -long runs the full matrix.
package benches

import (
	"flag"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/madang-p2p/madang/sim"
)

var long = flag.Bool("long", false, "run the full benchmark matrix (minutes)")

// figures reported for room fan-out, in this order.
var roomFigures = []string{
	"p50_ms", "p95_ms", "p99_ms", "last_node_p50_ms", "delivery", "delivery_repaired", "dups_per_delivery",
	"bytes_per_delivery", "validations_per_delivery", "cpu_per_delivery_us", "heap_per_node_kib", "goroutines_per_node",
	"alloc_kib_per_delivery", "gc_cycles", "gc_cpu_share",
}

// TestRoomFanoutVsRawGossipsub runs an Open Chat room (full nodes, the real room service: signing, one
// verification per message per node, storage, events) and a plain go-libp2p-pubsub topic on the same
// seeded mocknet topology (each node dials 4–6 others), one publisher, 1 KiB messages, back to back, and
// prints ours, raw and ours/raw; with -long, 50 and 100 nodes over seeds 1–3 (medians of the per-seed
// ratios) and a rate sweep at 50 nodes for the throughput knee.
func TestRoomFanoutVsRawGossipsub(t *testing.T) {
	type run struct {
		nodes int
		rates []float64
		msgs  int
		seeds []int64
	}
	runs := []run{{nodes: 10, rates: []float64{20}, msgs: 40, seeds: []int64{1}}}
	sim.RepairWait = 10 * time.Second
	if *long {
		sim.RepairWait = 65 * time.Second
		runs = []run{
			{nodes: 50, rates: []float64{20}, msgs: 200, seeds: []int64{1, 2, 3}},
			{nodes: 100, rates: []float64{20}, msgs: 200, seeds: []int64{1, 2, 3}},
			{nodes: 50, rates: []float64{50, 100, 200, 400}, seeds: []int64{1}},
		}
	}
	for _, r := range runs {
		name := fmt.Sprintf("n%d_rate%v", r.nodes, r.rates)
		t.Run(name, func(t *testing.T) {
			var results []*sim.Result
			for _, seed := range r.seeds {
				res, err := sim.Run(t.Context(), "rooms", sim.Config{Nodes: r.nodes, Rates: r.rates, Msgs: r.msgs, Seed: seed})
				if err != nil {
					t.Fatal(err)
				}
				results = append(results, res)
				if d := res.Figure("delivery_repaired"); d.Ours < 1 {
					t.Errorf("seed %d: room delivery %.4f after repair, want 1", seed, d.Ours)
				}
				if v := res.Figure("validations_per_delivery"); v.Ours > v.Raw*1.05+0.01 {
					t.Errorf("seed %d: %.3f validations per delivery, raw %.3f: more than one verification per message", seed, v.Ours, v.Raw)
				}
			}
			var b strings.Builder
			fmt.Fprintf(&b, "room fan-out vs raw gossipsub, %d nodes, rate %v msg/s, seeds %v (medians; ratio = median of per-seed ratios)\n", r.nodes, r.rates, r.seeds)
			fmt.Fprintf(&b, "%-26s %12s %12s %8s\n", "figure", "ours", "raw", "ratio")
			names := roomFigures
			if len(r.rates) > 1 {
				names = []string{"knee_msgs_per_s", "knee_repaired_msgs_per_s"}
			}
			for _, n := range names {
				var ours, raw, ratio []float64
				for _, res := range results {
					f := res.Figure(n)
					ours, raw, ratio = append(ours, f.Ours), append(raw, f.Raw), append(ratio, f.Ratio())
				}
				fmt.Fprintf(&b, "%-26s %12.3f %12.3f %8.3f\n", n, median(ours), median(raw), median(ratio))
			}
			for _, res := range results {
				for _, s := range res.Sweep {
					fmt.Fprintf(&b, "  sweep seed %d rate %4.0f: delivery ours %.4f (repaired %.4f) raw %.4f; p99 ours %.1f ms raw %.1f ms\n",
						res.Seed, s.Rate, s.OursDelivery, s.OursRepaired, s.RawDeliv, s.OursP99, s.RawP99)
				}
			}
			t.Log("\n" + b.String())
		})
	}
}

func median(v []float64) float64 {
	v = slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
