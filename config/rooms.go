package config

// RoomsConfig configures Open Chat rooms.
type RoomsConfig struct {
	HistoryLimit  int `yaml:"history_limit" mapstructure:"history_limit" doc:"Messages kept per room."`
	HistoryOnJoin int `yaml:"history_on_join" mapstructure:"history_on_join" doc:"Newest messages fetched from room peers when joining a room."`
	RatePerMinute int `yaml:"rate_per_minute" mapstructure:"rate_per_minute" doc:"Messages accepted per member and minute."`
	Burst         int `yaml:"burst" mapstructure:"burst" doc:"Messages a member may send at once above rate_per_minute."`
}

func defaultRooms() RoomsConfig {
	return RoomsConfig{HistoryLimit: 5000, HistoryOnJoin: 200, RatePerMinute: 30, Burst: 10}
}

func (c RoomsConfig) validate() error {
	var p problems
	p.positive("rooms.history_limit", int64(c.HistoryLimit))
	p.positive("rooms.history_on_join", int64(c.HistoryOnJoin))
	p.positive("rooms.rate_per_minute", int64(c.RatePerMinute))
	p.positive("rooms.burst", int64(c.Burst))
	if c.HistoryOnJoin > 500 {
		p.add("rooms.history_on_join", "must be at most 500 (one history page)")
	}
	return p.err()
}
