package room

import (
	"context"
	"math"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// When a room repairs its history. Each room runtime runs one repair session at a time (repairLoop), with:
//   - a room peer that (re)appears on the topic (we or it came back, or it joined): at once, or when
//     catchUpEvery has passed since the last session with that peer (deferred, never dropped);
//   - a peer whose summary showed it holds messages we lack (it just asked us), likewise;
//   - a peer of our choice soon after the live stream skipped a gap in an author's seqs (gapEvery apart),
//     and again, with another peer, after a session that brought something (there may be more);
//   - a peer of our choice every RepairInterval (± a third) since the last session: anti-entropy for what
//     nothing else reveals (an author's last messages lost on the way); four times as often while the
//     room is troubled (a gap noticed, or a session that brought something, within two intervals).
//
// Catch-ups (the first two) compare the whole history. The others, which run while the live stream
// flows, compare what is older than repairSettle (newer messages are still arriving live), so a gap is
// repaired repairSettle after it is noticed; and at least up to the message that revealed a gap (a
// sender's clock may run ahead, and a burst stamps its messages a millisecond apart).
const (
	catchUpEvery  = 15 * time.Second
	repairSettle  = 3 * time.Second
	gapEvery      = 5 * time.Second
	followUpAfter = 2 * time.Second
	maxPlanned    = 256 // peers with a catch-up planned, per room

	// DefaultRepairInterval is the default anti-entropy interval (see Config.RepairInterval).
	DefaultRepairInterval = 45 * time.Second
)

// repairPlan is what repairLoop has to do, and when. Times are wall-clock (time.Now), as timers are.
type repairPlan struct {
	mu      sync.Mutex
	peers   map[peer.ID]time.Time // catch-ups with given peers
	any     time.Time             // a session with a peer of our choice (zero: none planned)
	next    time.Time             // the periodic session
	synced  map[peer.ID]time.Time // last session started with each peer
	lastAny time.Time             // last session with a peer of our choice
	trouble time.Time             // last gap noticed or session that brought something
	gapTo   int64                 // the next session of our choice compares up to this message time at least
	running bool                  // a catch-up session is running
	wake    chan struct{}
}

func newRepairPlan() repairPlan {
	return repairPlan{peers: map[peer.ID]time.Time{}, synced: map[peer.ID]time.Time{}, wake: make(chan struct{}, 1)}
}

func (pl *repairPlan) poke() {
	select {
	case pl.wake <- struct{}{}:
	default:
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// catchUpWith plans a catch-up with p: now, or catchUpEvery after the last session with p.
func (r *roomRT) catchUpWith(p peer.ID) {
	pl := &r.plan
	pl.mu.Lock()
	due := time.Now()
	if last, ok := pl.synced[p]; ok {
		due = later(due, last.Add(catchUpEvery))
	}
	cur, planned := pl.peers[p]
	if (!planned && len(pl.peers) < maxPlanned) || (planned && due.Before(cur)) {
		pl.peers[p] = due
	}
	pl.mu.Unlock()
	pl.poke()
}

// noteGap plans a session with a peer of our choice after the live stream skipped a gap before a message
// stamped until: once the gap is older than repairSettle, and gapEvery after the last such session. The
// session compares at least up to until (the lost messages are older, however the sender's clock runs).
func (r *roomRT) noteGap(until int64) {
	pl := &r.plan
	pl.mu.Lock()
	now := time.Now()
	pl.trouble = now
	pl.gapTo = max(pl.gapTo, until+1)
	due := later(now.Add(repairSettle), pl.lastAny.Add(gapEvery))
	if pl.any.IsZero() || due.Before(pl.any) {
		pl.any = due
	}
	pl.mu.Unlock()
	pl.poke()
}

// nextPeriodic is the time of the next periodic session: RepairInterval ± a third from now, a quarter of
// that while the room is troubled. pl.mu is held.
func (pl *repairPlan) nextPeriodic(iv time.Duration) time.Time {
	now := time.Now()
	wait := iv*2/3 + time.Duration(mrand.Int64N(int64(iv*2/3)+1))
	if now.Sub(pl.trouble) < 2*iv {
		wait /= 4
	}
	return now.Add(wait)
}

// due returns the next planned session: a peer (catch-up) or "" (a peer of our choice), and its time.
func (pl *repairPlan) due() (peer.ID, time.Time) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	var p peer.ID
	at := pl.next
	if !pl.any.IsZero() && pl.any.Before(at) {
		at = pl.any
	}
	for q, t := range pl.peers {
		if t.Before(at) {
			p, at = q, t
		}
	}
	return p, at
}

// catchingUp reports whether a catch-up session is running or due (the live orderer then lets the first
// message of a persona it has nothing from wait for the persona's earlier messages; see orderer).
func (r *roomRT) catchingUp() bool {
	pl := &r.plan
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.running {
		return true
	}
	now := time.Now()
	for _, t := range pl.peers {
		if !t.After(now) {
			return true
		}
	}
	return false
}

// repairLoop runs the planned sessions, one at a time, until ctx ends.
func (r *roomRT) repairLoop(ctx context.Context) {
	pl := &r.plan
	iv := r.s.c.RepairInterval
	pl.mu.Lock()
	pl.next = pl.nextPeriodic(iv)
	pl.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last peer.ID
	for {
		p, at := pl.due()
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			case <-pl.wake:
			}
			continue
		}
		now := time.Now()
		to := int64(math.MaxInt64) // catch-ups compare the whole history
		pl.mu.Lock()
		if p != "" {
			delete(pl.peers, p)
			pl.running = true // until the session below ends
		} else {
			pl.any, pl.lastAny = time.Time{}, now
			to = max(r.s.now().Add(-repairSettle).UnixMilli(), pl.gapTo)
			pl.gapTo = 0
		}
		pl.mu.Unlock()
		if to != math.MaxInt64 {
			p = r.pickPeer(last)
		} else if r.s.isHostile(p) || r.s.d.Host.Network().Connectedness(p) != network.Connected {
			p = "" // gone (its next appearance plans a new catch-up) or not trusted
		}
		var res repairResult
		if p != "" {
			pl.mu.Lock()
			pl.synced[p] = now
			if len(pl.synced) > 4*maxPlanned {
				for q, t := range pl.synced {
					if now.Sub(t) > catchUpEvery {
						delete(pl.synced, q)
					}
				}
			}
			pl.mu.Unlock()
			var err error
			res, err = r.repairWith(ctx, p, to)
			if err != nil && ctx.Err() == nil {
				r.s.log.Debug("Room repair failed", "peer", p, "err", err)
			}
			last = p
		}
		pl.mu.Lock()
		pl.running = false
		if res.stored > 0 {
			// There may be more elsewhere: ask another peer soon.
			pl.trouble = time.Now()
			if f := pl.trouble.Add(followUpAfter); pl.any.IsZero() || f.Before(pl.any) {
				pl.any = f
			}
		}
		pl.next = pl.nextPeriodic(iv)
		pl.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
	}
}

