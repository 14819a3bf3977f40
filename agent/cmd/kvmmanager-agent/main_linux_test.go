package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// seedConfig is the shipped config; the agent's tests load this file.
var seedConfig = filepath.Join(testenv.MustRoot(), "packaging", "config.json")

func TestRunExits(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("{\n  \"log_level\": \"info\",\n  \"allowed_read_path\": [\"/\"]\n}\n"), 0o644)
	badType := filepath.Join(dir, "type.json")
	os.WriteFile(badType, []byte(`{"max_file_size_bytes": "10M"}`), 0o644)
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("keep"), 0o644)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr []string // substrings of a single stderr line
	}{
		{"version", []string{"--version"}, 0, "kvmmanager-agent 0.0.0-dev (commit unknown, protocol 1.1.0)\n", nil},
		{"check seed config", []string{"--check-config", "--config", seedConfig}, 0, seedConfig + ": OK\n", nil},
		{"check missing config", []string{"--check-config", "--config", filepath.Join(dir, "none.json")}, 0,
			filepath.Join(dir, "none.json") + " does not exist: the built-in defaults apply\n", nil},
		{"unknown key", []string{"--check-config", "--config", bad}, 2, "",
			[]string{bad + ":3:3", `"allowed_read_path"`, "unknown key"}},
		{"wrong type", []string{"--config", badType}, 2, "",
			[]string{badType + ":1:2", `"max_file_size_bytes"`}},
		{"bad log level", []string{"--config", seedConfig, "--log-level", "loud"}, 2, "", []string{`log level "loud"`}},
		{"check config with a bad log level", []string{"--check-config", "--config", seedConfig, "--log-level", "verbose"}, 2, "",
			[]string{`--log-level: log level "verbose"`}},
		{"bad listen", []string{"--config", seedConfig, "--listen", "/tmp/x.sock"}, 2, "", []string{"want unix:PATH"}},
		{"bad qga-listen", []string{"--config", seedConfig, "--qga-listen", "unix:"}, 2, "", []string{"--qga-listen", "want unix:PATH"}},
		{"qga-listen on a regular file", []string{"--config", seedConfig, "--qga-listen", "unix:" + regular}, 1, "",
			[]string{"refusing to replace an existing regular file", regular}},
		{"unknown flag", []string{"--frobnicate"}, 2, "", []string{"unknown flag: --frobnicate"}},
		{"stray argument", []string{"serve"}, 2, "", []string{`unexpected argument "serve"`}},
		{"listen on a regular file", []string{"--config", seedConfig, "--listen", "unix:" + regular}, 1, "",
			[]string{"refusing to replace an existing regular file", regular}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.wantCode, stderr.String())
			}
			if stdout.String() != tc.wantStdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.wantStdout)
			}
			if tc.wantStderr == nil {
				return
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			var errLine string
			for _, l := range lines {
				if strings.Contains(l, tc.wantStderr[0]) {
					errLine = l
				}
			}
			for _, want := range tc.wantStderr {
				if !strings.Contains(errLine, want) {
					t.Errorf("stderr %q: want one line containing %q", stderr.String(), want)
				}
			}
		})
	}
	if b, _ := os.ReadFile(regular); string(b) != "keep" {
		t.Errorf("--listen modified a regular file: %q", b)
	}
}

func TestBadConfigIsOneLine(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(bad, []byte(`{"log_level": "verbose"}`), 0o644)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--config", bad}, &stdout, &stderr); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if n := strings.Count(stderr.String(), "\n"); n != 1 {
		t.Errorf("stderr has %d lines, want 1: %q", n, stderr.String())
	}
}

// TestRunListenAndSignal runs the agent as a user would, with a missing
// config, drives it over its socket and stops it with SIGTERM.
func TestRunListenAndSignal(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "a.sock")
	logFile := filepath.Join(dir, "log", "agent.log")
	os.MkdirAll(filepath.Dir(logFile), 0o755)
	os.WriteFile(logFile, []byte("earlier line\n"), 0o644)
	code := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() {
		code <- run([]string{"--listen", "unix:" + sock, "--config", filepath.Join(dir, "missing.json"), "--log-file", logFile}, &stdout, &stderr)
	}()
	var conn net.Conn
	for conn == nil {
		select {
		case c := <-code:
			t.Fatalf("agent exited with %d: %s", c, stderr.String())
		default:
		}
		c, err := net.Dial("unix", sock)
		if err == nil {
			conn = c
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer conn.Close()
	fmt.Fprintln(conn, `{"jsonrpc":"2.0","method":"ping","id":1}`)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, `"pong":true`) {
		t.Fatalf("ping: %q, %v", line, err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if c := <-code; c != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", c)
	}
	logs, _ := os.ReadFile(logFile)
	if !strings.HasPrefix(string(logs), "earlier line\n") {
		t.Errorf("--log-file did not append: %q", logs)
	}
	if n := strings.Count(string(logs), "config file not found"); n != 1 {
		t.Errorf("missing config logged %d times, want once:\n%s", n, logs)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after shutdown: %v", err)
	}
}

func TestJournalLogsHaveNoTimestamps(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	unix.Fstat(int(f.Fd()), &st)
	tests := []struct {
		name, stream string
		wantTime     bool
	}{
		{"not the journal", "", true},
		{"the journal", fmt.Sprintf("%d:%d", st.Dev, st.Ino), false},
		{"inherited variable, other stream", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", tc.stream)
			f.Truncate(0)
			f.Seek(0, 0)
			log, closeLog, err := newLogger("info", "", f)
			if err != nil {
				t.Fatal(err)
			}
			log.Info("Connected to virtio-serial device")
			log.Debug("hidden at info")
			closeLog()
			b, _ := os.ReadFile(f.Name())
			if got := strings.Contains(string(b), "time="); got != tc.wantTime {
				t.Errorf("timestamp present %v, want %v: %q", got, tc.wantTime, b)
			}
			if !strings.Contains(string(b), `msg="Connected to virtio-serial device"`) || strings.Contains(string(b), "hidden") {
				t.Errorf("log %q", b)
			}
		})
	}
}
