package node

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	record "github.com/libp2p/go-libp2p-record"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/madang-p2p/madang/api"
	"github.com/madang-p2p/madang/protocols/mailbox"
	"github.com/madang-p2p/madang/protocols/relayinfo"
)

//go:embed relay.openapi.yaml
var relaySpec []byte

//go:embed relay.html
var relayPage string

var relayPageTmpl = template.Must(template.New("relay").Funcs(template.FuncMap{
	"bytes": humanBytes,
	"age":   func(s float64) string { return (time.Duration(s) * time.Second).String() },
	"secs":  func(s int64) string { return (time.Duration(s) * time.Second).String() },
}).Parse(relayPage))

// Timing of the relay plumbing.
const (
	relayKeepEvery     = 30 * time.Second
	reservationRefresh = 5 * time.Minute // renew a reservation this long before it expires
	drainEvery         = 2 * time.Minute
	recordEvery        = 12 * time.Hour
	recordRetryMax     = 30 * time.Minute
)

// The relay plumbing: on every node a mailbox client (cards, deposits, draining my inbox relays), relay
// reservations and protected connections to the configured relays and my signed inbox record in the DHT; on a
// relay also the circuit relay v2 hop service, the mailbox service and the relay info document. It provides
// "mailbox" (the client) and "inbox.relays" (func() []string) and looks up "mailbox.sink" when draining.
func init() {
	RegisterFeature(Feature{
		Name:  "relay",
		Order: 10,
		DHTValidators: func() map[string]record.Validator {
			return map[string]record.Validator{mailbox.InboxNamespace: mailbox.InboxValidator{}}
		},
		Start: startRelay,
	})
}

type relayFeature struct {
	ctx    context.Context // the node's lifetime (storage scans of metrics)
	n      *Node
	client *mailbox.Client
	svc    *mailbox.Service // relay role only
	hop    *hopTracer       // relay role only
	kick   chan struct{}    // wakes the drain loop

	deposits, deleted, expired atomic.Uint64
	drained                    atomic.Uint64 // items my drains delivered
	drainSeq                   atomic.Uint64

	mu       sync.Mutex
	relays   map[peer.ID]*inboxRelay
	noSink   bool
	recordOK time.Time
}

// inboxRelay is the state of one configured relay on this node.
type inboxRelay struct {
	info      peer.AddrInfo
	addr      string
	expires   time.Time
	lastError string
}

func startRelay(ctx context.Context, n *Node) error {
	f := &relayFeature{ctx: ctx, n: n, kick: make(chan struct{}, 1), relays: map[peer.ID]*inboxRelay{}}
	rc := n.Config.Relay
	if n.Config.IsRelay() {
		st, err := mailbox.OpenStore(ctx, n.Store, n.Store.Namespace("mailbox"), mailbox.Limits{
			QuotaBytes: rc.MailboxQuotaBytes, QuotaItems: rc.MailboxQuotaItems, TTL: rc.MailboxTTL,
			MaxItemBytes: rc.MaxItemBytes, MaxTotalBytes: rc.MaxTotalBytes,
		}, nil)
		if err != nil {
			return err
		}
		f.svc, err = mailbox.NewService(ctx, n.Host, st, mailbox.ServiceOptions{
			DepositsPerMinute: rc.DepositsPerMinute, Log: n.Log,
			OnDeposit: func(int) { f.deposits.Add(1) },
			OnDelete: func(acked, expired int) {
				f.deleted.Add(uint64(acked))
				f.expired.Add(uint64(expired))
			},
		})
		if err != nil {
			return err
		}
		n.OnClose(func() error { f.svc.Close(); st.Close(); return nil })
		n.Go("mailbox-sweeper", f.svc.Run)

		res := relayv2.DefaultResources()
		res.MaxReservations = rc.MaxReservations
		res.MaxCircuits = rc.MaxCircuits
		res.Limit = &relayv2.RelayLimit{Duration: rc.CircuitDuration, Data: rc.CircuitBytes}
		f.hop = &hopTracer{}
		hop, err := relayv2.New(n.Host, relayv2.WithResources(res), relayv2.WithMetricsTracer(f.hop))
		if err != nil {
			return fmt.Errorf("start circuit relay: %w", err)
		}
		n.OnClose(hop.Close)
	}

	var err error
	f.client, err = mailbox.NewClient(mailbox.ClientOptions{
		Host: n.Host, Identity: n.Identity, Store: n.Store, NS: n.Store.Namespace("inbox"), Routing: n.DHT,
		Relays: f.inboxRelays, Local: f.svc, Log: n.Log, Lifetime: ctx,
	})
	if err != nil {
		return err
	}
	n.OnClose(func() error { f.client.Close(); return nil })
	for _, a := range n.Config.Relays {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil || ai.ID == n.Host.ID() {
			continue
		}
		if _, dup := f.relays[ai.ID]; !dup {
			f.relays[ai.ID] = &inboxRelay{info: *ai, addr: a}
		}
	}
	n.Provide("mailbox", f.client)
	n.Provide("inbox.relays", f.client.InboxRelays)
	if f.svc != nil {
		n.Provide("relay.mailbox", f.svc) // the relay-side service (operator tools, fault-injection tests)
	}

	if err := n.API.AddSpec(relaySpec); err != nil {
		return err
	}
	n.API.Handle("GET /api/v1/relay/status", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, f.status(r.Context()))
	})
	n.API.Handle("GET /api/v1/relay/info", f.serveInfo)
	n.API.Handle("GET /relay", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		if err := relayPageTmpl.Execute(&buf, f.status(r.Context())); err != nil {
			api.WriteError(w, http.StatusInternalServerError, "internal", "status page could not be rendered")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		_, _ = w.Write(buf.Bytes())
	})
	n.API.Handle("POST /api/v1/inbox/drain", func(w http.ResponseWriter, r *http.Request) {
		res, err := f.drain(r.Context())
		if errors.Is(err, errNoSink) {
			api.WriteError(w, http.StatusConflict, "no_sink", "nothing on this node takes mailbox items yet (the friends feature is not running)")
			return
		}
		if err != nil {
			api.WriteError(w, http.StatusBadGateway, "drain_failed", err.Error())
			return
		}
		api.WriteJSON(w, http.StatusOK, res)
	})
	f.registerMetrics()

	if f.svc != nil {
		stop := relayinfo.Serve(n.Host, f.info)
		n.OnClose(func() error { stop(); return nil })
	}
	n.Go("relay-keeper", f.keepRelays)
	n.Go("inbox-drain", f.drainLoop)
	n.Go("inbox-record", f.recordLoop)
	return nil
}

