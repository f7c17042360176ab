package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/protocols/contact"
	"github.com/madang-p2p/madang/protocols/dm"
)

func init() { commands = append(commands, msgCmd) }

func convPath(friend, rest string) string {
	return "/api/v1/conversations/" + url.PathEscape(friend) + "/" + rest
}

func printMessage(g *globals, name string, m dm.Message) {
	who := name
	if m.Outgoing {
		who = "me"
	}
	state := ""
	if m.Outgoing {
		state = "  [" + m.State + "]"
	}
	fmt.Fprintf(g.stdout, "%s %s: %s%s\n", m.Time.Local().Format(time.DateTime), who, m.Text, state)
}

func msgCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "msg",
		Short: "End-to-end encrypted messages with friends (a <friend> is an alias, a unique display name or an account ID)",
	}
	var id string
	var wait time.Duration
	send := &cobra.Command{
		Use:   "send <friend> <text>",
		Short: "Send a message; it is stored encrypted and delivered when the friend can be reached",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			if id == "" {
				id = dm.NewID() // chosen here, so that a retry of this command cannot send twice
			}
			var m dm.Message
			if err := cl.Do(c.Context(), "POST", convPath(args[0], "messages"), map[string]string{"id": id, "text": args[1]}, &m); err != nil {
				return err
			}
			if wait > 0 {
				deadline := time.Now().Add(wait)
				for m.State != dm.StateDelivered && m.State != dm.StateRead && m.State != dm.StateFailed && time.Now().Before(deadline) {
					select {
					case <-c.Context().Done():
						return c.Context().Err()
					case <-time.After(100 * time.Millisecond):
					}
					if err := cl.Do(c.Context(), "GET", convPath(args[0], "messages/"+url.PathEscape(m.ID)), nil, &m); err != nil {
						return err
					}
				}
				if m.State != dm.StateDelivered && m.State != dm.StateRead {
					_ = printOut(g, m, func() {})
					return fmt.Errorf("message %s not delivered within %s (state %s); it stays queued and will be retried", m.ID, wait, m.State)
				}
			}
			return printOut(g, m, func() { fmt.Fprintf(g.stdout, "%s %s\n", m.State, m.ID) })
		},
	}
	send.Flags().StringVar(&id, "id", "", "message id (makes a retried send idempotent; default random)")
	send.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the friend's delivery ack (exit 1 if it does not come)")

	var limit int
	log := &cobra.Command{
		Use:   "log <friend>",
		Short: "Show the latest messages of a conversation, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			msgs, name, err := history(c, g, args[0], limit)
			if err != nil {
				return err
			}
			return printOut(g, msgs, func() {
				for _, m := range msgs {
					printMessage(g, name, m)
				}
			})
		},
	}
	log.Flags().IntVar(&limit, "limit", 20, "how many messages")

	var tailLimit int
	tail := &cobra.Command{
		Use:   "tail <friend>",
		Short: "Show the latest messages, then follow new messages and delivery states",
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
			msgs, _, err := history(c, g, f.AccountID, 10)
			if err != nil {
				return err
			}
			shown := map[string]bool{}
			if !g.json {
				for _, m := range msgs {
					printMessage(g, f.Name, m)
					shown[string(m.From)+"/"+m.ID] = true
				}
			}
			n := 0
			errStop := errors.New("limit reached")
			path := "/api/v1/events?types=" + url.QueryEscape(dm.EventReceived+","+dm.EventState)
			err = cl.Stream(c.Context(), path, func(raw json.RawMessage) error {
				var ev struct {
					Type string          `json:"type"`
					Data json.RawMessage `json:"data"`
				}
				if err := json.Unmarshal(raw, &ev); err != nil {
					return fmt.Errorf("decode event: %w", err)
				}
				var m dm.Message
				if err := json.Unmarshal(ev.Data, &m); err != nil || string(m.Conversation) != f.AccountID {
					return nil
				}
				if g.json {
					fmt.Fprintln(g.stdout, string(raw))
				} else if ev.Type == dm.EventReceived {
					if shown[string(m.From)+"/"+m.ID] {
						return nil // already in the history printed above
					}
					printMessage(g, f.Name, m)
				} else if m.From != m.Conversation {
					fmt.Fprintf(g.stdout, "  %s %s\n", m.ID, m.State)
				}
				n++
				if tailLimit > 0 && n >= tailLimit {
					return errStop
				}
				return nil
			})
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		},
	}
	tail.Flags().IntVar(&tailLimit, "limit", 0, "stop after this many events")

	var upTo string
	read := &cobra.Command{
		Use:   "read <friend>",
		Short: "Mark a conversation read (sends read receipts when enabled)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := client(g)
			if err != nil {
				return err
			}
			var out map[string]int
			body := map[string]string{}
			if upTo != "" {
				body["up_to"] = upTo
			}
			if err := cl.Do(c.Context(), "POST", convPath(args[0], "read"), body, &out); err != nil {
				return err
			}
			return printOut(g, out, func() { fmt.Fprintf(g.stdout, "%d message(s) marked read\n", out["read"]) })
		},
	}
	read.Flags().StringVar(&upTo, "up-to", "", "id of the newest message read (default all)")
	c.AddCommand(send, log, tail, read)
	return c
}

// history returns the last limit messages of a conversation, oldest first, and the friend's name.
func history(c *cobra.Command, g *globals, friend string, limit int) ([]dm.Message, string, error) {
	cl, err := client(g)
	if err != nil {
		return nil, "", err
	}
	name := friend
	var f contact.FriendView
	if err := cl.Do(c.Context(), "GET", friendPath(friend), nil, &f); err == nil {
		name = f.Name
	}
	var out struct {
		Messages []dm.Message `json:"messages"`
	}
	if err := cl.Do(c.Context(), "GET", convPath(friend, "messages")+fmt.Sprintf("?limit=%d", max(1, min(limit, 1000))), nil, &out); err != nil {
		return nil, "", err
	}
	slices.Reverse(out.Messages)
	if out.Messages == nil {
		out.Messages = []dm.Message{}
	}
	return out.Messages, name, nil
}
