package config

import "time"

// RelayConfig configures the services a relay offers.
type RelayConfig struct {
	MaxReservations   int           `yaml:"max_reservations" mapstructure:"max_reservations" doc:"Maximum concurrent relay reservations."`
	MaxCircuits       int           `yaml:"max_circuits" mapstructure:"max_circuits" doc:"Maximum concurrent relayed connections per peer."`
	CircuitDuration   time.Duration `yaml:"circuit_duration" mapstructure:"circuit_duration" doc:"How long a relayed connection may last."`
	CircuitBytes      int64         `yaml:"circuit_bytes" mapstructure:"circuit_bytes" doc:"Bytes a relayed connection may carry in each direction."`
	MailboxQuotaBytes int64         `yaml:"mailbox_quota_bytes" mapstructure:"mailbox_quota_bytes" doc:"Bytes stored per mailbox for offline recipients."`
	MailboxQuotaItems int           `yaml:"mailbox_quota_items" mapstructure:"mailbox_quota_items" doc:"Messages stored per mailbox for offline recipients."`
	MailboxTTL        time.Duration `yaml:"mailbox_ttl" mapstructure:"mailbox_ttl" doc:"How long undelivered mailbox messages are kept."`
	MaxItemBytes      int           `yaml:"max_item_bytes" mapstructure:"max_item_bytes" doc:"Largest sealed mailbox item accepted, in bytes (1024 to 1048576)."`
	MaxTotalBytes     int64         `yaml:"max_total_bytes" mapstructure:"max_total_bytes" doc:"Bytes stored for all mailboxes together; deposits beyond it are refused (relay_full). At least mailbox_quota_bytes."`
	DepositsPerMinute int           `yaml:"deposits_per_minute" mapstructure:"deposits_per_minute" doc:"Mailbox deposits accepted per sending peer and minute."`
	Operator          string        `yaml:"operator" mapstructure:"operator" doc:"Who runs this relay, shown to users."`
	Contact           string        `yaml:"contact" mapstructure:"contact" doc:"How to reach the operator (e-mail address or URL), shown to users."`
	KeepRooms         []string      `yaml:"keep_rooms" mapstructure:"keep_rooms" doc:"Rooms whose history this relay keeps and serves."`
	PinFeeds          []string      `yaml:"pin_feeds" mapstructure:"pin_feeds" doc:"Channel feeds this relay pins and serves."`
}

func defaultRelay() RelayConfig {
	return RelayConfig{
		MaxReservations:   128,
		MaxCircuits:       16,
		CircuitDuration:   5 * time.Minute,
		CircuitBytes:      1 << 20,
		MailboxQuotaBytes: 64 << 20,
		MailboxQuotaItems: 10000,
		MailboxTTL:        168 * time.Hour,
		MaxItemBytes:      1 << 20,
		MaxTotalBytes:     4 << 30,
		DepositsPerMinute: 600,
	}
}

func (c RelayConfig) validate() error {
	var p problems
	p.positive("relay.max_reservations", int64(c.MaxReservations))
	p.positive("relay.max_circuits", int64(c.MaxCircuits))
	p.positive("relay.circuit_duration", int64(c.CircuitDuration))
	p.positive("relay.circuit_bytes", c.CircuitBytes)
	p.positive("relay.mailbox_quota_bytes", c.MailboxQuotaBytes)
	p.positive("relay.mailbox_quota_items", int64(c.MailboxQuotaItems))
	p.positive("relay.mailbox_ttl", int64(c.MailboxTTL))
	p.positive("relay.deposits_per_minute", int64(c.DepositsPerMinute))
	if c.MaxItemBytes < 1<<10 || c.MaxItemBytes > 1<<20 {
		p.add("relay.max_item_bytes", "must be between 1024 and 1048576 bytes, got %d", c.MaxItemBytes)
	}
	if c.MaxTotalBytes < c.MailboxQuotaBytes {
		p.add("relay.max_total_bytes", "must be at least relay.mailbox_quota_bytes (%d), got %d", c.MailboxQuotaBytes, c.MaxTotalBytes)
	}
	p.nonEmptyItems("relay.keep_rooms", c.KeepRooms)
	p.nonEmptyItems("relay.pin_feeds", c.PinFeeds)
	return p.err()
}
