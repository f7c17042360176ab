package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// daemonProc is a real madang daemon (this test binary acting as the binary) on a fresh home.
type daemonProc struct {
	home   string
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

func startDaemon(tb testing.TB, args ...string) *daemonProc {
	tb.Helper()
	d := &daemonProc{home: tb.TempDir()}
	all := append([]string{"daemon", "--home", d.home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api-listen", "127.0.0.1:0"}, args...)
	d.cmd = exec.Command(os.Args[0], all...)
	d.cmd.Env = append(os.Environ(), "MADANG_AS_MAIN=1")
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(d.stop)
	return d
}

// waitReady polls /healthz until it answers 200.
func (d *daemonProc) waitReady(tb testing.TB) string {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile(filepath.Join(d.home, "api")); err == nil {
			addr := strings.TrimSpace(string(raw))
			if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return addr
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	tb.Fatalf("daemon not ready: %s", d.stderr.String())
	return ""
}

func (d *daemonProc) stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
}

func (d *daemonProc) rssKiB(tb testing.TB) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[1], 64)
			return v
		}
	}
	tb.Fatal("no VmRSS")
	return 0
}

func (d *daemonProc) status(tb testing.TB) map[string]any {
	cmd := exec.Command(os.Args[0], "--home", d.home, "status", "--json")
	cmd.Env = append(os.Environ(), "MADANG_AS_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("status: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

// BenchmarkDaemonReady measures the time from exec of `madang daemon` on a fresh home (identity, config,
// token and store created on the way) until the API answers /healthz. Goal: < 1 s.
func BenchmarkDaemonReady(b *testing.B) {
	for b.Loop() {
		start := time.Now()
		d := startDaemon(b)
		d.waitReady(b)
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/ready")
		d.stop()
	}
}

// BenchmarkIdleRSS starts one daemon and three peers connected to it, waits 30 s and reports the daemon's
// resident set size. Goal: < 60 MiB.
func BenchmarkIdleRSS(b *testing.B) {
	for b.Loop() {
		main := startDaemon(b)
		main.waitReady(b)
		addr := main.status(b)["addrs"].([]any)[0].(string)
		for range 3 {
			p := startDaemon(b)
			p.waitReady(b)
			cmd := exec.Command(os.Args[0], "--home", p.home, "peer", "connect", addr)
			cmd.Env = append(os.Environ(), "MADANG_AS_MAIN=1")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("connect: %v %s", err, out)
			}
		}
		ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
		<-ctx.Done()
		cancel()
		if peers := main.status(b)["peers"].(float64); peers < 3 {
			b.Fatalf("peers = %v", peers)
		}
		b.ReportMetric(main.rssKiB(b)/1024, "MiB-rss")
	}
}
