package config

// FriendsConfig configures direct messages between friends.
type FriendsConfig struct {
	ReadReceipts bool `yaml:"read_receipts" mapstructure:"read_receipts" doc:"Tell friends when their messages have been read."`
}

func defaultFriends() FriendsConfig {
	return FriendsConfig{ReadReceipts: true}
}

func (c FriendsConfig) validate() error {
	return nil
}
