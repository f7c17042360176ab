package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/protocols/room"
)

func init() { commands = append(commands, roomCmd) }

// resolveRoom turns a <room> argument into a room ID: an ID, a link, or the name (or an ID prefix) of
// exactly one joined room.
func resolveRoom(c *cobra.Command, cl *apiclient.Client, ref string) (string, error) {
	if l, err := room.ParseLink(ref); err == nil {
		return l.Room.String(), nil
	}
	var out struct {
		Rooms []room.Info `json:"rooms"`
	}
	if err := cl.Do(c.Context(), "GET", "/api/v1/rooms", nil, &out); err != nil {
		return "", err
	}
	var found []room.Info
	for _, r := range out.Rooms {
		if strings.EqualFold(r.Name, ref) || (len(ref) >= 4 && strings.HasPrefix(r.RoomID, ref)) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 1:
		return found[0].RoomID, nil
	case 0:
		return "", usageErr("no joined room is called %q (give its ID or link; see 'madang room ls')", ref)
	}
	return "", usageErr("%d joined rooms match %q; give the room ID", len(found), ref)
}

func roomPath(id, rest string) string {
	p := "/api/v1/rooms/" + url.PathEscape(id)
	if rest != "" {
		p += "/" + rest
	}
	return p
}

// withRoomClient resolves the <room> argument and hands over a client.
func withRoomClient(g *globals, run func(c *cobra.Command, cl *apiclient.Client, id string, args []string) error) func(*cobra.Command, []string) error {
	return func(c *cobra.Command, args []string) error {
		cl, err := client(g)
		if err != nil {
			return err
		}
		id, err := resolveRoom(c, cl, args[0])
		if err != nil {
			return err
		}
		return run(c, cl, id, args[1:])
	}
}

func printRoomMessage(g *globals, m room.View) {
	who := m.Nick
	if who == "" {
		who = m.Persona[:9]
	}
	if m.Host {
		who += "★"
	}
	ts := m.Time.Local().Format(time.TimeOnly)
	switch {
	case m.Kind == "join":
		fmt.Fprintf(g.stdout, "%s * %s joined\n", ts, who)
	case m.Kind == "leave":
		fmt.Fprintf(g.stdout, "%s * %s left\n", ts, who)
	case m.Hidden:
		fmt.Fprintf(g.stdout, "%s %s: (hidden by a host)  [%s]\n", ts, who, m.ID)
	default:
		reply := ""
		if m.ReplyTo != "" {
			reply = " ↪" + m.ReplyTo[:8]
		}
		state := ""
		if m.Pending {
			state = "  (pending: sent when a member is reachable)"
		}
		fmt.Fprintf(g.stdout, "%s %s:%s %s  [%s]%s\n", ts, who, reply, m.Text, m.ID, state)
	}
}

func printRoomInfo(g *globals, r room.Info) {
	flags := []string{r.Role, r.JoinPolicy}
	if r.Closed {
		flags = append(flags, "closed")
	}
	if r.SlowMode > 0 {
		flags = append(flags, fmt.Sprintf("slow %ds", r.SlowMode))
	}
	fmt.Fprintf(g.stdout, "%s  %s  #%s  %d/%d members  %d messages  %d peers  (%s)\n", r.RoomID, r.Name,
		strings.Join(r.Tags, " #"), r.Members, r.Capacity, r.Messages, r.Peers, strings.Join(flags, ", "))
	if r.Pinned != "" {
		fmt.Fprintf(g.stdout, "    📌 %s\n", r.Pinned)
	}
}

func roomCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "room",
		Short: "Open Chat: interest rooms with a separate, unlinkable profile in each (a <room> is its ID, link or name)",
	}
	c.AddCommand(roomCreateCmd(g), roomJoinCmd(g), roomLeaveCmd(g), roomSendCmd(g), roomLogCmd(g), roomTailCmd(g),
		roomSearchCmd(g), roomLsCmd(g), roomLinkCmd(g), roomMembersCmd(g), roomModCmd(g))
	return c
}

