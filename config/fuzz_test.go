package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadFile feeds arbitrary bytes as the configuration file. Load must not panic; it returns
// either a valid configuration or an error wrapping ErrInvalid.
func FuzzLoadFile(f *testing.F) {
	f.Add(Sample())
	f.Add(Default().YAML())
	f.Add([]byte(""))
	f.Add([]byte("role: relay\nlisten: [/ip4/127.0.0.1/tcp/0]\n"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Add([]byte("connmgr: &c\n  low_water: 1\nrelay: *c\n"))
	f.Add([]byte("<<: {role: relay}\n"))
	f.Add([]byte("api:\n  listen: !!binary aGVsbG8=\n"))
	f.Add([]byte("listen:\n- 1\n- [x]\n---\n"))
	f.Add([]byte("\xff\xfe\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := Load(LoadOptions{Home: t.TempDir(), File: file})
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned an invalid config without error: %v", err)
		}
	})
}
