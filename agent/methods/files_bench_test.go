//go:build !windows

package methods

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

const benchSize = 10 << 20 // the seed's max_file_size_bytes

func benchService(b *testing.B) (*Service, string) {
	dir := b.TempDir()
	s := newService(b, func(c *config.Config) {
		c.AllowedReadPaths = []string{dir}
		c.AllowedWritePaths = []string{dir}
	})
	return s, dir
}

func benchData() []byte {
	return bytes.Repeat([]byte("0123456789abcdef\x00\xff"), benchSize/18+1)[:benchSize]
}

// BenchmarkFileRead10MiB reads a 10 MiB file as base64: "handler" is this
// package's work (one copy: the encoded string, built as the file streams
// in); "handler+json" adds the encoding of the result, as the server does.
func BenchmarkFileRead10MiB(b *testing.B) {
	s, dir := benchService(b)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, benchData(), 0o644); err != nil {
		b.Fatal(err)
	}
	h := s.Handlers()[protocol.MethodFileRead]
	params, _ := json.Marshal(protocol.FileReadParams{Path: p, Encoding: protocol.EncodingBase64})
	for _, withJSON := range []bool{false, true} {
		name := "handler"
		if withJSON {
			name = "handler+json"
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(benchSize)
			b.ReportAllocs()
			for b.Loop() {
				res, err := h(b.Context(), params)
				if err != nil {
					b.Fatal(err)
				}
				if withJSON {
					if _, err := json.Marshal(res); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkFileWrite10MiB writes 10 MiB sent as base64: params decoding,
// validation, streaming decode into the temporary file, fsync and rename.
func BenchmarkFileWrite10MiB(b *testing.B) {
	s, dir := benchService(b)
	h := s.Handlers()[protocol.MethodFileWrite]
	params, _ := json.Marshal(protocol.FileWriteParams{
		Path: filepath.Join(dir, "f"), Content: base64.StdEncoding.EncodeToString(benchData()), Encoding: protocol.EncodingBase64,
	})
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h(b.Context(), params); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFileWrite10MiBSpooled writes 10 MiB sent as base64 that the
// server spooled as the request came in (as it does for any file_write over
// 64 KiB): one streaming decode from the spool into the temporary file,
// fsync and rename.
func BenchmarkFileWrite10MiBSpooled(b *testing.B) {
	s, dir := benchService(b)
	h := s.Handlers()[protocol.MethodFileWrite]
	sp, err := server.NewSpool(b.TempDir(), []byte(base64.StdEncoding.EncodeToString(benchData())))
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	ctx := server.WithSpool(b.Context(), sp)
	params, _ := json.Marshal(protocol.FileWriteParams{Path: filepath.Join(dir, "f"), Encoding: protocol.EncodingBase64})
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		res, err := h(ctx, params)
		if err != nil {
			b.Fatal(err)
		}
		if n := res.(protocol.FileWriteResult).BytesWritten; n != benchSize {
			b.Fatalf("bytes_written %d, want %d", n, benchSize)
		}
	}
}
