package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes content as <home>/config.yaml in a new home directory and returns the home.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	home := t.TempDir()
	if content != "" {
		if err := os.WriteFile(filepath.Join(home, "config.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

// asError returns the only *Error in err, failing the test if there is not exactly one.
func asError(t *testing.T, err error) *Error {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("error %v does not wrap ErrInvalid", err)
	}
	all := flatten(err)
	if len(all) != 1 {
		t.Fatalf("expected one problem, got %d: %v", len(all), err)
	}
	var e *Error
	if !errors.As(all[0], &e) {
		t.Fatalf("error %T %v is not a *Error", all[0], all[0])
	}
	return e
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		key     string
		get     func(Config) any
		file    string // YAML setting the key
		fileVal any
		env     string // value of the environment variable
		envVal  any
		flag    any
	}{
		{
			key: "role", get: func(c Config) any { return c.Role },
			file: "role: merchant", fileVal: "merchant",
			env: "relay", envVal: "relay",
			flag: "desktop",
		},
		{
			key: "api.listen", get: func(c Config) any { return c.API.Listen },
			file: "api:\n  listen: 127.0.0.1:5000", fileVal: "127.0.0.1:5000",
			env: "localhost:5001", envVal: "localhost:5001",
			flag: "[::1]:0",
		},
		{
			key: "connmgr.high_water", get: func(c Config) any { return c.ConnMgr.HighWater },
			file: "connmgr:\n  high_water: 200", fileVal: 200,
			env: "300", envVal: 300,
			flag: 400,
		},
		{
			key: "log.level", get: func(c Config) any { return c.Log.Level },
			file: "log:\n  level: debug", fileVal: "debug",
			env: "warn", envVal: "warn",
			flag: "error",
		},
		{
			key: "listen", get: func(c Config) any { return c.Listen },
			file: "listen:\n  - /ip4/127.0.0.1/tcp/1", fileVal: []string{"/ip4/127.0.0.1/tcp/1"},
			env: "/ip4/127.0.0.1/tcp/2, /ip4/127.0.0.1/udp/2/quic-v1", envVal: []string{"/ip4/127.0.0.1/tcp/2", "/ip4/127.0.0.1/udp/2/quic-v1"},
			flag: []string{"/ip4/127.0.0.1/tcp/3"},
		},
		{
			key: "network.mdns", get: func(c Config) any { return c.Network.MDNS },
			file: "network:\n  mdns: true", fileVal: true,
			env: "false", envVal: false,
			flag: true,
		},
		{
			key: "connmgr.grace_period", get: func(c Config) any { return c.ConnMgr.GracePeriod },
			file: "connmgr:\n  grace_period: 30s", fileVal: 30 * time.Second,
			env: "2m", envVal: 2 * time.Minute,
			flag: 5 * time.Second,
		},
		{
			key: "relay.mailbox_quota_bytes", get: func(c Config) any { return c.Relay.MailboxQuotaBytes },
			file: "relay:\n  mailbox_quota_bytes: 1000", fileVal: int64(1000),
			env: "2000", envVal: int64(2000),
			flag: int64(3000),
		},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			def := tt.get(Default())
			envVar := []string{EnvVar(tt.key) + "=" + tt.env}
			layers := []struct {
				name   string
				file   string
				env    []string
				flags  map[string]any
				want   any
				source string
			}{
				{"default", "", nil, nil, def, SourceDefault},
				{"file", tt.file, nil, nil, tt.fileVal, SourceFile},
				{"env", tt.file, envVar, nil, tt.envVal, SourceEnv},
				{"flag", tt.file, envVar, map[string]any{tt.key: tt.flag}, tt.flag, SourceFlag},
				{"env without file", "", envVar, nil, tt.envVal, SourceEnv},
				{"flag without env", tt.file, nil, map[string]any{tt.key: tt.flag}, tt.flag, SourceFlag},
			}
			for _, l := range layers {
				home := writeConfig(t, l.file)
				c, src, err := Load(LoadOptions{Home: home, Env: l.env, Overrides: l.flags})
				if err != nil {
					t.Fatalf("%s: Load: %v", l.name, err)
				}
				if got := tt.get(c); !reflect.DeepEqual(got, l.want) {
					t.Errorf("%s: %s = %#v, want %#v", l.name, tt.key, got, l.want)
				}
				if src[tt.key] != l.source {
					t.Errorf("%s: source of %s = %q, want %q", l.name, tt.key, src[tt.key], l.source)
				}
				for k, s := range src {
					if k != tt.key && s != SourceDefault {
						t.Errorf("%s: source of untouched key %s = %q", l.name, k, s)
					}
				}
			}
		})
	}
}

