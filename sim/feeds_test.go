package sim

import (
	"os"
	"testing"
	"time"
)

// TestFeedsShort runs the feeds scenario on 12 full nodes: every neighbourhood search finds its shop (ours
// and raw), the backlog syncs completely, and every follower gets every live post.
func TestFeedsShort(t *testing.T) {
	res := runShown(t, "feeds", Config{Nodes: 12, Msgs: 20, Rates: []float64{20}, Publishers: 2, Spammers: 1, Seed: 3,
		Warmup: time.Second, Settle: 10 * time.Second, Progress: os.Stderr})
	for _, name := range []string{"delivery", "discover_delivery"} {
		if f := res.Figure(name); f.Ours != 1 || f.Raw != 1 {
			t.Errorf("%s: ours %v raw %v, want 1", name, f.Ours, f.Raw)
		}
	}
	if f := res.Figure("sync_entries_per_s"); !(f.Ours > 0) || !(f.Raw > 0) {
		t.Errorf("sync throughput: %+v", f)
	}
	if f := res.Figure("validations_per_delivery"); f.Ours < 0.95 || f.Ours > 1.1 {
		t.Errorf("validations per delivery: %v, want 1", f.Ours)
	}
	if f := res.Figure("rejected_by_validator"); f.Ours < 1 {
		t.Errorf("the channel validator rejected %v forged posts, want > 0", f.Ours)
	}
	if f := res.Figure("rejected"); f.Raw < 1 {
		t.Errorf("raw rejected %v unsigned messages, want > 0", f.Raw)
	}
}
