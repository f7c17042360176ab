package sim

import (
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Collector records, for messages identified by a string key, when and by whom they were sent and when
// each receiver got them, and turns that into latency percentiles, delivery ratios and a delivery timeline.
// A copy may be reported before its send is (the sender learns the key only when its send call returns);
// it is kept until the send is recorded.
type Collector struct {
	mu      sync.Mutex
	start   time.Time
	sent    map[string]sentMsg
	got     map[string]map[int]bool
	early   map[string][]arrival
	lat     []float64 // ms, one per live first delivery at a receiver
	last    map[string]float64
	at      []float64 // seconds since start, one per live first delivery
	late    int       // first deliveries through history repair, or after Freeze
	frozen  bool
	unknown int
}

type sentMsg struct {
	at   time.Time
	from int
}

type arrival struct {
	receiver int
	at       time.Time
	live     bool
}

// NewCollector starts a collector; times in the timeline are relative to start.
func NewCollector(start time.Time) *Collector {
	return &Collector{start: start, sent: map[string]sentMsg{}, got: map[string]map[int]bool{},
		early: map[string][]arrival{}, last: map[string]float64{}}
}

// Sent records that node from sent key at t.
func (c *Collector) Sent(key string, from int, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent[key] = sentMsg{at: t, from: from}
	if c.got[key] == nil {
		c.got[key] = map[int]bool{}
	}
	for _, a := range c.early[key] {
		c.gotLocked(key, a)
	}
	delete(c.early, key)
}

// Got records that receiver got key at t, live (through the topic) or not (history repair). The sender's
// own copy and repeated copies are ignored. Live copies after Freeze count as repaired.
func (c *Collector) Got(key string, receiver int, t time.Time, live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.sent[key]; !ok {
		if len(c.early) > 1<<20 {
			c.unknown++
			return
		}
		c.early[key] = append(c.early[key], arrival{receiver: receiver, at: t, live: live})
		return
	}
	c.gotLocked(key, arrival{receiver: receiver, at: t, live: live})
}

func (c *Collector) gotLocked(key string, a arrival) {
	s := c.sent[key]
	g := c.got[key]
	if a.receiver == s.from || g[a.receiver] {
		return
	}
	g[a.receiver] = true
	if c.frozen || !a.live {
		c.late++
		return
	}
	ms := float64(a.at.Sub(s.at)) / float64(time.Millisecond)
	c.lat = append(c.lat, ms)
	if ms > c.last[key] {
		c.last[key] = ms
	}
	c.at = append(c.at, a.at.Sub(c.start).Seconds())
}

// Unknown is the number of copies of messages never recorded as sent (the sim's own bookkeeping failed
// if this is not 0 once every send returned).
func (c *Collector) Unknown() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.unknown
	for _, as := range c.early {
		n += len(as)
	}
	return n
}

// Count is the number of first deliveries so far (live and late).
func (c *Collector) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lat) + c.late
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

// Late is the number of deliveries through history repair or after Freeze.
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

// Usage is the process's resource use over a phase: CPU time (user+system), wall time, and what the
// garbage collector did meanwhile (all nodes share one heap, so one collection marks every node at once).
type Usage struct {
	CPU      time.Duration
	Wall     time.Duration
	Alloc    uint64        // bytes allocated on the heap
	GCCycles uint64        // collections completed
	GCCPU    time.Duration // CPU spent by the collector (background marking, assists, pauses; runtime estimate)
	AllCPU   time.Duration // all CPU by the same estimate, to compare GCCPU with
}

type usageMark struct {
	cpu                          time.Duration
	wall                         time.Time
	alloc, cycles, gcCPU, allCPU uint64 // the gcMetrics samples, in order (CPU in ns)
}

// gcMetrics are the runtime/metrics samples Usage is built from.
var gcMetrics = []string{"/gc/heap/allocs:bytes", "/gc/cycles/total:gc-cycles", "/cpu/classes/gc/total:cpu-seconds",
	"/cpu/classes/total:cpu-seconds"}

func markUsage() usageMark {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	m := usageMark{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), wall: time.Now()}
	samples := make([]metrics.Sample, len(gcMetrics))
	for i, name := range gcMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	var v [4]uint64
	for i, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			v[i] = s.Value.Uint64()
		case metrics.KindFloat64:
			v[i] = uint64(s.Value.Float64() * 1e9)
		}
	}
	m.alloc, m.cycles, m.gcCPU, m.allCPU = v[0], v[1], v[2], v[3]
	return m
}

func (m usageMark) since() Usage {
	now := markUsage()
	return Usage{CPU: now.cpu - m.cpu, Wall: now.wall.Sub(m.wall), Alloc: now.alloc - m.alloc,
		GCCycles: now.cycles - m.cycles, GCCPU: time.Duration(now.gcCPU - m.gcCPU), AllCPU: time.Duration(now.allCPU - m.allCPU)}
}

// gcShare is the collector's share of the CPU over the phase. The runtime updates its CPU estimates when a
// collection ends, so a phase without one has none to compare with (and no collector work): 0.
func (u Usage) gcShare() float64 {
	if u.GCCycles == 0 || u.AllCPU <= 0 {
		return 0
	}
	return float64(u.GCCPU) / float64(u.AllCPU)
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
