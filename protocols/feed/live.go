package feed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/madang-p2p/madang/gossip"
)

func (ch *channel) currentTopic() *pubsub.Topic {
	ch.topicMu.Lock()
	defer ch.topicMu.Unlock()
	return ch.topic
}

func (s *Service) joinTopic(ch *channel) error {
	ch.topicMu.Lock()
	defer ch.topicMu.Unlock()
	if ch.topic != nil || s.ctx.Err() != nil {
		return nil
	}
	name := Topic(ch.log.id)
	t, err := s.o.Gossip.Join(name, s.validator(ch), nil)
	if err != nil {
		return fmt.Errorf("channel %s: %w", ch.log.id, err)
	}
	sub, err := gossip.Subscribe(t)
	if err != nil {
		_ = s.o.Gossip.Leave(name)
		return err
	}
	evts, err := t.EventHandler()
	if err != nil {
		sub.Cancel()
		_ = s.o.Gossip.Leave(name)
		return fmt.Errorf("channel %s: %w", ch.log.id, err)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	loops := &sync.WaitGroup{}
	ch.topic, ch.stopSub, ch.subLoops = t, cancel, loops
	loops.Add(2)
	s.wg.Go(func() {
		defer loops.Done()
		defer sub.Cancel()
		for {
			msg, err := sub.Next(ctx)
			if err != nil {
				return
			}
			s.handleLive(ch, msg)
		}
	})
	s.wg.Go(func() {
		defer loops.Done()
		defer evts.Cancel()
		for {
			ev, err := evts.NextPeerEvent(ctx)
			if err != nil {
				return
			}
			if ev.Type == pubsub.PeerJoin {
				s.peerJoined(ch, ev.Peer)
			}
		}
	})
	return nil
}

// peerJoined reacts to a peer subscribing to the channel's topic: it keeps the feed, so a node that is
// behind (or has not caught up since it started) syncs from it, and a queued follow notice is retried.
func (s *Service) peerJoined(ch *channel, p peer.ID) {
	st := ch.log.State()
	if ch.priv != nil || st.Fork != nil {
		return
	}
	if (st.Following || st.Pinned) && ch.syncing.Load() == 0 && (st.Seq < st.Target || !ch.caughtUp.Load()) {
		s.requestSync(ch.log.id, p)
	}
	if s.NoticePending(ch.log.id) && ch.noticeBusy.CompareAndSwap(false, true) {
		s.wg.Go(func() {
			defer ch.noticeBusy.Store(false)
			if raw, err := s.db.ns.Get(queueKey(ch.log.id)); err == nil {
				s.deliverOne(s.ctx, ch.log.id, raw)
			}
		})
	}
}

func (s *Service) leaveTopic(ch *channel) {
	ch.topicMu.Lock()
	defer ch.topicMu.Unlock()
	if ch.topic == nil {
		return
	}
	ch.stopSub()
	ch.subLoops.Wait() // subscription and event handler cancelled: the topic can close
	if err := s.o.Gossip.Leave(Topic(ch.log.id)); err != nil {
		s.log.Debug("Channel topic leave failed", "channel", ch.log.id, "err", err)
	}
	ch.topic, ch.stopSub, ch.subLoops = nil, nil, nil
}

// validator admits only entries signed by the channel key: Reject for anything invalid or signed by
// another key (penalises the forwarder), Ignore for entries from a clock too far ahead and for entries
// this node already holds. A second valid entry for a held seq is accepted: it is the proof of a fork.
func (s *Service) validator(ch *channel) pubsub.ValidatorEx {
	return func(_ context.Context, _ peer.ID, m *pubsub.Message) pubsub.ValidationResult {
		e, err := VerifyEntry(m.Data)
		if err != nil || !e.Channel.Equal(ch.log.key) {
			return pubsub.ValidationReject
		}
		if m.ReceivedFrom != s.o.Host.ID() { // not our own publication
			if e.Time.After(s.o.Now().Add(maxClockSkew)) {
				return pubsub.ValidationIgnore
			}
			if st := ch.log.State(); e.Seq <= st.Seq {
				if raw, err := ch.log.Raw(e.Seq); err == nil && entryIDOfRaw(raw) == e.ID {
					return pubsub.ValidationIgnore
				}
			}
		}
		m.ValidatorData = e
		return pubsub.ValidationAccept
	}
}

func entryIDOfRaw(raw []byte) [32]byte {
	e, _, _, err := DecodeEntry(raw)
	if err != nil {
		return [32]byte{}
	}
	return e.ID
}

func (s *Service) handleLive(ch *channel, m *pubsub.Message) {
	e, ok := m.ValidatorData.(*Entry)
	m.ValidatorData = nil // pubsub's message cache keeps m for gossip; the decoded entry need not live as long
	if !ok || m.ReceivedFrom == s.o.Host.ID() {
		return // our own post, already in the log
	}
	res, err := ch.log.Apply(e)
	if err != nil {
		if !errors.Is(err, ErrForked) {
			s.log.Warn("Channel live entry not stored", "channel", ch.log.id, "seq", e.Seq, "err", err)
		}
		return
	}
	s.applied(ch, res, true)
	if len(res.Appended) > 0 && ch.log.State().Pinned {
		s.refreshHeadSoon(ch)
	}
	if res.Held > 0 {
		// Something before this entry is missing. Live messages may simply arrive out of order: give the
		// missing ones a moment, then fetch them, first from the peer that forwarded this one.
		from, want := m.ReceivedFrom, e.Seq
		time.AfterFunc(gapGrace, func() {
			if st := ch.log.State(); st.Seq < want && st.Fork == nil && s.ctx.Err() == nil {
				s.requestSync(ch.log.id, from)
			}
		})
	}
}

// gapGrace is how long a live entry waits for the entries before it before they are fetched by sync.
const gapGrace = time.Second

// headRefreshDelay gives the merchant's head record time to reach the DHT before a pinning relay fetches it.
const headRefreshDelay = 3 * time.Second

// refreshHeadSoon makes a pinning relay fetch the channel's newest head record from the DHT shortly after
// live entries arrived, so that the record it republishes (and its card) stay current.
func (s *Service) refreshHeadSoon(ch *channel) {
	s.heads.push(ch.log.id)
}

// headRefresher collects channels from refreshHeadSoon and refreshes their head records after
// headRefreshDelay.
func (s *Service) headRefresher(ctx context.Context) {
	due := map[ChannelID]bool{}
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.heads.ready:
			ids := s.heads.drain()
			if len(due) == 0 && len(ids) > 0 {
				t.Reset(headRefreshDelay)
			}
			for _, id := range ids {
				due[id] = true
			}
		case <-t.C:
			for id := range due {
				if h, err := s.resolveHead(ctx, id); err == nil {
					if l, err := s.Log(id); err == nil {
						if newer, _ := l.NoteHead(h); newer {
							s.kickPublish(id)
						}
					}
				}
			}
			clear(due)
		}
	}
}
