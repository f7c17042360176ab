package node

import (
	"context"
	"errors"
	"strings"

	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/identity"
	"github.com/madang-p2p/madang/protocols/contact"
	"github.com/madang-p2p/madang/protocols/dm"
)

// The friends feature: the local contact graph, invites, the contact protocol and end-to-end encrypted 1:1
// messages with an outbox that delivers directly or through the friends' mailbox relays.
func init() {
	RegisterFeature(Feature{Name: "friends", Order: 20, Start: startFriends})
}

// Names under which the friends feature provides its services.
const (
	ProvideContact = "friends.contact"
	ProvideDM      = "friends.dm"
)

// ContactService returns the node's contact service (nil without the friends feature).
func ContactService(n *Node) *contact.Service {
	v, _ := n.Lookup(ProvideContact)
	s, _ := v.(*contact.Service)
	return s
}

// DMService returns the node's direct-message service (nil without the friends feature).
func DMService(n *Node) *dm.Service {
	v, _ := n.Lookup(ProvideDM)
	s, _ := v.(*dm.Service)
	return s
}

func startFriends(ctx context.Context, n *Node) error {
	name := n.Config.Name
	if name == "" {
		if cert, err := identity.VerifyCert(n.Identity.CertBytes()); err == nil {
			name = cert.DeviceName
		}
	}
	g, err := graph.New(n.Store.Namespace("graph"), n.Store.Namespace("invites"), n.Identity, name)
	if err != nil {
		return err
	}
	var mb dm.Mailbox
	if v, ok := n.Lookup("mailbox"); ok {
		mb, _ = v.(dm.Mailbox)
	}
	fc := n.Config.Friends
	log := n.Log
	dialer := &contact.Dialer{Host: n.Host, Router: n.DHT}
	dms, err := dm.New(ctx, dm.Options{
		Host: n.Host, Dialer: dialer, Graph: g, Identity: n.Identity, Store: n.Store, NS: n.Store.Namespace("dm"),
		Events: n.Events, Log: log, Mailbox: mb, ReadReceipts: fc.ReadReceipts, RetryMin: fc.RetryMin, RetryMax: fc.RetryMax,
	})
	if err != nil {
		return err
	}
	copts := contact.Options{
		Host: n.Host, Router: n.DHT, Graph: g, Identity: n.Identity, Events: n.Events, Log: log,
		Bundle: dms.Bundle(), ViaMailbox: dms.ViaMailbox, OnFriend: dms.Kick, OnReachable: dms.Kick,
		RelayHints: func() []string { return relayHints(n) }, InviteTTL: fc.InviteExpires, RetryMin: fc.RetryMin, RetryMax: fc.RetryMax,
	}
	if mb != nil {
		copts.Mailbox = mb
	}
	cs := contact.New(ctx, copts)
	dms.SetContactHandler(cs.HandleRaw)
	// Streams from friends' devices are matched to contacts through the contact service's device index.
	dms.SetAccountOf(cs.AccountOf)
	if err := cs.RegisterAPI(n.API); err != nil {
		return err
	}
	if err := dms.RegisterAPI(n.API); err != nil {
		return err
	}
	cs.Start()
	dms.Start()
	n.OnClose(func() error { return errors.Join(cs.Close(), dms.Close()) })
	n.Go("contact", cs.Run)
	n.Go("dm", dms.Run)
	n.Provide(ProvideContact, cs)
	n.Provide(ProvideDM, dms)
	n.Provide("mailbox.sink", dms.Sink)
	return nil
}

// relayHints are the relay addresses to put in invites: the relay feature's inbox relays when it offers them,
// else the configured static relays.
func relayHints(n *Node) []string {
	if v, ok := n.Lookup("inbox.relays"); ok {
		if f, ok := v.(func() []string); ok {
			if hs := f(); len(hs) > 0 {
				return hs
			}
		}
	}
	var out []string
	for _, r := range n.Config.Relays {
		if strings.Contains(r, "/p2p/") {
			out = append(out, r)
		}
	}
	return out
}
