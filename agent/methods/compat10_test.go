//go:build !windows

package methods

import (
	"bufio"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

var updateCompat = flag.Bool("update-compat10", false, "record testdata/protocol10.replay from this tree")

// compat10Requests are protocol 1.0 requests, as a 1.0 host sends them,
// whose replies do not depend on the machine. $DIR is a fixture directory.
var compat10Requests = []string{
	`{"jsonrpc":"2.0","method":"ping","id":1}`,
	`{"jsonrpc":"2.0","method":"sync","params":{"id":42},"id":2}`,
	`{"jsonrpc":"2.0","method":"sync","params":{},"id":3}`,
	`{"jsonrpc":"2.0","method":"no_such_method","id":4}`,
	`{"jsonrpc":"2.0","method":"ping","params":{"x":1},"id":5}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{"command":"sh","args":["-c","echo out; echo err >&2; exit 3"]},"id":6}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{"command":"sh","args":["-c","pwd"],"working_directory":"$DIR/r"},"id":7}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{"command":"sh","args":["-c","echo x"],"capture_output":false},"id":8}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{"command":"no-such-command-kvmm"},"id":9}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{"command":"true","working_directory":"$DIR/missing"},"id":10}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{"command":"true","timeout_seconds":0},"id":11}`,
	`{"jsonrpc":"2.0","method":"exec_command","params":{},"id":12}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/hello.txt"},"id":13}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/hello.txt","encoding":"base64"},"id":14}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/binary"},"id":15}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/big"},"id":16}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/missing"},"id":17}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/outside"},"id":18}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/fifo"},"id":19}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r"},"id":20}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"relative"},"id":21}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/hello.txt","encoding":"hex"},"id":22}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/new.txt","content":"hi\n"},"id":23}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/new.bin","content":"AAEC","encoding":"base64","permissions":"0600"},"id":24}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/a/b/c.txt","content":"x","create_dirs":true},"id":25}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/x/y.txt","content":"x"},"id":26}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/outside","content":"x"},"id":27}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/bad.bin","content":"!!","encoding":"base64"},"id":28}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/p.txt","content":"x","permissions":"4755"},"id":29}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/big2","content":"0123456789abcdefghijk"},"id":30}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/fifo","content":"x"},"id":31}`,
	`{"jsonrpc":"2.0","method":"file_read","params":{"path":"$DIR/r/new.txt"},"id":32}`,
	`{"jsonrpc":"2.0","method":"shutdown","params":{"timeout_seconds":-1},"id":33}`,
	`{"jsonrpc":"2.0","method":"file_write","params":{"path":"$DIR/r/new.txt","content":"x","bogus":1},"id":34}`,
	`{"jsonrpc":"2.0","method":"ping","id":"str-id"}`,
	`[{"jsonrpc":"2.0","method":"sync","params":{"id":1},"id":35},{"jsonrpc":"2.0","method":"nope","id":36}]`,
	`{"jsonrpc":"2.0","method":"ping"}`,
	`{"jsonrpc":"2.0","method":"ping","id":37`,
	`{"method":"ping","id":38}`,
}

// volatile parts of replies: times.
var compat10Volatile = regexp.MustCompile(`"(timestamp|execution_time_ms)":[0-9]+`)

// TestProtocol10Replay replays protocol 1.0 requests and compares every
// reply with the one recorded from the 1.0 agent (main before protocol
// 1.1): a 1.0 host sees no difference. get_agent_info, whose
// protocol_version and capabilities 1.1 changes by design, is not in it.
func TestProtocol10Replay(t *testing.T) {
	needSystemCommands(t, "sh", "true")
	dir := t.TempDir()
	mustMkdir(t, filepath.Join(dir, "r"))
	mustWrite(t, filepath.Join(dir, "r", "hello.txt"), "hello\n", 0o644)
	mustWrite(t, filepath.Join(dir, "r", "binary"), "\xff\x00", 0o644)
	mustWrite(t, filepath.Join(dir, "r", "big"), strings.Repeat("x", 21), 0o644)
	mustWrite(t, filepath.Join(dir, "outside"), "secret", 0o600)
	if err := syscall.Mkfifo(filepath.Join(dir, "r", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := seedConfig(t)
	cfg.AllowedReadPaths = []string{filepath.Join(dir, "r")}
	cfg.AllowedWritePaths = []string{filepath.Join(dir, "r")}
	cfg.MaxFileSizeBytes = 20
	svc := New(cfg, Options{Power: &fakePower{t: t}})
	replies := replay10(t, svc, cfg, dir)

	golden := filepath.Join("testdata", "protocol10.replay")
	if *updateCompat {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(strings.Join(replies, "")), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	wantLines := strings.SplitAfter(string(want), "\n")
	for i, got := range replies {
		if i >= len(wantLines) || got != wantLines[i] {
			w := "(none)"
			if i < len(wantLines) {
				w = wantLines[i]
			}
			t.Errorf("reply to %s\n got  %s want %s", compat10Requests[i], got, w)
		}
	}
}

func replay10(t *testing.T, svc *Service, cfg *config.Config, dir string) []string {
	srv := server.New(svc.Handlers(), server.Options{
		MaxConcurrent: cfg.MaxConcurrentRequests,
		MaxLineBytes:  protocol.LineLimit(cfg.MaxFileSizeBytes),
		Inline:        svc.NonBlocking(),
		Spooled:       svc.SpooledMethods(),
	})
	a, b := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeConn(ctx, a)
	}()
	t.Cleanup(func() {
		cancel()
		b.Close()
		<-done
	})
	r := bufio.NewReader(b)
	var out []string
	for _, req := range compat10Requests {
		line := strings.ReplaceAll(req, "$DIR", dir) + "\n"
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(req, `"method":"ping"}`) {
			out = append(out, "(notification: no reply)\n")
			continue
		}
		reply, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply to %s: %v", req, err)
		}
		reply = strings.ReplaceAll(reply, dir, "$DIR")
		reply = compat10Volatile.ReplaceAllString(reply, `"$1":0`)
		out = append(out, reply)
	}
	return out
}
