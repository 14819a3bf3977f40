// The race detector multiplies the agent's memory, so its peak would say
// nothing about the budget: this test is built without -race only (go tool
// mage test runs it on its own, without the race detector).

//go:build !race

package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// worstCaseOverhead is PROTOCOL.md's documented bound on the agent's peak
// resident memory beyond max_memory_bytes: the Go runtime's memory limit is
// the budget plus 16 MiB (runtimeBase), and the binary's resident text,
// goroutine stacks and per-connection buffers are within another 16 MiB.
const worstCaseOverhead = 32 << 20

// TestMemoryBudgetHolds drives the real agent process with hostile but legal
// load on both ports at once: concurrent maximum-size file_reads whose host
// does not read its replies for a while, a batch of maximum-size reads,
// concurrent maximum-size file_writes, slow connections holding partial
// lines of 1.5 MB, and maximum-size guest-file-reads. Every reply must be a
// success with the right content or the budget's clear refusal; afterwards
// the agent must still serve a maximum-size read and write (the budget was
// given back); and its peak resident memory (VmHWM) must stay under the
// documented worst case, max_memory_bytes + 32 MiB.
//
// Its subtests hold the budget the same way under the loads spooling and
// streaming serve (memory_spool_linux_test.go).
func TestMemoryBudgetHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("drives ~500 MB of traffic through the agent")
	}
	t.Run("mixed load", testMixedLoad)
	t.Run("spooled writes", testSpooledWrites)
	t.Run("streamed reads", testStreamedReads)
}

func testMixedLoad(t *testing.T) {
	const (
		fileSize  = 10 << 20
		budget    = 64 << 20
		readers   = 10
		writers   = 4
		slowConns = 30
		batchSize = 64
		qgaReads  = 4
	)
	dir := t.TempDir()
	data := randomData(t, fileSize)
	src := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	pid, sock, qsock := runAgent(t, dir, fileSize, budget)
	b64 := base64.StdEncoding.EncodeToString(data)
	readReq := func(id int) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"file_read","params":{"path":%q,"encoding":"base64"}}`, id, src)
	}
	writeReq := func(id int, path string) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"file_write","params":{"path":%q,"encoding":"base64","content":%q}}`, id, path, b64)
	}

	// check classifies one protocol 1.0 reply object: a success (a read's
	// content must be the file) or the budget's refusal.
	type tally struct {
		mu                  sync.Mutex
		ok, refused, failed int
		errs                []string
	}
	var tl tally
	check := func(what string, raw []byte) {
		var r struct {
			Result *struct {
				Content   string `json:"content"`
				SizeBytes int64  `json:"size_bytes"`
				Written   int64  `json:"bytes_written"`
			} `json:"result"`
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		tl.mu.Lock()
		defer tl.mu.Unlock()
		switch err := json.Unmarshal(raw, &r); {
		case err != nil:
			tl.failed++
			tl.errs = append(tl.errs, fmt.Sprintf("%s: bad reply %.100q: %v", what, raw, err))
		case r.Error != nil && r.Error.Code == -32000 && strings.Contains(r.Error.Message, "max_memory_bytes"):
			tl.refused++
		case r.Error != nil && r.Error.Code == -32600 && strings.HasPrefix(what, "batch") && strings.Contains(r.Error.Message, "batch reply limit"):
			tl.refused++ // the batch reply's own bound (PROTOCOL.md): one 10 MiB read fits
		case r.Error != nil:
			tl.failed++
			tl.errs = append(tl.errs, fmt.Sprintf("%s: error %d %s", what, r.Error.Code, r.Error.Message))
		case strings.Contains(what, "read") && r.Result.Content != b64:
			tl.failed++
			tl.errs = append(tl.errs, fmt.Sprintf("%s: content of %d base64 bytes differs from the file", what, len(r.Result.Content)))
		default:
			tl.ok++
		}
	}
	readLine := func(c net.Conn) []byte {
		_ = c.SetReadDeadline(time.Now().Add(90 * time.Second))
		line, err := bufio.NewReaderSize(c, 1<<20).ReadBytes('\n')
		if err != nil {
			t.Errorf("read reply: %v", err)
		}
		return line
	}

	// Slow connections first: each holds a 1.5 MB partial line.
	var slow []net.Conn
	for i := range slowConns {
		c := dialUnix(t, sock)
		slow = append(slow, c)
		partial := writeReq(1000+i, filepath.Join(dir, "slow"))[:1500<<10]
		go func() { _, _ = c.Write([]byte(partial)) }()
	}
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()

	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialUnix(t, sock)
			defer c.Close()
			if _, err := c.Write([]byte(readReq(i) + "\n")); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(3 * time.Second) // the host does not read for a while
			check(fmt.Sprintf("read %d", i), readLine(c))
		}()
	}
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialUnix(t, sock)
			defer c.Close()
			go func() { _, _ = c.Write([]byte(writeReq(i, filepath.Join(dir, "w"+strconv.Itoa(i))) + "\n")) }()
			check(fmt.Sprintf("write %d", i), readLine(c))
		}()
	}
	wg.Add(1)
	go func() { // one batch of maximum-size reads
		defer wg.Done()
		c := dialUnix(t, sock)
		defer c.Close()
		var b strings.Builder
		b.WriteByte('[')
		for i := range batchSize {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(readReq(5000 + i))
		}
		b.WriteString("]\n")
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Error(err)
			return
		}
		var parts []json.RawMessage
		if err := json.Unmarshal(readLine(c), &parts); err != nil || len(parts) != batchSize {
			t.Errorf("batch reply: %d parts, %v", len(parts), err)
			return
		}
		for i, p := range parts {
			check(fmt.Sprintf("batch element %d", i), p)
		}
	}()
	for i := range qgaReads {
		wg.Add(1)
		go func() { // QGA: guest-file-read of the whole file
			defer wg.Done()
			c := dialUnix(t, qsock)
			defer c.Close()
			r := bufio.NewReaderSize(c, 1<<20)
			_ = c.SetDeadline(time.Now().Add(90 * time.Second))
			fmt.Fprintf(c, `{"execute":"guest-file-open","arguments":{"path":%q}}`+"\n", src)
			line, err := r.ReadBytes('\n')
			var open struct {
				Return int64 `json:"return"`
			}
			if err == nil && strings.Contains(string(line), "max_memory_bytes") {
				tl.mu.Lock()
				tl.refused++ // even a small request waits for input room, then is refused
				tl.mu.Unlock()
				return
			}
			if err != nil || json.Unmarshal(line, &open) != nil || open.Return == 0 {
				t.Errorf("qga %d: guest-file-open: %q %v", i, line, err)
				return
			}
			fmt.Fprintf(c, `{"execute":"guest-file-read","arguments":{"handle":%d,"count":%d}}`+"\n", open.Return, fileSize)
			line, err = r.ReadBytes('\n')
			var rd struct {
				Return *struct {
					BufB64 string `json:"buf-b64"`
				} `json:"return"`
				Error *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			tl.mu.Lock()
			defer tl.mu.Unlock()
			switch {
			case err != nil || json.Unmarshal(line, &rd) != nil:
				tl.failed++
				tl.errs = append(tl.errs, fmt.Sprintf("qga %d: bad reply %.100q %v", i, line, err))
			case rd.Error != nil && strings.Contains(rd.Error.Desc, "max_memory_bytes"):
				tl.refused++
			case rd.Error != nil:
				tl.failed++
				tl.errs = append(tl.errs, fmt.Sprintf("qga %d: %s", i, rd.Error.Desc))
			case rd.Return.BufB64 != b64:
				tl.failed++
				tl.errs = append(tl.errs, fmt.Sprintf("qga %d: content differs", i))
			default:
				tl.ok++
			}
		}()
	}
	wg.Wait()
	for _, e := range tl.errs {
		t.Error(e)
	}
	t.Logf("under load: %d succeeded, %d refused by the budget", tl.ok, tl.refused)

	// The slow hosts leave; the budget they held comes back, and a
	// maximum-size write and read succeed on an otherwise idle agent.
	for _, c := range slow {
		c.Close()
	}
	slow = nil
	tl = tally{}
	c := dialUnix(t, sock)
	defer c.Close()
	r := bufio.NewReaderSize(c, 1<<20)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	// One after the other: replies to concurrent requests may come in any order.
	for _, what := range []string{"write after the load", "read after the load"} {
		req := writeReq(1, filepath.Join(dir, "after"))
		if strings.HasPrefix(what, "read") {
			req = readReq(2)
		}
		go func() { _, _ = c.Write([]byte(req + "\n")) }()
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		check(what, line)
	}
	if tl.ok != 2 {
		t.Errorf("after the load, a maximum-size write and read: %d succeeded, %d refused, errors %q", tl.ok, tl.refused, tl.errs)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "after")); err != nil || !bytes.Equal(got, data) {
		t.Errorf("the file written after the load differs (%d bytes, %v)", len(got), err)
	}

	checkPeak(t, pid, budget, "mixed load")
}

