package config

import "time"

// RoomsConfig configures Open Chat rooms.
type RoomsConfig struct {
	HistoryLimit   int           `yaml:"history_limit" mapstructure:"history_limit" doc:"Messages kept per room."`
	HistoryOnJoin  int           `yaml:"history_on_join" mapstructure:"history_on_join" doc:"Newest messages fetched from room peers when joining a room."`
	RatePerMinute  int           `yaml:"rate_per_minute" mapstructure:"rate_per_minute" doc:"Messages accepted per member and minute."`
	Burst          int           `yaml:"burst" mapstructure:"burst" doc:"Messages a member may send at once above rate_per_minute."`
	RepairInterval time.Duration `yaml:"repair_interval" mapstructure:"repair_interval" doc:"How often each room compares its history with one room peer and fetches what it lacks (plus or minus a third), besides the catch-ups that returning peers and lost messages start."`
}

func defaultRooms() RoomsConfig {
	return RoomsConfig{HistoryLimit: 5000, HistoryOnJoin: 200, RatePerMinute: 30, Burst: 10, RepairInterval: 45 * time.Second}
}

func (c RoomsConfig) validate() error {
	var p problems
	p.positive("rooms.history_limit", int64(c.HistoryLimit))
	p.positive("rooms.history_on_join", int64(c.HistoryOnJoin))
	p.positive("rooms.rate_per_minute", int64(c.RatePerMinute))
	p.positive("rooms.burst", int64(c.Burst))
	p.positive("rooms.repair_interval", int64(c.RepairInterval))
	if c.HistoryOnJoin > 500 {
		p.add("rooms.history_on_join", "must be at most 500 (one history page)")
	}
	return p.err()
}
