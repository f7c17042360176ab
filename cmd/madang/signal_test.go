package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestDaemonSIGTERM runs the real binary (this test binary acting as madang) and checks that SIGTERM stops it
// with exit 0 within 5 s, removing the API address file and releasing the lock.
func TestDaemonSIGTERM(t *testing.T) {
	home := t.TempDir()
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "daemon", "--home", home, "--listen", "/ip4/127.0.0.1/tcp/0", "--api-listen", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "MADANG_AS_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stderr
	}
	for round := range 2 { // the second round proves the lock and api file were released
		cmd, stderr := start()
		apiFile := filepath.Join(home, "api")
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(apiFile); err == nil {
				break
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("round %d: daemon not ready: %s", round, stderr)
			}
			time.Sleep(20 * time.Millisecond)
		}
		sent := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: exit after SIGTERM: %v\n%s", round, err, stderr)
			}
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("round %d: daemon still running 5s after SIGTERM", round)
		}
		t.Logf("round %d: stopped %v after SIGTERM", round, time.Since(sent))
		if _, err := os.Stat(apiFile); !os.IsNotExist(err) {
			t.Fatalf("round %d: api file left behind", round)
		}
	}
}
