//go:build !unix

package filelock

import (
	"errors"
	"fmt"
)

// Lock fails with errors.ErrUnsupported where flock(2) does not exist.
func Lock(path string) (unlock func(), err error) {
	return nil, fmt.Errorf("lock %s: %w", path, errors.ErrUnsupported)
}
