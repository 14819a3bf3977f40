package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

// newLogger returns the agent's structured logger at level (debug, info,
// warn, error). With logFile it appends there (OpenRC has no journal);
// otherwise it writes to stderr, without timestamps of its own when stderr
// is the systemd journal, which stamps every line itself.
func newLogger(level, logFile string, stderr io.Writer) (*slog.Logger, func(), error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil || !validLevel(level) {
		return nil, nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	out, closeFn := stderr, func() {}
	opts := &slog.HandlerOptions{Level: lv}
	if logFile != "" {
		if err := os.MkdirAll(filepath.Dir(logFile), 0o750); err != nil {
			return nil, nil, fmt.Errorf("log file %s: %w", logFile, err)
		}
		f, err := os.OpenFile(logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("log file %s: %w", logFile, err)
		}
		out, closeFn = f, func() { f.Close() }
	} else if f, ok := stderr.(*os.File); ok && stderrIsJournal(f, os.Getenv("JOURNAL_STREAM")) {
		opts.ReplaceAttr = dropTime
	}
	return slog.New(slog.NewTextHandler(out, opts)), closeFn, nil
}

func validLevel(s string) bool {
	switch s {
	case "debug", "info", "warn", "error":
		return true
	}
	return false
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
