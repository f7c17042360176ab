package config

import "time"

// ChannelsConfig configures broadcast channels: the ones this node owns, follows or (as a relay) pins.
type ChannelsConfig struct {
	SyncBatch         int           `yaml:"sync_batch" mapstructure:"sync_batch" doc:"Posts fetched per request when catching up with a channel (at most 1024)."`
	Mirror            bool          `yaml:"mirror" mapstructure:"mirror" doc:"Announce the channels you follow in the DHT as a place to fetch them from. Helps shops whose node is often offline, but tells the network which channels you follow."`
	RefreshInterval   time.Duration `yaml:"refresh_interval" mapstructure:"refresh_interval" doc:"How often followed channels are checked for posts missed while offline, and follower notices are delivered and collected."`
	RepublishInterval time.Duration `yaml:"republish_interval" mapstructure:"republish_interval" doc:"How often head records are put in the DHT and channels provided again (at most 24h: DHT records expire after 36h)."`
}

func defaultChannels() ChannelsConfig {
	return ChannelsConfig{SyncBatch: 256, RefreshInterval: 5 * time.Minute, RepublishInterval: 6 * time.Hour}
}

func (c ChannelsConfig) validate() error {
	var p problems
	p.positive("channels.sync_batch", int64(c.SyncBatch))
	if c.SyncBatch > 1024 {
		p.add("channels.sync_batch", "must be at most 1024, got %d", c.SyncBatch)
	}
	p.positive("channels.refresh_interval", int64(c.RefreshInterval))
	p.positive("channels.republish_interval", int64(c.RepublishInterval))
	if c.RepublishInterval > 24*time.Hour {
		p.add("channels.republish_interval", "must be at most 24h, got %s", c.RepublishInterval)
	}
	return p.err()
}
