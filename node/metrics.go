package node

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// processCollectors report the Go runtime and the OS process, which every node of a process shares (one in a
// daemon, hundreds in a simulation): one instance of each is registered on every node's registry.
var processCollectors = sync.OnceValue(func() []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
})

// registerMetrics adds the node-level madang_ metrics next to libp2p's own (libp2p_*), which the host
// registers on the same registry.
func (n *Node) registerMetrics() {
	n.Metrics.MustRegister(processCollectors()...)
	n.Metrics.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "madang_peers_connected", Help: "Peers with at least one open connection.",
		}, func() float64 { return float64(len(n.Host.Network().Peers())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "madang_dht_routing_table_size", Help: "Peers in the DHT routing table.",
		}, func() float64 { return float64(n.DHT.RoutingTable().Size()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "madang_uptime_seconds", Help: "Seconds since the node started.",
		}, func() float64 { return n.Uptime().Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "madang_events_last_id", Help: "ID of the newest event on the local event bus.",
		}, func() float64 { return float64(n.Events.Last()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "madang_build_info", Help: "Build information.", ConstLabels: prometheus.Labels{"version": Version()},
		}, func() float64 { return 1 }),
	)
}
