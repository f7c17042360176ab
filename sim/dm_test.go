package sim

import (
	"os"
	"testing"
	"time"
)

// TestDMShort runs the dm scenario on 8 full nodes and a relay: two pairs of friends made through invites
// exchange messages directly (every one received and acked), and messages sent while the friend is offline
// wait in its relay mailbox and arrive when it is back.
func TestDMShort(t *testing.T) {
	res := runShown(t, "dm", Config{Nodes: 8, Msgs: 40, Rates: []float64{40}, Publishers: 2, Spammers: 1, Seed: 1,
		Settle: 20 * time.Second, Progress: os.Stderr})
	for _, name := range []string{"delivery", "burst_delivery"} {
		if f := res.Figure(name); f.Ours != 1 || f.Raw != 1 {
			t.Errorf("%s: ours %v raw %v, want 1", name, f.Ours, f.Raw)
		}
	}
	for _, name := range []string{"mailbox_delivery", "acked"} {
		if f := res.Figure(name); f.Ours != 1 {
			t.Errorf("%s: %v, want 1", name, f.Ours)
		}
	}
	// A stranger's junk streams reached both runs' receivers; only ours refused them unread.
	if f := res.Figure("hostile_streams"); !(f.Ours >= 1) || !(f.Raw >= 1) {
		t.Errorf("hostile streams: %+v, want some in both runs", f)
	}
	if f := res.Figure("hostile_answered"); f.Ours != 0 || !(f.Raw >= 1) {
		t.Errorf("hostile streams answered: ours %v (want 0) raw %v (want > 0)", f.Ours, f.Raw)
	}
}

// TestDMChurnShort: friends go offline and come back while they exchange messages. Ours delivers every
// message (to an offline friend through its relay's mailbox, from an offline sender once it is back) and
// sees each acked; the raw stream loses what was sent while either end was away.
func TestDMChurnShort(t *testing.T) {
	res := runShown(t, "dm", Config{Nodes: 8, Msgs: 60, Rates: []float64{30}, Publishers: 2, Churn: 0.25, Seed: 2,
		Settle: 8 * time.Second, Progress: os.Stderr})
	if f := res.Figure("delivery"); f.Ours != 1 || !(f.Raw < 1) {
		t.Errorf("delivery under churn: ours %v (want 1), raw %v (want < 1)", f.Ours, f.Raw)
	}
	for _, name := range []string{"burst_delivery", "mailbox_delivery", "acked"} {
		if f := res.Figure(name); f.Ours != 1 {
			t.Errorf("%s: %v, want 1", name, f.Ours)
		}
	}
}
