package transport

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func startListen(t *testing.T, path string, srv Server) (cancel func() error) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	ln, err := listenUnix(path)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- serveListener(ctx, ln, srv, nil) }()
	return func() error { stop(); return <-done }
}

func TestListenSeveralClients(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sock")
	release := map[string]chan struct{}{"a": make(chan struct{})}
	stop := startListen(t, path, testServer(release))

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %v, want 0600", perm)
	}

	// Client A holds a request; clients B and C are served meanwhile.
	a, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ar := bufio.NewReader(a)
	fmt.Fprintln(a, `{"jsonrpc":"2.0","method":"block","params":{"key":"a"},"id":1}`)
	for _, name := range []string{"b", "c"} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		got := call(t, c, bufio.NewReader(c), `{"jsonrpc":"2.0","method":"ping","id":"`+name+`"}`)
		if want := `{"jsonrpc":"2.0","result":"pong","id":"` + name + `"}`; got != want {
			t.Errorf("client %s: got %s, want %s", name, got, want)
		}
		c.Close()
	}
	close(release["a"])
	line, _ := ar.ReadString('\n')
	if want := `{"jsonrpc":"2.0","result":"released","id":1}`; strings.TrimSpace(line) != want {
		t.Errorf("client a: got %s, want %s", line, want)
	}

	if err := stop(); err != nil {
		t.Errorf("Listen: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left behind after shutdown: %v", err)
	}
}

func TestListenRefusals(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("precious"), 0o644)
	sub := filepath.Join(dir, "dir")
	os.Mkdir(sub, 0o755)
	link := filepath.Join(dir, "link")
	os.Symlink(file, link)
	live := filepath.Join(dir, "live.sock")
	stop := startListen(t, live, testServer(nil))
	defer stop()

	tests := []struct {
		name, path, want string
	}{
		{"regular file", file, "not a socket"},
		{"directory", sub, "not a socket"},
		{"symlink", link, "not a socket"},
		{"live socket", live, "another process is listening"},
		{"missing directory", filepath.Join(dir, "nope", "a.sock"), "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := listenUnix(tc.path)
			if err == nil {
				ln.Close()
				t.Fatalf("listen on %s succeeded, want an error", tc.path)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q, want it to name the path and say %q", err, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Errorf("the regular file was modified: %q", b)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.sock")
	// A socket file nobody listens on, as a killed agent leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	stop := startListen(t, path, testServer(nil))
	defer stop()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := call(t, c, bufio.NewReader(c), `{"jsonrpc":"2.0","method":"ping","id":1}`); !strings.Contains(got, `"pong"`) {
		t.Errorf("got %s", got)
	}
}
