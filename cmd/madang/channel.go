package main

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/protocols/feed"
)

func init() { commands = append(commands, channelCmd) }

func channelPath(id, rest string) string {
	p := "/api/v1/channels/" + url.PathEscape(id)
	if rest != "" {
		p += "/" + rest
	}
	return p
}

// resolveChannel turns a <channel> argument into a channel ID: an ID, a link, or the name (or an ID prefix)
// of exactly one channel this node keeps.
func resolveChannel(c *cobra.Command, cl *apiclient.Client, ref string) (string, error) {
	if l, err := feed.ParseLink(ref); err == nil {
		return string(feed.IDFromKey(l.Channel)), nil
	}
	var out struct {
		Channels []feed.Info `json:"channels"`
	}
	if err := cl.Do(c.Context(), "GET", "/api/v1/channels", nil, &out); err != nil {
		return "", err
	}
	var found []feed.Info
	for _, ch := range out.Channels {
		if strings.EqualFold(ch.Name, ref) || (len(ref) >= 4 && strings.HasPrefix(ch.ChannelID, ref)) {
			found = append(found, ch)
		}
	}
	switch len(found) {
	case 1:
		return found[0].ChannelID, nil
	case 0:
		return "", usageErr("no channel here is called %q (give its ID or link; see 'madang channel ls')", ref)
	}
	return "", usageErr("%d channels match %q; give the channel ID", len(found), ref)
}

// withChannel resolves the <channel> argument and hands over a client.
func withChannel(g *globals, run func(c *cobra.Command, cl *apiclient.Client, id string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		cl, err := client(g)
		if err != nil {
			return err
		}
		id, err := resolveChannel(c, cl, args[0])
		if err != nil {
			return err
		}
		return run(c, cl, id)
	}
}

// ownedChannel picks the channel to post to: --channel, or the only channel this node owns.
func ownedChannel(c *cobra.Command, cl *apiclient.Client, ref string) (string, error) {
	if ref != "" {
		return resolveChannel(c, cl, ref)
	}
	var out struct {
		Channels []feed.MerchantChannel `json:"channels"`
	}
	if err := cl.Do(c.Context(), "GET", "/api/v1/merchant/channels", nil, &out); err != nil {
		return "", err
	}
	switch len(out.Channels) {
	case 1:
		return out.Channels[0].ChannelID, nil
	case 0:
		return "", usageErr("this node owns no channel (create one with 'madang channel create')")
	}
	return "", usageErr("this node owns %d channels; say which with --channel", len(out.Channels))
}

func role(ch feed.Info) string {
	var r []string
	if ch.Owned {
		r = append(r, "owner")
	}
	if ch.Following {
		r = append(r, "following")
	}
	if ch.Pinned {
		r = append(r, "pinned")
	}
	return strings.Join(r, ",")
}

func printChannel(g *globals, ch feed.Info) {
	fmt.Fprintf(g.stdout, "%s  %s (%s)\n", ch.ChannelID, ch.Name, ch.Category)
	if len(ch.Tags) > 0 {
		fmt.Fprintf(g.stdout, "  tags:    #%s\n", strings.Join(ch.Tags, " #"))
	}
	fmt.Fprintf(g.stdout, "  where:   %s %s\n", ch.Geohash, ch.Address)
	for _, l := range [][2]string{{"hours", ch.Hours}, {"phone", ch.Phone}, {"about", ch.Description}} {
		if l[1] != "" {
			fmt.Fprintf(g.stdout, "  %-8s %s\n", l[0]+":", l[1])
		}
	}
	fmt.Fprintf(g.stdout, "  feed:    %d entries (%d known), %d unread, %s\n", ch.Seq, ch.KnownSeq, ch.Unread, role(ch))
	if ch.Fork != nil {
		fmt.Fprintf(g.stdout, "  WARNING: this channel signed two different entries %d (%s); following is paused. See 'madang channel show'.\n", ch.Fork.Seq, ch.Fork.Kind)
	}
}

func printEntry(g *globals, e feed.EntryView, withName bool) {
	mark := " "
	if e.Unread {
		mark = "•"
	}
	head := fmt.Sprintf("%s #%d %s [%s]", mark, e.Seq, e.Time.Local().Format("2006-01-02 15:04"), e.Kind)
	if withName {
		head += " " + e.Name + ":"
	}
	fmt.Fprintf(g.stdout, "%s %s\n", head, e.Title)
	if e.Body != "" {
		fmt.Fprintf(g.stdout, "    %s\n", strings.ReplaceAll(e.Body, "\n", "\n    "))
	}
	var extra []string
	if e.Price != "" {
		extra = append(extra, "price "+e.Price)
	}
	if e.ValidUntil != nil {
		extra = append(extra, "until "+e.ValidUntil.Local().Format("2006-01-02 15:04"))
	}
	if len(extra) > 0 {
		fmt.Fprintf(g.stdout, "    (%s)\n", strings.Join(extra, ", "))
	}
}

