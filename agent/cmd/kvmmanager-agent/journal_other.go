//go:build !linux

package main

import "os"

// stderrIsJournal is false: the systemd journal is Linux's.
func stderrIsJournal(*os.File, string) bool { return false }
