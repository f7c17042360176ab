package room

import "testing"

func TestRecentRingForgetsOldestPastCap(t *testing.T) {
	r := &roomRT{}
	id := func(i int) MsgID {
		var m MsgID
		m[0], m[1], m[2] = byte(i), byte(i>>8), byte(i>>16)
		return m
	}
	for i := range recentCap + 10 {
		r.remember(id(i))
	}
	for i := range 10 {
		if r.seenRecently(id(i)) {
			t.Fatalf("id %d still remembered after %d newer ones", i, recentCap)
		}
	}
	for i := 10; i < recentCap+10; i++ {
		if !r.seenRecently(id(i)) {
			t.Fatalf("id %d forgotten too early", i)
		}
	}
	if len(r.recent) != recentCap || len(r.recentRing) != recentCap {
		t.Fatalf("set %d ring %d, want %d", len(r.recent), len(r.recentRing), recentCap)
	}
}
