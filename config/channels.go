package config

// ChannelsConfig configures broadcast channels.
type ChannelsConfig struct {
	SyncBatch int `yaml:"sync_batch" mapstructure:"sync_batch" doc:"Posts fetched per request when catching up with a channel."`
}

func defaultChannels() ChannelsConfig {
	return ChannelsConfig{SyncBatch: 256}
}

func (c ChannelsConfig) validate() error {
	var p problems
	p.positive("channels.sync_batch", int64(c.SyncBatch))
	return p.err()
}
