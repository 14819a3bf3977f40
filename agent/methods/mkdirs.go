//go:build !windows

package methods

import (
	"errors"
	"io/fs"
	"os"
	"strings"
)

// mkdirs creates dir and its missing parents inside root, like
// root.MkdirAll, and returns a function that removes the directories it
// created, deepest first (those still empty), so that a file_write failing
// later has no side effect. dir is relative to root, without "..". If mkdirs
// itself fails, what it created is already removed.
func mkdirs(root *os.Root, dir string, perm os.FileMode) (undo func(), err error) {
	var created []string
	undo = func() {
		for i := len(created) - 1; i >= 0; i-- {
			_ = root.Remove(created[i])
		}
	}
	comps := strings.Split(dir, "/")
	for i := range comps {
		if comps[i] == "" || comps[i] == "." {
			continue
		}
		p := strings.Join(comps[:i+1], "/")
		err := root.Mkdir(p, perm)
		switch {
		case err == nil:
			created = append(created, p)
		case errors.Is(err, fs.ErrExist):
			// Already there (a directory, or something the next
			// component will fail on).
		default:
			undo()
			return nil, err
		}
	}
	return undo, nil
}
