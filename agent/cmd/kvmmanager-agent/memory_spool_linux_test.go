// Built without -race, as memory_budget_linux_test.go.

//go:build !race

package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/config"
)

// testSpooledWrites drives the real agent with the smallest
// budget its config allows for 10 MiB files, whose share for request input
// (half) holds one maximum-size file_write line: slow hosts first leave
// partial 5 MB file_write lines on many connections, then several
// maximum-size file_writes come at once. file_write's content is spooled to
// disk as it streams in, so no line is held whole: every write must
// succeed (none refused by the budget, none waiting for the slow hosts),
// every file must hold exactly its content, and the agent's peak resident
// memory (VmHWM) must stay under the documented worst case,
// max_memory_bytes + 32 MiB.
func testSpooledWrites(t *testing.T) {
	const (
		fileSize  = 10 << 20
		writers   = 4
		slowConns = 10
	)
	budget := config.MinMemoryBytes(fileSize)
	dir := t.TempDir()
	pid, sock, _ := runAgent(t, dir, fileSize, budget)
	contents := make([][]byte, writers)
	for i := range contents {
		contents[i] = randomData(t, fileSize)
	}
	writeReq := func(id int, path string, data []byte) string {
		return fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"file_write","params":{"path":%q,"encoding":"base64","content":%q}}`,
			id, path, base64.StdEncoding.EncodeToString(data))
	}

	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	for i := range slowConns {
		c := dialUnix(t, sock)
		slow = append(slow, c)
		partial := writeReq(1000+i, filepath.Join(dir, "slow"), contents[0])[:5<<20]
		if _, err := c.Write([]byte(partial)); err != nil {
			t.Fatal(err)
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialUnix(t, sock)
			defer c.Close()
			go func() {
				_, _ = c.Write([]byte(writeReq(i, filepath.Join(dir, fmt.Sprintf("w%d", i)), contents[i]) + "\n"))
			}()
			_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
			line, err := bufio.NewReader(c).ReadBytes('\n')
			if err != nil {
				errs[i] = err
				return
			}
			var r struct {
				Result *struct {
					Written int64 `json:"bytes_written"`
				} `json:"result"`
				Error any `json:"error"`
			}
			if err := json.Unmarshal(line, &r); err != nil || r.Result == nil || r.Result.Written != fileSize {
				errs[i] = fmt.Errorf("reply %.200s (%v)", line, err)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("write %d: %v", i, err)
			continue
		}
		got, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("w%d", i)))
		if err != nil || !bytes.Equal(got, contents[i]) {
			t.Errorf("file of write %d: %d bytes (%v), not its content", i, len(got), err)
		}
	}
	checkPeak(t, pid, budget, fmt.Sprintf("%d maximum-size writes beside %d stalled 5 MB lines", writers, slowConns))
}

// testStreamedReads drives the real agent, under the smallest
// budget its config allows for 10 MiB files, with concurrent maximum-size
// base64 file_reads whose hosts do not read their replies for a while:
// each reply is encoded while it is written, so none is held whole and
// none is refused; each must carry exactly the file, and the agent's peak
// resident memory must stay under the documented worst case.
func testStreamedReads(t *testing.T) {
	const (
		fileSize = 10 << 20
		readers  = 10
	)
	budget := config.MinMemoryBytes(fileSize)
	dir := t.TempDir()
	data := randomData(t, fileSize)
	src := filepath.Join(dir, "big.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := base64.StdEncoding.EncodeToString(data)
	pid, sock, _ := runAgent(t, dir, fileSize, budget)
	var wg sync.WaitGroup
	errs := make([]error, readers)
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialUnix(t, sock)
			defer c.Close()
			fmt.Fprintf(c, `{"jsonrpc":"2.0","id":%d,"method":"file_read","params":{"path":%q,"encoding":"base64"}}`+"\n", i, src)
			time.Sleep(3 * time.Second) // the host does not read for a while
			_ = c.SetReadDeadline(time.Now().Add(120 * time.Second))
			line, err := bufio.NewReaderSize(c, 1<<20).ReadBytes('\n')
			if err != nil {
				errs[i] = err
				return
			}
			var r struct {
				Result *struct {
					Content   string `json:"content"`
					SizeBytes int64  `json:"size_bytes"`
				} `json:"result"`
			}
			if err := json.Unmarshal(line, &r); err != nil || r.Result == nil || r.Result.SizeBytes != fileSize || r.Result.Content != want {
				errs[i] = fmt.Errorf("reply %.200s (%v)", line, err)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("read %d: %v", i, err)
		}
	}
	hwm := checkPeak(t, pid, budget, fmt.Sprintf("%d maximum-size reads not read for 3 s", readers))
	// Replies held whole, one budget's worth at a time, peaked at 36 MiB
	// here; streamed, the peak is the runtime and small buffers.
	if hwm > 2*fileSize {
		t.Errorf("agent peak resident memory %d bytes > twice the file: replies are held whole", hwm)
	}
}
