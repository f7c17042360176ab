// Package sim runs Madang at scale inside one process: N full Madang nodes (node.New with the real
// features, on in-memory stores) on a mocknet with per-link latency and bandwidth, a seeded random sparse
// topology (each node dials 4–6 others), optional churn (nodes going offline and coming back) and optional
// hostile peers. Every scenario also runs the bare library it is built on (a plain go-libp2p-pubsub topic,
// plain DHT provide/find-providers) on the same topology and seed, back to back in the same process, and
// reports every figure as ours, raw and the ratio ours/raw, so that noise on a shared machine cancels.
package sim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is one simulation run. Zero values take the scenario's defaults (see Defaults).
type Config struct {
	Nodes      int
	Latency    time.Duration // one way, per link
	Bandwidth  float64       // bytes per second per link (0: unlimited)
	Msgs       int           // messages (rooms, feeds, dm) or lookups (dht)
	Size       int           // payload bytes
	Rates      []float64     // msg/s over all publishers; several rates make a sweep
	Publishers int
	Churn      float64 // fraction of nodes that go offline once while publishing and come back
	Spammers   int     // hostile peers added to the network
	Seed       int64
	DegreeMin  int // each node dials DegreeMin..DegreeMax others
	DegreeMax  int
	Warmup     time.Duration // after connecting, before measuring (mesh forms on heartbeats)
	Settle     time.Duration // longest wait for stragglers after the last publish
	// Log receives the nodes' logs (default: discarded).
	Log *slog.Logger
	// Progress receives one line per phase (default: discarded).
	Progress io.Writer
	// sweepSeconds: in a rate sweep without --msgs, each rate publishes for this long (msgs = rate × it).
	sweepSeconds float64
	// Measured, if set, is called while the nodes of a run ("ours" or "raw") are up, right after the
	// heap was measured (the CLI writes --memprofile there).
	Measured func(which string)
}

// sweepSeconds is how long each rate of a sweep publishes when --msgs is not given (as the reference
// baseline's knee runs did).
const sweepSeconds = 4

// Rate is the first (or only) rate.
func (c Config) Rate() float64 {
	if len(c.Rates) == 0 {
		return 0
	}
	return c.Rates[0]
}

