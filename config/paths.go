package config

import (
	"os"
	"path/filepath"

	"github.com/adrg/xdg"
)

// HomeEnv names the environment variable that overrides the default home directory. It is not a
// configuration key.
const HomeEnv = "MADANG_HOME"

// DefaultHome returns $MADANG_HOME if set, else <XDG data home>/madang.
func DefaultHome() string {
	return homeFrom(os.Getenv(HomeEnv))
}

func homeFrom(env string) string {
	if env != "" {
		return env
	}
	return filepath.Join(xdg.DataHome, "madang")
}

// Paths are the files and directories inside a home directory.
type Paths struct {
	Home     string // the home directory itself
	Config   string // configuration file
	Identity string // private key
	Token    string // API bearer token
	APIAddr  string // address the API actually listens on, written at start
	Lock     string // lock held while a node runs
	Store    string // database directory
}

// PathsFor returns the paths inside home.
func PathsFor(home string) Paths {
	return Paths{
		Home:     home,
		Config:   filepath.Join(home, "config.yaml"),
		Identity: filepath.Join(home, "identity.key"),
		Token:    filepath.Join(home, "api.token"),
		APIAddr:  filepath.Join(home, "api"),
		Lock:     filepath.Join(home, "repo.lock"),
		Store:    filepath.Join(home, "store"),
	}
}
