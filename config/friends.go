package config

import "time"

// FriendsConfig configures the friends tab: invites and direct messages between friends.
type FriendsConfig struct {
	ReadReceipts  bool          `yaml:"read_receipts" mapstructure:"read_receipts" doc:"Tell friends when their messages have been read."`
	InviteExpires time.Duration `yaml:"invite_expires" mapstructure:"invite_expires" doc:"Default lifetime of a new contact invite (madang invite create --expires overrides it; at most 720h)."`
	RetryMin      time.Duration `yaml:"retry_min" mapstructure:"retry_min" doc:"First wait before retrying a message or friend request that could not be delivered; doubles up to retry_max."`
	RetryMax      time.Duration `yaml:"retry_max" mapstructure:"retry_max" doc:"Longest wait between delivery attempts to a friend who cannot be reached."`
}

func defaultFriends() FriendsConfig {
	return FriendsConfig{ReadReceipts: true, InviteExpires: 24 * time.Hour, RetryMin: time.Second, RetryMax: 5 * time.Minute}
}

func (c FriendsConfig) validate() error {
	var p problems
	p.positive("friends.invite_expires", int64(c.InviteExpires))
	if c.InviteExpires > 720*time.Hour {
		p.add("friends.invite_expires", "must be at most 720h, got %s", c.InviteExpires)
	}
	p.positive("friends.retry_min", int64(c.RetryMin))
	p.positive("friends.retry_max", int64(c.RetryMax))
	if c.RetryMin > 0 && c.RetryMax < c.RetryMin {
		p.add("friends.retry_max", "must not be less than friends.retry_min (%s), got %s", c.RetryMin, c.RetryMax)
	}
	return p.err()
}
