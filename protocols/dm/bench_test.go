package dm

import (
	"fmt"
	"testing"
)

// BenchmarkEncryptDecrypt is the DM layer's cost per message without a network: Send (ratchet encrypt,
// outbox and history in one synced batch), the recipient's processing (decrypt, store in one synced batch,
// sign the ack) and the sender applying the ack. Stores are in memory, so fsync costs nothing here.
func BenchmarkEncryptDecrypt(b *testing.B) {
	a, r := newParty(b, "a"), newParty(b, "b")
	befriendParties(b, a, r)
	text := string(make([]byte, 200))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("m%d", i)
		if _, err := a.svc.Send(b.Context(), r.acct(), id, text); err != nil {
			b.Fatal(err)
		}
		items, _ := a.outbox(r)
		reply := deliverDirect(b, a, r, [][]byte{items[len(items)-1].item.Payload}, false)
		if reply.Ack == nil {
			b.Fatalf("not stored: %v", reply.Failures)
		}
	}
}
