package room

import (
	"fmt"
	"math"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/madang-p2p/madang/store"
)

// Test hooks for the external tests of this package.

// SetDropLive makes the service drop live messages for which drop returns true after validation, as if
// they were lost on the way (nil: none).
func SetDropLive(s *Service, drop func(*Message) bool) {
	if drop == nil {
		s.dropLive.Store(nil)
		return
	}
	s.dropLive.Store(&drop)
}

// RepairCounters returns the repair sessions this service started, the items they received and the
// messages they stored.
func RepairCounters(s *Service) (sessions, received, stored int64) {
	return s.repairs.Load(), s.repairItems.Load(), s.repairStored.Load()
}

// IsHostile reports whether the service avoids p as a sync peer.
var IsHostile = (*Service).isHostile

// MaxRepairRequests bounds the requests of one repair session.
const MaxRepairRequests = maxRepairRounds + maxRepairFetches

// Repair runs one repair session of the service's room id with p (a catch-up: the whole history).
func Repair(s *Service, id ID, p peer.ID) (stored int, err error) {
	r, err := s.room(id)
	if err != nil {
		return 0, err
	}
	res, err := r.repairWith(s.runCtx, p, math.MaxInt64)
	return res.stored, err
}

// StoredFilter reports how many IDs the room's stored-message filter holds and is sized for (ok is false
// when the room has none, and every lookup reads the store).
func StoredFilter(s *Service, id ID) (n, capacity int, ok bool) {
	r, err := s.room(id)
	if err != nil {
		return 0, 0, false
	}
	r.storedMu.Lock()
	defer r.storedMu.Unlock()
	if r.stored == nil {
		return 0, 0, false
	}
	return r.stored.n, r.stored.capacity, true
}

// IngestStoredAgain offers every message the room has stored to ingestion again, as history sync would,
// and returns how many it offered and how many were stored a second time.
func IngestStoredAgain(s *Service, id ID) (offered, again int, err error) {
	r, err := s.room(id)
	if err != nil {
		return 0, 0, err
	}
	for e, err := range s.d.Store.Scan(s.runCtx, store.Range{Prefix: "m/" + r.key + "/"}) {
		if err != nil {
			return offered, again, err
		}
		d, err := parseItem(e.Value)
		if err != nil || d.msg == nil {
			return offered, again, fmt.Errorf("stored item %s: %v", e.Key, err)
		}
		offered++
		stored, err := r.ingestMessage(d.msg, false)
		if err != nil {
			return offered, again, err
		}
		if stored {
			again++
		}
	}
	return offered, again, nil
}

// TopicPeers is the room's count of topic peers from its peer events (-1: no such room).
func TopicPeers(s *Service, id ID) int {
	r, err := s.room(id)
	if err != nil {
		return -1
	}
	return int(r.topicPeers.Load())
}
