package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/node"
	"github.com/madang-p2p/madang/protocols/mailbox"
	"github.com/madang-p2p/madang/protocols/relayinfo"
)

func init() { commands = append(commands, relayCmd) }

func relayCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "relay",
		Short: "Community relay: status, info documents, inbox draining",
		Long: `Community relay commands.

On a relay (madang daemon --role relay) "relay status" shows what it holds and serves. On every node it shows
the node's own inbox relays (set with --relay or "relays:" in the config) and the last inbox drain.
The same status is served as an HTML page at /relay on the local API (bearer token required).`,
	}
	c.AddCommand(relayStatusCmd(g), relayInfoCmd(g), relayDrainCmd(g))
	return c
}

func relayStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the relay service (on a relay) and this node's inbox relays",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var st node.RelayStatus
			if err := cl.Do(c.Context(), "GET", "/api/v1/relay/status", nil, &st); err != nil {
				return err
			}
			return printOut(g, st, func() { printRelayStatus(g, st) })
		},
	}
}

func printRelayStatus(g *globals, st node.RelayStatus) {
	w := g.stdout
	if r := st.Relay; r != nil {
		name := r.Name
		if name == "" {
			name = "(unnamed)"
		}
		fmt.Fprintf(w, "relay:         %s\n", name)
		if r.Operator != "" || r.Contact != "" {
			fmt.Fprintf(w, "operator:      %s %s\n", r.Operator, r.Contact)
		}
		oldest := "-"
		if r.Items > 0 {
			oldest = (time.Duration(r.OldestItemAgeSeconds) * time.Second).String()
		}
		fmt.Fprintf(w, "mailboxes:     %d (%d items, %d bytes, oldest %s)\n", r.Mailboxes, r.Items, r.BytesStored, oldest)
		fmt.Fprintf(w, "since start:   %d deposited, %d delivered, %d expired\n", r.Deposits, r.Delivered, r.Expired)
		fmt.Fprintf(w, "reservations:  %d of %d\ncircuits:      %d (%d bytes relayed)\n",
			r.Reservations, r.Limits.MaxReservations, r.Circuits, r.CircuitBytes)
		fmt.Fprintf(w, "rooms kept:    %d\nfeeds pinned:  %d\n", r.RoomsKept, r.FeedsPinned)
		fmt.Fprintf(w, "retention:     %s, %d items / %d bytes per mailbox\n",
			(time.Duration(r.Limits.MailboxTTLSeconds) * time.Second).String(), r.Limits.MailboxQuotaItems, r.Limits.MailboxQuotaBytes)
		var refused []string
		for reason, n := range r.Refusals {
			if n > 0 {
				refused = append(refused, fmt.Sprintf("%s=%d", reason, n))
			}
		}
		slices.Sort(refused)
		if len(refused) == 0 {
			refused = []string{"none"}
		}
		fmt.Fprintf(w, "refusals:      %s\n", strings.Join(refused, " "))
	} else {
		fmt.Fprintf(w, "role:          %s (not a relay)\n", st.Role)
	}
	fmt.Fprintln(w, "inbox relays:")
	if len(st.Inbox.Relays) == 0 {
		fmt.Fprintln(w, "  none (set --relay or relays: in the config to receive while offline)")
	}
	for _, r := range st.Inbox.Relays {
		state := "not connected"
		if r.Connected {
			state = "connected"
		}
		if r.ReservationExpires != nil {
			state += ", reserved until " + r.ReservationExpires.Local().Format(time.TimeOnly)
		}
		if r.LastError != "" {
			state += " (" + r.LastError + ")"
		}
		fmt.Fprintf(w, "  %s  %s\n", r.Addr, state)
	}
	if d := st.Inbox.LastDrain; d != nil {
		fmt.Fprintf(w, "last drain:    %s: ", d.At.Local().Format(time.DateTime))
		printDrain(g, *d)
	}
}

func printDrain(g *globals, d mailbox.DrainResult) {
	fmt.Fprintf(g.stdout, "%d relays, %d found, %d delivered, %d duplicates, %d discarded\n",
		d.Relays, d.Found, d.Delivered, d.Duplicates, d.Discarded)
	for _, e := range d.Errors {
		fmt.Fprintf(g.stdout, "  error: %s\n", e)
	}
}

func relayInfoCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "info [relay-multiaddr]",
		Short: "Show a relay's signed info document (this node's, or another relay's by address)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			path := "/api/v1/relay/info"
			if len(args) == 1 {
				if !strings.Contains(args[0], "/p2p/") {
					return usageErr("%q must be a multiaddr ending in /p2p/<peer id>", args[0])
				}
				path += "?addr=" + url.QueryEscape(args[0])
			}
			var info relayinfo.Info
			if err := cl.Do(c.Context(), "GET", path, nil, &info); err != nil {
				return err
			}
			return printOut(g, info, func() {
				l := info.Limits
				fmt.Fprintf(g.stdout, "peer:       %s\nname:       %s\noperator:   %s\ncontact:    %s\nservices:   %s\nsoftware:   %s\n",
					info.PeerID, info.Name, info.Operator, info.Contact, strings.Join(info.Services, ", "), info.Software)
				fmt.Fprintf(g.stdout, "retention:  %s\nmailbox:    %d items, %d bytes, items up to %d bytes, %d deposits/min\ncircuits:   %d reservations, %d per peer, %s and %d bytes each\n",
					(time.Duration(l.MailboxTTLSeconds) * time.Second).String(), l.MailboxQuotaItems, l.MailboxQuotaBytes, l.MaxItemBytes,
					l.DepositsPerMinute, l.MaxReservations, l.MaxCircuits, (time.Duration(l.CircuitSeconds) * time.Second).String(), l.CircuitBytes)
			})
		},
	}
}

func relayDrainCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "drain",
		Short: "Fetch what waits on this node's inbox relays now (it also happens by itself)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var res mailbox.DrainResult
			if err := cl.Do(c.Context(), "POST", "/api/v1/inbox/drain", nil, &res); err != nil {
				return err
			}
			return printOut(g, res, func() { printDrain(g, res) })
		},
	}
}
