package feed

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/madang-p2p/madang/protocols/feedsync"
)

// requestSync queues a background sync of a channel (deduplicated).
func (s *Service) requestSync(id ChannelID, hints ...peer.ID) {
	s.mu.Lock()
	prev, queued := s.queued[id]
	s.queued[id] = append(prev, hints...)
	s.mu.Unlock()
	if !queued {
		s.syncQ.push(id)
	}
}

func (s *Service) syncWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.syncQ.ready:
			id, ok := s.syncQ.pop()
			if !ok {
				continue
			}
			s.mu.Lock()
			hints := s.queued[id]
			delete(s.queued, id)
			ch := s.chans[id]
			s.mu.Unlock()
			if ch == nil {
				continue
			}
			err := s.syncChannel(ctx, ch, hints)
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			if err == nil {
				ch.syncBackoff = 0
			} else {
				// Retry with backoff (2 s doubling up to the refresh interval): the peers that keep the
				// channel may not be reachable or known yet.
				ch.syncBackoff = min(max(2*ch.syncBackoff, retryMin), s.o.Refresh)
				wait := ch.syncBackoff
				time.AfterFunc(wait, func() { s.requestSync(id) })
				s.log.Info("Channel sync incomplete", "channel", id, "retryIn", wait, "err", err)
			}
			s.mu.Unlock()
		}
	}
}

// syncBusy reports whether a sync of the channel is running or queued.
func (s *Service) syncBusy(ch *channel) bool {
	s.mu.Lock()
	_, queued := s.queued[ch.log.id]
	s.mu.Unlock()
	return queued || ch.syncing.Load() > 0
}

// retryMin is the first wait before a failed sync is retried.
const retryMin = 2 * time.Second

// Sync brings a kept channel up to date now.
func (s *Service) Sync(ctx context.Context, id ChannelID) (Info, error) {
	ch, err := s.get(id)
	if err != nil {
		return Info{}, err
	}
	err = s.syncChannel(ctx, ch, nil)
	return s.info(ch), err
}

// progress is one sync operation's progress reporter (operation.progress events).
type progress struct {
	s       *Service
	id      string
	channel ChannelID
	start   uint64
}

func (p *progress) report(l *Log, state string, from peer.ID) {
	if p.s.o.Events == nil {
		return
	}
	st := l.State()
	ev := map[string]any{
		"id": p.id, "operation": "channel.sync", "channel_id": p.channel, "unit": "entries", "state": state,
		"done": st.Seq - min(st.Seq, p.start), "total": max(st.Target, st.Seq) - min(st.Seq, p.start),
	}
	if from != "" {
		ev["peer"] = from.String()
	}
	p.s.o.Events.Publish("operation.progress", ev)
}

// syncChannel fetches the entries of a channel the node is missing: it learns the newest head from the
// DHT, then asks the hinted peers, the peers on the channel's topic and the channel's DHT providers in turn,
// verifying every signature and link, until the log reaches the newest known seq.
func (s *Service) syncChannel(ctx context.Context, ch *channel, hints []peer.ID) error {
	ch.syncing.Add(1)
	defer ch.syncing.Add(-1)
	ch.syncMu.Lock()
	defer ch.syncMu.Unlock()
	l := ch.log
	st := l.State()
	if ch.priv != nil || st.Fork != nil || !st.Active() {
		return nil
	}
	s.mu.Lock()
	s.ops++
	p := &progress{s: s, id: fmt.Sprintf("channel-sync-%s-%d", l.id, s.ops), channel: l.id, start: st.Seq}
	s.mu.Unlock()

	if h, err := s.resolveHead(ctx, l.id); err == nil {
		if newer, _ := l.NoteHead(h); newer {
			s.keeperChanged(l)
		}
	} else if ctx.Err() != nil {
		return ctx.Err()
	}
	p.report(l, "running", "")

	tried := map[peer.ID]bool{s.o.Host.ID(): true}
	reached := false
	var lastErr error
	done := func() bool {
		st := l.State()
		return st.Fork != nil || (reached && st.Seq >= st.Target)
	}
	try := func(pid peer.ID) bool {
		if tried[pid] || ctx.Err() != nil {
			return done()
		}
		tried[pid] = true
		if err := s.syncFrom(ctx, ch, pid, p); err != nil {
			if !errors.Is(err, feedsync.ErrUnknownChannel) {
				lastErr = err
				s.log.Debug("Channel sync from peer failed", "channel", l.id, "peer", pid, "err", err)
			}
			return done()
		}
		reached = true
		return done()
	}
	finished := false
	candidates := append(slices.Clone(hints), s.topicPeers(l.id)...)
	for _, pid := range candidates {
		if finished = try(pid); finished {
			break
		}
	}
	if !finished && ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, findTimeout)
		for ai := range s.o.Routing.FindProvidersAsync(fctx, ProviderCID(l.key), maxSyncPeers) {
			if finished || ai.ID == "" {
				continue // drain: the query stops once fctx ends
			}
			if len(ai.Addrs) > 0 {
				s.o.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
			}
			if finished = try(ai.ID); finished {
				cancel()
			}
		}
		cancel()
	}
	st = l.State()
	switch {
	case finished || done():
		ch.caughtUp.Store(true)
		p.report(l, "done", "")
		return nil
	case ctx.Err() != nil:
		p.report(l, "failed", "")
		return ctx.Err()
	case !reached:
		p.report(l, "failed", "")
		if lastErr != nil {
			return fmt.Errorf("%w: %w", ErrNoPeers, lastErr)
		}
		return ErrNoPeers
	default:
		p.report(l, "failed", "")
		return fmt.Errorf("%w: channel %s reached seq %d of %d", errIncomplete, l.id, st.Seq, st.Target)
	}
}

