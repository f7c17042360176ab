package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/node"
)

func init() { commands = append(commands, statusCmd, idCmd, versionCmd, peerCmd, eventsCmd) }

func getNode(c *cobra.Command, g *globals) (node.NodeInfo, error) {
	var info node.NodeInfo
	cl, err := client(g)
	if err != nil {
		return info, err
	}
	err = cl.Do(c.Context(), "GET", "/api/v1/node", nil, &info)
	return info, err
}

func statusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running node: identity, addresses, peers, DHT",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			info, err := getNode(c, g)
			if err != nil {
				return err
			}
			return printOut(g, info, func() {
				fmt.Fprintf(g.stdout, "peer:     %s\naccount:  %s\nrole:     %s\nversion:  %s\nuptime:   %s\n",
					info.PeerID, info.AccountID, strings.Join(info.Roles, ","), info.Version,
					(time.Duration(info.UptimeSeconds) * time.Second).String())
				fmt.Fprintf(g.stdout, "peers:    %d\ndht:      %s, %d in routing table\napi:      %s\naddrs:\n",
					info.Peers, info.DHTMode, info.RoutingTable, info.APIAddr)
				for _, a := range info.Addrs {
					fmt.Fprintf(g.stdout, "  %s\n", a)
				}
			})
		},
	}
}

func idCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "id",
		Short: "Print this node's peer ID, account ID and dialable addresses",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			info, err := getNode(c, g)
			if err != nil {
				return err
			}
			out := map[string]any{"peer_id": info.PeerID, "account_id": info.AccountID, "addrs": info.Addrs}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "%s\n%s\n", info.PeerID, info.AccountID)
				for _, a := range info.Addrs {
					fmt.Fprintln(g.stdout, a)
				}
			})
		},
	}
}

func versionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return printOut(g, map[string]string{"version": node.Version()}, func() {
				fmt.Fprintf(g.stdout, "madang %s\n", node.Version())
			})
		},
	}
}

func peerCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "peer", Short: "List and connect peers"}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List connected peers",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out struct {
				Peers []node.PeerInfo `json:"peers"`
			}
			if err := cl.Do(c.Context(), "GET", "/api/v1/peers", nil, &out); err != nil {
				return err
			}
			return printOut(g, out.Peers, func() {
				for _, p := range out.Peers {
					addr := ""
					if len(p.Addrs) > 0 {
						addr = p.Addrs[0]
					}
					fmt.Fprintf(g.stdout, "%s  %s  %s\n", p.PeerID, p.Direction, addr)
				}
			})
		},
	}
	connect := &cobra.Command{
		Use:   "connect <multiaddr>",
		Short: "Connect to a peer by multiaddr (ending in /p2p/<peer id>)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out map[string]string
			if err := cl.Do(c.Context(), "POST", "/api/v1/peers/connect", map[string]string{"addr": args[0]}, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintf(g.stdout, "connected %s\n", out["peer_id"]) })
		},
	}
	c.AddCommand(ls, connect)
	return c
}

func eventsCmd(g *globals) *cobra.Command {
	var since uint64
	var types []string
	var limit int
	c := &cobra.Command{
		Use:   "events",
		Short: "Stream the node's live events (one JSON object per line with --json)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			q := url.Values{}
			if since > 0 {
				q.Set("since", fmt.Sprint(since))
			}
			if len(types) > 0 {
				q.Set("types", strings.Join(types, ","))
			}
			path := "/api/v1/events"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			n := 0
			errStop := fmt.Errorf("limit reached")
			err = cl.Stream(c.Context(), path, func(raw json.RawMessage) error {
				if g.json {
					fmt.Fprintln(g.stdout, string(raw))
				} else {
					var ev struct {
						ID   uint64          `json:"id"`
						Type string          `json:"type"`
						Time time.Time       `json:"time"`
						Data json.RawMessage `json:"data"`
					}
					if err := json.Unmarshal(raw, &ev); err != nil {
						return fmt.Errorf("decode event: %w", err)
					}
					fmt.Fprintf(g.stdout, "%d %s %s %s\n", ev.ID, ev.Time.Format(time.TimeOnly), ev.Type, ev.Data)
				}
				n++
				if limit > 0 && n >= limit {
					return errStop
				}
				return nil
			})
			if err == errStop {
				return nil
			}
			return err
		},
	}
	c.Flags().Uint64Var(&since, "since", 0, "resume after this event id")
	c.Flags().StringSliceVar(&types, "types", nil, "only these event types (comma separated)")
	c.Flags().IntVar(&limit, "limit", 0, "stop after this many events")
	return c
}
