//go:build !windows

package methods

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// Errors of the file methods, mapped to protocol codes by fileError.
var (
	errNotRegular = errors.New("not a regular file")
	errSymlink    = errors.New("is a symbolic link; file_write does not follow symbolic links")
	errNotUTF8    = errors.New("content is not valid UTF-8")
)

// tooLargeError: content or file over max_file_size_bytes.
type tooLargeError struct {
	size int64 // -1: more than max, exact size unknown
	max  int64
}

func (e *tooLargeError) Error() string {
	if e.size < 0 {
		return fmt.Sprintf("is larger than max_file_size_bytes (%d)", e.max)
	}
	return fmt.Sprintf("is %d bytes, over max_file_size_bytes (%d)", e.size, e.max)
}

// base64Enc is the encoding of file content: standard alphabet, padded. On
// input, padding bits must be zero (Strict); CR and LF are ignored.
var base64Enc = base64.StdEncoding.Strict()

func checkEncoding(enc string) (string, error) {
	switch enc {
	case "":
		return protocol.EncodingUTF8, nil
	case protocol.EncodingUTF8, protocol.EncodingBase64:
		return enc, nil
	}
	return "", invalidParams(`"encoding" must be "utf8" or "base64", got %q`, enc)
}

// defaultFileTimeout bounds one file_read or file_write: a request stuck in
// the kernel (a hung network or FUSE file system) gives up its concurrency
// slot after it, with -32003.
const defaultFileTimeout = 60 * time.Second

// maxStuckFileOps is how many timed-out file operations may still be stuck
// in the kernel (each holds a thread) before new ones are refused at once.
const maxStuckFileOps = 4