func roomCreateCmd(g *globals) *cobra.Command {
	var name, desc, nick, lang string
	var tags []string
	var capacity int
	var linkOnly bool
	var slow time.Duration
	c := &cobra.Command{
		Use:   "create --name N --tag T… [--desc D] [--capacity C]",
		Short: "Create a room owned by you (listed in the directory under its tags unless --link-only)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if strings.TrimSpace(name) == "" {
				return usageErr("--name is required")
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			policy := "open"
			if linkOnly {
				policy = "link"
			}
			var out struct {
				RoomID string    `json:"room_id"`
				Link   string    `json:"link"`
				Room   room.Info `json:"room"`
			}
			req := map[string]any{"name": name, "description": desc, "tags": tags, "capacity": capacity, "language": lang,
				"join_policy": policy, "slow_mode_seconds": int(slow / time.Second), "nick": nick}
			if err := cl.Do(c.Context(), "POST", "/api/v1/rooms", req, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "Created %s (%s)\nlink: %s\n", out.Room.Name, out.RoomID, out.Link)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&name, "name", "", "room name (up to 64 characters)")
	f.StringArrayVar(&tags, "tag", nil, "interest tag (repeat, up to 10)")
	f.StringVar(&desc, "desc", "", "description")
	f.IntVar(&capacity, "capacity", 0, "maximum members (default 1500)")
	f.StringVar(&lang, "lang", "", "language of the room, e.g. ko")
	f.BoolVar(&linkOnly, "link-only", false, "joined only with the room's link (which carries a secret); not listed")
	f.DurationVar(&slow, "slow", 0, "slow mode: minimum time between two messages of a member")
	f.StringVar(&nick, "nick", "", "your nickname in this room")
	return c
}

func roomJoinCmd(g *globals) *cobra.Command {
	var nick string
	c := &cobra.Command{
		Use:   "join <id|link>",
		Short: "Join a room under a new persona (nothing links it to you or your other rooms)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out struct {
				RoomID string    `json:"room_id"`
				Room   room.Info `json:"room"`
			}
			if err := cl.Do(c.Context(), "POST", "/api/v1/rooms/join", map[string]string{"room": args[0], "nick": nick}, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				fmt.Fprintf(g.stdout, "Joined %s (%s) as %s: %d members\n", out.Room.Name, out.RoomID, cmpOr(out.Room.Nick, "(no nick)"), out.Room.Members)
				if out.Room.Pinned != "" {
					fmt.Fprintf(g.stdout, "📌 %s\n", out.Room.Pinned)
				}
			})
		},
	}
	c.Flags().StringVar(&nick, "nick", "", "your nickname in this room")
	return c
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func roomLeaveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "leave <room>",
		Short: "Leave a room (its local history is deleted)",
		Args:  cobra.ExactArgs(1),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, _ []string) error {
			var out map[string]string
			if err := cl.Do(c.Context(), "POST", roomPath(id, "leave"), nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintf(g.stdout, "Left %s\n", id) })
		}),
	}
}

func roomSendCmd(g *globals) *cobra.Command {
	var reply string
	c := &cobra.Command{
		Use:   "send <room> <text>",
		Short: "Send a message to a room",
		Args:  cobra.MinimumNArgs(2),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, args []string) error {
			var out struct {
				Message   room.View `json:"message"`
				Published bool      `json:"published"`
			}
			body := map[string]string{"text": strings.Join(args, " "), "reply_to": reply}
			if err := cl.Do(c.Context(), "POST", roomPath(id, "messages"), body, &out); err != nil {
				return err
			}
			return printOut(g, out, func() {
				if out.Published {
					fmt.Fprintf(g.stdout, "sent %s\n", out.Message.ID)
				} else {
					fmt.Fprintf(g.stdout, "stored %s (no member reachable now; it reaches the room when one is)\n", out.Message.ID)
				}
			})
		}),
	}
	c.Flags().StringVar(&reply, "reply", "", "id of the message this answers")
	return c
}

