// Package geo encodes locations as geohashes (the base-32 interleaved latitude/longitude grid used by
// Elasticsearch, Redis and others), finds a cell's neighbours and measures great-circle distances. Channels use
// it to announce a shop under a coarse cell and to search the cells around a user.
package geo

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// MaxPrecision is the longest geohash accepted (12 characters ≈ 3.7 cm × 1.9 cm).
const MaxPrecision = 12

const alphabet = "0123456789bcdefghjkmnpqrstuvwxyz"

var decodeMap = func() [256]int8 {
	var m [256]int8
	for i := range m {
		m[i] = -1
	}
	for i := range len(alphabet) {
		m[alphabet[i]] = int8(i)
		m[strings.ToUpper(alphabet[i : i+1])[0]] = int8(i)
	}
	return m
}()

// ErrInvalid is returned for strings that are not geohashes.
var ErrInvalid = errors.New("geo: invalid geohash")

// Box is the cell a geohash names.
type Box struct {
	MinLat, MaxLat, MinLon, MaxLon float64
}

// Center is the middle of the cell.
func (b Box) Center() (lat, lon float64) {
	return (b.MinLat + b.MaxLat) / 2, (b.MinLon + b.MaxLon) / 2
}

// Encode returns the geohash of (lat, lon) with precision characters (1…MaxPrecision). Latitude is clamped to
// [-90, 90] and longitude wrapped into [-180, 180).
func Encode(lat, lon float64, precision int) string {
	precision = max(1, min(precision, MaxPrecision))
	lat = math.Max(-90, math.Min(90, lat))
	lon = wrapLon(lon)
	latLo, latHi := -90.0, 90.0
	lonLo, lonHi := -180.0, 180.0
	var sb strings.Builder
	sb.Grow(precision)
	even := true
	bits, ch := 0, 0
	for sb.Len() < precision {
		if even {
			mid := (lonLo + lonHi) / 2
			if lon >= mid {
				ch = ch<<1 | 1
				lonLo = mid
			} else {
				ch <<= 1
				lonHi = mid
			}
		} else {
			mid := (latLo + latHi) / 2
			if lat >= mid {
				ch = ch<<1 | 1
				latLo = mid
			} else {
				ch <<= 1
				latHi = mid
			}
		}
		even = !even
		if bits++; bits == 5 {
			sb.WriteByte(alphabet[ch])
			bits, ch = 0, 0
		}
	}
	return sb.String()
}

// Normalize lower-cases h and checks that it is a geohash of 1…MaxPrecision characters.
func Normalize(h string) (string, error) {
	if len(h) == 0 || len(h) > MaxPrecision {
		return "", fmt.Errorf("%w: %q must have 1 to %d characters", ErrInvalid, h, MaxPrecision)
	}
	for i := range len(h) {
		if decodeMap[h[i]] < 0 {
			return "", fmt.Errorf("%w: %q has the invalid character %q", ErrInvalid, h, h[i])
		}
	}
	return strings.ToLower(h), nil
}

// Decode returns the cell of a geohash.
func Decode(h string) (Box, error) {
	h, err := Normalize(h)
	if err != nil {
		return Box{}, err
	}
	b := Box{MinLat: -90, MaxLat: 90, MinLon: -180, MaxLon: 180}
	even := true
	for i := range len(h) {
		v := decodeMap[h[i]]
		for bit := 4; bit >= 0; bit-- {
			on := v>>bit&1 == 1
			if even {
				mid := (b.MinLon + b.MaxLon) / 2
				if on {
					b.MinLon = mid
				} else {
					b.MaxLon = mid
				}
			} else {
				mid := (b.MinLat + b.MaxLat) / 2
				if on {
					b.MinLat = mid
				} else {
					b.MaxLat = mid
				}
			}
			even = !even
		}
	}
	return b, nil
}

// Neighbours returns the cells of the same precision around h, clockwise from north (N, NE, E, SE, S, SW, W,
// NW). Longitude wraps around the antimeridian; cells beyond a pole do not exist and are left out, so a cell
// touching a pole has fewer than eight neighbours.
func Neighbours(h string) ([]string, error) {
	b, err := Decode(h)
	if err != nil {
		return nil, err
	}
	lat, lon := b.Center()
	dLat, dLon := b.MaxLat-b.MinLat, b.MaxLon-b.MinLon
	steps := [8][2]float64{{1, 0}, {1, 1}, {0, 1}, {-1, 1}, {-1, 0}, {-1, -1}, {0, -1}, {1, -1}}
	out := make([]string, 0, 8)
	seen := map[string]bool{strings.ToLower(h): true}
	for _, s := range steps {
		nlat := lat + s[0]*dLat
		if nlat > 90 || nlat < -90 {
			continue
		}
		n := Encode(nlat, lon+s[1]*dLon, len(h))
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// earthRadius is the mean Earth radius in metres (IUGG).
const earthRadius = 6371008.8

// Distance is the great-circle (haversine) distance between two points, in metres.
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	rad := math.Pi / 180
	dLat := (lat2 - lat1) * rad
	dLon := (lon2 - lon1) * rad
	a := math.Sin(dLat/2)*math.Sin(dLat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dLon/2)*math.Sin(dLon/2)
	return 2 * earthRadius * math.Asin(math.Min(1, math.Sqrt(a)))
}

// CellDistance is the distance between the centres of two geohash cells, in metres.
func CellDistance(a, b string) (float64, error) {
	ba, err := Decode(a)
	if err != nil {
		return 0, err
	}
	bb, err := Decode(b)
	if err != nil {
		return 0, err
	}
	lat1, lon1 := ba.Center()
	lat2, lon2 := bb.Center()
	return Distance(lat1, lon1, lat2, lon2), nil
}

func wrapLon(lon float64) float64 {
	if lon >= -180 && lon < 180 {
		return lon
	}
	lon = math.Mod(lon+180, 360)
	if lon < 0 {
		lon += 360
	}
	return lon - 180
}