// withFileDeadline runs fn, a file method's work, and answers -32003 once
// s.fileTimeout has passed (or ctx ended) without it finishing. fn then goes
// on in the background: its thread is stuck in a system call no signal ends;
// at most maxStuckFileOps of them at a time, after which file requests are
// refused at once instead of adding threads.
func (s *Service) withFileDeadline(ctx context.Context, fn func() (any, error)) (any, error) {
	if n := s.stuckFileOps.Load(); n >= maxStuckFileOps {
		return nil, protocol.Errorf(protocol.CodeCommandFailed,
			"%d earlier file operations are still blocked in the kernel (a hung file system?); try again later", n)
	}
	type result struct {
		v   any
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	timer := time.NewTimer(s.fileTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
	case <-ctx.Done():
	}
	s.stuckFileOps.Add(1)
	go func() {
		r := <-done
		if c, ok := r.v.(io.Closer); ok {
			c.Close() // a result no one will send (a file_read's open file)
		}
		s.stuckFileOps.Add(-1)
	}()
	return nil, protocol.Errorf(protocol.CodeTimeout,
		"the file operation did not finish within %v (a hung file system?); it may still complete", s.fileTimeout)
}

// file_read: a regular file inside allowed_read_paths, at most
// max_file_size_bytes, as UTF-8 text or base64.
func (s *Service) fileRead(ctx context.Context, params json.RawMessage) (any, error) {
	return s.withFileDeadline(ctx, func() (any, error) { return s.fileReadNow(ctx, params) })
}

func (s *Service) fileReadNow(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.FileReadParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Path == "" {
		return nil, invalidParams(`"path" is required`)
	}
	enc, err := checkEncoding(p.Encoding)
	if err != nil {
		return nil, err
	}
	if err := checkFilePath(p.Path); err != nil {
		return nil, err
	}
	if p.Offset != nil || p.Length != nil {
		return s.fileReadChunk(ctx, p, enc) // protocol 1.1 (transfer.go)
	}
	res := protocol.FileReadResult{Encoding: enc}
	var raw server.RawResult
	var stream *base64FileResult
	err = s.read.Do(p.Path, func(t *policy.Target) error {
		// Stat first: opening a FIFO would block and opening a device can
		// have side effects, so only regular files are opened.
		fi, err := statAt(t)
		if err != nil {
			return err
		}
		if err := s.checkTargetFile(t, fi, false); err != nil {
			return err
		}
		f, err := openReadAt(t)
		if err != nil {
			return err
		}
		defer func() {
			if stream == nil {
				f.Close()
			}
		}()
		if fi, err = f.Stat(); err != nil { // the file may have been swapped since
			return err
		}
		if err := s.checkTargetFile(t, fi, false); err != nil {
			return err
		}
		r, err := newNonblockReader(f)
		if err != nil {
			return err
		}
		reserve := func(n int64) error { return server.Reserve(ctx, n) }
		if enc == protocol.EncodingBase64 && fi.Size() >= streamReadFrom {
			stream, err = newBase64FileResult(f, r, s.cfg.MaxFileSizeBytes, reserve)
			return err
		}
		if enc == protocol.EncodingBase64 {
			raw, err = readBase64Result(r, fi.Size(), s.cfg.MaxFileSizeBytes, reserve)
			return err
		}
		res.Content, res.SizeBytes, err = readContent(r, fi.Size(), s.cfg.MaxFileSizeBytes, enc, reserve)
		return err
	})
	if err != nil {
		return nil, fileError(p.Path, err)
	}
	if stream != nil {
		return stream, nil
	}
	if raw != nil {
		return raw, nil
	}
	return res, nil
}

// streamReadFrom is the file size from which a base64 file_read is encoded
// while the server writes it (server.StreamResult) instead of in memory.
const streamReadFrom = 1 << 20

// base64FileResult is a base64 file_read result encoded from the open file
// while the server writes it: only a chunk of the file and of its base64
// is held at a time. Its size was found by reading the file through once
// (newBase64FileResult), which also met any read error while an error
// reply could still be sent; the second pass reads from the page cache and
// sends at most that many bytes (fewer if the file shrank meanwhile:
// size_bytes says how many).
type base64FileResult struct {
	f *os.File
	n int64
}

// newBase64FileResult reads f (through r) to its end, at most limit bytes,
// and returns the result that will send what it read. It takes its two
// chunk buffers from the budget; f is kept open for the result.
func newBase64FileResult(f *os.File, r io.Reader, limit int64, reserve func(int64) error) (*base64FileResult, error) {
	if err := reserve(readChunk + int64(base64.StdEncoding.EncodedLen(readChunk))); err != nil {
		return nil, err
	}
	buf := make([]byte, readChunk)
	var n int64
	for n <= limit {
		m, err := r.Read(buf[:min(int64(len(buf)), limit+1-n)])
		n += int64(m)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if n > limit {
		return nil, &tooLargeError{size: -1, max: limit}
	}
	return &base64FileResult{f: f, n: n}, nil
}

const (
	b64ResultHead = `{"content":"`
	b64ResultTail = `","size_bytes":`
	b64ResultEnc  = `,"encoding":"base64"}`
)

// EncodedLen bounds what WriteJSON writes.
func (r *base64FileResult) EncodedLen() int64 {
	return int64(len(b64ResultHead) + base64.StdEncoding.EncodedLen(int(r.n)) + len(b64ResultTail) + 20 + len(b64ResultEnc))
}

// WriteJSON writes protocol.FileReadResult as JSON, its content encoded a
// chunk at a time.
func (r *base64FileResult) WriteJSON(w io.Writer) error {
	if r.f == nil {
		return errors.New("file_read result already sent")
	}
	buf := make([]byte, readChunk)
	out := make([]byte, 0, base64.StdEncoding.EncodedLen(readChunk)+len(b64ResultHead))
	out = append(out, b64ResultHead...)
	src := io.NewSectionReader(r.f, 0, r.n)
	var sent int64
	for {
		m, err := io.ReadFull(src, buf)
		out = base64.StdEncoding.AppendEncode(out, buf[:m])
		sent += int64(m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", r.f.Name(), err)
		}
		if _, err := w.Write(out); err != nil {
			return err
		}
		out = out[:0]
	}
	out = append(out, b64ResultTail...)
	out = strconv.AppendInt(out, sent, 10)
	out = append(out, b64ResultEnc...)
	_, err := w.Write(out)
	return err
}

// MarshalJSON encodes the whole result in memory and closes the file.
func (r *base64FileResult) MarshalJSON() ([]byte, error) {
	defer r.Close()
	var b bytes.Buffer
	b.Grow(int(r.EncodedLen()))
	if err := r.WriteJSON(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Close closes the file.
func (r *base64FileResult) Close() error {
	if r.f == nil {
		return nil
	}
	f := r.f
	r.f = nil
	return f.Close()
}

// checkTargetFile is checkReadable plus the rules for a file in a directory
// other users can write (policy.CheckFile).
func (s *Service) checkTargetFile(t *policy.Target, fi fs.FileInfo, replace bool) error {
	if fi.Mode()&fs.ModeSymlink != 0 {
		return errSymlink
	}
	if err := s.checkReadable(fi); err != nil {
		return err
	}
	uid, nlink := owner(fi)
	return policy.CheckFile(t, uid, nlink, replace)
}

func (s *Service) checkReadable(fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode()))
	}
	if fi.Size() > s.cfg.MaxFileSizeBytes {
		return &tooLargeError{size: fi.Size(), max: s.cfg.MaxFileSizeBytes}
	}
	return nil
}

// readContent reads at most max bytes of f and returns them encoded. sizeHint
// is the stat size (0 for /proc and /sys files, whose size is only known by
// reading). The content is encoded as it streams in, so only the encoded
// copy is ever held in memory. reserve takes memory from the agent's budget
// before it is allocated: the buffer as it grows and, for UTF-8, the two
// JSON-escaped copies the server's encoder makes of the content.
func readContent(f io.Reader, sizeHint, max int64, enc string, reserve func(int64) error) (string, int64, error) {
	lr := &countingReader{r: io.LimitReader(f, max+1)}
	grow := sizeHint
	if grow <= 0 {
		grow = 4096
	}
	var err error
	var out string
	if enc == protocol.EncodingBase64 {
		var b strings.Builder
		b.Grow(base64.StdEncoding.EncodedLen(int(grow)))
		w := base64.NewEncoder(base64.StdEncoding, &b)
		if _, err = io.Copy(w, lr); err == nil {
			err = w.Close()
		}
		out = b.String()
	} else {
		var buf []byte
		buf, err = readCharged(lr, int(min(grow, max+1)), reserve)
		out = unsafeString(buf)
	}
	if err != nil {
		return "", 0, err
	}
	if lr.n > max {
		return "", 0, &tooLargeError{size: -1, max: max}
	}
	if enc == protocol.EncodingUTF8 {
		if !utf8.ValidString(out) {
			return "", 0, errNotUTF8
		}
		if err := reserve(2 * int64(jsonStringLen(out))); err != nil {
			return "", 0, err
		}
	}
	return out, lr.n, nil
}

// readCharged reads r to its end into a buffer of first bytes that grows
// by doubling, reserving each new buffer's size before allocating it.
func readCharged(r io.Reader, first int, reserve func(int64) error) ([]byte, error) {
	first = max(first, 512)
	if err := reserve(int64(first)); err != nil {
		return nil, err
	}
	buf := make([]byte, 0, first)
	for {
		if len(buf) == cap(buf) {
			c := 2 * cap(buf)
			if err := reserve(int64(c)); err != nil {
				return nil, err
			}
			nb := make([]byte, len(buf), c)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// unsafeString returns b as a string without copying; b is not changed
// afterwards.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// jsonStringLen is the length of s encoded as a JSON string by
// encoding/json, an upper bound: control characters as \u00XX, quotes and
// backslashes escaped, U+2028 and U+2029 escaped.
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20:
			n += 6
		case c == '"' || c == '\\':
			n += 2
		case c == 0xE2 && i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9):
			n += 6
			i += 2
		default:
			n++
		}
	}
	return n
}