func roomMessages(c *cobra.Command, cl *apiclient.Client, id string, limit int) ([]room.View, error) {
	var out struct {
		Messages []room.View `json:"messages"`
	}
	err := cl.Do(c.Context(), "GET", roomPath(id, "messages")+fmt.Sprintf("?limit=%d", max(1, min(limit, 1000))), nil, &out)
	return out.Messages, err
}

func roomLogCmd(g *globals) *cobra.Command {
	var limit int
	c := &cobra.Command{
		Use:   "log <room>",
		Short: "Show a room's latest messages, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, _ []string) error {
			msgs, err := roomMessages(c, cl, id, limit)
			if err != nil {
				return err
			}
			return printOut(g, msgs, func() {
				for _, m := range msgs {
					printRoomMessage(g, m)
				}
			})
		}),
	}
	c.Flags().IntVar(&limit, "limit", 20, "how many messages")
	return c
}

func roomTailCmd(g *globals) *cobra.Command {
	var history, limit int
	c := &cobra.Command{
		Use:   "tail <room>",
		Short: "Show a room's latest messages, then follow new messages and moderation (one JSON object per line with --json)",
		Args:  cobra.ExactArgs(1),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, _ []string) error {
			errStop := errors.New("limit reached")
			n := 0
			seen := map[string]bool{}
			emit := func(v any, human func()) error {
				if g.json {
					b, _ := json.Marshal(v)
					fmt.Fprintln(g.stdout, string(b))
				} else {
					human()
				}
				if n++; limit > 0 && n >= limit {
					return errStop
				}
				return nil
			}
			// The stream replays the daemon's retained events (since=0); those from before this command
			// started are skipped, and messages already shown as history are skipped, so that nothing that
			// arrives while the history is fetched falls between the two.
			start := time.Now()
			if history > 0 {
				msgs, err := roomMessages(c, cl, id, history)
				if err != nil {
					return err
				}
				for _, m := range msgs {
					seen[m.ID] = true
					if err := emit(m, func() { printRoomMessage(g, m) }); err != nil {
						return nil
					}
				}
			}
			path := "/api/v1/events?types=" + url.QueryEscape(room.EventMessage+","+room.EventUpdated) + "&since=0"
			err := cl.Stream(c.Context(), path, func(raw json.RawMessage) error {
				var ev struct {
					Type string          `json:"type"`
					Time time.Time       `json:"time"`
					Data json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal(raw, &ev); err != nil {
					return fmt.Errorf("decode event: %w", err)
				}
				if ev.Time.Before(start) {
					return nil
				}
				switch ev.Type {
				case room.EventMessage:
					var me room.MessageEvent
					if json.Unmarshal(ev.Data, &me) != nil || me.RoomID != id || seen[me.Message.ID] {
						return nil
					}
					seen[me.Message.ID] = true
					return emit(me.Message, func() { printRoomMessage(g, me.Message) })
				case room.EventUpdated:
					var ue room.UpdateEvent
					if json.Unmarshal(ev.Data, &ue) != nil || ue.RoomID != id {
						return nil
					}
					return emit(ue, func() {
						what := ue.Reason
						if ue.Action != "" {
							what = "moderation: " + ue.Action
						}
						fmt.Fprintf(g.stdout, "%s * %s\n", time.Now().Format(time.TimeOnly), what)
					})
				}
				return nil
			})
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}),
	}
	c.Flags().IntVar(&history, "history", 10, "how many earlier messages to show first")
	c.Flags().IntVar(&limit, "limit", 0, "stop after this many lines (history included)")
	return c
}