// parseUntil accepts RFC 3339, "2006-01-02", "2006-01-02 15:04" (local time) or a duration from now
// ("48h", "3d").
func parseUntil(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			if layout == "2006-01-02" {
				t = t.Add(24*time.Hour - time.Second) // the end of that day
			}
			return t, nil
		}
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n > 0 {
			return now.Add(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(d), nil
	}
	return time.Time{}, usageErr("--valid-until %q: give a date (2026-12-24), a time (2026-12-24 18:00, RFC 3339) or a duration (48h, 3d)", s)
}

func channelCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "channel", Short: "Local shops' channels: create and post (merchant), find, follow and read"}
	c.AddCommand(channelCreateCmd(g), channelPostCmd(g), channelLsCmd(g), channelFollowCmd(g), channelUnfollowCmd(g),
		channelFeedCmd(g), channelNearbyCmd(g), channelLinkCmd(g), channelShowCmd(g), channelPinCmd(g), channelUnpinCmd(g),
		channelStatsCmd(g))
	return c
}

func channelCreateCmd(g *globals) *cobra.Command {
	var req feed.ProfileRequest
	c := &cobra.Command{
		Use:   "create --name N --category C --geohash G",
		Short: "Create a channel for your shop (a new channel key, separate from your account)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if req.Name == "" || req.Category == "" || req.Geohash == "" {
				return usageErr("--name, --category and --geohash are required")
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out feed.MerchantChannel
			if err := cl.Do(c.Context(), "POST", "/api/v1/merchant/channels", req, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "created channel %s\n", out.ChannelID)
				printChannel(g, out.Info)
				fmt.Fprintf(g.stdout, "link: %s\n", out.Link)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&req.Name, "name", "", "shop name")
	f.StringVar(&req.Category, "category", "", "one of "+strings.Join(feed.Categories, ", "))
	f.StringVar(&req.Geohash, "geohash", "", "location as a geohash (at least 5 characters; kept at 7)")
	f.StringSliceVar(&req.Tags, "tag", nil, "a free tag (repeatable)")
	f.StringVar(&req.Description, "desc", "", "description")
	f.StringVar(&req.Address, "address", "", "street address")
	f.StringVar(&req.Hours, "hours", "", "opening hours")
	f.StringVar(&req.Phone, "phone", "", "phone number")
	return c
}

func channelPostCmd(g *globals) *cobra.Command {
	var req feed.PostRequest
	var channel, until string
	c := &cobra.Command{
		Use:   "post --kind offer|post|notice|menu --title T --body B",
		Short: "Post to your channel (signed, appended to the feed, sent live to followers)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if _, err := feed.ParseKind(req.Kind); err != nil {
				return usageErr("--kind: %v", err)
			}
			if req.Title == "" && req.Body == "" {
				return usageErr("give --title or --body")
			}
			if until != "" {
				t, err := parseUntil(until, time.Now())
				if err != nil {
					return err
				}
				req.ValidUntil = &t
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			id, err := ownedChannel(c, cl, channel)
			if err != nil {
				return err
			}
			var out feed.EntryView
			if err := cl.Do(c.Context(), "POST", "/api/v1/merchant/channels/"+url.PathEscape(id)+"/posts", req, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintf(g.stdout, "posted #%d to %s\n", out.Seq, out.Name) })
		},
	}
	f := c.Flags()
	f.StringVar(&req.Kind, "kind", "post", "post, offer, notice or menu")
	f.StringVar(&req.Title, "title", "", "title")
	f.StringVar(&req.Body, "body", "", "text")
	f.StringVar(&req.Price, "price", "", "price, as you want it shown")
	f.StringVar(&until, "valid-until", "", "end of an offer: date, time or duration (48h, 3d)")
	f.StringVar(&channel, "channel", "", "channel to post to (needed when this node owns several)")
	return c
}

func channelLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the channels you own, follow or pin, with unread counts",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out struct {
				Channels []feed.Info `json:"channels"`
			}
			if err := cl.Do(c.Context(), "GET", "/api/v1/channels", nil, &out); err != nil {
				return err
			}
			return printOut(g, out.Channels, func() {
				if len(out.Channels) == 0 {
					fmt.Fprintln(g.stdout, "No channels yet (find shops with 'madang channel nearby --geohash G')")
				}
				for _, ch := range out.Channels {
					flag := ""
					if ch.Forked {
						flag = "  FORKED, paused"
					}
					fmt.Fprintf(g.stdout, "%s  %-24s %-11s %4d unread  #%d  %s%s\n", ch.ChannelID, ch.Name, ch.Category, ch.Unread, ch.Seq, role(ch), flag)
				}
			})
		},
	}
}

