// Package gossip sets up gossipsub once for every Madang protocol: no transport signatures (StrictNoSign;
// protocols sign their own payloads), message ID = SHA-256 of the data, flood publishing, peer scoring with the
// thresholds in params.go, a bounded message size, and one place where protocols register their topics with a
// validator and score parameters.
package gossip

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

type peerID = peer.ID

// Options configure the router.
type Options struct {
	MaxMessageSize int
	Log            *slog.Logger
	// AppScore feeds the P5 application score (may be nil).
	AppScore func(id string) float64
	// Tracer, if set, receives pubsub's raw trace events (simulations count duplicates and bytes with it).
	Tracer pubsub.RawTracer
}

// Router is the node's one gossipsub instance.
type Router struct {
	ps  *pubsub.PubSub
	log *slog.Logger

	mu     sync.Mutex
	topics map[string]*pubsub.Topic
	scores map[peer.ID]float64
}

// MessageID is the content-hash message ID used on every topic.
func MessageID(data []byte) string {
	s := sha256.Sum256(data)
	return string(s[:])
}

// New starts gossipsub on h. The router lives as long as ctx (pubsub has no Close).
func New(ctx context.Context, h host.Host, o Options) (*Router, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 1 << 20
	}
	r := &Router{log: o.Log, topics: map[string]*pubsub.Topic{}, scores: map[peer.ID]float64{}}
	opts := []pubsub.Option{
		pubsub.WithMessageSignaturePolicy(pubsub.StrictNoSign),
		pubsub.WithNoAuthor(),
		pubsub.WithMessageIdFn(func(m *pb.Message) string { return MessageID(m.Data) }),
		pubsub.WithPeerScore(PeerScoreParams(o.AppScore), Thresholds()),
		pubsub.WithPeerScoreInspect(r.inspect, ScoreInspectPeriod),
		pubsub.WithFloodPublish(true),
		pubsub.WithMaxMessageSize(o.MaxMessageSize),
		pubsub.WithValidateQueueSize(ValidateQueueSize),
		pubsub.WithPeerOutboundQueueSize(PeerOutboundQueue),
		pubsub.WithSeenMessagesTTL(SeenMessagesTTL),
		pubsub.WithLogger(o.Log),
	}
	if o.Tracer != nil {
		opts = append(opts, pubsub.WithRawTracer(o.Tracer))
	}
	ps, err := pubsub.NewGossipSub(ctx, h, opts...)
	if err != nil {
		return nil, fmt.Errorf("start gossipsub: %w", err)
	}
	r.ps = ps
	return r, nil
}

func (r *Router) inspect(scores map[peer.ID]float64) {
	r.mu.Lock()
	r.scores = scores
	r.mu.Unlock()
}

// Score returns the latest inspected score of a peer (0 when unknown).
func (r *Router) Score(p peer.ID) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.scores[p]
}

// Scores returns a copy of the latest inspected scores.
func (r *Router) Scores() map[peer.ID]float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[peer.ID]float64, len(r.scores))
	for k, v := range r.scores {
		out[k] = v
	}
	return out
}

// PubSub exposes the underlying instance (peer lists, blacklisting).
func (r *Router) PubSub() *pubsub.PubSub { return r.ps }

// ErrJoined is returned when a topic is joined twice.
var ErrJoined = errors.New("gossip: topic already joined")

// Join registers the validator for topic, joins it and sets its score parameters (nil = TopicScoreParams()).
// The validator must be cheap and must choose Reject (invalid: penalises the forwarder) or Ignore (stale,
// duplicate, rate-limited) deliberately.
func (r *Router) Join(topic string, v pubsub.ValidatorEx, score *pubsub.TopicScoreParams) (*pubsub.Topic, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.topics[topic]; ok {
		return nil, fmt.Errorf("join %s: %w", topic, ErrJoined)
	}
	if v != nil {
		if err := r.ps.RegisterTopicValidator(topic, v,
			pubsub.WithValidatorTimeout(ValidatorTimeout),
			pubsub.WithValidatorConcurrency(ValidatorConcurrent)); err != nil {
			return nil, fmt.Errorf("register validator %s: %w", topic, err)
		}
	}
	t, err := r.ps.Join(topic)
	if err != nil {
		_ = r.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("join %s: %w", topic, err)
	}
	if score == nil {
		score = TopicScoreParams()
	}
	if err := t.SetScoreParams(score); err != nil {
		_ = t.Close()
		_ = r.ps.UnregisterTopicValidator(topic)
		return nil, fmt.Errorf("score params %s: %w", topic, err)
	}
	r.topics[topic] = t
	return t, nil
}

// Subscribe subscribes to a joined topic with Madang's buffer size.
func Subscribe(t *pubsub.Topic) (*pubsub.Subscription, error) {
	s, err := t.Subscribe(pubsub.WithBufferSize(SubscriptionBuffer))
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", t.String(), err)
	}
	return s, nil
}

// Leave closes a topic joined through Join (cancel its subscriptions first) and removes its validator.
func (r *Router) Leave(topic string) error {
	r.mu.Lock()
	t, ok := r.topics[topic]
	delete(r.topics, topic)
	r.mu.Unlock()
	if !ok {
		return nil
	}
	_ = r.ps.UnregisterTopicValidator(topic)
	if err := t.Close(); err != nil {
		return fmt.Errorf("leave %s: %w", topic, err)
	}
	return nil
}

// Topics lists joined topics.
func (r *Router) Topics() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.topics))
	for t := range r.topics {
		out = append(out, t)
	}
	return out
}
