//go:build !windows

package qga

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/kvmmanager/guest-agent/agent/methods"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// MaxOpenFiles bounds the files one session (one host connection) has open
// through guest-file-open; they are all closed when the session ends.
const MaxOpenFiles = 64

// firstHandle is the first handle given out, as in qemu-ga.
const firstHandle = 1000

// defaultReadCount is guest-file-read's count when absent (or
// max_file_size_bytes if smaller).
const defaultReadCount = 4096

// fileCommands: guest-file-open/read/write/seek/flush/close, under the path
// policy of file_read and file_write, each read and write bounded by
// max_file_size_bytes.
func (d *Dialect) fileCommands() []Command {
	return []Command{
		{Name: qapi.CmdFileOpen, Handler: Typed(d.fileOpen)},
		{Name: qapi.CmdFileClose, Handler: Typed(d.fileClose)},
		{Name: qapi.CmdFileRead, Handler: Typed(d.fileRead), Method: protocol.MethodFileRead},
		{Name: qapi.CmdFileWrite, Handler: d.fileWriteHandler, Method: protocol.MethodFileWrite},
		{Name: qapi.CmdFileSeek, Handler: Typed(d.fileSeek)},
		{Name: qapi.CmdFileFlush, Handler: Typed(d.fileFlush)},
	}
}

// fileTable is a session's open files.
type fileTable struct {
	mu    sync.Mutex
	files map[int64]*os.File
}

func (s *session) fileTable() *fileTable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files == nil {
		s.files = &fileTable{files: map[int64]*os.File{}}
		t := s.files
		s.closers = append(s.closers, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			for h, f := range t.files {
				f.Close()
				delete(t.files, h)
			}
		})
	}
	return s.files
}

// hostGone closes the files of a host that left.
func (s *session) hostGone() {
	s.mu.Lock()
	t := s.files
	s.mu.Unlock()
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for h, f := range t.files {
		f.Close()
		delete(t.files, h)
	}
}

func tableOf(ctx context.Context) (*fileTable, error) {
	s := sessionOf(ctx)
	if s == nil {
		return nil, errors.New("guest-file commands need a session")
	}
	return s.fileTable(), nil
}

func (t *fileTable) get(h int64) (*os.File, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.files[h]
	if f == nil {
		return nil, Errorf("handle '%d' has not been found", h)
	}
	return f, nil
}

func (d *Dialect) fileOpen(ctx context.Context, a *qapi.GuestFileOpenArgs) (int64, error) {
	mode := "r"
	if a.Mode != nil {
		mode = *a.Mode
	}
	reading := mode == "r" || mode == "rb"
	if (reading && d.cfg.MethodDisabled(protocol.MethodFileRead)) || (!reading && d.cfg.MethodDisabled(protocol.MethodFileWrite)) {
		return 0, errDisabled(qapi.CmdFileOpen)
	}
	t, err := tableOf(ctx)
	if err != nil {
		return 0, err
	}
	t.mu.Lock()
	n := len(t.files)
	t.mu.Unlock()
	if n >= MaxOpenFiles {
		return 0, Errorf("too many open files: %d handles are open, close some with guest-file-close", n)
	}
	f, err := d.svc.OpenFile(a.Path, mode)
	if errors.Is(err, methods.ErrBadOpenMode) {
		return 0, Errorf("invalid file open mode '%s'", mode)
	}
	if err != nil {
		return 0, err
	}
	h := d.nextHandle.Add(1) - 1 + firstHandle
	t.mu.Lock()
	t.files[h] = f
	t.mu.Unlock()
	return h, nil
}

func (d *Dialect) fileClose(ctx context.Context, a *qapi.GuestFileHandleArgs) (any, error) {
	t, err := tableOf(ctx)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	f := t.files[a.Handle]
	delete(t.files, a.Handle)
	t.mu.Unlock()
	if f == nil {
		return nil, Errorf("handle '%d' has not been found", a.Handle)
	}
	if err := f.Close(); err != nil {
		return nil, Errorf("failed to close handle: %v", errText(err))
	}
	return nil, nil
}

func (d *Dialect) fileRead(ctx context.Context, a *qapi.GuestFileReadArgs) (*fileReadReturn, error) {
	t, err := tableOf(ctx)
	if err != nil {
		return nil, err
	}
	f, err := t.get(a.Handle)
	if err != nil {
		return nil, err
	}
	count := min(int64(defaultReadCount), d.svc.MaxFileSize())
	if a.Count != nil {
		count = *a.Count
	}
	if count < 0 || count > d.svc.MaxFileSize() {
		return nil, Errorf("value '%d' is invalid for argument count", count)
	}
	// The buffer and the reply's chunk: the base64 text is encoded while
	// the reply is written, never held whole.
	if err := server.Reserve(ctx, count+chunkSize+256); err != nil {
		return nil, err
	}
	buf := make([]byte, count)
	n, err := methods.ReadNoWait(f, buf)
	eof := false
	switch {
	case errors.Is(err, io.EOF):
		eof = true
	case errors.Is(err, methods.ErrNoData) && n > 0:
		// What was there; the rest has not come yet.
	case err != nil:
		return nil, Errorf("failed to read file: %s", errText(err))
	}
	return &fileReadReturn{data: buf[:n], eof: eof}, nil
}

// fileReadReturn is guest-file-read's return (qapi.GuestFileRead) with the
// data still in bytes: it is base64-encoded as the reply is written.
type fileReadReturn struct {
	data []byte
	eof  bool
}

