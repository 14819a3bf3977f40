package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// read and write move files of any size with a protocol 1.1 agent: in
// chunks (file_read/file_write with offsets), the sha256 verified at the
// end, a progress bar on stderr when it is a terminal. With a 1.0 agent
// they send the single 1.0 request as before (files up to the agent's
// max_file_size_bytes).

// transferTimeout bounds each chunk's call beyond --timeout (a transfer
// as a whole has no bound: it may be of any size).
const transferTimeout = 2 * time.Minute

// connectTransfer dials the agent with calls bounded by --timeout plus
// transferTimeout, and asks it (within --timeout) whether it takes
// transfers in chunks: protocol 1.1, which has file_stat. The caller closes
// c.
func (a *app) connectTransfer(ctx context.Context) (c *client.Client, chunked bool, err error) {
	if c, err = a.dial(ctx, a.timeout+transferTimeout); err != nil {
		return nil, false, err
	}
	ictx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if chunked, err = supports11(ictx, c, protocol.MethodFileStat); err != nil {
		c.Close()
		return nil, false, err
	}
	return c, chunked, nil
}

// supports11 asks the agent whether it speaks protocol 1.1 (has method).
func supports11(ctx context.Context, c *client.Client, method string) (bool, error) {
	info, err := c.AgentInfo(ctx)
	if err != nil {
		return false, err
	}
	return slices.Contains(info.Capabilities, method), nil
}

func chunkFlag(fs *pflag.FlagSet) *int64 {
	return fs.Int64("chunk", client.DefaultChunkSize, "chunk size in `BYTES` (protocol 1.1 agents; at most the agent's max_file_size_bytes)")
}

func setupReadAll(a *app, fs *pflag.FlagSet) action {
	single := setupRead(a, fs)
	chunk := chunkFlag(fs)
	asBase64 := fs.Lookup("base64")
	return func(ctx context.Context, args []string) error {
		if *chunk < 1 {
			return usagef("read --chunk must be positive")
		}
		c, chunked, err := a.connectTransfer(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if !chunked {
			return single(ctx, args)
		}
		var out io.Writer = a.stdout
		var enc io.WriteCloser
		switch {
		case a.json:
			out = io.Discard // --json reports the size and the verified sha256
		case asBase64.Value.String() == "true":
			enc = base64.NewEncoder(base64.StdEncoding, a.stdout)
			out = enc
		}
		bar := newProgress(a.stderr, "read "+args[0])
		n, sum, err := c.Download(ctx, args[0], &localWriter{out}, *chunk, bar.update)
		bar.done(err == nil)
		if err != nil {
			return err
		}
		if enc != nil {
			if err := enc.Close(); err != nil {
				return &localError{fmt.Errorf("write stdout: %w", err)}
			}
			fmt.Fprintln(a.stdout)
		}
		if a.json {
			return a.printJSON(map[string]any{"path": args[0], "size_bytes": n, "sha256": sum})
		}
		if isTerminalWriter(a.stderr) {
			fmt.Fprintf(a.stderr, "read %d bytes from %s, sha256 %s verified\n", n, args[0], sum)
		}
		return nil
	}
}

// localWriter marks write errors as the host's (stdout closed, disk full).
type localWriter struct{ w io.Writer }

func (l *localWriter) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if err != nil {
		return n, &localError{fmt.Errorf("write stdout: %w", err)}
	}
	return n, nil
}

// localReader marks read errors as the host's.
type localReader struct{ r io.Reader }

func (l *localReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		return n, &localError{fmt.Errorf("read stdin: %w", err)}
	}
	return n, err
}

func setupWriteAll(a *app, fs *pflag.FlagSet) action {
	single := setupWrite(a, fs)
	chunk := chunkFlag(fs)
	mode := fs.Lookup("mode")
	createDirs := fs.Lookup("create-dirs")
	return func(ctx context.Context, args []string) error {
		if *chunk < 1 {
			return usagef("write --chunk must be positive")
		}
		c, chunked, err := a.connectTransfer(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		if !chunked {
			return single(ctx, args)
		}
		if m := mode.Value.String(); m != "" {
			if !validMode(m) {
				return usagef("write --mode %q: want octal permissions such as 0644", m)
			}
		}
		size := int64(-1)
		if f, ok := a.stdin.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
				size = fi.Size()
			}
		}
		bar := newProgress(a.stderr, "write "+args[0])
		n, sum, err := c.Upload(ctx, args[0], &localReader{a.stdin}, client.UploadOptions{
			Chunk: *chunk, Permissions: mode.Value.String(), CreateDirs: createDirs.Value.String() == "true",
			Size: size, Progress: bar.update,
		})
		bar.done(err == nil)
		if err != nil {
			return cliCreateDirs(err)
		}
		if a.json {
			return a.printJSON(map[string]any{"path": args[0], "bytes_written": n, "sha256": sum})
		}
		fmt.Fprintf(a.stdout, "wrote %d bytes to %s (sha256 %s verified by the agent)\n", n, args[0], sum)
		return nil
	}
}

// validMode: octal permissions up to 0777 (the agent refuses setuid and the
// like).
func validMode(m string) bool {
	if len(m) < 3 || len(m) > 4 {
		return false
	}
	for _, r := range m {
		if r < '0' || r > '7' {
			return false
		}
	}
	return len(m) == 3 || m[0] == '0'
}

// progress draws a one-line progress bar on a terminal; elsewhere it does
// nothing.
type progress struct {
	w     io.Writer
	on    bool
	label string
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer, label string) *progress {
	if len(label) > 40 {
		label = "…" + label[len(label)-39:]
	}
	return &progress{w: w, on: isTerminalWriter(w), label: label, start: time.Now()}
}

func (p *progress) update(done, total int64) {
	if !p.on {
		return
	}
	now := time.Now()
	if p.drawn && now.Sub(p.last) < 100*time.Millisecond && done != total {
		return
	}
	p.last, p.drawn = now, true
	rate := ""
	if el := now.Sub(p.start).Seconds(); el > 0.2 {
		rate = humanBytes(uint64(float64(done)/el)) + "/s"
	}
	if total <= 0 {
		fmt.Fprintf(p.w, "\r%s  %s  %s\x1b[K", p.label, humanBytes(uint64(done)), rate)
		return
	}
	const width = 30
	fill := int(float64(width) * float64(done) / float64(total))
	fill = min(max(fill, 0), width)
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%%  %s / %s  %s\x1b[K", p.label, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		done*100/total, humanBytes(uint64(done)), humanBytes(uint64(total)), rate)
}

func (p *progress) done(ok bool) {
	if p.on && p.drawn {
		if ok {
			fmt.Fprintln(p.w)
		} else {
			fmt.Fprint(p.w, "\r\x1b[K")
		}
	}
}