func (c Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "sim: %s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

func (c Config) measured(which string) {
	if c.Measured != nil {
		c.Measured(which)
	}
}

func (c *Config) fill(d Config) {
	if c.Nodes <= 0 {
		c.Nodes = d.Nodes
	}
	if c.Msgs <= 0 {
		c.Msgs = d.Msgs
	}
	if c.Size <= 0 {
		c.Size = d.Size
	}
	if len(c.Rates) == 0 {
		c.Rates = d.Rates
	}
	if c.Publishers <= 0 {
		c.Publishers = d.Publishers
	}
	if c.DegreeMin <= 0 {
		c.DegreeMin = 4
	}
	if c.DegreeMax < c.DegreeMin {
		c.DegreeMax = max(6, c.DegreeMin)
	}
	if c.Warmup <= 0 {
		c.Warmup = d.Warmup
	}
	if c.Settle <= 0 {
		c.Settle = d.Settle
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Errors.
var (
	ErrUnknownScenario = errors.New("sim: unknown scenario")
	ErrBadConfig       = errors.New("sim: bad config")
)

type scenario struct {
	defaults Config
	run      func(ctx context.Context, c Config) (*Result, error)
	about    string
}

var scenarios = map[string]scenario{}

func register(name, about string, d Config, run func(ctx context.Context, c Config) (*Result, error)) {
	scenarios[name] = scenario{defaults: d, run: run, about: about}
}

// Scenarios lists the scenario names.
func Scenarios() []string {
	out := make([]string, 0, len(scenarios))
	for k := range scenarios {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// About describes a scenario in one line.
func About(name string) string { return scenarios[name].about }

// Defaults returns a scenario's default config.
func Defaults(name string) (Config, bool) {
	s, ok := scenarios[name]
	return s.defaults, ok
}

// Run runs a scenario: the raw baseline first, then Madang, on the same topology and seed.
func Run(ctx context.Context, name string, c Config) (*Result, error) {
	s, ok := scenarios[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %v)", ErrUnknownScenario, name, Scenarios())
	}
	if len(c.Rates) > 1 && c.Msgs <= 0 {
		c.sweepSeconds = sweepSeconds
	}
	c.fill(s.defaults)
	if err := c.check(); err != nil {
		return nil, err
	}
	res, err := s.run(ctx, c)
	if err != nil {
		return nil, err
	}
	res.Scenario, res.Nodes, res.Seed = name, c.Nodes, c.Seed
	res.Params = append([]Param{
		{"latency_ms", float64(c.Latency) / float64(time.Millisecond)},
		{"bandwidth_bps", c.Bandwidth},
		{"msgs", float64(c.Msgs)},
		{"size", float64(c.Size)},
	}, res.Params...)
	if len(c.Rates) == 1 {
		res.Params = append(res.Params, Param{"rate", c.Rates[0]})
	}
	if c.sweepSeconds > 0 {
		res.Params[2].Value = math.NaN() // msgs vary with the rate
		res.Params = append(res.Params, Param{"sweep_seconds", c.sweepSeconds})
	}
	res.Params = append(res.Params,
		Param{"publishers", float64(c.Publishers)},
		Param{"churn", c.Churn},
		Param{"spammers", float64(c.Spammers)},
	)
	return res, nil
}

func (c Config) check() error {
	switch {
	case c.Nodes < 2:
		return fmt.Errorf("%w: --nodes must be at least 2", ErrBadConfig)
	case c.Publishers > c.Nodes:
		return fmt.Errorf("%w: --publishers (%d) exceeds --nodes (%d)", ErrBadConfig, c.Publishers, c.Nodes)
	case c.Churn < 0 || c.Churn >= 1:
		return fmt.Errorf("%w: --churn must be in [0, 1)", ErrBadConfig)
	case c.Spammers < 0:
		return fmt.Errorf("%w: --spammers must not be negative", ErrBadConfig)
	case c.Latency < 0 || c.Bandwidth < 0:
		return fmt.Errorf("%w: --latency and --bandwidth must not be negative", ErrBadConfig)
	case slices.ContainsFunc(c.Rates, func(r float64) bool { return r <= 0 }):
		return fmt.Errorf("%w: --rate must be positive", ErrBadConfig)
	}
	return nil
}

// waitCtx sleeps d or until ctx ends.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// poll checks cond every 20 ms until it holds, timeout passes (false) or ctx ends.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		_ = waitCtx(ctx, 20*time.Millisecond)
	}
}

// ParseBandwidth parses a per-link bandwidth: a plain number of bytes per second, or a number with a unit
// (kB, MB, GB, KiB, MiB, GiB for bytes; kbit, Mbit, Gbit for bits), optionally followed by "/s". "0" or
// "" is unlimited.
func ParseBandwidth(s string) (float64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	if t == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   float64
	}{
		{"Gbit", 1e9 / 8}, {"Mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"Kbit", 1e3 / 8},
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"KB", 1e3}, {"B", 1},
	}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%w: bandwidth %q (examples: 10MB, 100Mbit, 0 for unlimited)", ErrBadConfig, s)
	}
	return v * mult, nil
}

// ParseRates parses one rate or a comma-separated list (a sweep), in messages per second.
func ParseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: rate %q", ErrBadConfig, f)
		}
		out = append(out, v)
	}
	return out, nil
}

// labelled runs one side of a scenario ("raw" or "ours") under the pprof label run=which, inherited by every
// goroutine it starts, so that --cpuprofile separates the two (go tool pprof -tagfocus=run=ours).
func labelled[T any](ctx context.Context, which string, fn func(context.Context) (T, error)) (out T, err error) {
	pprof.Do(ctx, pprof.Labels("run", which), func(ctx context.Context) { out, err = fn(ctx) })
	return out, err
}
