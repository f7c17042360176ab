package sim

import (
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Collector records, for messages identified by a string key, when they were sent and when each receiver
// got them, and turns that into latency percentiles, a delivery ratio and a delivery timeline.
type Collector struct {
	mu      sync.Mutex
	start   time.Time
	sent    map[string]time.Time
	got     map[string]map[int]bool
	lat     []float64 // ms, one per first delivery at a receiver
	last    map[string]float64
	at      []float64 // seconds since start, one per first delivery
	late    int       // deliveries recorded after Freeze (history repair)
	frozen  bool
	unknown int
}

// NewCollector starts a collector; times in the timeline are relative to start.
func NewCollector(start time.Time) *Collector {
	return &Collector{start: start, sent: map[string]time.Time{}, got: map[string]map[int]bool{}, last: map[string]float64{}}
}

// Sent records a message sent at t.
func (c *Collector) Sent(key string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[key] = t
	if c.got[key] == nil {
		c.got[key] = map[int]bool{}
	}
}

// Got records that receiver got key at t. It reports whether this was the receiver's first copy of a known
// message. Deliveries after Freeze count towards the repaired delivery but not towards latency.
func (c *Collector) Got(key string, receiver int, t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sent[key]
	if !ok {
		c.unknown++
		return false
	}
	g := c.got[key]
	if g[receiver] {
		return false
	}
	g[receiver] = true
	if c.frozen {
		c.late++
		return true
	}
	ms := float64(t.Sub(s)) / float64(time.Millisecond)
	c.lat = append(c.lat, ms)
	if ms > c.last[key] {
		c.last[key] = ms
	}
	c.at = append(c.at, t.Sub(c.start).Seconds())
	return true
}

// Count is the number of first deliveries so far (live and late).
func (c *Collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lat) + c.late
}

// Has reports whether receiver has key.
func (c *Collector) Has(key string, receiver int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[key][receiver]
}

// Freeze ends the live phase: later deliveries are repairs.
func (c *Collector) Freeze() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.frozen = true
}

// Live is the number of deliveries before Freeze.
func (c *Collector) Live() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lat)
}

// Late is the number of deliveries after Freeze.
func (c *Collector) Late() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.late
}

// Messages is the number of messages sent.
func (c *Collector) Messages() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}

// Latencies returns a sorted copy of the live latencies in ms.
func (c *Collector) Latencies() []float64 { return c.sortedCopy(func() []float64 { return c.lat }) }

// Times returns a sorted copy of the live delivery times (seconds since start).
func (c *Collector) Times() []float64 { return c.sortedCopy(func() []float64 { return c.at }) }

func (c *Collector) sortedCopy(get func() []float64) []float64 {
	c.mu.Lock()
	out := slices.Clone(get())
	c.mu.Unlock()
	slices.Sort(out)
	return out
}

// LastNode returns, sorted, the latency of every message to its slowest live receiver.
func (c *Collector) LastNode() []float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]float64, 0, len(c.last))
	for _, v := range c.last {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// Percentile of sorted values (nearest rank); NaN when empty.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Usage is the process's resource use over a phase: CPU time (user+system) and wall time.
type Usage struct {
	CPU  time.Duration
	Wall time.Duration
}

type usageMark struct {
	cpu  time.Duration
	wall time.Time
}

func markUsage() usageMark {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return usageMark{cpu: cpu, wall: time.Now()}
}

func (m usageMark) since() Usage {
	now := markUsage()
	return Usage{CPU: now.cpu - m.cpu, Wall: now.wall.Sub(m.wall)}
}

// heapInUse forces a collection and returns the live heap in bytes.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// rssBytes is the process's resident set size (0 where /proc is missing).
func rssBytes() uint64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