// inboxRelays are my inbox relays: the configured relays, or this node itself when it is a relay and none
// are configured.
func (f *relayFeature) inboxRelays() []string {
	if len(f.n.Config.Relays) > 0 || f.svc == nil {
		return f.n.Config.Relays
	}
	for _, a := range f.n.Host.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			continue
		}
		return []string{a.Encapsulate(ma.StringCast("/p2p/" + f.n.Host.ID().String())).String()}
	}
	return nil
}

// keepRelays keeps every configured relay connected, protected from trimming and (on nodes that are not
// relays themselves) holding a circuit reservation, renewed before it expires. A relay connection coming up
// wakes the drain loop.
func (f *relayFeature) keepRelays(ctx context.Context) error {
	if len(f.relays) == 0 {
		return nil
	}
	sub, err := f.n.Host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return fmt.Errorf("relay keeper: %w", err)
	}
	defer func() { _ = sub.Close() }()
	for id := range f.relays {
		f.n.Host.ConnManager().Protect(id, "relay")
	}
	t := time.NewTicker(relayKeepEvery)
	defer t.Stop()
	for {
		f.tendRelays(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case e, ok := <-sub.Out():
			if !ok {
				return nil
			}
			ev := e.(event.EvtPeerConnectednessChanged)
			if _, mine := f.relays[ev.Peer]; !mine {
				continue
			}
			if ev.Connectedness == network.Connected {
				f.wakeDrain()
			}
		}
	}
}

// tendRelays connects and reserves where needed.
func (f *relayFeature) tendRelays(ctx context.Context) {
	for id, r := range f.relays {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := error(nil)
		if f.n.Host.Network().Connectedness(id) != network.Connected {
			if err = f.n.Host.Connect(cctx, r.info); err == nil {
				f.wakeDrain()
			}
		}
		f.mu.Lock()
		renew := time.Until(r.expires) < reservationRefresh
		f.mu.Unlock()
		if err == nil && renew && !f.n.Config.IsRelay() {
			var rsv *client.Reservation
			if rsv, err = client.Reserve(cctx, f.n.Host, r.info); err == nil {
				f.mu.Lock()
				r.expires = rsv.Expiration
				f.mu.Unlock()
			}
		}
		cancel()
		f.mu.Lock()
		r.lastError = ""
		if err != nil && ctx.Err() == nil {
			r.lastError = err.Error()
			f.n.Log.Debug("Relay not kept", "relay", id, "err", err)
		}
		f.mu.Unlock()
	}
}

func (f *relayFeature) wakeDrain() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

var errNoSink = errors.New("no mailbox sink")

