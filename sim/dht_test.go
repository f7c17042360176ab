package sim

import (
	"math"
	"os"
	"testing"
	"time"
)

// TestDHTShort runs the dht scenario on 15 nodes: every lookup, ours and raw, finds the announcer, and the
// figures are consistent.
func TestDHTShort(t *testing.T) {
	res := runShown(t, "dht", Config{Nodes: 15, Msgs: 20, Rates: []float64{20}, Publishers: 3, Spammers: 2, Seed: 1,
		Warmup: 200 * time.Millisecond, Progress: os.Stderr})
	for _, name := range []string{"delivery"} {
		f := res.Figure(name)
		if f.Ours != 1 || f.Raw != 1 {
			t.Errorf("%s: ours %v raw %v, want 1", name, f.Ours, f.Raw)
		}
	}
	if f := res.Figure("p50_ms"); math.IsNaN(f.Ours) || f.Ours <= 0 || math.IsNaN(f.Raw) {
		t.Errorf("p50: %+v", f)
	}
	if f := res.Figure("record_holders"); f.Ours < 1 || f.Raw < 1 {
		t.Errorf("record holders: %+v", f)
	}
	// The hostile providers were asked (so the lookups above found the honest card past them).
	for _, name := range []string{"hostile_forged_answers", "hostile_silent_requests"} {
		if f := res.Figure(name); !(f.Ours >= 1) {
			t.Errorf("%s: %v, want > 0", name, f.Ours)
		}
	}
}