func channelFollowCmd(g *globals) *cobra.Command {
	var noWait bool
	c := &cobra.Command{
		Use:   "follow <id|link>",
		Short: "Follow a channel: fetch and verify its whole feed, then get new posts live",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := feed.ParseLink(args[0]); err != nil {
				return usageErr("%v", err)
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out feed.Info
			body := map[string]any{"target": args[0], "wait": !noWait}
			if err := cl.Do(c.Context(), "POST", "/api/v1/channels/follow", body, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "following %s\n", out.ChannelID)
				if out.Name != "" {
					printChannel(g, out)
				}
				if out.Seq < out.KnownSeq || out.Syncing {
					fmt.Fprintln(g.stdout, "still catching up; watch progress with 'madang events --types operation.progress'")
				}
			})
		},
	}
	c.Flags().BoolVar(&noWait, "no-wait", false, "return at once; the feed is fetched in the background")
	return c
}

func channelUnfollowCmd(g *globals) *cobra.Command {
	return channelDeleteCmd(g, "unfollow <id>", "Stop following a channel (its feed is deleted from this node)", "follow", "unfollowed")
}

// channelDeleteCmd is a command that DELETEs a channel's sub-resource (unfollow, unpin).
func channelDeleteCmd(g *globals, use, short, rest, done string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: withChannel(g, func(c *cobra.Command, cl *apiclient.Client, id string) error {
			var out map[string]any
			if err := cl.Do(c.Context(), "DELETE", channelPath(id, rest), nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintf(g.stdout, "%s %s\n", done, id) })
		}),
	}
}

func channelFeedCmd(g *globals) *cobra.Command {
	var limit int
	var keepUnread bool
	var waitSeq uint64
	var waitFor time.Duration
	c := &cobra.Command{
		Use:   "feed [<id>]",
		Short: "Read a channel's feed (newest first), or without <id> the merged feed of your channels",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if limit < 1 || limit > 1000 {
				return usageErr("--limit must be 1 to 1000")
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out struct {
				Entries []feed.EntryView `json:"entries"`
			}
			if len(args) == 0 {
				if err := cl.Do(c.Context(), "GET", "/api/v1/channels/feed?limit="+strconv.Itoa(limit), nil, &out); err != nil {
					return err
				}
				return printOut(g, out.Entries, func() {
					for _, e := range out.Entries {
						printEntry(g, e, true)
					}
				})
			}
			id, err := resolveChannel(c, cl, args[0])
			if err != nil {
				return err
			}
			if waitSeq > 0 {
				if err := waitForSeq(c, cl, id, waitSeq, waitFor); err != nil {
					return err
				}
			}
			if err := cl.Do(c.Context(), "GET", channelPath(id, "entries")+"?limit="+strconv.Itoa(limit), nil, &out); err != nil {
				return err
			}
			if len(out.Entries) > 0 && !keepUnread {
				if err := cl.Do(c.Context(), "POST", channelPath(id, "read"), map[string]uint64{"seq": out.Entries[0].Seq}, nil); err != nil {
					return err
				}
			}
			return printOut(g, out.Entries, func() {
				if len(out.Entries) == 0 {
					fmt.Fprintln(g.stdout, "No posts yet")
				}
				for _, e := range out.Entries {
					printEntry(g, e, false)
				}
			})
		},
	}
	c.Flags().IntVar(&limit, "limit", 20, "how many entries")
	c.Flags().BoolVar(&keepUnread, "keep-unread", false, "do not mark what is shown as read")
	c.Flags().Uint64Var(&waitSeq, "wait-seq", 0, "first wait until the feed has this entry")
	c.Flags().DurationVar(&waitFor, "wait", 30*time.Second, "how long --wait-seq waits")
	return c
}