// drainLoop drains my inboxes at start, every few minutes and whenever a relay connection comes up.
func (f *relayFeature) drainLoop(ctx context.Context) error {
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		if len(f.client.InboxRelays()) > 0 {
			if _, err := f.drain(ctx); err != nil && !errors.Is(err, errNoSink) && ctx.Err() == nil {
				f.n.Log.Debug("Inbox drain incomplete", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-f.kick:
		}
	}
}

// drain runs one drain into the "mailbox.sink" provided by the friends feature, publishing
// operation.progress events while it catches up.
func (f *relayFeature) drain(ctx context.Context) (mailbox.DrainResult, error) {
	v, ok := f.n.Lookup("mailbox.sink")
	sink, isSink := v.(func(context.Context, []byte) error)
	f.mu.Lock()
	f.noSink = !ok || !isSink
	f.mu.Unlock()
	if !ok || !isSink {
		return mailbox.DrainResult{}, errNoSink
	}
	op := fmt.Sprintf("inbox-drain-%d", f.drainSeq.Add(1))
	last := -1
	res, err := f.client.Drain(ctx, sink, func(done, total int) {
		if total == 0 {
			return
		}
		step := max(1, total/50)
		if done == 0 || done == total || done-last >= step {
			last = done
			f.n.Events.Publish("operation.progress", map[string]any{
				"id": op, "kind": "inbox.drain", "done": done, "total": total, "unit": "items",
			})
		}
	})
	f.drained.Add(uint64(res.Delivered))
	if res.Found > 0 {
		f.n.Events.Publish("inbox.drained", res)
	}
	return res, err
}

// recordLoop publishes my inbox record in the DHT at start (retrying with backoff) and every 12 hours.
func (f *relayFeature) recordLoop(ctx context.Context) error {
	wait := 2 * time.Second // let the relay connection and the routing table come up first
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		if len(f.client.InboxRelays()) == 0 {
			wait = recordEvery
			continue
		}
		if err := f.client.PublishInboxRecord(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			f.n.Log.Debug("Inbox record not published", "err", err)
			wait = min(max(wait*2, 5*time.Second), recordRetryMax)
			continue
		}
		f.mu.Lock()
		f.recordOK = time.Now()
		f.mu.Unlock()
		wait = recordEvery
	}
}

// info is this relay's info document.
func (f *relayFeature) info() relayinfo.Info {
	rc := f.n.Config.Relay
	services := []string{"circuit", "mailbox", "dht"}
	if len(rc.KeepRooms) > 0 {
		services = append(services, "rooms")
	}
	if len(rc.PinFeeds) > 0 {
		services = append(services, "feeds")
	}
	lim := f.svc.Store().Limits()
	return relayinfo.Info{
		PeerID: f.n.Host.ID().String(), Name: f.n.Config.Name, Operator: rc.Operator, Contact: rc.Contact,
		Services: services, Issued: time.Now().UTC().Truncate(time.Second), Software: "madang/" + Version(),
		Limits: relayinfo.Limits{
			MailboxQuotaBytes: lim.QuotaBytes, MailboxQuotaItems: lim.QuotaItems,
			MailboxTTLSeconds: int64(lim.TTL / time.Second), DepositsPerMinute: rc.DepositsPerMinute,
			MaxItemBytes: int64(lim.MaxItemBytes), MaxReservations: rc.MaxReservations, MaxCircuits: rc.MaxCircuits,
			CircuitSeconds: int64(rc.CircuitDuration / time.Second), CircuitBytes: rc.CircuitBytes,
		},
	}
}

// serveInfo answers GET /api/v1/relay/info: this relay's document, or with ?addr= the verified document
// of another relay, fetched over /madang/relay-info/1.0.0.
func (f *relayFeature) serveInfo(w http.ResponseWriter, r *http.Request) {
	addr := r.URL.Query().Get("addr")
	if addr == "" {
		if f.svc == nil {
			api.WriteError(w, http.StatusNotFound, "not_a_relay", "this node is not a relay; pass ?addr=<relay multiaddr>")
			return
		}
		api.WriteJSON(w, http.StatusOK, f.info())
		return
	}
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, "bad_addr", "addr must be a multiaddr ending in /p2p/<peer id>")
		return
	}
	info, err := relayinfo.Fetch(r.Context(), f.n.Host, *ai)
	if err != nil {
		api.WriteError(w, http.StatusBadGateway, "fetch_failed", err.Error())
		return
	}
	api.WriteJSON(w, http.StatusOK, info)
}

// RelayStatus is GET /api/v1/relay/status.
type RelayStatus struct {
	Role  string              `json:"role"`
	Relay *RelayServiceStatus `json:"relay,omitempty"`
	Inbox InboxStatus         `json:"inbox"`
}

