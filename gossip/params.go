package gossip

import (
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// All gossipsub tuning of Madang lives in this file.

// Score thresholds (after go-waku and Filecoin): a peer below Gossip gets no gossip from us, below Publish no
// flood-published messages, below Graylist its RPCs are ignored entirely.
const (
	GossipThreshold             = -500.0
	PublishThreshold            = -1000.0
	GraylistThreshold           = -2500.0
	AcceptPXThreshold           = 100.0
	OpportunisticGraftThreshold = 3.5
)

// Thresholds returns the score thresholds shared by every node.
func Thresholds() *pubsub.PeerScoreThresholds {
	return &pubsub.PeerScoreThresholds{
		GossipThreshold:             GossipThreshold,
		PublishThreshold:            PublishThreshold,
		GraylistThreshold:           GraylistThreshold,
		AcceptPXThreshold:           AcceptPXThreshold,
		OpportunisticGraftThreshold: OpportunisticGraftThreshold,
	}
}

// PeerScoreParams returns the global peer score parameters. Topic parameters are added per topic through
// Router.Join. appScore feeds P5 (for example from moderation); nil means zero.
func PeerScoreParams(appScore func(id string) float64) *pubsub.PeerScoreParams {
	return &pubsub.PeerScoreParams{
		Topics:        map[string]*pubsub.TopicScoreParams{},
		TopicScoreCap: 100,
		AppSpecificScore: func(p peerID) float64 {
			if appScore == nil {
				return 0
			}
			return appScore(string(p))
		},
		AppSpecificWeight:           1,
		IPColocationFactorWeight:    -50,
		IPColocationFactorThreshold: 8,
		BehaviourPenaltyWeight:      -10,
		BehaviourPenaltyThreshold:   6,
		BehaviourPenaltyDecay:       pubsub.ScoreParameterDecay(10 * time.Minute),
		DecayInterval:               time.Second,
		DecayToZero:                 0.01,
		RetainScore:                 time.Hour,
	}
}

// TopicScoreParams returns the default per-topic parameters for an application topic whose validator rejects
// invalid payloads: invalid messages (P4) are punished hard, so a peer that forwards a handful of forged
// signatures drops below the graylist threshold; time in mesh (P1) and first deliveries (P2) reward honest
// peers a little. Mesh delivery penalties (P3) stay off: in quiet rooms they would punish honest peers.
func TopicScoreParams() *pubsub.TopicScoreParams {
	return &pubsub.TopicScoreParams{
		TopicWeight:                     1,
		TimeInMeshWeight:                0.01,
		TimeInMeshQuantum:               time.Second,
		TimeInMeshCap:                   300,
		FirstMessageDeliveriesWeight:    0.5,
		FirstMessageDeliveriesDecay:     pubsub.ScoreParameterDecay(10 * time.Minute),
		FirstMessageDeliveriesCap:       100,
		InvalidMessageDeliveriesWeight:  -1000,
		InvalidMessageDeliveriesDecay:   pubsub.ScoreParameterDecay(time.Hour),
		MeshMessageDeliveriesWeight:     0,
		MeshMessageDeliveriesDecay:      0.5,
		MeshMessageDeliveriesActivation: time.Minute,
		MeshMessageDeliveriesWindow:     10 * time.Millisecond,
		MeshFailurePenaltyDecay:         0.5,
	}
}

// Queue and buffer sizes: the pubsub defaults (validation queue 32, subscription buffer 32) drop messages
// under bursts; these keep a 1,000 msg/s room flowing on a small machine.
const (
	ValidateQueueSize   = 1024
	PeerOutboundQueue   = 1024
	SubscriptionBuffer  = 1024
	ValidatorTimeout    = 2 * time.Second
	ValidatorConcurrent = 256
	SeenMessagesTTL     = 2 * time.Minute
	ScoreInspectPeriod  = 5 * time.Second
)
