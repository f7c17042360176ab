package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/graph"
	"github.com/madang-p2p/madang/protocols/contact"
)

func init() { commands = append(commands, friendCmd, profileCmd) }

func friendPath(name string, action ...string) string {
	p := "/api/v1/friends/" + url.PathEscape(name)
	if len(action) > 0 {
		p += "/" + strings.Join(action, "/")
	}
	return p
}

func printFriend(g *globals, f contact.FriendView) {
	fmt.Fprintf(g.stdout, "%s\n  account:  %s\n  state:    %s\n", f.Name, f.AccountID, f.State)
	if f.Alias != "" {
		fmt.Fprintf(g.stdout, "  name:     %s\n", f.Profile.DisplayName)
	}
	if f.Profile.Status != "" {
		fmt.Fprintf(g.stdout, "  status:   %s\n", f.Profile.Status)
	}
	if len(f.Profile.Tags) > 0 {
		fmt.Fprintf(g.stdout, "  tags:     %s\n", strings.Join(f.Profile.Tags, ", "))
	}
	if f.Favourite {
		fmt.Fprintf(g.stdout, "  favourite\n")
	}
	for _, d := range f.Devices {
		fmt.Fprintf(g.stdout, "  device:   %s\n", d)
	}
}

// friendAction is a command that POSTs (or PUTs/DELETEs) to /api/v1/friends/<friend>[/action].
func friendAction(g *globals, use, short, method, action string, done func(f contact.FriendView) string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " <friend>",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var f contact.FriendView
			var out any = &f
			if method == "DELETE" || action == "decline" {
				out = nil
			}
			path := friendPath(args[0])
			if action != "" {
				path = friendPath(args[0], action)
			}
			if err := cl.Do(c.Context(), method, path, nil, out); err != nil {
				return err
			}
			if out == nil {
				return printOut(g, map[string]string{"friend": args[0], "done": use}, func() {
					fmt.Fprintln(g.stdout, done(contact.FriendView{Name: args[0]}))
				})
			}
			return printOut(g, f, func() { fmt.Fprintln(g.stdout, done(f)) })
		},
	}
}

func friendCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "friend",
		Short: "List and manage contacts (a <friend> is an alias, a unique display name or an account ID)",
	}
	var state string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List contacts: friends, requests and blocked",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			path := "/api/v1/friends"
			if state != "" {
				path += "?state=" + url.QueryEscape(state)
			}
			var out struct {
				Friends []contact.FriendView `json:"friends"`
			}
			if err := cl.Do(c.Context(), "GET", path, nil, &out); err != nil {
				return err
			}
			return printOut(g, out.Friends, func() {
				if len(out.Friends) == 0 {
					fmt.Fprintln(g.stdout, "No contacts yet. Create an invite with: madang invite create")
					return
				}
				for _, f := range out.Friends {
					star := " "
					if f.Favourite {
						star = "*"
					}
					fmt.Fprintf(g.stdout, "%s %-20s %-11s %s  %s\n", star, f.Name, f.State, f.AccountID, f.Profile.Status)
				}
			})
		},
	}
	ls.Flags().StringVar(&state, "state", "", "only contacts in this state: friend, request-in, request-out, invited, blocked")

	show := &cobra.Command{
		Use:   "show <friend>",
		Short: "Show a contact and the profile they shared",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var f contact.FriendView
			if err := cl.Do(c.Context(), "GET", friendPath(args[0]), nil, &f); err != nil {
				return err
			}
			return printOut(g, f, func() { printFriend(g, f) })
		},
	}

	alias := &cobra.Command{
		Use:   "alias <friend> <alias>",
		Short: "Set your own name for a contact (\"\" clears it)",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var f contact.FriendView
			if err := cl.Do(c.Context(), "PUT", friendPath(args[0], "alias"), map[string]string{"alias": args[1]}, &f); err != nil {
				return err
			}
			return printOut(g, f, func() { fmt.Fprintf(g.stdout, "%s is now shown as %s\n", f.AccountID, f.Name) })
		},
	}

	var off bool
	fav := &cobra.Command{
		Use:   "fav <friend>",
		Short: "Mark a contact as a favourite (--off to unmark)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var f contact.FriendView
			if err := cl.Do(c.Context(), "PUT", friendPath(args[0], "favourite"), map[string]bool{"favourite": !off}, &f); err != nil {
				return err
			}
			return printOut(g, f, func() { fmt.Fprintf(g.stdout, "%s favourite: %v\n", f.Name, f.Favourite) })
		},
	}
	fav.Flags().BoolVar(&off, "off", false, "unmark")

	c.AddCommand(ls, show, alias, fav,
		friendAction(g, "accept", "Accept a friend request", "POST", "accept", func(f contact.FriendView) string {
			return fmt.Sprintf("You and %s are now friends.", f.Name)
		}),
		friendAction(g, "decline", "Decline a friend request", "POST", "decline", func(f contact.FriendView) string {
			return fmt.Sprintf("Declined %s.", f.Name)
		}),
		friendAction(g, "block", "Block a contact: their messages and requests are dropped", "POST", "block", func(f contact.FriendView) string {
			return fmt.Sprintf("Blocked %s.", f.Name)
		}),
		friendAction(g, "unblock", "Unblock a contact", "POST", "unblock", func(f contact.FriendView) string {
			return fmt.Sprintf("Unblocked %s (%s).", f.Name, f.State)
		}),
		friendAction(g, "rm", "Remove a contact (the conversation history stays)", "DELETE", "", func(f contact.FriendView) string {
			return fmt.Sprintf("Removed %s.", f.Name)
		}),
	)
	return c
}

func profileCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "profile", Short: "Show or change the profile your friends see"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show my profile",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var p graph.Profile
			if err := cl.Do(c.Context(), "GET", "/api/v1/profile", nil, &p); err != nil {
				return err
			}
			return printOut(g, p, func() { printProfile(g, p) })
		},
	}
	var name, status, avatar string
	var tags []string
	set := &cobra.Command{
		Use:   "set",
		Short: "Change my profile (only the fields given); friends receive it",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var p graph.Profile
			if err := cl.Do(c.Context(), "GET", "/api/v1/profile", nil, &p); err != nil {
				return err
			}
			fl := c.Flags()
			if fl.Changed("name") {
				p.DisplayName = name
			}
			if fl.Changed("status") {
				p.Status = status
			}
			if fl.Changed("tags") {
				p.Tags = tags
			}
			if fl.Changed("avatar") {
				p.Avatar = avatar
			}
			body := map[string]any{"display_name": p.DisplayName, "status": p.Status, "tags": p.Tags, "avatar": p.Avatar}
			if err := cl.Do(c.Context(), "PUT", "/api/v1/profile", body, &p); err != nil {
				return err
			}
			return printOut(g, p, func() { printProfile(g, p) })
		},
	}
	set.Flags().StringVar(&name, "name", "", "display name")
	set.Flags().StringVar(&status, "status", "", "status line")
	set.Flags().StringSliceVar(&tags, "tags", nil, "interest tags (comma separated)")
	set.Flags().StringVar(&avatar, "avatar", "", "avatar content hash, sha256:<64 hex>")
	c.AddCommand(show, set)
	return c
}

func printProfile(g *globals, p graph.Profile) {
	fmt.Fprintf(g.stdout, "name:    %s\n", p.DisplayName)
	if p.Status != "" {
		fmt.Fprintf(g.stdout, "status:  %s\n", p.Status)
	}
	if len(p.Tags) > 0 {
		fmt.Fprintf(g.stdout, "tags:    %s\n", strings.Join(p.Tags, ", "))
	}
	if p.Avatar != "" {
		fmt.Fprintf(g.stdout, "avatar:  %s\n", p.Avatar)
	}
	fmt.Fprintf(g.stdout, "version: %d\n", p.Version)
}