// RelayServiceStatus describes what a relay holds and serves.
type RelayServiceStatus struct {
	Name                 string            `json:"name"`
	Operator             string            `json:"operator"`
	Contact              string            `json:"contact"`
	Addrs                []string          `json:"addrs"`
	Mailboxes            int               `json:"mailboxes"`
	Items                int64             `json:"items"`
	BytesStored          int64             `json:"bytes_stored"`
	OldestItemAgeSeconds float64           `json:"oldest_item_age_seconds"`
	Deposits             uint64            `json:"deposits"`
	Delivered            uint64            `json:"delivered"`
	Expired              uint64            `json:"expired"`
	Reservations         int64             `json:"reservations"`
	Circuits             int64             `json:"circuits"`
	CircuitBytes         uint64            `json:"circuit_bytes"`
	Refusals             map[string]uint64 `json:"refusals"`
	RoomsKept            int               `json:"rooms_kept"`
	FeedsPinned          int               `json:"feeds_pinned"`
	Limits               relayinfo.Limits  `json:"limits"`
}

// InboxStatus describes this node's own inbox relays.
type InboxStatus struct {
	Relays          []InboxRelayStatus   `json:"relays"`
	SinkReady       bool                 `json:"sink_ready"`
	RecordPublished *time.Time           `json:"record_published,omitempty"`
	LastDrain       *mailbox.DrainResult `json:"last_drain,omitempty"`
}

// InboxRelayStatus is one of my inbox relays.
type InboxRelayStatus struct {
	Addr               string     `json:"addr"`
	PeerID             string     `json:"peer_id"`
	Connected          bool       `json:"connected"`
	ReservationExpires *time.Time `json:"reservation_expires,omitempty"`
	LastError          string     `json:"last_error,omitempty"`
}

func (f *relayFeature) status(ctx context.Context) RelayStatus {
	n := f.n
	st := RelayStatus{Role: n.Config.Role, Inbox: InboxStatus{Relays: []InboxRelayStatus{}}}
	if f.svc != nil {
		s := f.svc.Store().Stats(ctx)
		rs := &RelayServiceStatus{
			Name: n.Config.Name, Operator: n.Config.Relay.Operator, Contact: n.Config.Relay.Contact, Addrs: []string{},
			Mailboxes: s.Mailboxes, Items: s.Items, BytesStored: s.Bytes,
			Deposits: f.deposits.Load(), Delivered: f.deleted.Load(), Expired: f.expired.Load(),
			Reservations: f.hop.reservations.Load(), Circuits: f.hop.circuits.Load(), CircuitBytes: f.hop.bytes.Load(),
			Refusals: f.refusals(), RoomsKept: countOf(n, "rooms"), FeedsPinned: countOf(n, "channels"),
			Limits: f.info().Limits,
		}
		if !s.Oldest.IsZero() {
			rs.OldestItemAgeSeconds = time.Since(s.Oldest).Seconds()
		}
		for _, a := range n.Host.Addrs() {
			rs.Addrs = append(rs.Addrs, a.Encapsulate(ma.StringCast("/p2p/"+n.Host.ID().String())).String())
		}
		st.Relay = rs
	}
	f.mu.Lock()
	st.Inbox.SinkReady = !f.noSink
	if !f.recordOK.IsZero() {
		t := f.recordOK
		st.Inbox.RecordPublished = &t
	}
	f.mu.Unlock()
	if _, ok := n.Lookup("mailbox.sink"); !ok {
		st.Inbox.SinkReady = false
	}
	if d := f.client.LastDrain(); !d.At.IsZero() {
		st.Inbox.LastDrain = &d
	}
	for _, a := range f.client.InboxRelays() {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			continue
		}
		ir := InboxRelayStatus{Addr: a, PeerID: ai.ID.String(),
			Connected: ai.ID == n.Host.ID() || n.Host.Network().Connectedness(ai.ID) == network.Connected}
		f.mu.Lock()
		if r := f.relays[ai.ID]; r != nil {
			if !r.expires.IsZero() && time.Now().Before(r.expires) {
				t := r.expires
				ir.ReservationExpires = &t
			}
			ir.LastError = r.lastError
		}
		f.mu.Unlock()
		st.Inbox.Relays = append(st.Inbox.Relays, ir)
	}
	return st
}

// refusals merges the mailbox refusals with the circuit relay's refused reservations and connections.
func (f *relayFeature) refusals() map[string]uint64 {
	out := f.svc.Refusals()
	out["reservation_refused"] = f.hop.resRefused.Load()
	out["circuit_refused"] = f.hop.connRefused.Load()
	return out
}