// topicPeers are the peers subscribed to the channel's live topic: they keep its feed.
func (s *Service) topicPeers(id ChannelID) []peer.ID {
	return s.o.Gossip.PubSub().ListPeers(Topic(id))
}

// errNoProgress is returned when a peer's page added nothing although it claimed to have more.
var errNoProgress = errors.New("peer sent entries that do not continue the log")

// syncFrom fetches pages from one peer until it has nothing more.
func (s *Service) syncFrom(ctx context.Context, ch *channel, pid peer.ID, p *progress) error {
	sess, err := feedsync.Open(ctx, s.o.Host, pid)
	if err != nil {
		return err
	}
	defer sess.Close()
	l := ch.log
	// Pages are committed without waiting for the disk, except about once a second; the log is made
	// durable when this peer is done.
	lastDurable, dirty := time.Now(), false
	defer func() {
		if dirty {
			if err := l.Flush(); err != nil {
				s.log.Warn("Channel log flush failed", "channel", l.id, "err", err)
			}
		}
	}()
	for {
		st := l.State()
		if st.Fork != nil {
			return nil
		}
		var chunk [][]byte
		size, appended := 0, 0
		var applyErr error
		flush := func() error {
			if len(chunk) == 0 {
				return nil
			}
			durable := time.Since(lastDurable) > time.Second
			res, err := l.applyRaw(chunk, durable)
			if durable {
				lastDurable, dirty = time.Now(), false
			} else {
				dirty = dirty || len(res.Appended) > 0
			}
			chunk, size = chunk[:0], 0
			appended += len(res.Appended)
			s.applied(ch, res, false)
			if err != nil {
				applyErr = fmt.Errorf("from %s: %w", pid, err)
				return applyErr
			}
			return nil
		}
		pg, err := sess.Fetch(ctx, l.key, st.Seq+1, s.o.SyncBatch, func(raw []byte) error {
			chunk = append(chunk, raw)
			if size += len(raw); size >= flushBytes {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		s.noteInfo(l, pg.Info)
		if applyErr != nil {
			return applyErr
		}
		if err != nil {
			return err
		}
		p.report(l, "running", pid)
		if !pg.More || pg.Count == 0 {
			return nil
		}
		if appended == 0 {
			return fmt.Errorf("from %s: %w", pid, errNoProgress)
		}
	}
}

// noteInfo records the head record and profile a sync server sent, if valid and newer.
func (s *Service) noteInfo(l *Log, info feedsync.Info) {
	changed := false
	if len(info.Head) > 0 {
		if h, err := VerifyHead(info.Head); err == nil && h.Channel.Equal(l.key) {
			newer, _ := l.NoteHead(h)
			changed = changed || newer
		}
	}
	if len(info.Profile) > 0 {
		if p, err := VerifyProfile(info.Profile); err == nil && p.Channel.Equal(l.key) {
			newer, _ := l.NoteProfile(p)
			changed = changed || newer
		}
	}
	if changed {
		s.keeperChanged(l)
	}
}

// keeperChanged republishes what a pinning relay announces for a channel (head record, card) after it
// learned a newer head or profile.
func (s *Service) keeperChanged(l *Log) {
	if l.State().Pinned {
		s.kickPublish(l.id)
	}
}

// resolveHead looks the channel's head record up in the DHT. The DHT validator drops forged records and
// picks the highest seq among all answers; the log never goes back to a lower seq than it knows.
func (s *Service) resolveHead(ctx context.Context, id ChannelID) (*Head, error) {
	gctx, cancel := context.WithTimeout(ctx, getValueTimeout)
	defer cancel()
	raw, err := s.o.Routing.GetValue(gctx, HeadKey(id))
	if err != nil {
		return nil, fmt.Errorf("resolve head of %s: %w", id, err)
	}
	h, err := verifyHeadRecord(HeadKey(id), raw)
	if err != nil {
		return nil, fmt.Errorf("resolve head of %s: %w", id, err)
	}
	return h, nil
}

// --- feedsync.Source ---

// syncSource serves the node's kept channels over feed sync.
type syncSource struct{ s *Service }

// Info implements feedsync.Source.
func (src syncSource) Info(channel []byte) (feedsync.Info, bool) {
	s := src.s
	if len(channel) != ed25519.PublicKeySize {
		return feedsync.Info{}, false
	}
	ch, err := s.get(IDFromKey(channel))
	if err != nil {
		return feedsync.Info{}, false
	}
	st := ch.log.State()
	return feedsync.Info{Head: st.HeadRecord, Profile: st.Profile, HaveSeq: st.Seq}, true
}

// Entries implements feedsync.Source.
func (src syncSource) Entries(ctx context.Context, channel []byte, from uint64, limit int, fn func(seq uint64, raw []byte) error) error {
	ch, err := src.s.get(IDFromKey(channel))
	if err != nil {
		return err
	}
	next := from
	errGap := errors.New("gap")
	err = ch.log.Range(ctx, from, limit, func(seq uint64, raw []byte) error {
		if seq != next {
			return errGap
		}
		next++
		return fn(seq, raw)
	})
	if errors.Is(err, errGap) {
		return nil
	}
	return err
}
