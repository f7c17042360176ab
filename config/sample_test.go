package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSampleRoundTrip(t *testing.T) {
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, Sample(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, src, err := Load(LoadOptions{Home: t.TempDir(), File: f})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("loading the sample gives\n%+v\nwant Default()\n%+v", c, Default())
	}
	for _, k := range Keys() {
		if src[k] != SourceFile {
			t.Errorf("sample does not set %s (source %q)", k, src[k])
		}
	}
}

func TestSampleDocumentsEveryKey(t *testing.T) {
	sample := string(Sample())
	for _, f := range fields() {
		doc := wrap(f.doc, 1000)[0]
		first := strings.Fields(doc)[0]
		if !strings.Contains(sample, "# "+first) {
			t.Errorf("sample lacks the comment for %s", f.key)
		}
		if !strings.Contains(sample, strings.Repeat("  ", f.depth)+f.name+":") {
			t.Errorf("sample lacks the key %s", f.key)
		}
	}
}

// YAML output loads back into the same config, also for values that need quoting.
func TestYAMLRoundTrip(t *testing.T) {
	c := Default()
	c.Role = RoleRelay
	c.Name = "yes: \"quoted\" # not a comment"
	c.Relay.Operator = "first line\nsecond line\ttab"
	c.Relay.Contact = "true"
	c.Relay.KeepRooms = []string{"room-1", "- dash", "[x]"}
	c.API.AllowedHosts = []string{"madang.local:4041"}
	c.ConnMgr.GracePeriod = 90*time.Second + 5*time.Millisecond
	c.Relay.MailboxTTL = 36 * time.Hour
	c.Relay.CircuitBytes = 1 << 40
	c.Network.MDNS = true
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, c.YAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, _, err := Load(LoadOptions{Home: t.TempDir(), File: f})
	if err != nil {
		t.Fatalf("%v\n%s", err, c.YAML())
	}
	if !reflect.DeepEqual(got, c) {
		t.Errorf("round trip gives\n%+v\nwant\n%+v\nYAML:\n%s", got, c, c.YAML())
	}
}

// Every field of Config and its sections carries a doc tag and matching yaml and mapstructure
// tags. This walks the types itself rather than trusting fields().
func TestEveryFieldHasDocTag(t *testing.T) {
	var walk func(t2 reflect.Type, path string)
	walk = func(t2 reflect.Type, path string) {
		for i := range t2.NumField() {
			sf := t2.Field(i)
			p := path + sf.Name
			if sf.Tag.Get("doc") == "" {
				t.Errorf("%s has no doc tag", p)
			}
			y, m := sf.Tag.Get("yaml"), sf.Tag.Get("mapstructure")
			if y == "" || y != m {
				t.Errorf("%s: yaml tag %q and mapstructure tag %q must be equal and set", p, y, m)
			}
			if sf.Type.Kind() == reflect.Struct {
				walk(sf.Type, p+".")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "Config.")
	for _, problem := range checkSchema() {
		t.Error(problem)
	}
}

func TestKeys(t *testing.T) {
	keys := Keys()
	if !slices.IsSorted(keys) {
		t.Errorf("Keys not sorted: %v", keys)
	}
	for _, k := range []string{"role", "listen", "api.listen", "connmgr.grace_period", "relay.pin_feeds", "channels.sync_batch", "friends.read_receipts"} {
		if !slices.Contains(keys, k) {
			t.Errorf("Keys lacks %s", k)
		}
	}
	if slices.Contains(keys, "api") {
		t.Errorf("Keys lists the section api")
	}
	if got := EnvVar("connmgr.high_water"); got != "MADANG_CONNMGR_HIGH_WATER" {
		t.Errorf("EnvVar = %s", got)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Minute: "1m", 168 * time.Hour: "168h", 90 * time.Minute: "1h30m",
		90 * time.Second: "1m30s", 1500 * time.Millisecond: "1.5s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
