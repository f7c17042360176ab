package main

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/config"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/logging"
	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/store"
)

func init() { commands = append(commands, initCmd, daemonCmd) }

// nodeFlags are the flags that override config keys; only flags the user set are applied.
type nodeFlags struct {
	role      string
	name      string
	listen    []string
	bootstrap []string
	relays    []string
	apiListen string
	dhtMode   string
}

func (f *nodeFlags) register(c *cobra.Command, full bool) {
	fs := c.Flags()
	fs.StringVar(&f.role, "role", "", "node role: desktop, relay or merchant (overrides config)")
	fs.StringVar(&f.name, "name", "", "display name (relays: public name)")
	if !full {
		return
	}
	fs.StringArrayVar(&f.listen, "listen", nil, "listen multiaddr (repeatable), e.g. /ip4/127.0.0.1/tcp/0")
	fs.StringArrayVar(&f.bootstrap, "bootstrap", nil, "bootstrap peer multiaddr with /p2p/ (repeatable)")
	fs.StringArrayVar(&f.relays, "relay", nil, "static relay multiaddr with /p2p/ (repeatable)")
	fs.StringVar(&f.apiListen, "api-listen", "", "local API address, 127.0.0.1:PORT (port 0 = random)")
	fs.StringVar(&f.dhtMode, "dht-mode", "", "DHT mode: auto, client or server")
}

func (f *nodeFlags) overrides(c *cobra.Command, g *globals) map[string]any {
	o := map[string]any{}
	set := func(flag, key string, v any) {
		if fl := c.Flags().Lookup(flag); fl != nil && fl.Changed {
			o[key] = v
		}
	}
	set("role", "role", f.role)
	set("name", "name", f.name)
	set("listen", "listen", f.listen)
	set("bootstrap", "bootstrap", f.bootstrap)
	set("relay", "relays", f.relays)
	set("api-listen", "api.listen", f.apiListen)
	set("dht-mode", "dht.mode", f.dhtMode)
	for k, v := range globalOverrides(g) {
		o[k] = v
	}
	return o
}

func loadConfig(g *globals, overrides map[string]any) (config.Config, config.Sources, error) {
	return config.Load(config.LoadOptions{Home: g.homeDir(), File: g.configFile, Env: os.Environ(), Overrides: overrides})
}

// initHome creates what a node needs in home and never overwrites an existing identity or config.
// It reports whether it created a new identity.
func initHome(home string, cfg config.Config) (*identity.Identity, bool, error) {
	p := config.PathsFor(home)
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, false, fmt.Errorf("create home: %w", err)
	}
	created := false
	id, err := identity.Load(p.Identity)
	if errors.Is(err, identity.ErrNotFound) {
		name := cfg.Name
		if name == "" {
			name, _ = os.Hostname()
		}
		id, err = identity.Create(p.Identity, name)
		created = true
	}
	if err != nil {
		return nil, false, err
	}
	if _, err := os.Stat(p.Config); errors.Is(err, os.ErrNotExist) {
		sample := personalise(config.Sample(), cfg.Role, cfg.Name)
		if err := os.WriteFile(p.Config, sample, 0o600); err != nil {
			return nil, false, fmt.Errorf("write config: %w", err)
		}
	}
	if err := node.EnsureToken(p.Token); err != nil {
		return nil, false, err
	}
	st, err := store.Open(p.Store, store.Options{})
	if err != nil {
		return nil, false, err
	}
	if err := st.Close(); err != nil {
		return nil, false, err
	}
	return id, created, nil
}

func initCmd(g *globals) *cobra.Command {
	var f nodeFlags
	c := &cobra.Command{
		Use:   "init",
		Short: "Create a node home: identity, commented config.yaml, API token and store",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, _, err := loadConfig(g, f.overrides(c, g))
			if err != nil {
				return err
			}
			home := g.homeDir()
			id, created, err := initHome(home, cfg)
			if err != nil {
				return err
			}
			if !created {
				return &exitError{code: exitFailed, err: fmt.Errorf(
					"%s already holds an identity (account %s); init never overwrites it", home, id.AccountID())}
			}
			out := map[string]string{"home": home, "account_id": string(id.AccountID()), "peer_id": id.PeerID().String(), "role": cfg.Role}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "Initialised %s node in %s\naccount: %s\npeer:    %s\n", cfg.Role, home, id.AccountID(), id.PeerID())
			})
		},
	}
	f.register(c, false)
	return c
}

func daemonCmd(g *globals) *cobra.Command {
	var f nodeFlags
	c := &cobra.Command{
		Use:   "daemon",
		Short: "Run the node (initialises an empty home first)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			home := g.homeDir()
			overrides := f.overrides(c, g)
			cfg, _, err := loadConfig(g, overrides)
			if err != nil {
				return err
			}
			unlock, err := node.LockHome(home)
			if errors.Is(err, node.ErrLocked) {
				return &exitError{code: exitUsage, err: err}
			} else if err != nil {
				return err
			}
			defer unlock()
			if _, _, err := initHome(home, cfg); err != nil {
				return err
			}
			// initHome may have written config.yaml; load again so the file is part of the picture.
			if cfg, _, err = loadConfig(g, overrides); err != nil {
				return err
			}
			level, err := logging.ParseLevel(cfg.Log.Level)
			if err != nil {
				return usageErr("%v", err)
			}
			log := logging.New(g.stderr, level, cfg.Log.Format)
			logging.RouteLibraries(log, level)
			ctx := c.Context()
			n, err := node.New(ctx, home, cfg, node.WithLogger(log))
			if err != nil {
				return err
			}
			log.Info("API listening", "addr", n.APIAddr(), "home", home)
			return n.Run(ctx)
		},
	}
	f.register(c, true)
	return c
}

// personalise writes the chosen role and name into the sample config, keeping its comments.
func personalise(sample []byte, role, name string) []byte {
	s := string(sample)
	s = regexp.MustCompile(`(?m)^role: .*$`).ReplaceAllLiteralString(s, "role: "+strconv.Quote(role))
	if name != "" {
		s = regexp.MustCompile(`(?m)^name: .*$`).ReplaceAllLiteralString(s, "name: "+strconv.Quote(name))
	}
	return []byte(s)
}
