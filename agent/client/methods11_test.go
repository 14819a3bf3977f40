package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// agentClient is a client of the real methods on a unix socket, with dir
// readable and writable and max_file_size_bytes limit.
func agentClient(t *testing.T, dir string, limit int64) *client.Client {
	t.Helper()
	cfg := config.Default()
	cfg.AllowedReadPaths = []string{dir}
	cfg.AllowedWritePaths = []string{dir}
	cfg.MaxFileSizeBytes = limit
	svc := methods.New(cfg, methods.Options{})
	t.Cleanup(func() { svc.KillJobs(0) })
	path, _ := realServer(t, svc.Handlers())
	c, err := client.Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Upload and Download move a file many chunks long; sizes at and around
// chunk multiples, and the empty file.
func TestUploadDownload(t *testing.T) {
	dir := t.TempDir()
	const chunk = 1000
	c := agentClient(t, dir, chunk)
	ctx := context.Background()
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 5*chunk + 17, 6 * chunk} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rand.Uint32())
		}
		want := sha256.Sum256(data)
		path := filepath.Join(dir, "f")
		var calls int
		n, sum, err := c.Upload(ctx, path, bytes.NewReader(data), client.UploadOptions{Chunk: chunk, Permissions: "0600", Size: int64(size), Progress: func(done, total int64) { calls++ }})
		if err != nil || n != int64(size) || sum != hex.EncodeToString(want[:]) {
			t.Fatalf("upload %d: %d %s %v", size, n, sum, err)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, data) {
			t.Fatalf("upload %d: file differs", size)
		}
		if wantCalls := max(1, (size+chunk-1)/chunk); calls != wantCalls {
			t.Errorf("upload %d: %d progress calls, want %d", size, calls, wantCalls)
		}
		var back bytes.Buffer
		n, sum, err = c.Download(ctx, path, &back, chunk, nil)
		if err != nil || n != int64(size) || sum != hex.EncodeToString(want[:]) || !bytes.Equal(back.Bytes(), data) {
			t.Fatalf("download %d: %d %s %v", size, n, sum, err)
		}
	}
	// The default chunk shrinks to the agent's max_file_size_bytes.
	data := bytes.Repeat([]byte("0123456789"), 350)
	if n, _, err := c.Upload(ctx, filepath.Join(dir, "f"), bytes.NewReader(data), client.UploadOptions{}); err != nil || n != int64(len(data)) {
		t.Fatalf("upload with the default chunk: %d %v", n, err)
	}
	var back bytes.Buffer
	if n, _, err := c.Download(ctx, filepath.Join(dir, "f"), &back, 0, nil); err != nil || n != int64(len(data)) || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("download with the default chunk: %d %v", n, err)
	}
	// A failed upload leaves the old file and no temporary file.
	if _, _, err := c.Upload(ctx, filepath.Join(dir, "f"), iotestErrReader{}, client.UploadOptions{Chunk: chunk}); err == nil {
		t.Fatal("upload from a failing reader succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("entries after a failed upload: %v", entries)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read(p []byte) (int, error) { return 0, os.ErrDeadlineExceeded }

func TestExecFollow(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	c := agentClient(t, t.TempDir(), 1000)
	ctx := context.Background()
	in := "stdin line\n"
	r, err := c.ExecStart(ctx, protocol.ExecStartParams{Command: "sh", Args: []string{"-c", "cat; for i in 1 2 3; do echo $i; sleep 0.2; done; echo e >&2; exit 2"}, Stdin: &in})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	st, err := c.ExecFollow(ctx, r.ID, &out, &errb, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != "stdin line\n1\n2\n3\n" || errb.String() != "e\n" || st.ExitCode == nil || *st.ExitCode != 2 {
		t.Errorf("follow: %q %q %+v", out.String(), errb.String(), st)
	}
	if _, err := c.ExecKill(ctx, 999); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("kill of an unknown id: %v", err)
	}
}
