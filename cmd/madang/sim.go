package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/sim"
)

func init() { commands = append(commands, simCmd) }

func simCmd(g *globals) *cobra.Command {
	var (
		c                      sim.Config
		bandwidth, rate, plot  string
		cpuProfile, memProfile string
	)
	var about []string
	for _, s := range sim.Scenarios() {
		about = append(about, fmt.Sprintf("  %-6s %s", s, sim.About(s)))
	}
	cmd := &cobra.Command{
		Use:   "sim <scenario>",
		Short: "Simulate many Madang nodes in one process and compare them with the bare libp2p libraries",
		Long: "Runs N full Madang nodes on an in-memory network (per-link latency and bandwidth, a random sparse\n" +
			"topology where each node dials 4-6 others), then the bare library on the same topology and seed,\n" +
			"and prints every figure for both with the ratio ours/raw. Scenarios:\n" + strings.Join(about, "\n") +
			"\n\nA comma-separated --rate runs a rate sweep. Progress goes to stderr.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: sim.Scenarios(),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if c.Bandwidth, err = sim.ParseBandwidth(bandwidth); err != nil {
				return usageErr("%v", err)
			}
			if rate != "" {
				if c.Rates, err = sim.ParseRates(rate); err != nil {
					return usageErr("%v", err)
				}
			}
			if _, ok := sim.Defaults(args[0]); !ok {
				return usageErr("unknown scenario %q (known: %s)", args[0], strings.Join(sim.Scenarios(), ", "))
			}
			c.Progress = g.stderr
			if g.logLevel != "" {
				var lvl slog.Level
				if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
					return usageErr("--log-level: %v", err)
				}
				c.Log = slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
			}
			if memProfile != "" {
				c.Measured = func(which string) {
					if which == "ours" {
						writeHeapProfile(g, memProfile)
					}
				}
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			start := time.Now()
			res, err := sim.Run(cmd.Context(), args[0], c)
			if errors.Is(err, sim.ErrBadConfig) || errors.Is(err, sim.ErrUnknownScenario) {
				return usageErr("%v", err)
			}
			if err != nil {
				return err
			}
			if plot != "" {
				if err := sim.WritePlot(res, plot); err != nil {
					return err
				}
			}
			if g.json {
				line, err := json.Marshal(res)
				if err != nil {
					return fmt.Errorf("encode summary: %w", err)
				}
				fmt.Fprintln(g.stdout, string(line))
				return nil
			}
			if err := res.WriteTable(g.stdout); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "\ncommand: madang %s (took %s)\n", strings.Join(os.Args[1:], " "), time.Since(start).Round(time.Second))
			if plot != "" {
				fmt.Fprintf(g.stdout, "plot: %s\n", plot)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Nodes, "nodes", 0, "number of nodes (default per scenario)")
	f.DurationVar(&c.Latency, "latency", 0, "one-way latency of every link (e.g. 20ms)")
	f.StringVar(&bandwidth, "bandwidth", "0", "bandwidth of every link: bytes/s or with a unit (10MB, 100Mbit); 0 is unlimited")
	f.IntVar(&c.Msgs, "msgs", 0, "messages to publish (dht: lookups to make)")
	f.IntVar(&c.Size, "size", 0, "payload size in bytes (default per scenario)")
	f.StringVar(&rate, "rate", "", "messages (dht: lookups) per second over all publishers; a comma-separated list runs a sweep")
	f.IntVar(&c.Publishers, "publishers", 0, "publishing nodes (dht: announced keys)")
	f.Float64Var(&c.Churn, "churn", 0, "fraction of nodes that go offline once during the run and come back (0-1)")
	f.IntVar(&c.Spammers, "spammers", 0, "hostile peers publishing invalid messages")
	f.Int64Var(&c.Seed, "seed", 1, "seed of the topology, publisher choice and churn")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	f.StringVar(&memProfile, "memprofile", "", "write a heap profile to this file while Madang's nodes are up")
	f.StringVar(&plot, "plot", "", "draw the latency CDF and delivery over time (ours vs raw) to this PNG file")
	return cmd
}

func writeHeapProfile(g *globals, path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(g.stderr, "memprofile: %v\n", err)
		return
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		fmt.Fprintf(g.stderr, "memprofile: %v\n", err)
	}
}
