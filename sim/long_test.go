package sim

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/madang-p2p/madang/testnet"
)

var _ = flag.Bool("long", false, "run the long simulations (also MADANG_LONG=1)")

// TestLongRooms: 100 nodes on 20 ms links with 10 % churn and three hostile peers. Every message the
// honest members were online for arrives, forged messages are rejected by the room's validator, and each
// member validates each message once. MADANG_LONG=1 only (a few minutes).
func TestLongRooms(t *testing.T) {
	if !testnet.Long() {
		t.Skip("MADANG_LONG=1 or -args -long")
	}
	res := runShown(t, "rooms", Config{Nodes: 100, Latency: 20 * time.Millisecond, Msgs: 200,
		Rates: []float64{20}, Churn: 0.1, Spammers: 3, Seed: 7, Progress: os.Stderr})
	if f := res.Figure("delivery_repaired"); f.Ours < 0.95 || f.Ours < f.Raw-0.01 {
		t.Errorf("delivery after repair: ours %v raw %v", f.Ours, f.Raw)
	}
	if f := res.Figure("rejected_by_validator"); f.Ours < 1 {
		t.Errorf("forged messages rejected by the room validator: %v", f.Ours)
	}
	if f := res.Figure("validations_per_delivery"); f.Ours > 1.1 {
		t.Errorf("validations per delivery: %v", f.Ours)
	}
}

// TestLongDHT: directory lookups on 200 nodes all find their cards. MADANG_LONG=1 only.
func TestLongDHT(t *testing.T) {
	if !testnet.Long() {
		t.Skip("MADANG_LONG=1 or -args -long")
	}
	res := runShown(t, "dht", Config{Nodes: 200, Msgs: 60, Rates: []float64{10}, Publishers: 6, Seed: 7, Progress: os.Stderr})
	if f := res.Figure("delivery"); f.Ours != 1 || f.Raw != 1 {
		t.Errorf("lookups found: ours %v raw %v", f.Ours, f.Raw)
	}
}
