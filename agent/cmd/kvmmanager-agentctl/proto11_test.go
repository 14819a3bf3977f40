package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/client/clienttest"
	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// realAgent serves the agent's real methods (protocol 1.1) with dir as the
// only allowed path, limit as max_file_size_bytes.
func realAgent(t *testing.T, dir string, limit int64) string {
	t.Helper()
	cfg := config.Default()
	cfg.AllowedReadPaths = []string{dir}
	cfg.AllowedWritePaths = []string{dir}
	cfg.MaxFileSizeBytes = limit
	svc := methods.New(cfg, methods.Options{})
	t.Cleanup(func() { svc.KillJobs(0) })
	h := svc.Handlers()
	srv := clienttest.NewServer(t)
	srv.Serve(func(ctx context.Context, method string, params json.RawMessage) (any, error) {
		f := h[method]
		if f == nil {
			return nil, protocol.Errorf(protocol.CodeMethodNotFound, "method %q not found", method)
		}
		return f(ctx, params)
	})
	return srv.Path
}

func runCLIFile(t *testing.T, stdin *os.File, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, env{stdin: stdin, stdout: &out, stderr: &errOut, locator: locator{root: t.TempDir()}})
	return result{code, out.String(), errOut.String()}
}

// write and read move a file of several chunks; the agent's copy and the
// one read back match, sha256 verified.
func TestTransferChunked(t *testing.T) {
	dir := t.TempDir()
	sock := realAgent(t, dir, 4096)
	data := make([]byte, 5*4096+11)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	sum := sha256.Sum256(data)
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(src)
	defer f.Close()
	target := filepath.Join(dir, "big.bin")
	r := runCLIFile(t, f, "-s", sock, "write", target, "--chunk", "4096", "--mode", "0600")
	if r.code != 0 || !strings.Contains(r.stdout, "wrote 20491 bytes to "+target+" (sha256 "+hex.EncodeToString(sum[:])) {
		t.Fatalf("write: %+v", r)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, data) {
		t.Fatal("guest file differs")
	}
	r = runCLI(t, "", "-s", sock, "read", target, "--chunk", "1000")
	if r.code != 0 || r.stdout != string(data) {
		t.Fatalf("read: exit %d, %d bytes, stderr %q", r.code, len(r.stdout), r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("progress or messages on a non-terminal stderr: %q", r.stderr)
	}
	r = runCLI(t, "", "-s", sock, "--json", "read", target)
	if !strings.Contains(r.stdout, `"sha256": "`+hex.EncodeToString(sum[:])) {
		t.Errorf("read --json: %+v", r)
	}
	r = runCLI(t, "", "-s", sock, "read", filepath.Join(dir, "missing"))
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("read missing: %+v", r)
	}
	// A missing directory names this command's flag, not the protocol's
	// parameter; with the flag the write goes through.
	sub := filepath.Join(dir, "sub", "f")
	r = runCLI(t, "x", "-s", sock, "write", sub)
	if r.code != 1 || !strings.Contains(r.stderr, "add --create-dirs") || strings.Contains(r.stderr, "create_dirs") {
		t.Errorf("write into a missing directory: %+v", r)
	}
	if r = runCLI(t, "x", "-s", sock, "write", "--create-dirs", sub); r.code != 0 {
		t.Errorf("write --create-dirs: %+v", r)
	}
}

func TestExecBackgroundCommands(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	sock := realAgent(t, t.TempDir(), 4096)
	r := runCLI(t, "fed to cat\n", "-s", sock, "exec", "--follow", "--stdin", "--", "sh", "-c", "cat; echo to-err >&2; for i in 1 2 3; do echo $i; sleep 0.1; done; exit 4")
	if r.code != 4 || r.stdout != "fed to cat\n1\n2\n3\n" || r.stderr != "to-err\n" {
		t.Fatalf("exec --follow: %+v", r)
	}
	r = runCLI(t, "", "-s", sock, "exec", "--background", "--env", "X=y", "sh", "-c", "echo $X; sleep 60")
	if r.code != 0 || !strings.Contains(r.stdout, "started background command 2") {
		t.Fatalf("exec --background: %+v", r)
	}
	for range 500 { // until the echo is out
		r = runCLI(t, "", "-s", sock, "exec", "status", "2")
		if r.code != 0 || !strings.Contains(r.stdout, "running for") || !strings.Contains(r.stdout, "sh -c echo $X; sleep 60") {
			t.Fatalf("exec status: %+v", r)
		}
		if strings.Contains(r.stdout, "2 bytes") {
			break
		}
	}
	r = runCLI(t, "", "-s", sock, "exec", "kill", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "killed background command 2") {
		t.Fatalf("exec kill: %+v", r)
	}
	r = runCLI(t, "", "-s", sock, "exec", "status", "2", "--follow")
	if r.code != 137 || r.stdout != "y\n" || !strings.Contains(r.stderr, "killed (exec kill)") {
		t.Fatalf("exec status --follow after kill: %+v", r)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"exec", "status"}, "exec status takes one ID"},
		{[]string{"exec", "kill", "x"}, `ID "x" is not`},
		{[]string{"exec", "--stdin", "true"}, "need --background or --follow"},
		{[]string{"exec", "--background", "--follow", "true"}, "not both"},
	} {
		r := runCLI(t, "", append([]string{"-s", sock}, tt.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: %+v", tt.args, r)
		}
	}
	r = runCLI(t, "", "-s", sock, "exec", "status", "99")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("unknown id: %+v", r)
	}
}

