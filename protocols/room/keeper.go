package room

import (
	"context"
	"strings"
	"time"

	"github.com/madang-p2p/madang/protocols/directory"
)

// maxKeptPerTag bounds the rooms a relay keeps for one tag entry.
const maxKeptPerTag = 50

// keepTag reports whether a keep entry names a tag ("#tag" or "tag:<tag>") and returns it normalised.
func keepTag(e string) (string, bool) {
	e = strings.TrimSpace(e)
	var t string
	switch {
	case strings.HasPrefix(e, "#"):
		t = e[1:]
	case strings.HasPrefix(e, "tag:"):
		t = e[4:]
	default:
		return "", false
	}
	return NormalizeTag(t)
}

// keepLoop makes a relay keep the configured rooms: it joins each silently (no persona, no messages),
// stores and serves its history and announces the owner's card. Tag entries keep every open room found
// under the tag (looked up again every KeepInterval). Entries that fail, and tags with no room yet, are
// retried sooner, with backoff from 1 s.
func (s *Service) keepLoop(ctx context.Context) {
	tick := time.NewTicker(s.c.KeepInterval)
	defer tick.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-retry.C:
		}
		pending := false
		for _, e := range s.c.Keep {
			if t, ok := keepTag(e); ok {
				cards, err := s.d.Directory.Lookup(ctx, tagKey(t), maxKeptPerTag)
				if err != nil || len(cards) == 0 {
					pending = true // nothing there yet: look again soon
					continue
				}
				for _, c := range cards {
					id, err := ParseID(c.ID)
					if err == nil && !s.keep(ctx, Link{Room: id}) {
						pending = true
					}
				}
				continue
			}
			l, err := ParseLink(e)
			if err != nil {
				s.log.Warn("Invalid relay.keep_rooms entry", "entry", e, "err", err)
				continue
			}
			if !s.keep(ctx, l) {
				pending = true
			}
		}
		if pending {
			retry.Reset(backoff)
			backoff = min(2*backoff, s.c.KeepInterval)
		} else {
			backoff = time.Second
		}
	}
}

// keep opens a room as a keeper (or marks a joined room as kept). It reports success.
func (s *Service) keep(ctx context.Context, l Link) bool {
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	if r, err := s.room(l.Room); err == nil {
		r.mu.Lock()
		changed := !r.rec.Keep
		r.rec.Keep = true
		if changed {
			_ = s.putRecord(r.id, r.rec)
		}
		r.mu.Unlock()
		return true
	}
	octx, cancel := context.WithTimeout(ctx, directory.FindTimeout)
	defer cancel()
	if _, err := s.open(octx, l, false, JoinOptions{}); err != nil {
		s.log.Debug("Keeping room failed", "room", l.Room, "err", err)
		return false
	}
	s.log.Info("Keeping room", "room", l.Room)
	return true
}
