// Command madang is the one binary of Madang: the node daemon (desktop, community relay or merchant) and
// the command-line client of its local API. This package only parses flags; the work is in node/, config/
// and apiclient/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/madang-p2p/madang/apiclient"
	"github.com/madang-p2p/madang/config"
)

// Exit codes: 0 ok, 1 operation failed, 2 usage or config error, 3 daemon not running.
const (
	exitOK         = 0
	exitFailed     = 1
	exitUsage      = 2
	exitNotRunning = 3
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// globals are the persistent flags of every command.
type globals struct {
	home       string
	configFile string
	json       bool
	logLevel   string
	logFormat  string
	stdout     io.Writer
	stderr     io.Writer
}

func (g *globals) homeDir() string {
	if g.home != "" {
		return g.home
	}
	return config.DefaultHome()
}

// commands is filled by each command file's init (one file per command group).
var commands []func(g *globals) *cobra.Command

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "madang",
		Short:         "Madang: a peer-to-peer messenger with friends, open chat rooms and local shop channels",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.home, "home", "", "node home directory (default $MADANG_HOME or the XDG data dir)")
	pf.StringVar(&g.configFile, "config", "", "config file (default <home>/config.yaml)")
	pf.BoolVar(&g.json, "json", false, "print machine-readable JSON")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: text or json")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &exitError{code: exitUsage, err: fmt.Errorf("%w\nRun '%s --help' for usage", err, c.CommandPath())}
	})
	for _, mk := range commands {
		root.AddCommand(mk(g))
	}
	return root
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitFailed
	var ee *exitError
	var ce *config.Error
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &ce), errors.Is(err, config.ErrInvalid):
		code = exitUsage
	case errors.Is(err, apiclient.ErrNotRunning):
		code = exitNotRunning
		fmt.Fprintf(stderr, "Error: %v\nStart it with: madang daemon --home %s\n", err, g.homeDir())
		return code
	case isUsageError(err):
		code = exitUsage
	}
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return code
}

// isUsageError recognises cobra's own argument errors (unknown command, wrong arg count).
func isUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "requires at most", "invalid argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
