package room

import (
	"math"

	"github.com/libp2p/go-libp2p/core/peer"
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
