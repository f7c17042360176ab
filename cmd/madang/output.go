package main

import (
	"encoding/json"
	"fmt"

	"github.com/madang-p2p/madang/apiclient"
)

// printOut prints v as indented JSON with --json, else calls human.
func printOut(g *globals, v any, human func()) error {
	if g.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
		return nil
	}
	human()
	return nil
}

// client returns the API client of the home's running daemon.
func client(g *globals) (*apiclient.Client, error) {
	return apiclient.FromHome(g.homeDir())
}
