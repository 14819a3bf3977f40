//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal is false where the terminal is not probed: no progress bar,
// and the password is read from stdin.
func isTerminal(uintptr) bool { return false }

func readNoEcho(*os.File) (string, error) {
	return "", errors.New("no terminal support on this system")
}