func TestOpsCommands(t *testing.T) {
	sock := realAgent(t, t.TempDir(), 4096)
	for _, tt := range []struct {
		args   []string
		stdout []string
	}{
		{[]string{"memory"}, []string{"Total", "Used", "without page cache", "Cache", "Available", "Swap"}},
		{[]string{"time"}, []string{"Guest", "Host", "Offset", "Clock source"}},
		{[]string{"freeze", "status"}, []string{"thawed"}},
		{[]string{"--json", "users"}, []string{`"users"`}},
	} {
		r := runCLI(t, "", append([]string{"-s", sock}, tt.args...)...)
		if r.code != 0 {
			t.Errorf("%v: %+v", tt.args, r)
			continue
		}
		containsInOrder(t, strings.Join(tt.args, " "), r.stdout, tt.stdout)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"freeze", "status", "x"}, "freeze status takes no arguments"},
		{[]string{"freeze", "data"}, `"data" is not a mount point`},
		{[]string{"time", "--sync", "--from-rtc"}, "not both"},
	} {
		r := runCLI(t, "", append([]string{"-s", sock}, tt.args...)...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: %+v", tt.args, r)
		}
	}
	// Key and password changes are off by default.
	r := runCLI(t, "ssh-ed25519 AAAA k\n", "-s", sock, "ssh-keys", "add", "root")
	if r.code != 1 || !strings.Contains(r.stderr, "allow_account_changes") {
		t.Errorf("ssh-keys add by default: %+v", r)
	}
}

// The password goes in the request's params, read from stdin, never from
// the command line; keys come from arguments or stdin.
func TestPasswordAndKeysRequests(t *testing.T) {
	var mu sync.Mutex
	var got []recorded
	srv := clienttest.NewServer(t)
	srv.Serve(func(_ context.Context, method string, params json.RawMessage) (any, error) {
		mu.Lock()
		got = append(got, recorded{method, params})
		mu.Unlock()
		if method == protocol.MethodSetUserPassword {
			return struct{}{}, nil
		}
		return protocol.SSHAuthorizedKeys{Keys: []string{"k1"}}, nil
	})
	last := func() recorded {
		mu.Lock()
		defer mu.Unlock()
		return got[len(got)-1]
	}
	for _, tt := range []struct {
		stdin  string
		args   []string
		code   int
		method string
		params string
	}{
		{"s3cret pass\n", []string{"password", "alice"}, 0, "set_user_password", `{"username":"alice","password":"s3cret pass","crypted":false}`},
		{"$6$salt$hash\n", []string{"password", "--crypted", "alice"}, 0, "set_user_password", `{"username":"alice","password":"$6$salt$hash","crypted":true}`},
		{"", []string{"ssh-keys", "list", "bob"}, 0, "ssh_get_authorized_keys", `{"username":"bob"}`},
		{"", []string{"ssh-keys", "add", "bob", "ssh-ed25519 AAAA a"}, 0, "ssh_add_authorized_keys", `{"username":"bob","keys":["ssh-ed25519 AAAA a"]}`},
		{"# comment\nssh-rsa B b\n\nssh-ed25519 C c\n", []string{"ssh-keys", "remove", "bob"}, 0, "ssh_remove_authorized_keys", `{"username":"bob","keys":["ssh-rsa B b","ssh-ed25519 C c"]}`},
	} {
		r := runCLI(t, tt.stdin, append([]string{"-s", srv.Path}, tt.args...)...)
		if r.code != tt.code {
			t.Errorf("%v: %+v", tt.args, r)
			continue
		}
		if l := last(); l.method != tt.method || string(l.params) != tt.params {
			t.Errorf("%v: agent got %s %s, want %s %s", tt.args, l.method, l.params, tt.method, tt.params)
		}
	}
	for _, tt := range []struct {
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"", []string{"password", "alice"}, 1, "no password on stdin"},
		{"", []string{"password", "alice", "pw"}, 2, "password takes one USER"},
		{"", []string{"ssh-keys", "add", "bob"}, 2, "no keys given"},
		{"", []string{"ssh-keys", "frob", "bob"}, 2, "want list, add or remove"},
	} {
		r := runCLI(t, tt.stdin, append([]string{"-s", srv.Path}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: %+v", tt.args, r)
		}
	}
}