// waitForSeq polls a channel until its feed holds entry seq (exit 1 after d).
func waitForSeq(c *cobra.Command, cl *apiclient.Client, id string, seq uint64, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var in feed.Info
		if err := cl.Do(c.Context(), "GET", channelPath(id, ""), nil, &in); err != nil {
			return err
		}
		if in.Seq >= seq {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the feed has %d entries after %v, not %d", in.Seq, d, seq)
		}
		select {
		case <-c.Context().Done():
			return c.Context().Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func channelNearbyCmd(g *globals) *cobra.Command {
	var gh, category, tag string
	var limit int
	var wait time.Duration
	c := &cobra.Command{
		Use:   "nearby --geohash G [--category C]",
		Short: "Find shops around a place (its geohash cell and the 8 around it), nearest first",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if gh == "" && tag == "" {
				return usageErr("give --geohash (and optionally --category or --tag), or --tag")
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			for k, v := range map[string]string{"geohash": gh, "category": category, "tag": tag} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var out struct {
				Channels []feed.NearbyCard `json:"channels"`
			}
			deadline := time.Now().Add(wait)
			for {
				if err := cl.Do(c.Context(), "GET", "/api/v1/channels/nearby?"+q.Encode(), nil, &out); err != nil {
					return err
				}
				if len(out.Channels) > 0 || !time.Now().Before(deadline) {
					break
				}
				select {
				case <-c.Context().Done():
					return c.Context().Err()
				case <-time.After(time.Second):
				}
			}
			return printOut(g, out.Channels, func() {
				if len(out.Channels) == 0 {
					fmt.Fprintln(g.stdout, "Nothing found nearby")
				}
				for _, ch := range out.Channels {
					dist := "      "
					if ch.Distance != nil {
						dist = fmt.Sprintf("%5.1fkm", *ch.Distance/1000)
					}
					last := "no posts yet"
					if ch.LastPost != nil {
						last = "last post " + ch.LastPost.Local().Format("2006-01-02 15:04")
					}
					fmt.Fprintf(g.stdout, "%s  %s  %-24s %-11s %s\n", dist, ch.ChannelID, ch.Name, ch.Category, last)
				}
			})
		},
	}
	f := c.Flags()
	f.StringVar(&gh, "geohash", "", "where (at least 5 characters)")
	f.StringVar(&category, "category", "", "only this category: "+strings.Join(feed.Categories, ", "))
	f.StringVar(&tag, "tag", "", "only shops with this tag (alone: search by tag)")
	f.IntVar(&limit, "limit", 20, "how many results")
	f.DurationVar(&wait, "wait", 0, "keep searching up to this long until something is found")
	return c
}

func channelLinkCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "link <id>",
		Short: "Print a link others can follow the channel with",
		Args:  cobra.ExactArgs(1),
		RunE: withChannel(g, func(c *cobra.Command, cl *apiclient.Client, id string) error {
			var out map[string]string
			if err := cl.Do(c.Context(), "GET", channelPath(id, "link"), nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintln(g.stdout, out["link"]) })
		}),
	}
}

func channelShowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "show <id>",
		Short: "Show a channel's profile and feed state (and the proof if it forked)",
		Args:  cobra.ExactArgs(1),
		RunE: withChannel(g, func(c *cobra.Command, cl *apiclient.Client, id string) error {
			var out feed.Info
			if err := cl.Do(c.Context(), "GET", channelPath(id, ""), nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				printChannel(g, out)
				if out.Fork != nil {
					fmt.Fprintf(g.stdout, "  fork:    entry %d kept %s, conflicting %s (detected %s)\n", out.Fork.Seq, out.Fork.Kept[:16], out.Fork.Conflict[:16], out.Fork.Detected.Local().Format(time.DateTime))
				}
			})
		}),
	}
}

func channelPinCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pin <id>",
		Short: "On a relay: keep a channel's feed, serve it and keep it findable while the shop is offline",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if _, err := feed.ParseID(args[0]); err != nil {
				return usageErr("%v", err)
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out feed.Info
			if err := cl.Do(c.Context(), "POST", channelPath(args[0], "pin"), nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintf(g.stdout, "pinned %s\n", out.ChannelID) })
		},
	}
}

func channelUnpinCmd(g *globals) *cobra.Command {
	return channelDeleteCmd(g, "unpin <id>", "On a relay: stop keeping a channel", "pin", "unpinned")
}

func channelStatsCmd(g *globals) *cobra.Command {
	var channel string
	c := &cobra.Command{
		Use:   "stats",
		Short: "Your channel's follower count (collects the follow notices relays received)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			id, err := ownedChannel(c, cl, channel)
			if err != nil {
				return err
			}
			var out struct {
				ChannelID string `json:"channel_id"`
				Followers int    `json:"followers"`
				Entries   uint64 `json:"entries"`
			}
			if err := cl.Do(c.Context(), "GET", "/api/v1/merchant/channels/"+url.PathEscape(id)+"/stats?collect=true", nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "%s: %d followers, %d entries\n", out.ChannelID, out.Followers, out.Entries)
			})
		},
	}
	c.Flags().StringVar(&channel, "channel", "", "which channel (needed when this node owns several)")
	return c
}
