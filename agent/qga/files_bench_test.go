//go:build !windows

package qga

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// benchChunk is the bench's guest-file-read/-write chunk (build/bench).
const benchChunk = 4 << 20

// benchHost serves a dialect on one end of a socket pair for benchmarks,
// with dir readable and writable.
func benchHost(b *testing.B) (*bufio.Reader, func(string), string) {
	b.Helper()
	dir := b.TempDir()
	cfg := config.Default()
	cfg.AllowedReadPaths = []string{dir}
	cfg.AllowedWritePaths = []string{dir}
	svc := methods.New(cfg, methods.Options{})
	d := New(svc, cfg, Options{Budget: server.NewBudget(64<<20, 0)})
	a, c := netPipe(b)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.ServeConn(ctx, a) }()
	b.Cleanup(func() { cancel(); <-done })
	send := func(s string) {
		if _, err := c.Write([]byte(s)); err != nil {
			b.Fatal(err)
		}
	}
	return bufio.NewReaderSize(c, 64<<10), send, dir
}

func benchReply(b *testing.B, r *bufio.Reader, v any) {
	b.Helper()
	line, err := r.ReadBytes('\n')
	if err != nil {
		b.Fatal(err)
	}
	var reply struct {
		Return json.RawMessage
		Error  json.RawMessage
	}
	if err := json.Unmarshal(line, &reply); err != nil || reply.Error != nil {
		b.Fatalf("reply %.200s: %v", line, err)
	}
	if v != nil {
		if err := json.Unmarshal(reply.Return, v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQGAFileRead reads a 10 MiB file in 4 MiB guest-file-reads.
func BenchmarkQGAFileRead(b *testing.B) {
	r, send, dir := benchHost(b)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, make([]byte, 10<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	var h int64
	send(`{"execute":"guest-file-open","arguments":{"path":"` + p + `"}}`)
	benchReply(b, r, &h)
	hs := strconv.FormatInt(h, 10)
	b.SetBytes(10 << 20)
	for b.Loop() {
		send(`{"execute":"guest-file-seek","arguments":{"handle":` + hs + `,"offset":0,"whence":"set"}}`)
		benchReply(b, r, nil)
		for {
			var fr qapiFileRead
			send(`{"execute":"guest-file-read","arguments":{"handle":` + hs + `,"count":` + strconv.Itoa(benchChunk) + `}}`)
			benchReply(b, r, &fr)
			if fr.EOF || fr.Count == 0 {
				break
			}
		}
	}
}

type qapiFileRead struct {
	Count int64 `json:"count"`
	EOF   bool  `json:"eof"`
}

// BenchmarkQGAFileWrite writes 10 MiB in 4 MiB guest-file-writes.
func BenchmarkQGAFileWrite(b *testing.B) {
	r, send, dir := benchHost(b)
	p := filepath.Join(dir, "w")
	var h int64
	send(`{"execute":"guest-file-open","arguments":{"path":"` + p + `","mode":"w"}}`)
	benchReply(b, r, &h)
	hs := strconv.FormatInt(h, 10)
	data := make([]byte, 10<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var reqs []string
	for off := 0; off < len(data); off += benchChunk {
		chunk := data[off:min(off+benchChunk, len(data))]
		reqs = append(reqs, `{"execute":"guest-file-write","arguments":{"handle":`+hs+`,"buf-b64":"`+base64.StdEncoding.EncodeToString(chunk)+`"}}`)
	}
	b.SetBytes(10 << 20)
	for b.Loop() {
		send(`{"execute":"guest-file-seek","arguments":{"handle":` + hs + `,"offset":0,"whence":"set"}}`)
		benchReply(b, r, nil)
		for _, q := range reqs {
			send(q)
			benchReply(b, r, nil)
		}
	}
}

// BenchmarkQGAPing is sequential guest-ping on one connection.
func BenchmarkQGAPing(b *testing.B) {
	r, send, _ := benchHost(b)
	for b.Loop() {
		send(`{"execute":"guest-ping"}`)
		if _, err := r.ReadSlice('\n'); err != nil {
			b.Fatal(err)
		}
	}
}