// readChunk is how much of a file is read and encoded at a time: a multiple
// of 3, so that base64 padding can only come at the very end.
const readChunk = 48 << 10

// readBase64Result reads at most max bytes of f and returns the whole
// file_read result, protocol.FileReadResult as JSON with base64 content,
// built in one buffer of the exact size: base64 needs no JSON escaping, so
// the server sends it as it is instead of re-encoding a multi-megabyte
// string, and only this one copy of the content is ever held.
//
// reserve takes the buffer's size from the agent's memory budget before it
// is allocated (and each larger one, for a file whose size stat does not
// tell).
func readBase64Result(f io.Reader, sizeHint, limit int64, reserve func(int64) error) (server.RawResult, error) {
	const head = `{"content":"`
	grow := max(sizeHint, 4096)
	c := len(head) + base64.StdEncoding.EncodedLen(int(grow)) + 64
	if err := reserve(int64(c + readChunk)); err != nil {
		return nil, err
	}
	out := make([]byte, 0, c)
	out = append(out, head...)
	buf := make([]byte, readChunk)
	lr := io.LimitReader(f, limit+1)
	var n int64
	for {
		m, err := io.ReadFull(lr, buf)
		if need := len(out) + base64.StdEncoding.EncodedLen(m) + 64; need > cap(out) {
			c := max(2*cap(out), need)
			if rerr := reserve(int64(c)); rerr != nil {
				return nil, rerr
			}
			nb := make([]byte, len(out), c)
			copy(nb, out)
			out = nb
		}
		out = base64.StdEncoding.AppendEncode(out, buf[:m])
		n += int64(m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if n > limit {
		return nil, &tooLargeError{size: -1, max: limit}
	}
	out = append(out, `","size_bytes":`...)
	out = strconv.AppendInt(out, n, 10)
	out = append(out, `,"encoding":"base64"}`...)
	return out, nil
}

// nonblockReader reads a file opened with O_NONBLOCK without ever waiting:
// some "regular" kernel files (/proc/kmsg, tracing pipes) have no data until
// an event happens, and the runtime's poller would park the request on them
// forever. They fail with EAGAIN instead.
type nonblockReader struct {
	rc syscall.RawConn
}

func newNonblockReader(f *os.File) (*nonblockReader, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return &nonblockReader{rc: rc}, nil
}

func (r *nonblockReader) Read(p []byte) (int, error) {
	var n int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true // done, whatever happened: never wait for readiness
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if rerr == syscall.EAGAIN {
		return 0, errWouldBlock
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

var errWouldBlock = errors.New("the file has no data to read without waiting")

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// validPerm reports whether p is three octal digits, optionally with a
// leading 0 ("644", "0644"): setuid, setgid and sticky bits cannot be set
// through file_write. (Not a regexp: package regexp adds about 150 KB to the
// binary, and the whole binary is resident at idle.)
func validPerm(p string) bool {
	if len(p) == 4 && p[0] == '0' {
		p = p[1:]
	}
	if len(p) != 3 {
		return false
	}
	for i := range len(p) {
		if p[i] < '0' || p[i] > '7' {
			return false
		}
	}
	return true
}

// defaultFilePerm is the mode of a new file when the request gives none.
const defaultFilePerm = 0o644

// file_write: decode and size-check the content, check the path, then write
// a temporary file next to the target and rename it over the target.
func (s *Service) fileWrite(ctx context.Context, params json.RawMessage) (any, error) {
	return s.withFileDeadline(ctx, func() (any, error) { return s.fileWriteNow(ctx, params) })
}

// SpooledMethods names the methods whose long content the server spools to
// disk as the request streams in (server.Options.Spooled): file_write.
func (s *Service) SpooledMethods() map[string]bool {
	return map[string]bool{protocol.MethodFileWrite: true}
}

func (s *Service) fileWriteNow(ctx context.Context, params json.RawMessage) (any, error) {
	var p protocol.FileWriteParams
	raw, err := decodeWriteParams(params, &p, &p.Content)
	if err != nil {
		return nil, err
	}
	sp := server.SpooledContent(ctx)
	if sp != nil {
		if len(raw) > 0 || p.Content != "" {
			return nil, invalidParams(`"content" given twice`)
		}
		raw = nil
	}
	if p.Path == "" {
		return nil, invalidParams(`"path" is required`)
	}
	enc, err := checkEncoding(p.Encoding)
	if err != nil {
		return nil, err
	}
	if enc == protocol.EncodingUTF8 && !utf8.Valid(params) {
		// encoding/json would silently write U+FFFD for each bad byte.
		return nil, invalidParams(`"content" is not valid UTF-8; send binary content with "encoding": "base64"`)
	}
	content := b64Content{sp: sp}
	if sp != nil && (enc == protocol.EncodingUTF8 || sp.Escaped()) {
		// Text, or base64 with JSON escapes: decoded in memory, as an
		// unspooled request would be, with its size in the budget.
		if raw, err = unspoolContent(ctx, sp, &p.Content, enc); err != nil {
			return nil, err
		}
		content.sp = nil
	}
	if raw != nil && enc == protocol.EncodingUTF8 {
		p.Content = string(raw)
		raw = nil
	}
	var perm os.FileMode
	if p.Permissions != "" {
		if !validPerm(p.Permissions) {
			return nil, invalidParams(`"permissions" must be an octal mode from "000" to "0777" such as "0644", got %q`, p.Permissions)
		}
		v, _ := strconv.ParseUint(p.Permissions, 8, 32)
		perm = os.FileMode(v)
	}

	// 1. Decode (validate) and size-check, before anything touches the disk.
	// Spooled base64 written whole is decoded once instead, as it is
	// written to the temporary file: its length bounds its size, and a bad
	// byte fails the write, which removes that file and the directories
	// create_dirs made (policy.Paths undoes them). A validating pass
	// before it was a third of the agent's CPU per 10 MiB write.
	chunked := p.Offset != nil || p.UploadID != "" || p.Commit || p.Abort || p.SizeBytes != nil || p.SHA256 != ""
	oneDecode := enc == protocol.EncodingBase64 && content.sp != nil && !chunked &&
		maxDecodedLen(content.sp.Len()) <= s.cfg.MaxFileSizeBytes
	size := int64(len(p.Content))
	if enc == protocol.EncodingBase64 && !oneDecode {
		if raw == nil && content.sp == nil {
			raw = []byte(p.Content)
			p.Content = ""
		}
		content.b = raw
		if size, err = decodedSize(content, s.cfg.MaxFileSizeBytes); err != nil {
			return nil, fileError(p.Path, err)
		}
	}
	if size > s.cfg.MaxFileSizeBytes {
		return nil, fileError(p.Path, &tooLargeError{size: size, max: s.cfg.MaxFileSizeBytes})
	}
	if err := checkFilePath(p.Path); err != nil {
		return nil, err
	}
	if slices.Contains(strings.Split(p.Path, "/"), "..") {
		return nil, protocol.Errorf(protocol.CodePermissionDenied, `path %q contains ".."; file_write needs a path without it`, p.Path)
	}

	if chunked {
		return s.fileWriteChunk(p, content, enc, perm) // protocol 1.1 (transfer.go)
	}

	// 2. Path policy; 3. directories, temporary file, rename.
	do := s.write.Do
	if p.CreateDirs {
		do = s.write.DoCreate
	}
	err = do(p.Path, func(t *policy.Target) error {
		var written int64
		err := s.writeTarget(t, p, content, enc, perm, &written)
		if oneDecode {
			size = written
		}
		return err
	})
	if errors.Is(err, fs.ErrNotExist) && !p.CreateDirs {
		err = fmt.Errorf("%w: %v (set create_dirs to create missing directories)", fs.ErrNotExist, rootErrText(err))
	}
	if err != nil {
		return nil, fileError(p.Path, err)
	}
	return protocol.FileWriteResult{BytesWritten: size, Path: p.Path}, nil
}

// decodeChunk is how much base64 is decoded at a time: a multiple of 4, so
// that only the last chunk may carry padding.
const decodeChunk = 64 << 10

// decodeBase64 decodes src chunk by chunk into a small buffer and passes
// each decoded chunk to sink (nil: validate only); it stops early once more
// than max bytes came out. It returns the decoded size.
func decodeBase64(src []byte, max int64, sink func([]byte) error) (int64, error) {
	return decodeBase64From(bytes.NewReader(src), max, sink)
}

// decodeBase64From is decodeBase64 reading the base64 text from r (a
// spooled file_write content), decodeChunk bytes at a time.
func decodeBase64From(r io.Reader, limit int64, sink func([]byte) error) (int64, error) {
	buf := make([]byte, base64Enc.DecodedLen(decodeChunk))
	src := make([]byte, decodeChunk)
	var n int64
	emit := func(b []byte) error {
		n += int64(len(b))
		if n > limit {
			return &tooLargeError{size: -1, max: limit}
		}
		if sink != nil {
			return sink(b)
		}
		return nil
	}
	padded := false // the last chunk ended with padding
	for {
		k, rerr := io.ReadFull(r, src)
		chunk := src[:k]
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			return 0, rerr
		}
		if k == 0 {
			return n, nil
		}
		if padded {
			return 0, fmt.Errorf("%w: padding before the end", errBadBase64)
		}
		if bytes.IndexByte(chunk, '\n') >= 0 || bytes.IndexByte(chunk, '\r') >= 0 {
			// Line breaks (which base64 decoding ignores) would shift the
			// 4-byte quanta across chunks: the streaming decoder takes
			// the rest (the chunks before were whole quanta).
			return decodeBase64Lines(io.MultiReader(bytes.NewReader(chunk), r), buf, emit, n)
		}
		padded = bytes.IndexByte(chunk[max(0, len(chunk)-2):], '=') >= 0
		m, err := base64Enc.Decode(buf, chunk)
		if err != nil {
			return 0, fmt.Errorf("%w: %v", errBadBase64, err)
		}
		if err := emit(buf[:m]); err != nil {
			return 0, err
		}
		if rerr != nil {
			return n, nil
		}
	}
}

// decodeBase64Lines decodes base64 with line breaks from r; n is what came
// out before.
func decodeBase64Lines(r io.Reader, buf []byte, emit func([]byte) error, n int64) (int64, error) {
	d := base64.NewDecoder(base64Enc, r)
	start := n
	var total int64
	for {
		m, err := io.ReadFull(d, buf)
		if m > 0 {
			total += int64(m)
			if err := emit(buf[:m]); err != nil {
				return 0, err
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return start + total, nil
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %v", errBadBase64, err)
		}
	}
}

// decodedSize validates base64 content without holding the decoded bytes
// and returns their length; it stops early past max.
func decodedSize(content b64Content, max int64) (int64, error) {
	return content.decode(max, nil)
}

// b64Content is a file_write's base64 content: in the request's bytes, or
// in the spool the server wrote it to as the request came in.
type b64Content struct {
	b  []byte
	sp *server.Spool
}

// decode decodes the content in chunks to sink (see decodeBase64).
func (c b64Content) decode(max int64, sink func([]byte) error) (int64, error) {
	if c.sp != nil {
		return decodeBase64From(c.sp.Reader(), max, sink)
	}
	return decodeBase64(c.b, max, sink)
}

var errBadBase64 = errors.New("content is not valid base64")

// maxDecodedLen bounds the bytes n bytes of base64 text decode to.
func maxDecodedLen(n int64) int64 { return (n + 3) / 4 * 3 }

// unspoolContent reads spooled content back into memory, taking its size
// from the request's memory budget: utf8 text (checked as UTF-8, escapes
// decoded into *text) or base64 with escapes (returned decoded of them).
func unspoolContent(ctx context.Context, sp *server.Spool, text *string, enc string) ([]byte, error) {
	n := sp.Len()
	if err := server.Reserve(ctx, 2*n+2); err != nil {
		return nil, err
	}
	b := make([]byte, 0, n+2)
	b = append(b, '"')
	if _, err := io.Copy(&appendWriter{&b}, sp.Reader()); err != nil {
		return nil, err
	}
	b = append(b, '"')
	if enc == protocol.EncodingUTF8 && !utf8.Valid(b) {
		return nil, invalidParams(`"content" is not valid UTF-8; send binary content with "encoding": "base64"`)
	}
	if !sp.Escaped() {
		*text = string(b[1 : len(b)-1])
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, invalidParams(`"content": %v`, err)
	}
	if enc == protocol.EncodingUTF8 {
		*text = s
		return nil, nil
	}
	return []byte(s), nil
}

// appendWriter appends to a slice.
type appendWriter struct{ b *[]byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	*w.b = append(*w.b, p...)
	return len(p), nil
}

// writeTarget writes the file t names: a new file under a fresh random name
// in the same directory, renamed over the target once complete. The old
// file's inode is never written to or reused, and the new file is owned by
// the agent (a file the host wrote never belongs to another user, who could
// change it before the host uses it). *written is set to the bytes written.
func (s *Service) writeTarget(t *policy.Target, p protocol.FileWriteParams, raw b64Content, enc string, perm os.FileMode, written *int64) error {
	if t.Name == "." {
		return fmt.Errorf("%w (directory)", errNotRegular)
	}
	old, err := statAt(t)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	case exists && old.Mode()&fs.ModeSymlink != 0:
		return errSymlink
	case exists && !old.Mode().IsRegular():
		return fmt.Errorf("%w (%s)", errNotRegular, fileKind(old.Mode()))
	case exists:
		uid, nlink := owner(old)
		if err := policy.CheckFile(t, uid, nlink, true); err != nil {
			return err
		}
	}
	if perm == 0 && p.Permissions == "" {
		perm = defaultFilePerm
		if exists {
			perm = old.Mode().Perm()
		}
	}

	base := t.Name
	if len(base) > 64 {
		base = base[:64]
	}
	tmp := fmt.Sprintf(".%s.kvmmanager-%016x.tmp", base, rand.Uint64())
	f, err := createAt(t, tmp)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			f.Close()
			if rerr := removeAt(t, tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				s.log.Warn("file_write: cannot remove temporary file", "dir", t.Dir.Name(), "name", tmp, "err", rerr)
			}
		}
	}()
	if enc == protocol.EncodingBase64 {
		*written, err = raw.decode(s.cfg.MaxFileSizeBytes, func(b []byte) error {
			_, err := f.Write(b)
			return err
		})
	} else {
		var n int
		n, err = io.WriteString(f, p.Content)
		*written = int64(n)
	}
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if s.beforeRename != nil {
		if err := s.beforeRename(tmp); err != nil {
			return err
		}
	}
	if err := renameAt(t, tmp); err != nil {
		return err
	}
	committed = true
	if err := t.Dir.Sync(); err != nil { // make the rename durable
		s.log.Debug("file_write: sync directory", "dir", t.Dir.Name(), "err", err)
	}
	return nil
}

// checkFilePath refuses paths that cannot name a file: relative ones and
// ones ending in "/" (which the policy's component split would otherwise
// read as the name before the slash).
func checkFilePath(path string) error {
	if !strings.HasPrefix(path, "/") {
		return fileError(path, policy.ErrNotAbsolute)
	}
	if strings.HasSuffix(path, "/") {
		return invalidParams("path %q ends in \"/\"; it must name a file", path)
	}
	return nil
}

// fileError maps an error of file_read/file_write on path to a protocol error.
func fileError(path string, err error) error {
	var tl *tooLargeError
	var pe *protocol.Error
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, policy.ErrNotAbsolute):
		return invalidParams("path %q is not absolute", path)
	case policy.IsEscape(err):
		var oe *policy.OutsideError
		if errors.As(err, &oe) {
			return protocol.Errorf(protocol.CodePermissionDenied, "%v", oe)
		}
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q is outside the allowed paths", path)
	case errors.Is(err, policy.ErrUntrusted):
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q: %v", path, err)
	case errors.As(err, &tl):
		return protocol.Errorf(protocol.CodePermissionDenied, "file %q %v", path, tl)
	case errors.Is(err, errBadBase64):
		return invalidParams("%v", err)
	case errors.Is(err, errNotUTF8):
		return invalidParams(`file %q is not valid UTF-8 text; read it with "encoding": "base64"`, path)
	case errors.Is(err, errWouldBlock):
		return protocol.Errorf(protocol.CodeCommandFailed, "path %q: %v", path, err)
	case errors.Is(err, errNotRegular):
		return invalidParams("path %q: %v", path, err)
	case errors.Is(err, errSymlink):
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q %v", path, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return protocol.Errorf(protocol.CodeNotFound, "path %q not found: %v", path, rootErrText(err))
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.EROFS):
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q: %v", path, rootErrText(err))
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "path %q: %v", path, rootErrText(err))
}

// rootErrText is the reason of err without the root-relative path os.Root
// errors carry (the message names the requested path instead).
func rootErrText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	}
	return "irregular file"
}
