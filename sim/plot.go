package sim

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	oursColor = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	rawColor  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
)

// WritePlot draws the result as a PNG: on the left the latency CDF of Madang and of the raw library, on
// the right the share of expected deliveries made over time since publishing began.
func WritePlot(r *Result, path string) error {
	cdf, err := plotCDF(r)
	if err != nil {
		return err
	}
	tl, err := plotTimeline(r)
	if err != nil {
		return err
	}
	const w, h = 12 * vg.Inch, 4.5 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 2,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{{cdf, tl}}, tiles, dc)
	cdf.Draw(canvases[0][0])
	tl.Draw(canvases[0][1])
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

func title(r *Result, what string) string {
	return fmt.Sprintf("%s: %s (%d nodes, seed %d)", r.Scenario, what, r.Nodes, r.Seed)
}

func addLine(p *plot.Plot, pts plotter.XYs, name string, c color.Color) error {
	if len(pts) == 0 {
		return nil
	}
	l, err := plotter.NewLine(pts)
	if err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	l.Color = c
	l.Width = vg.Points(1.5)
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

// cdfPoints turns sorted samples into a step CDF (at most ~2000 points).
func cdfPoints(sorted []float64) plotter.XYs {
	n := len(sorted)
	if n == 0 {
		return nil
	}
	step := max(1, n/2000)
	pts := make(plotter.XYs, 0, n/step+2)
	for i := 0; i < n; i += step {
		pts = append(pts, plotter.XY{X: sorted[i], Y: float64(i+1) / float64(n)})
	}
	pts = append(pts, plotter.XY{X: sorted[n-1], Y: 1})
	return pts
}

// timelinePoints is the cumulative share of expected deliveries over time.
func timelinePoints(s Series) plotter.XYs {
	if len(s.Times) == 0 || s.Expected == 0 {
		return nil
	}
	step := max(1, len(s.Times)/2000)
	pts := plotter.XYs{{X: 0, Y: 0}}
	for i := 0; i < len(s.Times); i += step {
		pts = append(pts, plotter.XY{X: s.Times[i], Y: float64(i+1) / float64(s.Expected)})
	}
	pts = append(pts, plotter.XY{X: s.Times[len(s.Times)-1], Y: float64(len(s.Times)) / float64(s.Expected)})
	return pts
}

func plotCDF(r *Result) (*plot.Plot, error) {
	return twoLines(r, "latency CDF", "latency (ms)", "share of deliveries",
		cdfPoints(r.Ours.Latencies), cdfPoints(r.Raw.Latencies))
}

func plotTimeline(r *Result) (*plot.Plot, error) {
	return twoLines(r, "delivery over time", "time since publishing began (s)", "share of expected deliveries",
		timelinePoints(r.Ours), timelinePoints(r.Raw))
}

func twoLines(r *Result, what, x, y string, ours, raw plotter.XYs) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title(r, what)
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Y.Min, p.Y.Max = 0, 1.02
	p.Legend.Top = false
	p.Legend.Left = false
	p.Add(plotter.NewGrid())
	if err := addLine(p, ours, "madang", oursColor); err != nil {
		return nil, err
	}
	if err := addLine(p, raw, "raw", rawColor); err != nil {
		return nil, err
	}
	return p, nil
}
