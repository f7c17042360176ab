package sim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Figure is one measured quantity for Madang (Ours) and the bare library (Raw). NaN means not measured or
// not applicable (raw GossipSub has no history repair, for example).
type Figure struct {
	Name      string
	Ours, Raw float64
	// Note explains the figure in the table (unit, goal).
	Note string
}

// Ratio is Ours/Raw, NaN when either is missing or Raw is 0.
func (f Figure) Ratio() float64 { return ratio(f.Ours, f.Raw) }

func ratio(ours, raw float64) float64 {
	if math.IsNaN(ours) || math.IsNaN(raw) || raw == 0 {
		return math.NaN()
	}
	return ours / raw
}

// triple is a figure in the JSON summary, in this key order.
type triple struct {
	Ours  any `json:"ours"`
	Raw   any `json:"raw"`
	Ratio any `json:"ratio"`
}

// Param is one input of the run, echoed in the summary.
type Param struct {
	Name  string
	Value float64
}

// Series is raw data for the plots.
type Series struct {
	// Latencies in ms, sorted (live deliveries only).
	Latencies []float64
	// Times of live deliveries in seconds since publishing began, sorted.
	Times []float64
	// Expected deliveries (messages × receivers); the timeline plots Times/Expected.
	Expected int
}

// Result is the outcome of a scenario.
type Result struct {
	Scenario string
	Nodes    int
	Seed     int64
	Params   []Param
	Figures  []Figure
	// Notes are remarks shown under the table (not in the JSON line).
	Notes []string
	// Ours and Raw hold the samples behind the latency and delivery figures (for --plot).
	Ours, Raw Series
	// Sweep holds, for a rate sweep, one row per rate.
	Sweep []SweepRow
}

// SweepRow is one rate of a sweep.
type SweepRow struct {
	Rate                   float64
	OursDelivery, RawDeliv float64
	OursRepaired           float64
	OursP99, RawP99        float64
}

// Figure returns the named figure (zero Figure with NaNs if absent).
func (r *Result) Figure(name string) Figure {
	for _, f := range r.Figures {
		if f.Name == name {
			return f
		}
	}
	return Figure{Name: name, Ours: math.NaN(), Raw: math.NaN()}
}

func (r *Result) add(name string, ours, raw float64, note string) {
	r.Figures = append(r.Figures, Figure{Name: name, Ours: ours, Raw: raw, Note: note})
}

func num(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	// Keep the line short: 4 significant digits are plenty for a noisy 2-core machine.
	s := strconv.FormatFloat(v, 'g', 4, 64)
	f, _ := strconv.ParseFloat(s, 64)
	return json.Number(strconv.FormatFloat(f, 'f', -1, 64))
}

// MarshalJSON writes the one-line summary: scenario, nodes, seed, the params, then every figure as
// {"ours":…,"raw":…,"ratio":…} (null where not applicable), in a fixed order.
func (r *Result) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	write := func(k string, v any) {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(v)
		if err != nil {
			vb = []byte("null")
		}
		b.Write(vb)
	}
	write("scenario", r.Scenario)
	write("nodes", r.Nodes)
	write("seed", r.Seed)
	for _, p := range r.Params {
		write(p.Name, num(p.Value))
	}
	for _, f := range r.Figures {
		write(f.Name, triple{Ours: num(f.Ours), Raw: num(f.Raw), Ratio: num(f.Ratio())})
	}
	if len(r.Sweep) > 0 {
		rows := make([]map[string]any, 0, len(r.Sweep))
		for _, s := range r.Sweep {
			rows = append(rows, map[string]any{
				"rate": num(s.Rate), "delivery": triple{Ours: num(s.OursDelivery), Raw: num(s.RawDeliv), Ratio: num(ratio(s.OursDelivery, s.RawDeliv))},
				"delivery_repaired": num(s.OursRepaired), "p99_ms": triple{Ours: num(s.OursP99), Raw: num(s.RawP99), Ratio: num(ratio(s.OursP99, s.RawP99))},
			})
		}
		write("sweep", rows)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func cell(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.01:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

// WriteTable prints a readable table of the result.
func (r *Result) WriteTable(w io.Writer) error {
	var hdr []string
	for _, p := range r.Params {
		hdr = append(hdr, p.Name+"="+cell(p.Value))
	}
	if _, err := fmt.Fprintf(w, "scenario %s, %d nodes, seed %d (%s)\n\n", r.Scenario, r.Nodes, r.Seed, strings.Join(hdr, " ")); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "figure\tours\traw\tours/raw\t \n")
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t  %s\n", f.Name, cell(f.Ours), cell(f.Raw), cell(f.Ratio()), f.Note)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if len(r.Sweep) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "rate msg/s\tdelivery ours\tdelivery raw\tours after repair\tp99 ours ms\tp99 raw ms\t\n")
		for _, s := range r.Sweep {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", cell(s.Rate), cell(s.OursDelivery), cell(s.RawDeliv),
				cell(s.OursRepaired), cell(s.OursP99), cell(s.RawP99))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write table: %w", err)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}
