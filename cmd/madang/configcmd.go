package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/madang-p2p/madang/config"
)

func init() { commands = append(commands, configCmd) }

func configCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Show, check and explain the node's configuration"}
	var sources bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration (defaults < file < MADANG_* env < flags)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, src, err := loadConfig(g, globalOverrides(g))
			if err != nil {
				return err
			}
			if g.json {
				var tree map[string]any
				if err := yaml.Unmarshal(cfg.YAML(), &tree); err != nil {
					return fmt.Errorf("render config: %w", err)
				}
				out := map[string]any{"config": tree}
				if sources {
					out["sources"] = src
				}
				return printOut(g, out, nil)
			}
			if sources {
				keys := make([]string, 0, len(src))
				for k := range src {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					fmt.Fprintf(g.stdout, "%-36s %s\n", k, src[k])
				}
				return nil
			}
			_, err = g.stdout.Write(cfg.YAML())
			return err
		},
	}
	show.Flags().BoolVar(&sources, "sources", false, "show where each key's value came from")
	sample := &cobra.Command{
		Use:   "sample",
		Short: "Print a commented config.yaml holding every key with its default",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := g.stdout.Write(config.Sample())
			return err
		},
	}
	paths := &cobra.Command{
		Use:   "paths",
		Short: "Print where this node keeps its files",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			p := config.PathsFor(g.homeDir())
			cfgPath := p.Config
			if g.configFile != "" {
				cfgPath = g.configFile
			}
			out := map[string]string{"home": p.Home, "config": cfgPath, "identity": p.Identity, "api_token": p.Token,
				"api_addr": p.APIAddr, "lock": p.Lock, "store": p.Store}
			return printOut(g, out, func() {
				for _, k := range []string{"home", "config", "identity", "api_token", "api_addr", "lock", "store"} {
					fmt.Fprintf(g.stdout, "%-10s %s\n", k, out[k])
				}
			})
		},
	}
	validate := &cobra.Command{
		Use:   "validate",
		Short: "Check the config file, environment and flags; exit 2 with the offending key on error",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if _, _, err := loadConfig(g, globalOverrides(g)); err != nil {
				return err
			}
			return printOut(g, map[string]bool{"valid": true}, func() { fmt.Fprintln(g.stdout, "config ok") })
		},
	}
	c.AddCommand(show, sample, paths, validate)
	return c
}

// globalOverrides are the config keys set by persistent flags.
func globalOverrides(g *globals) map[string]any {
	o := map[string]any{}
	if g.logLevel != "" {
		o["log.level"] = g.logLevel
	}
	if g.logFormat != "" {
		o["log.format"] = g.logFormat
	}
	return o
}