// countOf asks the rooms or channels service how many rooms it keeps or feeds it pins for others.
func countOf(n *Node, name string) int {
	v, ok := n.Lookup(name)
	if !ok {
		return 0
	}
	switch c := v.(type) {
	case interface{ KeptCount() int }:
		return c.KeptCount()
	case interface{ PinnedCount() int }:
		return c.PinnedCount()
	}
	return 0
}

func (f *relayFeature) registerMetrics() {
	reg := f.n.Metrics
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	reg.MustRegister(
		gauge("madang_inbox_relays_connected", "Inbox relays of this node with an open connection.", func() float64 {
			c := 0
			for id := range f.relays {
				if f.n.Host.Network().Connectedness(id) == network.Connected {
					c++
				}
			}
			return float64(c)
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "madang_inbox_drained_items_total", Help: "Items delivered from this node's inbox relays.",
		}, func() float64 { return float64(f.drained.Load()) }),
	)
	if f.svc == nil {
		return
	}
	stats := func() mailbox.Stats { return f.svc.Store().Stats(f.ctx) }
	reg.MustRegister(
		gauge("madang_relay_mailboxes", "Mailboxes holding at least one item.", func() float64 { return float64(stats().Mailboxes) }),
		gauge("madang_relay_items", "Items stored for offline recipients.", func() float64 { return float64(stats().Items) }),
		gauge("madang_relay_bytes_stored", "Sealed bytes stored for offline recipients.", func() float64 { return float64(stats().Bytes) }),
		gauge("madang_relay_oldest_item_age_seconds", "Age of the oldest stored item (0 when empty).", func() float64 {
			if o := stats().Oldest; !o.IsZero() {
				return time.Since(o).Seconds()
			}
			return 0
		}),
		gauge("madang_relay_reservations", "Active circuit relay reservations.", func() float64 { return float64(f.hop.reservations.Load()) }),
		gauge("madang_relay_circuits", "Open relayed connections.", func() float64 { return float64(f.hop.circuits.Load()) }),
		gauge("madang_relay_rooms_kept", "Rooms this relay keeps for others.", func() float64 { return float64(countOf(f.n, "rooms")) }),
		gauge("madang_relay_feeds_pinned", "Channel feeds this relay pins.", func() float64 { return float64(countOf(f.n, "channels")) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "madang_relay_circuit_bytes_total", Help: "Bytes relayed over circuits."},
			func() float64 { return float64(f.hop.bytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "madang_relay_deposits_total", Help: "Items deposited."},
			func() float64 { return float64(f.deposits.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "madang_relay_deleted_total", Help: "Items deleted after the owner's ack.",
			ConstLabels: prometheus.Labels{"cause": "acked"}}, func() float64 { return float64(f.deleted.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "madang_relay_deleted_total", Help: "Items deleted after the owner's ack.",
			ConstLabels: prometheus.Labels{"cause": "expired"}}, func() float64 { return float64(f.expired.Load()) }),
	)
	reasons := append(mailbox.RefusalReasons(), "reservation_refused", "circuit_refused")
	for _, reason := range reasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "madang_relay_refusals_total", Help: "Refused requests by reason.", ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(f.refusals()[reason]) }))
	}
}

// hopTracer counts the circuit relay's reservations and circuits (relayv2.MetricsTracer).
type hopTracer struct {
	reservations, circuits  atomic.Int64
	bytes                   atomic.Uint64
	resRefused, connRefused atomic.Uint64
}

func (t *hopTracer) RelayStatus(bool)               {}
func (t *hopTracer) ConnectionOpened()              { t.circuits.Add(1) }
func (t *hopTracer) ConnectionClosed(time.Duration) { t.circuits.Add(-1) }
func (t *hopTracer) BytesTransferred(cnt int)       { t.bytes.Add(uint64(max(cnt, 0))) }
func (t *hopTracer) ReservationClosed(cnt int)      { t.reservations.Add(-int64(cnt)) }
func (t *hopTracer) ReservationAllowed(renewal bool) {
	if !renewal {
		t.reservations.Add(1)
	}
}

func (t *hopTracer) ConnectionRequestHandled(s pbv2.Status) {
	if s != pbv2.Status_OK {
		t.connRefused.Add(1)
	}
}

func (t *hopTracer) ReservationRequestHandled(s pbv2.Status) {
	if s != pbv2.Status_OK {
		t.resRefused.Add(1)
	}
}

func humanBytes(v any) string {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case uint64:
		n = int64(min(x, 1<<62))
	case int:
		n = int64(x)
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
