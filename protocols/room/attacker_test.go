package room_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pspb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/madang-p2p/madang/gossip"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/testnet"
)

// attacker is a raw gossipsub peer on loopback that joins a room topic without any of Madang's checks, to
// inject what an honest node would never publish.
type attacker struct {
	h     host.Host
	topic *pubsub.Topic
}

func newAttacker(t *testing.T, topic string, nodes ...*testnet.Node) *attacker {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	ps, err := pubsub.NewGossipSub(t.Context(), h,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign), pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pspb.Message) string { return gossip.MessageID(m.Data) }),
		pubsub.WithFloodPublish(true))
	if err != nil {
		t.Fatal(err)
	}
	tp, err := ps.Join(topic)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := tp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := sub.Next(t.Context()); err != nil {
				return
			}
		}
	}()
	for _, n := range nodes {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if err := h.Connect(ctx, n.AddrInfo()); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	testnet.Eventually(t, 10*time.Second, func() bool { return len(tp.ListPeers()) == len(nodes) }, "attacker sees every node on the topic")
	return &attacker{h: h, topic: tp}
}

func (a *attacker) publish(t testing.TB, raw []byte) {
	t.Helper()
	if err := a.topic.Publish(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
}

func (a *attacker) scores(nodes []*testnet.Node) []float64 {
	var out []float64
	for _, n := range nodes {
		out = append(out, n.Gossip.Score(a.h.ID()))
	}
	return out
}

func (a *attacker) scoreBelow(nodes []*testnet.Node, limit float64) bool {
	for _, s := range a.scores(nodes) {
		if s >= limit {
			return false
		}
	}
	return true
}

func graylist() float64 { return gossip.GraylistThreshold }

// sendTracer records the data of every pubsub message a node sends, by topic, and whether any carried
// author metadata.
type sendTracer struct {
	mu   sync.Mutex
	data map[string][][]byte
	seen map[string]bool
	meta bool
}

func tracerFor(index int, tr *sendTracer) func(int) []node.Option {
	return func(i int) []node.Option {
		if i != index {
			return nil
		}
		return []node.Option{node.WithGossipTracer(tr)}
	}
}

func (s *sendTracer) items(topic string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[topic]
}

func (s *sendTracer) metadata() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta
}

func (s *sendTracer) SendRPC(rpc *pubsub.RPC, _ peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.data == nil {
		s.data, s.seen = map[string][][]byte{}, map[string]bool{}
	}
	for _, m := range rpc.Publish {
		if len(m.From) > 0 || len(m.Seqno) > 0 || len(m.Signature) > 0 || len(m.Key) > 0 {
			s.meta = true
		}
		if k := m.GetTopic() + string(m.Data); !s.seen[k] {
			s.seen[k] = true
			s.data[m.GetTopic()] = append(s.data[m.GetTopic()], m.Data)
		}
	}
}

func (s *sendTracer) OnNewOutboundStream(peer.ID, protocol.ID)             {}
func (s *sendTracer) OnClosedOutboundStream(peer.ID)                       {}
func (s *sendTracer) Join(string)                                          {}
func (s *sendTracer) Leave(string)                                         {}
func (s *sendTracer) Graft(peer.ID, string)                                {}
func (s *sendTracer) Prune(peer.ID, string)                                {}
func (s *sendTracer) ValidateMessage(*pubsub.Message)                      {}
func (s *sendTracer) DeliverMessage(*pubsub.Message)                       {}
func (s *sendTracer) RejectMessage(*pubsub.Message, string)                {}
func (s *sendTracer) DuplicateMessage(*pubsub.Message)                     {}
func (s *sendTracer) ThrottlePeer(peer.ID)                                 {}
func (s *sendTracer) RecvRPC(*pubsub.RPC)                                  {}
func (s *sendTracer) SendRPCCompleted(*pubsub.RPC, peer.ID, time.Duration) {}
func (s *sendTracer) DropRPC(*pubsub.RPC, peer.ID)                         {}
func (s *sendTracer) UndeliverableMessage(*pubsub.Message)                 {}