func roomSearchCmd(g *globals) *cobra.Command {
	var tags []string
	var limit int
	var wait time.Duration
	c := &cobra.Command{
		Use:   "search [--tag T]… [words]",
		Short: "Find open rooms by interest tags and words of their names (ranked on this device)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(tags) == 0 && len(args) == 0 {
				return usageErr("give --tag or words to search for")
			}
			cl, err := client(g)
			if err != nil {
				return err
			}
			q := url.Values{}
			for _, t := range tags {
				q.Add("tag", t)
			}
			if len(args) > 0 {
				q.Set("q", strings.Join(args, " "))
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var out room.SearchResult
			deadline := time.Now().Add(wait)
			for {
				if err := cl.Do(c.Context(), "GET", "/api/v1/directory/rooms?"+q.Encode(), nil, &out); err != nil {
					return err
				}
				if len(out.Cards) > 0 || !time.Now().Before(deadline) {
					break
				}
				select {
				case <-c.Context().Done():
					return c.Context().Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
			if err := printOut(g, out, func() {
				if len(out.Cards) == 0 {
					fmt.Fprintln(g.stdout, "No rooms found.")
				}
				for _, r := range out.Cards {
					joined := ""
					if r.Joined {
						joined = "  (joined)"
					}
					fmt.Fprintf(g.stdout, "%s  %s  #%s  %d/%d members, %d messages today%s\n", r.RoomID, r.Name,
						strings.Join(r.Tags, " #"), r.Members, r.Capacity, r.Messages24h, joined)
					if r.Description != "" {
						fmt.Fprintf(g.stdout, "    %s\n", r.Description)
					}
				}
			}); err != nil {
				return err
			}
			if wait > 0 && len(out.Cards) == 0 {
				return fmt.Errorf("no room found within %s", wait)
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&tags, "tag", nil, "interest tag (repeat)")
	c.Flags().IntVar(&limit, "limit", 0, "at most this many rooms (default 50)")
	c.Flags().DurationVar(&wait, "wait", 0, "keep searching this long until a room is found (exit 1 if none)")
	return c
}

func roomLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the rooms you are in (and, on a relay, the rooms it keeps)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out struct {
				Rooms []room.Info `json:"rooms"`
			}
			if err := cl.Do(c.Context(), "GET", "/api/v1/rooms", nil, &out); err != nil {
				return err
			}
			return printOut(g, out.Rooms, func() {
				if len(out.Rooms) == 0 {
					fmt.Fprintln(g.stdout, "No rooms yet. Find some with 'madang room search --tag <interest>'.")
				}
				for _, r := range out.Rooms {
					printRoomInfo(g, r)
				}
			})
		},
	}
}

func roomLinkCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "link <room>",
		Short: "Print a link others can join the room with (it carries the secret of link-only rooms)",
		Args:  cobra.ExactArgs(1),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, _ []string) error {
			var out map[string]string
			if err := cl.Do(c.Context(), "GET", roomPath(id, "link"), nil, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintln(g.stdout, out["link"]) })
		}),
	}
}

func roomMembersCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "members <room>",
		Short: "List the personas seen in a room (nicks, hosts, bans)",
		Args:  cobra.ExactArgs(1),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, _ []string) error {
			var out struct {
				Members []room.MemberView `json:"members"`
			}
			if err := cl.Do(c.Context(), "GET", roomPath(id, "members"), nil, &out); err != nil {
				return err
			}
			return printOut(g, out.Members, func() {
				for _, m := range out.Members {
					var flags []string
					for f, on := range map[string]bool{"host": m.Host, "banned": m.Banned, "left": m.Left} {
						if on {
							flags = append(flags, f)
						}
					}
					fmt.Fprintf(g.stdout, "%s  %s  %s\n", m.Persona, cmpOr(m.Nick, "-"), strings.Join(flags, ","))
				}
			})
		}),
	}
}

func roomModCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "mod", Short: "Moderate a room (owner and co-hosts): ban, unban, hide, pin, slow, add, rm, close, log"}
	act := func(use, short string, nargs int, build func(args []string) (room.Action, error)) *cobra.Command {
		var reason string
		var dur time.Duration
		cmd := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.RangeArgs(1, 1+nargs),
			RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, args []string) error {
				a, err := build(args)
				if err != nil {
					return err
				}
				if a.Action == "ban" {
					a.Reason, a.Seconds = reason, int(dur/time.Second)
				}
				var out room.ModResult
				if err := cl.Do(c.Context(), "POST", roomPath(id, "moderation"), a, &out); err != nil {
					return err
				}
				return printOut(g, out, func() { fmt.Fprintf(g.stdout, "%s applied (seq %d)\n", a.Action, out.Seq) })
			}),
		}
		if strings.HasPrefix(use, "ban ") {
			cmd.Flags().StringVar(&reason, "reason", "", "why (shown in the moderation log)")
			cmd.Flags().DurationVar(&dur, "for", 0, "ban for this long (default until unbanned)")
		}
		return cmd
	}
	one := func(args []string, what string) (string, error) {
		if len(args) != 1 {
			return "", usageErr("give the %s", what)
		}
		return args[0], nil
	}
	persona := func(action string) func([]string) (room.Action, error) {
		return func(args []string) (room.Action, error) {
			p, err := one(args, "member's persona or nick")
			return room.Action{Action: action, Persona: p}, err
		}
	}
	c.AddCommand(
		act("ban <room> <persona|nick>", "Ban a member: every node drops their new messages", 1, persona("ban")),
		act("unban <room> <persona|nick>", "Lift a ban", 1, persona("unban")),
		act("hide <room> <message-id>", "Hide a message for everyone", 1, func(args []string) (room.Action, error) {
			m, err := one(args, "message id")
			return room.Action{Action: "hide", MessageID: m}, err
		}),
		act("pin <room> [text]", "Pin a notice (no text unpins)", 1, func(args []string) (room.Action, error) {
			return room.Action{Action: "pin", Text: strings.Join(args, " ")}, nil
		}),
		act("slow <room> <duration|off>", "Set slow mode (minimum time between two messages of a member)", 1, func(args []string) (room.Action, error) {
			s, err := one(args, "duration (e.g. 30s) or off")
			if err != nil {
				return room.Action{}, err
			}
			if s == "off" {
				return room.Action{Action: "slow"}, nil
			}
			d, err := time.ParseDuration(s)
			if err != nil {
				if n, err2 := strconv.Atoi(s); err2 == nil {
					d = time.Duration(n) * time.Second
				} else {
					return room.Action{}, usageErr("slow: %v", err)
				}
			}
			return room.Action{Action: "slow", Seconds: int(d / time.Second)}, nil
		}),
		act("add <room> <persona|nick>", "Make a member a co-host (owner only)", 1, persona("add")),
		act("rm <room> <persona|nick>", "Remove a co-host (owner only)", 1, persona("rm")),
		act("close <room>", "Close the room for good: no more messages (owner only)", 0, func([]string) (room.Action, error) {
			return room.Action{Action: "close"}, nil
		}),
		roomModLogCmd(g),
	)
	return c
}

func roomModLogCmd(g *globals) *cobra.Command {
	var waitSeq uint64
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "log <room>",
		Short: "Show the room's moderation log",
		Args:  cobra.ExactArgs(1),
		RunE: withRoomClient(g, func(c *cobra.Command, cl *apiclient.Client, id string, _ []string) error {
			var out struct {
				Entries []room.ModEntry `json:"entries"`
			}
			deadline := time.Now().Add(timeout)
			for {
				if err := cl.Do(c.Context(), "GET", roomPath(id, "moderation"), nil, &out); err != nil {
					return err
				}
				if waitSeq == 0 || (len(out.Entries) > 0 && out.Entries[len(out.Entries)-1].Seq >= waitSeq) {
					break
				}
				if !time.Now().Before(deadline) {
					return fmt.Errorf("moderation log did not reach seq %d within %s", waitSeq, timeout)
				}
				select {
				case <-c.Context().Done():
					return c.Context().Err()
				case <-time.After(100 * time.Millisecond):
				}
			}
			return printOut(g, out.Entries, func() {
				for _, e := range out.Entries {
					target := e.Target
					if e.Seconds > 0 {
						target = fmt.Sprintf("%ds", e.Seconds)
					}
					fmt.Fprintf(g.stdout, "%3d %s %-6s by %s %s %s\n", e.Seq, e.Time.Local().Format(time.DateTime), e.Action,
						e.Signer, target, e.Text)
				}
			})
		}),
	}
	c.Flags().Uint64Var(&waitSeq, "wait-seq", 0, "wait until the log has an entry with at least this seq")
	c.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long --wait-seq waits")
	return c
}
