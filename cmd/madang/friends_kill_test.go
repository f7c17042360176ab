package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/protocols/dm"
)

// friendDaemon is the real binary (this test binary as madang) running a daemon on a fixed port.
type friendDaemon struct {
	t      *testing.T
	home   string
	port   int
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func friendFreePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (d *friendDaemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(os.Args[0], "daemon", "--home", d.home, "--dht-mode", "server",
		"--listen", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", d.port), "--api-listen", "127.0.0.1:0")
	d.cmd.Env = append(os.Environ(), "MADANG_AS_MAIN=1", "MADANG_FRIENDS_RETRY_MIN=100ms", "MADANG_FRIENDS_RETRY_MAX=500ms")
	d.stderr = &bytes.Buffer{}
	d.cmd.Stderr = d.stderr
	_ = os.Remove(filepath.Join(d.home, "api"))
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if cl, err := apiclient.FromHome(d.home); err == nil {
			if err := cl.Do(d.t.Context(), "GET", "/api/v1/node", nil, nil); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			_ = d.cmd.Process.Kill()
			d.t.Fatalf("daemon %s not ready: %s", d.home, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is kill -9.
func (d *friendDaemon) kill() {
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
}

func (d *friendDaemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		d.kill()
		d.t.Errorf("daemon %s did not stop on SIGTERM", d.home)
	}
}

func (d *friendDaemon) cli(args ...string) string {
	d.t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"--home", d.home}, args...), &out, &errb); code != 0 {
		d.t.Fatalf("madang %s: exit %d: %s\ndaemon: %s", strings.Join(args, " "), code, errb.String(), d.stderr)
	}
	return out.String()
}

func (d *friendDaemon) jsonOut(v any, args ...string) {
	d.t.Helper()
	if err := json.Unmarshal([]byte(d.cli(append([]string{"--json"}, args...)...)), v); err != nil {
		d.t.Fatal(err)
	}
}

// TestKillAfterSendDeliversOnce: kill -9 of A's daemon right after `msg send` returned; after the restart
// the message is delivered exactly once — with B offline at the time of the kill, and with B online (where
// the kill may land before or after B stored the message but before A saw the ack).
func TestKillAfterSendDeliversOnce(t *testing.T) {
	a := &friendDaemon{t: t, home: t.TempDir(), port: friendFreePort(t)}
	b := &friendDaemon{t: t, home: t.TempDir(), port: friendFreePort(t)}
	a.start()
	b.start()
	defer func() {
		a.stop()
		b.stop()
	}()
	var idA, idB struct {
		AccountID string   `json:"account_id"`
		Addrs     []string `json:"addrs"`
	}
	a.jsonOut(&idA, "id")
	b.jsonOut(&idB, "id")
	b.cli("peer", "connect", idA.Addrs[0])
	var inv struct {
		Link string `json:"link"`
	}
	a.jsonOut(&inv, "invite", "create")
	if out := b.cli("invite", "accept", inv.Link); !strings.Contains(out, "now friends") {
		t.Fatalf("accept: %s", out)
	}

	delivered := func(id string) {
		t.Helper()
		cl, _ := apiclient.FromHome(a.home)
		deadline := time.Now().Add(30 * time.Second)
		for {
			var m dm.Message
			err := cl.Do(t.Context(), "GET", "/api/v1/conversations/"+idB.AccountID+"/messages/"+url.PathEscape(id), nil, &m)
			if err == nil && m.State == dm.StateDelivered {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not delivered (state %q, err %v)\nA: %s\nB: %s", id, m.State, err, a.stderr, b.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	countAtB := func(id string) int {
		t.Helper()
		var out struct {
			Messages []dm.Message `json:"messages"`
		}
		cl, _ := apiclient.FromHome(b.home)
		if err := cl.Do(t.Context(), "GET", "/api/v1/conversations/"+idA.AccountID+"/messages?limit=1000", nil, &out); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range out.Messages {
			if m.ID == id {
				n++
			}
		}
		return n
	}

	// B offline: the message can only be in A's outbox when A dies.
	b.stop()
	var m dm.Message
	a.jsonOut(&m, "msg", "send", idB.AccountID, "sent just before the crash", "--id", "crash-0")
	if m.State != dm.StateQueued {
		t.Fatalf("state after send: %s", m.State)
	}
	a.kill()
	b.start()
	a.start()
	delivered("crash-0")
	if n := countAtB("crash-0"); n != 1 {
		t.Fatalf("B shows crash-0 %d times", n)
	}

	// B online: kill A at once, several times.
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("crash-%d", i)
		a.jsonOut(&m, "msg", "send", idB.AccountID, "online crash "+id, "--id", id)
		a.kill()
		a.start()
		delivered(id)
		if n := countAtB(id); n != 1 {
			t.Fatalf("B shows %s %d times", id, n)
		}
	}
}