func TestSourcesCoverEveryKey(t *testing.T) {
	home := writeConfig(t, "role: relay\nlog:\n  format: json\n")
	_, src, err := Load(LoadOptions{
		Home:      home,
		Env:       []string{"MADANG_LOG_LEVEL=debug", "PATH=/bin", "MADANG_HOME=/elsewhere", "MADANG_NOT_A_KEY=1"},
		Overrides: map[string]any{"api.listen": "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"role": SourceFile, "log.format": SourceFile, "log.level": SourceEnv, "api.listen": SourceFlag}
	if len(src) != len(Keys()) {
		t.Errorf("got %d sources, want one per key (%d)", len(src), len(Keys()))
	}
	for _, k := range Keys() {
		w, ok := want[k]
		if !ok {
			w = SourceDefault
		}
		if src[k] != w {
			t.Errorf("source of %s = %q, want %q", k, src[k], w)
		}
	}
}

func TestEnvLists(t *testing.T) {
	id := "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN"
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"single", []string{"MADANG_BOOTSTRAP=/ip4/1.2.3.4/tcp/1/p2p/" + id}, []string{"/ip4/1.2.3.4/tcp/1/p2p/" + id}},
		{"blanks and empty items", []string{"MADANG_BOOTSTRAP= /ip4/1.2.3.4/tcp/1/p2p/" + id + " ,, /dns4/a.example/tcp/2/p2p/" + id + ","},
			[]string{"/ip4/1.2.3.4/tcp/1/p2p/" + id, "/dns4/a.example/tcp/2/p2p/" + id}},
		{"empty means unset", []string{"MADANG_BOOTSTRAP="}, nil},
		{"last wins", []string{"MADANG_BOOTSTRAP=/ip4/1.2.3.4/tcp/1/p2p/" + id, "MADANG_BOOTSTRAP=/ip4/5.6.7.8/tcp/1/p2p/" + id}, []string{"/ip4/5.6.7.8/tcp/1/p2p/" + id}},
		{"later empty unsets", []string{"MADANG_BOOTSTRAP=/ip4/1.2.3.4/tcp/1/p2p/" + id, "MADANG_BOOTSTRAP="}, nil},
		{"nil env", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, src, err := Load(LoadOptions{Home: t.TempDir(), Env: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Bootstrap, tt.want) {
				t.Errorf("bootstrap = %#v, want %#v", c.Bootstrap, tt.want)
			}
			wantSrc := SourceEnv
			if tt.want == nil {
				wantSrc = SourceDefault
			}
			if src["bootstrap"] != wantSrc {
				t.Errorf("source = %q, want %q", src["bootstrap"], wantSrc)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		key     string
		line    int
		msg     string // substring of Msg
	}{
		{"unknown top-level key", "role: desktop\nbogus: 1\n", "bogus", 2, "unknown key"},
		{"unknown nested key with suggestion", "connmgr:\n  low_water: 10\n  high-water: 100\n", "connmgr.high-water", 3, `did you mean "connmgr.high_water"`},
		{"wrong case", "Role: relay\n", "Role", 1, `did you mean "role"`},
		{"string for integer", "connmgr:\n  high_water: many\n", "connmgr.high_water", 2, `expected an integer, got the string "many"`},
		{"quoted integer", "connmgr:\n  high_water: \"100\"\n", "connmgr.high_water", 2, "expected an integer"},
		{"float for integer", "store:\n  cache_mib: 1.5\n", "store.cache_mib", 2, "expected an integer"},
		{"overflow", "relay:\n  circuit_bytes: 99999999999999999999\n", "relay.circuit_bytes", 2, "expected an integer"},
		{"yes is not a boolean", "network:\n  mdns: yes\n", "network.mdns", 2, "expected a boolean"},
		{"number for duration", "connmgr:\n  grace_period: 60\n", "connmgr.grace_period", 2, "expected a duration"},
		{"bad duration", "relay:\n  mailbox_ttl: 7d\n", "relay.mailbox_ttl", 2, "expected a duration"},
		{"scalar for list", "listen: /ip4/127.0.0.1/tcp/1\n", "listen", 1, "expected a list of strings"},
		{"null list", "bootstrap:\n", "bootstrap", 1, "write [] for an empty list"},
		{"number in list", "listen:\n  - /ip4/127.0.0.1/tcp/1\n  - 42\n", "listen", 3, "item 2: expected a string"},
		{"number for string", "name: 42\n", "name", 1, "expected a string"},
		{"mapping for string", "role:\n  x: 1\n", "role", 2, "expected a string, got a mapping"},
		{"scalar for section", "api: 127.0.0.1:1\n", "api", 1, "expected a section of keys"},
		{"duplicate key", "role: relay\nrole: desktop\n", "role", 2, "duplicate key (first on line 1)"},
		{"top level list", "- role\n", "", 1, "expected a mapping"},
		{"syntax error", "role: desktop\nname: a: b\n", "", 2, "invalid YAML: mapping values are not allowed"},
		{"unclosed list", "role: desktop\nlisten: [/ip4/127.0.0.1/tcp/1\n", "", 2, "invalid YAML"},
		{"unclosed flow on the first line", "[role\n", "", 2, "invalid YAML: did not find expected"},
		{"bad indentation", "api:\n  listen: x\n bad: y\n", "", 3, "invalid YAML: did not find expected key"},
		{"tab indentation", "api:\n\tlisten: x\n", "", 2, "invalid YAML"},
		{"two documents", "role: relay\n---\nrole: desktop\n", "", 2, "second YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := writeConfig(t, tt.content)
			_, _, err := Load(LoadOptions{Home: home})
			e := asError(t, err)
			file := filepath.Join(home, "config.yaml")
			if e.File != file || e.Key != tt.key || e.Line != tt.line || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got File=%q Key=%q Line=%d Msg=%q\nwant File=%q Key=%q Line=%d Msg~%q",
					e.File, e.Key, e.Line, e.Msg, file, tt.key, tt.line, tt.msg)
			}
			if !strings.Contains(err.Error(), file) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	home := writeConfig(t, "role: desktop\nconnmgr:\n  low_water: 10\n  high_water: many\n")
	_, _, err := Load(LoadOptions{Home: home})
	want := `config ` + filepath.Join(home, "config.yaml") + `: line 4: key "connmgr.high_water": expected an integer, got the string "many"`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestAllFileErrorsReported(t *testing.T) {
	home := writeConfig(t, "bogus: 1\nconnmgr:\n  high_water: x\nlog:\n  levle: info\n")
	_, _, err := Load(LoadOptions{Home: home, Env: []string{"MADANG_STORE_CACHE_MIB=big"}})
	keys := map[string]bool{}
	for _, e := range flatten(err) {
		var ce *Error
		if errors.As(e, &ce) {
			keys[ce.Key] = true
		}
	}
	for _, k := range []string{"bogus", "connmgr.high_water", "log.levle", "store.cache_mib"} {
		if !keys[k] {
			t.Errorf("no error for %s in %v", k, err)
		}
	}
}

func TestEnvAndFlagErrors(t *testing.T) {
	tests := []struct {
		name  string
		env   []string
		flags map[string]any
		key   string
		msg   []string
	}{
		{"env integer", []string{"MADANG_CONNMGR_HIGH_WATER=lots"}, nil, "connmgr.high_water", []string{"MADANG_CONNMGR_HIGH_WATER", `got "lots"`}},
		{"env boolean", []string{"MADANG_NETWORK_MDNS=maybe"}, nil, "network.mdns", []string{"MADANG_NETWORK_MDNS", "boolean"}},
		{"env duration", []string{"MADANG_RELAY_MAILBOX_TTL=1w"}, nil, "relay.mailbox_ttl", []string{"MADANG_RELAY_MAILBOX_TTL", "duration"}},
		{"flag wrong type", nil, map[string]any{"role": 5}, "role", []string{"command-line flag", "expected a string"}},
		{"flag string for integer", nil, map[string]any{"connmgr.low_water": "few"}, "connmgr.low_water", []string{"command-line flag", "expected an integer"}},
		{"flag integer overflow", nil, map[string]any{"connmgr.low_water": uint64(1 << 63)}, "connmgr.low_water", []string{"expected an integer"}},
		{"flag int for duration", nil, map[string]any{"connmgr.grace_period": 5}, "connmgr.grace_period", []string{"expected a duration"}},
		{"flag unknown key", nil, map[string]any{"api": "x"}, "api", []string{"unknown key"}},
		{"flag nil", nil, map[string]any{"listen": nil}, "listen", []string{"expected a list of strings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Load(LoadOptions{Home: t.TempDir(), Env: tt.env, Overrides: tt.flags})
			e := asError(t, err)
			if e.Key != tt.key || e.File != "" {
				t.Errorf("got Key=%q File=%q, want Key=%q and no file (%v)", e.Key, e.File, tt.key, err)
			}
			for _, m := range tt.msg {
				if !strings.Contains(e.Error(), m) {
					t.Errorf("error %q does not mention %q", e, m)
				}
			}
		})
	}
}

func TestFlagConversions(t *testing.T) {
	c, _, err := Load(LoadOptions{Home: t.TempDir(), Overrides: map[string]any{
		"connmgr.high_water":   int64(300),
		"connmgr.grace_period": "90s",
		"listen":               "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
		"network.mdns":         "true",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.ConnMgr.HighWater != 300 || c.ConnMgr.GracePeriod != 90*time.Second || len(c.Listen) != 2 || !c.Network.MDNS {
		t.Errorf("unexpected config %+v", c)
	}
}

func TestFileLocation(t *testing.T) {
	t.Run("implicit missing file is fine", func(t *testing.T) {
		c, _, err := Load(LoadOptions{Home: filepath.Join(t.TempDir(), "does-not-exist")})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(c, Default()) {
			t.Errorf("got %+v, want defaults", c)
		}
	})
	t.Run("explicit missing file is an error", func(t *testing.T) {
		_, _, err := Load(LoadOptions{Home: t.TempDir(), File: filepath.Join(t.TempDir(), "nope.yaml")})
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("explicit file wins over home", func(t *testing.T) {
		home := writeConfig(t, "role: merchant\n")
		other := filepath.Join(t.TempDir(), "other.yaml")
		if err := os.WriteFile(other, []byte("role: relay\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, _, err := Load(LoadOptions{Home: home, File: other})
		if err != nil || c.Role != RoleRelay {
			t.Errorf("role = %q, err = %v; want relay from the explicit file", c.Role, err)
		}
	})
	t.Run("home from MADANG_HOME in Env", func(t *testing.T) {
		home := writeConfig(t, "role: merchant\n")
		c, _, err := Load(LoadOptions{Env: []string{"MADANG_HOME=" + home}})
		if err != nil || c.Role != RoleMerchant {
			t.Errorf("role = %q, err = %v; want merchant from $MADANG_HOME/config.yaml", c.Role, err)
		}
	})
	t.Run("empty file and comments only", func(t *testing.T) {
		for _, content := range []string{"", "# nothing\n", "---\n", "relay:\n# all commented\n"} {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			c, src, err := Load(LoadOptions{Home: t.TempDir(), File: f})
			if err != nil || !reflect.DeepEqual(c, Default()) {
				t.Errorf("%q: got %+v, %v; want defaults", content, c, err)
			}
			if src["relay.max_circuits"] != SourceDefault {
				t.Errorf("%q: source = %q", content, src["relay.max_circuits"])
			}
		}
	})
	t.Run("oversized file", func(t *testing.T) {
		home := writeConfig(t, "# "+strings.Repeat("x", maxFileSize)+"\n")
		_, _, err := Load(LoadOptions{Home: home})
		if e := asError(t, err); !strings.Contains(e.Msg, "larger than") {
			t.Errorf("got %v", err)
		}
	})
}

func TestPaths(t *testing.T) {
	p := PathsFor("/h")
	want := Paths{Home: "/h", Config: "/h/config.yaml", Identity: "/h/identity.key", Token: "/h/api.token",
		APIAddr: "/h/api", Lock: "/h/repo.lock", Store: "/h/store"}
	if p != want {
		t.Errorf("PathsFor = %+v, want %+v", p, want)
	}
	t.Setenv(HomeEnv, "/custom")
	if got := DefaultHome(); got != "/custom" {
		t.Errorf("DefaultHome with %s = %q", HomeEnv, got)
	}
	t.Setenv(HomeEnv, "")
	if got := DefaultHome(); !strings.HasSuffix(got, string(filepath.Separator)+"madang") {
		t.Errorf("DefaultHome = %q, want <xdg data>/madang", got)
	}
}
