package secretmap

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// builtin is validated once; every Store without a file serves it.
var builtin = sync.OnceValue(Builtin)

// settleDelay is how long file events must pause before the file is read again.
const settleDelay = 100 * time.Millisecond

// Store holds the map in force. Readers get an immutable snapshot; a reload swaps the whole map
// at once, so a request never sees half of an old map and half of a new one.
type Store struct {
	current atomic.Pointer[Map]
	path    string
	last    []byte
}

// NewStore serves the built-in map when path is empty, else the built-in map extended by the file
// at path. An invalid file is an error here: the binary refuses to start with it.
func NewStore(path string) (*Store, error) {
	s := &Store{path: path}
	if path == "" {
		s.current.Store(builtin())
		return s, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	s.last = data
	s.current.Store(m)
	return s, nil
}

// StaticStore serves one map; for tests and callers that never reload.
func StaticStore(m *Map) *Store {
	s := &Store{}
	s.current.Store(m)
	return s
}

// Map returns the map in force.
func (s *Store) Map() *Map { return s.current.Load() }

// Reload re-reads the file. It reports changed=false when the content is the same. When the new
// file is invalid the old map stays in force and the error says why (DESIGN.md §3: rejected as a
// whole, the old map stays).
func (s *Store) Reload() (changed bool, err error) {
	if s.path == "" {
		return false, nil
	}
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false, err
	}
	if bytes.Equal(data, s.last) {
		return false, nil
	}
	m, err := LoadFile(s.path)
	if err != nil {
		return false, err
	}
	s.last = data
	s.current.Store(m)
	return true, nil
}

// Watch reloads the file whenever it may have changed, until ctx ends, and reports to onReload
// each reload that changed the map, each new failure (a file that stays bad is reported once),
// and the first good read after a failure even when it changed nothing (the file put back as it
// was): so a caller can tell at every moment whether the file on disk is the map in force. It watches the file's folder, not the
// file, because a ConfigMap volume updates by swapping a symlink; a poll every interval backs
// up the watch for file systems that send no events. Watch must be the only caller of Reload.
func (s *Store) Watch(ctx context.Context, interval time.Duration, onReload func(changed bool, err error)) error {
	if s.path == "" {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }()
	if err := w.Add(filepath.Dir(s.path)); err != nil {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var lastErr string
	try := func() {
		changed, err := s.Reload()
		// Report a failing file once, not on every poll, every successful change, and the
		// recovery from a failure.
		switch {
		case err != nil && err.Error() != lastErr:
			lastErr = err.Error()
			onReload(false, err)
		case err == nil && (changed || lastErr != ""):
			lastErr = ""
			onReload(changed, nil)
		}
	}
	// Events come in bursts while a file is written; read it once they have settled.
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.Events:
			settle.Reset(settleDelay)
		case err := <-w.Errors:
			// A watch error means events may be lost: read the file once things settle.
			if err != nil {
				settle.Reset(settleDelay)
			}
		case <-settle.C:
			try()
		case <-tick.C:
			try()
		}
	}
}
