package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"

	"github.com/madang-p2p/madang/config"
)

// ErrLocked is returned when another daemon holds the home's lock.
var ErrLocked = errors.New("another madang daemon is using this home")

// LockHome takes the home's lock file for the life of a daemon. The returned function releases it.
func LockHome(home string) (func(), error) {
	p := config.PathsFor(home).Lock
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("lock home: %w", err)
	}
	l := flock.New(p)
	ok, err := l.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	if !ok {
		return nil, fmt.Errorf("%w (%s is locked); stop it first or use another --home", ErrLocked, p)
	}
	return func() { _ = l.Unlock() }, nil
}

// ensureToken returns the API token in path, creating a random one (mode 0600) when missing.
func ensureToken(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(raw))
		if len(t) < 16 {
			return "", fmt.Errorf("api token %s is too short; delete it to make a new one", path)
		}
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read api token: %w", err)
	}
	t := randomToken()
	if err := writeFileAtomic(path, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

// EnsureToken creates the API token file if missing (used by `madang init`).
func EnsureToken(path string) error {
	_, err := ensureToken(path)
	return err
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
