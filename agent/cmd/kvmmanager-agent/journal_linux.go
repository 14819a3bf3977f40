package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// stderrIsJournal reports whether f is the stream systemd connected to the
// journal: JOURNAL_STREAM holds its "device:inode", which must match f (a
// child whose stderr was redirected inherits the variable but not the stream).
func stderrIsJournal(f *os.File, journalStream string) bool {
	if journalStream == "" {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino) == journalStream
}