// pickPeer chooses a topic peer for a session: among the better-scored half (mesh peers earn score for
// their time in the mesh and first deliveries), preferring one without a session in the last
// catchUpEvery, and another than avoid when there is a choice. Peers that sent invalid answers are left out.
func (r *roomRT) pickPeer(avoid peer.ID) peer.ID {
	var cands []peer.ID
	for _, p := range r.topic.ListPeers() {
		if !r.s.isHostile(p) {
			cands = append(cands, p)
		}
	}
	if len(cands) > 1 {
		cands = slices.DeleteFunc(cands, func(p peer.ID) bool { return p == avoid })
	}
	if len(cands) == 0 {
		return ""
	}
	mrand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	scores := make(map[peer.ID]float64, len(cands))
	for _, p := range cands {
		scores[p] = r.s.d.Gossip.Score(p)
	}
	slices.SortStableFunc(cands, func(a, b peer.ID) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	top := cands[:(len(cands)+1)/2]
	now := time.Now()
	r.plan.mu.Lock()
	fresh := slices.DeleteFunc(slices.Clone(top), func(p peer.ID) bool {
		t, ok := r.plan.synced[p]
		return ok && now.Sub(t) < catchUpEvery
	})
	r.plan.mu.Unlock()
	if len(fresh) > 0 {
		return fresh[mrand.IntN(len(fresh))]
	}
	return top[mrand.IntN(len(top))]
}
