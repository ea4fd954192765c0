package engine

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policies whenever a .rego file under the policy folder
// changes, until ctx is done. Bursts of events (an editor's write, rename and
// chmod) are folded into one reload after a short quiet period. A reload
// that fails keeps the last good policy; see Reload.
func (e *Engine) Watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching policies: %w", err)
	}
	defer w.Close()
	if err := addTree(w, e.dir); err != nil {
		return fmt.Errorf("watching policies: %w", err)
	}
	if e.watched != nil {
		e.watched(nil, false)
	}
	const quiet = 150 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) {
				// a new subfolder must be watched too
				_ = addTree(w, ev.Name)
			}
			if strings.HasSuffix(ev.Name, ".rego") || ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) {
				timer.Reset(quiet)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			e.log.Warn().Err(err).Msg("policy watcher error")
		case <-timer.C:
			err := e.Reload(ctx) // logged by Reload; the last good policy stays
			if e.watched != nil {
				e.watched(err, true)
			}
		}
	}
}

func addTree(w *fsnotify.Watcher, root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}