// vmHWM reads a process's peak resident set size from /proc.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// checkPeak fails the test if the agent's peak resident memory (VmHWM) is
// over PROTOCOL.md's worst case for budget, max_memory_bytes + 32 MiB; what
// names the load in the log. It returns the peak.
func checkPeak(t *testing.T, pid int, budget int64, what string) int64 {
	t.Helper()
	hwm := vmHWM(t, pid)
	limit := budget + worstCaseOverhead
	t.Logf("%s: agent VmHWM %d KiB (documented worst case %d KiB)", what, hwm>>10, limit>>10)
	if hwm > limit {
		t.Errorf("agent peak resident memory %d bytes > max_memory_bytes %d + %d (PROTOCOL.md's worst case)", hwm, budget, worstCaseOverhead)
	}
	return hwm
}

// randomData returns size random bytes, the content of the test's files.
func randomData(t *testing.T, size int) []byte {
	t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// runAgent runs the agent (this test binary's main) on unix sockets in
// dir, with dir readable and writable, files up to fileSize and a memory
// budget of budget bytes; it is stopped when the test ends (its log is
// printed if the test failed). It returns its pid and its two sockets.
func runAgent(t *testing.T, dir string, fileSize int, budget int64) (pid int, sock, qsock string) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"allowed_read_paths": []string{dir}, "allowed_write_paths": []string{dir},
		"max_file_size_bytes": fileSize, "max_memory_bytes": budget, "max_concurrent_requests": 10,
	})
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	sock, qsock = filepath.Join(dir, "agent.sock"), filepath.Join(dir, "qga.sock")
	cmd := startAgentProcess(t, dir, "--listen", "unix:"+sock, "--qga-listen", "unix:"+qsock, "--config", cfgPath)
	return cmd.Process.Pid, sock, qsock
}

// dialUnix connects to the agent's socket, waiting for it to listen.
func dialUnix(t *testing.T, path string) net.Conn {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
