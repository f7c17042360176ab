package sim

import (
	"os"
	"testing"
	"time"
)

// TestRoomsShort runs the rooms scenario on 15 full nodes with one hostile peer: every message reaches
// every member of the Madang room and every subscriber of the raw topic, each member validates each
// message once, and the forged messages the hostile peer floods are rejected by the room's validator (the
// rejections with reason "validation failed" come from room.validate: pubsub's own signature checks are
// off under StrictNoSign).
func TestRoomsShort(t *testing.T) {
	res := runShown(t, "rooms", Config{Nodes: 15, Msgs: 40, Rates: []float64{20}, Spammers: 1, Seed: 2,
		Warmup: time.Second, Settle: 10 * time.Second, Progress: os.Stderr})
	for _, name := range []string{"delivery", "delivery_repaired"} {
		if f := res.Figure(name); f.Ours != 1 || f.Raw != 1 {
			t.Errorf("%s: ours %v raw %v, want 1", name, f.Ours, f.Raw)
		}
	}
	if f := res.Figure("validations_per_delivery"); f.Ours < 0.95 || f.Ours > 1.1 {
		t.Errorf("validations per delivery: %v, want 1 (one signature check per message per node)", f.Ours)
	}
	if f := res.Figure("rejected"); f.Ours < 1 || f.Raw < 1 {
		t.Errorf("forged messages rejected: ours %v raw %v, want > 0", f.Ours, f.Raw)
	}
	if f := res.Figure("rejected_by_validator"); f.Ours < 1 {
		t.Errorf("the room validator rejected %v forged messages, want > 0", f.Ours)
	}
	if f := res.Figure("p50_ms"); !(f.Ours > 0) || !(f.Raw > 0) {
		t.Errorf("p50: %+v", f)
	}
	if f := res.Figure("gossip_p50_ms"); !(f.Ours > 0) || f.Ours > res.Figure("p99_ms").Ours {
		t.Errorf("gossip-layer p50 %v not within the room's latencies", f.Ours)
	}
	// A 1 KiB message is copied at every hop: each delivery allocates at least that much, in both runs.
	if f := res.Figure("alloc_kib_per_delivery"); !(f.Ours > 1) || !(f.Raw > 1) {
		t.Errorf("allocated per delivery: %+v KiB", f)
	}
	if f := res.Figure("gc_cpu_share"); !(f.Ours >= 0 && f.Ours < 1) || !(f.Raw >= 0 && f.Raw < 1) {
		t.Errorf("GC share of the CPU: %+v", f)
	}
}

// runShown runs a scenario and prints its table to stderr (seen with -v or when the test fails).
func runShown(t *testing.T, scenario string, c Config) *Result {
	t.Helper()
	res, err := Run(t.Context(), scenario, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.WriteTable(os.Stderr); err != nil {
		t.Fatal(err)
	}
	return res
}
