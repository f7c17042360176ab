package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary act as the madang binary inside testscript scripts (and for tests that exec
// it directly with MADANG_AS_MAIN=1).
func TestMain(m *testing.M) {
	if os.Getenv("MADANG_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	testscript.Main(m, map[string]func(){
		"madang": func() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) },
	})
}

// TestScripts drives the real binary through testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("MADANG_HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("XDG_DATA_HOME", filepath.Join(env.WorkDir, "xdg"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitapi":  cmdWaitAPI,
			"jsonenv":  cmdJSONEnv,
			"waitgone": cmdWaitGone,
			"exitcode": cmdExitCode,
		},
	})
}

// waitapi <home> [seconds]: wait until the daemon of home answers /healthz.
func cmdWaitAPI(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: waitapi <home> [seconds]")
	}
	limit := 10 * time.Second
	if len(args) > 1 {
		s, _ := strconv.Atoi(args[1])
		limit = time.Duration(s) * time.Second
	}
	home := ts.MkAbs(args[0])
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if raw, err := os.ReadFile(filepath.Join(home, "api")); err == nil {
			resp, err := http.Get("http://" + strings.TrimSpace(string(raw)) + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					if neg {
						ts.Fatalf("api of %s is up", home)
					}
					return
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !neg {
		ts.Fatalf("api of %s not ready within %v", home, limit)
	}
}

// waitgone <file> [seconds]: wait until file no longer exists (the daemon removes <home>/api on exit).
func cmdWaitGone(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: waitgone <file> [seconds]")
	}
	limit := 10 * time.Second
	if len(args) > 1 {
		s, _ := strconv.Atoi(args[1])
		limit = time.Duration(s) * time.Second
	}
	p := ts.MkAbs(args[0])
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(p); os.IsNotExist(err) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s still exists after %v", p, limit)
}

// jsonenv NAME path: parse the last stdout as JSON, take the value at a dotted path (array index as a
// number, e.g. addrs.0), and set it as environment variable NAME.
func cmdJSONEnv(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: jsonenv NAME path")
	}
	var v any
	if err := json.Unmarshal([]byte(ts.ReadFile("stdout")), &v); err != nil {
		ts.Fatalf("stdout is not JSON: %v", err)
	}
	for _, part := range strings.Split(args[1], ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				ts.Fatalf("index %q out of range in %s", part, args[1])
			}
			v = x[i]
		default:
			ts.Fatalf("no %q in %s", part, args[1])
		}
	}
	if v == nil {
		ts.Fatalf("%s is missing", args[1])
	}
	s, ok := v.(string)
	if !ok {
		s = fmt.Sprint(v)
	}
	ts.Setenv(args[0], s)
}

// exitcode N prog args...: run prog and require exit status N (stdout/stderr are kept for stdout/stderr).
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N prog [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	if (got == want) == neg {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}