// writeJSON writes what encoding/json makes of qapi.GuestFileRead:
// {"count":N,"buf-b64":"...","eof":B} (base64 needs no JSON escapes).
func (r *fileReadReturn) writeJSON(cw *chunkWriter) {
	var num [32]byte
	cw.write([]byte(`{"count":`))
	cw.write(strconv.AppendInt(num[:0], int64(len(r.data)), 10))
	cw.write([]byte(`,"buf-b64":"`))
	enc := base64.StdEncoding
	for data := r.data; len(data) > 0 && cw.err == nil; {
		room := cw.free(4 << 10)
		n := min(len(data), len(room)/4*3) // whole 3-byte groups: no padding inside
		enc.Encode(room, data[:n])
		cw.wrote(enc.EncodedLen(n))
		data = data[n:]
	}
	cw.write([]byte(`","eof":` + strconv.FormatBool(r.eof) + `}`))
}

// fileWriteArgs are qapi.GuestFileWriteArgs with the base64 text decoded
// straight from the request's bytes (no string copy of it).
type fileWriteArgs struct {
	Handle int64    `json:"handle"`
	BufB64 b64Bytes `json:"buf-b64"`
	Count  *int64   `json:"count,omitempty"`
}

// b64Bytes decodes a JSON string of base64 into its bytes; text that is
// not base64 is recorded (bad), so that the command answers qemu-ga's
// "Base64 data contains invalid characters" after the other arguments
// were checked.
type b64Bytes struct {
	data []byte
	bad  bool
}

func (b *b64Bytes) UnmarshalJSON(raw []byte) error {
	if len(raw) < 2 || raw[0] != '"' {
		return errors.New("not a string")
	}
	text := raw[1 : len(raw)-1]
	if bytes.IndexByte(text, '\\') >= 0 {
		// JSON escapes (never in base64 as hosts send it, but legal).
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		text = []byte(s)
	}
	enc := base64.StdEncoding
	b.data = make([]byte, enc.DecodedLen(len(text)))
	n, err := enc.Decode(b.data, text)
	b.data, b.bad = b.data[:n], err != nil
	return nil
}

// fileWriteHandler decodes guest-file-write's arguments; on an error the
// schema's struct is decoded for qemu-ga's exact text.
func (d *Dialect) fileWriteHandler(ctx context.Context, raw json.RawMessage) (any, error) {
	var a fileWriteArgs
	if err := decodeArgs(raw, &a); err != nil {
		var std qapi.GuestFileWriteArgs
		if serr := decodeArgs(raw, &std); serr != nil {
			return nil, serr
		}
		return nil, err
	}
	return d.fileWrite(ctx, &a)
}

func (d *Dialect) fileWrite(ctx context.Context, a *fileWriteArgs) (qapi.GuestFileWrite, error) {
	t, err := tableOf(ctx)
	if err != nil {
		return qapi.GuestFileWrite{}, err
	}
	f, err := t.get(a.Handle)
	if err != nil {
		return qapi.GuestFileWrite{}, err
	}
	if a.BufB64.bad {
		return qapi.GuestFileWrite{}, Errorf("Base64 data contains invalid characters")
	}
	buf := a.BufB64.data
	count := int64(len(buf))
	if a.Count != nil {
		count = *a.Count
	}
	if count < 0 || count > int64(len(buf)) || count > d.svc.MaxFileSize() {
		return qapi.GuestFileWrite{}, Errorf("value '%d' is invalid for argument count", count)
	}
	n, err := f.Write(buf[:count])
	if err != nil {
		return qapi.GuestFileWrite{}, Errorf("failed to write to file: %s", errText(err))
	}
	return qapi.GuestFileWrite{Count: int64(n), EOF: false}, nil
}

// Whence codes of guest-file-seek's integer form (QGA_SEEK_*).
const (
	qgaSeekSet = 0
	qgaSeekCur = 1
	qgaSeekEnd = 2
)

func (d *Dialect) fileSeek(ctx context.Context, a *qapi.GuestFileSeekArgs) (qapi.GuestFileSeek, error) {
	t, err := tableOf(ctx)
	if err != nil {
		return qapi.GuestFileSeek{}, err
	}
	f, err := t.get(a.Handle)
	if err != nil {
		return qapi.GuestFileSeek{}, err
	}
	var whence int
	switch {
	case a.Whence.Name != nil:
		whence = map[qapi.QGASeek]int{qapi.QGASeekSet: io.SeekStart, qapi.QGASeekCur: io.SeekCurrent, qapi.QGASeekEnd: io.SeekEnd}[*a.Whence.Name]
	case a.Whence.Value != nil:
		switch *a.Whence.Value {
		case qgaSeekSet:
			whence = io.SeekStart
		case qgaSeekCur:
			whence = io.SeekCurrent
		case qgaSeekEnd:
			whence = io.SeekEnd
		default:
			return qapi.GuestFileSeek{}, Errorf("invalid whence code %d", *a.Whence.Value)
		}
	}
	pos, err := f.Seek(a.Offset, whence)
	if err != nil {
		return qapi.GuestFileSeek{}, Errorf("failed to seek file: %s", errText(err))
	}
	return qapi.GuestFileSeek{Position: pos, EOF: false}, nil
}

// fileFlush: writes go straight to the kernel (no user-space buffer as
// with qemu-ga's stdio), so there is nothing to flush; the handle must be
// valid.
func (d *Dialect) fileFlush(ctx context.Context, a *qapi.GuestFileHandleArgs) (any, error) {
	t, err := tableOf(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := t.get(a.Handle); err != nil {
		return nil, err
	}
	return nil, nil
}

// errText is the system's reason without the operation and path.
func errText(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
