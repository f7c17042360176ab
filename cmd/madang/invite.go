package main

import (
	"fmt"
	"time"

	qrcode "github.com/skip2/go-qrcode"
	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/protocols/contact"
)

func init() { commands = append(commands, inviteCmd) }

func inviteCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "invite", Short: "Create and accept contact invites"}

	var expires time.Duration
	var uses int
	var qr bool
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a signed, expiring invite link (madang://c/…) for someone to become your friend",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			body := map[string]any{"uses": uses}
			if c.Flags().Changed("expires") {
				body["expires"] = expires.String()
			}
			var inv contact.InviteView
			if err := cl.Do(c.Context(), "POST", "/api/v1/invites", body, &inv); err != nil {
				return err
			}
			out := map[string]any{"link": inv.Link, "expires": inv.Expires, "id": inv.ID, "uses": inv.Uses}
			var art string
			if qr {
				code, err := qrcode.New(inv.Link, qrcode.Low)
				if err != nil {
					return fmt.Errorf("qr code: %w", err)
				}
				art = code.ToSmallString(false)
				out["qr"] = art
			}
			return printOut(g, out, func() {
				if qr {
					fmt.Fprint(g.stdout, art)
				}
				fmt.Fprintln(g.stdout, inv.Link)
				fmt.Fprintf(g.stdout, "Expires %s (%s); can be used %d time(s).\n",
					inv.Expires.Local().Format(time.DateTime), time.Until(inv.Expires).Round(time.Second), inv.Uses)
			})
		},
	}
	create.Flags().DurationVar(&expires, "expires", 24*time.Hour, "how long the invite stays valid (default: friends.invite_expires)")
	create.Flags().IntVar(&uses, "uses", 1, "how many people may use it")
	create.Flags().BoolVar(&qr, "qr", false, "also print the link as a QR code")

	accept := &cobra.Command{
		Use:   "accept <link>",
		Short: "Accept someone's invite link: send them a friend request with your profile",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var f contact.FriendView
			if err := cl.Do(c.Context(), "POST", "/api/v1/invites:accept", map[string]string{"link": args[0]}, &f); err != nil {
				return err
			}
			return printOut(g, f, func() {
				switch f.State {
				case "friend":
					fmt.Fprintf(g.stdout, "You and %s are now friends.\n", f.Name)
				case "request-out":
					fmt.Fprintf(g.stdout, "Friend request sent; waiting for %s to accept.\n", f.Name)
				default:
					fmt.Fprintf(g.stdout, "%s cannot be reached right now; the friend request will be delivered when they are online.\n", f.Name)
				}
			})
		},
	}

	var all bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List your invites that can still be used",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out struct {
				Invites []contact.InviteView `json:"invites"`
			}
			path := "/api/v1/invites"
			if all {
				path += "?all=true"
			}
			if err := cl.Do(c.Context(), "GET", path, nil, &out); err != nil {
				return err
			}
			return printOut(g, out.Invites, func() {
				for _, inv := range out.Invites {
					fmt.Fprintf(g.stdout, "%s  used %d/%d  expires %s\n  %s\n", inv.ID, inv.Used, inv.Uses,
						inv.Expires.Local().Format(time.DateTime), inv.Link)
				}
			})
		},
	}
	ls.Flags().BoolVar(&all, "all", false, "include expired, used-up and revoked invites")

	revoke := &cobra.Command{
		Use:   "revoke <id>",
		Short: "Make an invite unusable",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			if err := cl.Do(c.Context(), "DELETE", "/api/v1/invites/"+args[0], nil, nil); err != nil {
				return err
			}
			return printOut(g, map[string]string{"revoked": args[0]}, func() { fmt.Fprintf(g.stdout, "Revoked %s\n", args[0]) })
		},
	}
	c.AddCommand(create, accept, ls, revoke)
	return c
}
