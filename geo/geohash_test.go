package geo

import (
	"math"
	"slices"
	"testing"
)

func TestEncodeKnownVectors(t *testing.T) {
	for _, tc := range []struct {
		lat, lon float64
		prec     int
		want     string
	}{
		{57.64911, 10.40744, 11, "u4pruydqqvj"}, // Wikipedia's example
		{42.6, -5.6, 5, "ezs42"},
		{0, 0, 1, "s"},
		{-90, -180, 3, "000"},
		{90, 179.9999999, 3, "zzz"},
		{37.5665, 126.9780, 7, "wydm9qy"}, // Seoul City Hall
	} {
		if got := Encode(tc.lat, tc.lon, tc.prec); got != tc.want {
			t.Errorf("Encode(%v, %v, %d) = %q, want %q", tc.lat, tc.lon, tc.prec, got, tc.want)
		}
	}
}

func TestDecodeContainsPointAndRoundTrips(t *testing.T) {
	for _, p := range [][2]float64{{57.64911, 10.40744}, {-33.8688, 151.2093}, {37.5665, 126.978}, {0.0001, -0.0001}, {-89.9, 179.9}} {
		for prec := 1; prec <= MaxPrecision; prec++ {
			h := Encode(p[0], p[1], prec)
			b, err := Decode(h)
			if err != nil {
				t.Fatal(err)
			}
			if p[0] < b.MinLat || p[0] > b.MaxLat || p[1] < b.MinLon || p[1] > b.MaxLon {
				t.Fatalf("%q box %+v does not contain %v", h, b, p)
			}
			lat, lon := b.Center()
			if again := Encode(lat, lon, prec); again != h {
				t.Fatalf("centre of %q encodes to %q", h, again)
			}
		}
	}
	if _, err := Decode("WYDM9QY"); err != nil {
		t.Fatalf("upper case must decode: %v", err)
	}
}

func TestNormalizeRejects(t *testing.T) {
	for _, bad := range []string{"", "abc", "wydm9qyaaaaaa", "wy dm", "ilo", "é"} {
		if _, err := Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) accepted", bad)
		}
	}
	if got, err := Normalize("WYDM9"); err != nil || got != "wydm9" {
		t.Fatalf("Normalize(WYDM9) = %q, %v", got, err)
	}
}

// Each neighbour is a cell of the same size that touches h (shares an edge or a corner), and the eight are
// distinct.
func TestNeighboursTouch(t *testing.T) {
	for _, h := range []string{"wydm9", "u4pruydq", "ezs42", "s0000", "dqcjq"} {
		ns, err := Neighbours(h)
		if err != nil {
			t.Fatal(err)
		}
		if len(ns) != 8 {
			t.Fatalf("%q: %d neighbours %v", h, len(ns), ns)
		}
		b, _ := Decode(h)
		for _, n := range ns {
			nb, _ := Decode(n)
			if len(n) != len(h) || n == h {
				t.Fatalf("%q: bad neighbour %q", h, n)
			}
			eps := 1e-9
			touchLat := math.Abs(nb.MinLat-b.MaxLat) < eps || math.Abs(nb.MaxLat-b.MinLat) < eps || math.Abs(nb.MinLat-b.MinLat) < eps
			touchLon := math.Abs(nb.MinLon-b.MaxLon) < eps || math.Abs(nb.MaxLon-b.MinLon) < eps || math.Abs(nb.MinLon-b.MinLon) < eps
			if !touchLat || !touchLon {
				t.Fatalf("%q: neighbour %q (%+v) does not touch %+v", h, n, nb, b)
			}
		}
		slices.Sort(ns)
		if len(slices.Compact(ns)) != 8 {
			t.Fatalf("%q: duplicate neighbours", h)
		}
	}
	// Known answer: the neighbours of dqcjq.
	ns, _ := Neighbours("dqcjq")
	want := []string{"dqcjw", "dqcjx", "dqcjr", "dqcjp", "dqcjn", "dqcjj", "dqcjm", "dqcjt"}
	if !slices.Equal(ns, want) {
		t.Fatalf("Neighbours(dqcjq) = %v, want %v", ns, want)
	}
}

func TestNeighboursWrapAndPoles(t *testing.T) {
	west := Encode(10, -179.99, 4)
	ns, _ := Neighbours(west)
	wrapped := false
	for _, n := range ns {
		b, _ := Decode(n)
		if b.MinLon > 170 {
			wrapped = true
		}
	}
	if !wrapped {
		t.Fatalf("neighbours of %q %v do not wrap to the eastern edge", west, ns)
	}
	north := Encode(89.99, 20, 3)
	ns, _ = Neighbours(north)
	if len(ns) != 5 {
		t.Fatalf("a polar cell has 5 neighbours, got %v", ns)
	}
}

func TestDistance(t *testing.T) {
	// Seoul City Hall to Busan City Hall: about 325 km.
	d := Distance(37.5665, 126.9780, 35.1798, 129.0750)
	if d < 320e3 || d > 330e3 {
		t.Fatalf("Seoul–Busan = %.0f m", d)
	}
	if Distance(1, 2, 1, 2) != 0 {
		t.Fatal("distance to self must be 0")
	}
	// One degree of latitude ≈ 111.2 km.
	if d := Distance(0, 0, 1, 0); math.Abs(d-111195) > 50 {
		t.Fatalf("1° latitude = %.0f m", d)
	}
	if _, err := CellDistance("wydm9", "nope!"); err == nil {
		t.Fatal("CellDistance accepted a bad geohash")
	}
	if d, _ := CellDistance("wydm9", "wydm9"); d != 0 {
		t.Fatal("same cell must be 0 apart")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{"wydm9qy", "", "zzzzzzzzzzzz", "0", "ilo", "WYDM"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := Decode(s)
		if err != nil {
			return
		}
		if b.MinLat > b.MaxLat || b.MinLon > b.MaxLon || b.MinLat < -90 || b.MaxLat > 90 || b.MinLon < -180 || b.MaxLon > 180 {
			t.Fatalf("bad box %+v for %q", b, s)
		}
		n, _ := Normalize(s)
		lat, lon := b.Center()
		if Encode(lat, lon, len(s)) != n {
			t.Fatalf("round trip of %q", s)
		}
		if _, err := Neighbours(s); err != nil {
			t.Fatal(err)
		}
	})
}
