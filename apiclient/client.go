// Package apiclient is the CLI's client for a running daemon's local API. It finds the daemon through the
// home's `api` file (the bound address) and `api.token`, like kubo's $IPFS_PATH/api.
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/madang-p2p/madang/config"
)

// ErrNotRunning means no daemon answers for the home.
var ErrNotRunning = errors.New("the madang daemon is not running")

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return e.Message
}

// Client talks to one daemon.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client for the API at addr (host:port) with token.
func New(addr, token string) *Client {
	return &Client{base: "http://" + addr, token: token, hc: &http.Client{Timeout: 0}}
}

// FromHome reads the daemon's address and token from home.
func FromHome(home string) (*Client, error) {
	p := config.PathsFor(home)
	addr, err := os.ReadFile(p.APIAddr)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (no %s)", ErrNotRunning, p.APIAddr)
	}
	if err != nil {
		return nil, fmt.Errorf("read api address: %w", err)
	}
	tok, err := os.ReadFile(p.Token)
	if err != nil {
		return nil, fmt.Errorf("read api token: %w", err)
	}
	return New(strings.TrimSpace(string(addr)), strings.TrimSpace(string(tok))), nil
}

// Do sends a request with an optional JSON body and decodes a JSON answer into out (if non-nil). Requests
// that are not streams time out after 60 s.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	resp, err := c.send(ctx, method, path, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return decodeError(resp.StatusCode, raw)
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Stream reads an NDJSON stream (GET) and calls fn for each line until ctx ends, the stream ends, or fn
// returns an error.
func (c *Client) Stream(ctx context.Context, path string, fn func(json.RawMessage) error) error {
	resp, err := c.send(ctx, http.MethodGet, path, nil, "application/x-ndjson")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return decodeError(resp.StatusCode, raw)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(json.RawMessage(bytes.Clone(line))); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read stream: %w", err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", accept)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (nothing listens on %s)", ErrNotRunning, strings.TrimPrefix(c.base, "http://"))
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

func decodeError(status int, raw []byte) error {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
		return &Error{Status: status, Code: e.Error.Code, Message: e.Error.Message}
	}
	return &Error{Status: status, Code: http.StatusText(status), Message: strings.TrimSpace(string(raw))}
}
