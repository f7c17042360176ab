package directory

import (
	"crypto/ed25519"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/directory/pb"
)

// FuzzDecodeResponse feeds arbitrary bytes to the response decoder a lookup uses: it must never panic,
// and every card it returns must verify.
func FuzzDecodeResponse(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(make([]byte, 32))
	good := testCard(priv, "seed", time.UnixMilli(1700000000000))
	seed, _ := proto.Marshal(&pb.Response{Cards: []*pb.Card{{Kind: "test", Raw: good}, {Kind: "x", Raw: []byte{1}}}})
	f.Add(seed)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	req, _ := proto.Marshal(&pb.Request{Key: "room/tag/go", Limit: 5})
	f.Add(req)
	s := &Service{kinds: map[string]Verifier{"test": verifyTestCard}}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cards, err := s.DecodeResponse(raw, "k")
		if err != nil {
			return
		}
		for _, c := range cards {
			if _, _, err := verifyTestCard(c.Raw); err != nil || c.Kind != "test" {
				t.Fatalf("unverified card returned")
			}
		}
	})
}

// FuzzDecodeRequest checks the server's request decoding bound.
func FuzzDecodeRequest(f *testing.F) {
	req, _ := proto.Marshal(&pb.Request{Key: "room/tag/go", Limit: 5})
	f.Add(req)
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var r pb.Request
		if proto.Unmarshal(raw, &r) != nil {
			return
		}
		_ = checkKey(r.Key)
	})
}
