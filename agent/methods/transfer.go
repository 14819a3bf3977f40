//go:build !windows

package methods

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/server"
)

// Protocol 1.1's big files: file_read and file_write in chunks of at most
// max_file_size_bytes, and file_stat. Every request resolves its path again
// through the same policy (allowed entries, trusted links, shared
// directories) as the 1.0 methods. An upload is written to a temporary file
// next to the target, created by the agent (mode 0600, O_EXCL) and reopened
// for each chunk without following links and only if it is still the same
// inode; a commit renames it over the target, so the target changes at
// once and only when complete. Uploads live in memory: an agent restart
// forgets them (their temporary files stay, named
// .NAME.kvmmanager-upload-ID.part), and one idle for 10 minutes is removed with
// its temporary file.

// MaxUploads bounds the uploads in progress at once.
const MaxUploads = 16

// defaultUploadIdle is how long an upload may wait for its next chunk
// (Service.uploadIdle; tests shorten it).
const defaultUploadIdle = 10 * time.Minute

// upload is a multi-chunk file_write in progress.
type upload struct {
	mu       sync.Mutex // serializes the upload's chunks
	id       string
	path     string   // as requested
	tmp      string   // name in the target's directory
	f        *os.File // the temporary file, open until the upload ends
	dev, ino uint64
	dirDev   uint64 // the directory of the target
	dirIno   uint64
	size     int64
	perm     os.FileMode // 0: the default at commit
	last     time.Time
	timer    *time.Timer // sweeps once the upload has been idle
	done     bool        // committed, aborted or expired
}

type uploadTable struct {
	mu sync.Mutex
	m  map[string]*upload
}

func (s *Service) fileWriteChunk(p protocol.FileWriteParams, raw b64Content, enc string, perm os.FileMode) (any, error) {
	s.sweepUploads()
	content := func(f *os.File, at int64) (int64, error) {
		w := &offsetWriter{f: f, off: at}
		if enc == protocol.EncodingBase64 {
			return raw.decode(math.MaxInt64, func(b []byte) error {
				_, err := w.Write(b)
				return err
			})
		}
		n, err := io.WriteString(w, p.Content)
		return int64(n), err
	}
	if p.UploadID == "" {
		if p.Abort {
			return nil, invalidParams(`"abort" needs "upload_id"`)
		}
		if p.Offset == nil || *p.Offset != 0 {
			return nil, invalidParams(`an upload starts at "offset" 0; later chunks carry its "upload_id"`)
		}
		return s.startUpload(p, perm, content)
	}
	u := s.uploadByID(p.UploadID)
	if u == nil {
		return nil, s.uploadGone(p.UploadID)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, s.uploadGone(p.UploadID) // it ended while this call waited for it
	}
	if u.path != p.Path {
		return nil, invalidParams("upload %q is for path %q, not %q", u.id, u.path, p.Path)
	}
	if p.Abort {
		err := s.write.Do(p.Path, func(t *policy.Target) error { return u.remove(t) })
		s.endUpload(u)
		if err != nil {
			return nil, fileError(p.Path, err)
		}
		return protocol.FileWriteChunkResult{Path: p.Path, UploadID: u.id, SizeBytes: u.size, Aborted: true}, nil
	}
	if p.Offset == nil {
		return nil, invalidParams(`"offset" is required with "upload_id"`)
	}
	if *p.Offset < 0 || *p.Offset > u.size {
		return nil, invalidParams(`"offset" %d is outside the upload (0 to its size %d)`, *p.Offset, u.size)
	}
	if perm != 0 || p.Permissions != "" {
		u.perm = perm | permSet
	}
	var res protocol.FileWriteChunkResult
	err := s.write.Do(p.Path, func(t *policy.Target) error {
		f, err := u.open(t)
		if err != nil {
			return err
		}
		if err := f.Truncate(*p.Offset); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
		n, err := content(f, *p.Offset)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		u.size = *p.Offset + n
		u.last = time.Now()
		if u.timer != nil {
			u.timer.Reset(s.uploadIdle)
		}
		res = protocol.FileWriteChunkResult{BytesWritten: n, Path: p.Path, UploadID: u.id, SizeBytes: u.size}
		if p.Commit {
			res.SHA256, err = s.commitUpload(t, u, f, p)
			res.Committed = err == nil
		}
		return err
	})
	if err != nil {
		return nil, fileError(p.Path, err)
	}
	if res.Committed {
		s.endUpload(u)
	}
	return res, nil
}

// permSet marks an explicit mode in upload.perm (0 is a valid mode).
const permSet = os.ModeSticky << 1

func (s *Service) startUpload(p protocol.FileWriteParams, perm os.FileMode, content func(*os.File, int64) (int64, error)) (any, error) {
	s.uploads.mu.Lock()
	if s.uploads.m == nil {
		s.uploads.m = map[string]*upload{}
	}
	if len(s.uploads.m) >= MaxUploads {
		s.uploads.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "%d uploads are in progress; commit or abort one first", MaxUploads)
	}
	u := &upload{id: fmt.Sprintf("%016x", rand.Uint64()), path: p.Path, last: time.Now()}
	s.uploads.m[u.id] = u // reserved while being created
	s.uploads.mu.Unlock()
	if perm != 0 || p.Permissions != "" {
		u.perm = perm | permSet
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	do := s.write.Do
	if p.CreateDirs {
		do = s.write.DoCreate
	}
	var res protocol.FileWriteChunkResult
	err := do(p.Path, func(t *policy.Target) error {
		if err := checkReplaceable(t); err != nil {
			return err
		}
		base := t.Name
		if len(base) > 64 {
			base = base[:64]
		}
		u.tmp = fmt.Sprintf(".%s.kvmmanager-upload-%s.part", base, u.id)
		f, err := openAt(t, u.tmp, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err == nil {
			var dfi fs.FileInfo
			if dfi, err = t.Dir.Stat(); err == nil {
				u.dirDev, u.dirIno, _ = devIno(dfi)
			}
		}
		if err != nil {
			f.Close()
			_ = removeAt(t, u.tmp)
			return err
		}
		u.f = f
		u.dev, u.ino, _ = devIno(fi)
		n, err := content(f, 0)
		if err != nil {
			_ = removeAt(t, u.tmp)
			return fmt.Errorf("write: %w", err)
		}
		u.size = n
		res = protocol.FileWriteChunkResult{BytesWritten: n, Path: p.Path, UploadID: u.id, SizeBytes: n}
		if p.Commit {
			if _, err := u.open(t); err != nil {
				return err
			}
			res.SHA256, err = s.commitUpload(t, u, f, p)
			if err != nil {
				_ = removeAt(t, u.tmp)
				return err
			}
			res.Committed = true
		}
		return nil
	})
	if err != nil || res.Committed {
		s.endUpload(u)
	}
	if errors.Is(err, fs.ErrNotExist) && !p.CreateDirs {
		err = fmt.Errorf("%w: %v (set create_dirs to create missing directories)", fs.ErrNotExist, rootErrText(err))
	}
	if err != nil {
		return nil, fileError(p.Path, err)
	}
	if !res.Committed {
		// Removed when idle even if no other upload request comes.
		u.timer = time.AfterFunc(s.uploadIdle, s.sweepUploads)
	}
	s.log.Debug("file_write: upload started", "upload", u.id, "path", p.Path)
	return res, nil
}

// checkReplaceable applies file_write's rules to an existing target: a
// regular file, not a link, and in a shared directory one root or the agent
// owns with a single name.
func checkReplaceable(t *policy.Target) error {
	if t.Name == "." {
		return fmt.Errorf("%w (directory)", errNotRegular)
	}
	old, err := statAt(t)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case old.Mode()&fs.ModeSymlink != 0:
		return errSymlink
	case !old.Mode().IsRegular():
		return fmt.Errorf("%w (%s)", errNotRegular, fileKind(old.Mode()))
	}
	uid, nlink := owner(old)
	return policy.CheckFile(t, uid, nlink, true)
}

// open returns u's temporary file after checking that t is in the same
// directory and that the temporary name there is still that file (same
// inode, which cannot be reused while the agent holds it open; one name).
func (u *upload) open(t *policy.Target) (*os.File, error) {
	if dfi, err := t.Dir.Stat(); err != nil {
		return nil, err
	} else if dev, ino, _ := devIno(dfi); dev != u.dirDev || ino != u.dirIno {
		return nil, &policy.UntrustedError{Path: t.Path, Reason: fmt.Sprintf("upload %q: the path now leads to another directory", u.id)}
	}
	fi, err := statAt(&policy.Target{Dir: t.Dir, Name: u.tmp, Path: t.Path})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, protocol.Errorf(protocol.CodeNotFound, "the temporary file of upload %q is gone from the directory of %q", u.id, u.path)
	}
	if err != nil {
		return nil, err
	}
	dev, ino, _ := devIno(fi)
	_, nlink := owner(fi)
	if dev != u.dev || ino != u.ino || nlink != 1 || !fi.Mode().IsRegular() {
		return nil, &policy.UntrustedError{Path: t.Path, Reason: fmt.Sprintf("upload %q: its temporary file was replaced or linked", u.id)}
	}
	return u.f, nil
}

// remove deletes u's temporary file if it is still the agent's.
func (u *upload) remove(t *policy.Target) error {
	if _, err := u.open(t); err != nil {
		return err
	}
	return removeAt(t, u.tmp)
}

// commitUpload checks the expected size and hash, sets the mode, syncs and
// renames the temporary file f over the target.
func (s *Service) commitUpload(t *policy.Target, u *upload, f *os.File, p protocol.FileWriteParams) (string, error) {
	if p.SizeBytes != nil && *p.SizeBytes != u.size {
		return "", protocol.Errorf(protocol.CodeInvalidParams, "upload %q is %d bytes, not the expected size_bytes %d; not committed", u.id, u.size, *p.SizeBytes)
	}
	sum := ""
	if p.SHA256 != "" {
		want := strings.ToLower(p.SHA256)
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, u.size)); err != nil {
			return "", fmt.Errorf("hash: %w", err)
		}
		sum = hex.EncodeToString(h.Sum(nil))
		if sum != want {
			return "", protocol.Errorf(protocol.CodeInvalidParams, "upload %q has sha256 %s, not the expected %s; not committed", u.id, sum, want)
		}
	}
	if err := checkReplaceable(t); err != nil {
		return "", err
	}
	perm := u.perm &^ permSet
	if u.perm&permSet == 0 {
		perm = defaultFilePerm
		if old, err := statAt(t); err == nil {
			perm = old.Mode().Perm()
		}
	}
	if err := f.Chmod(perm); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := renameAt(t, u.tmp); err != nil {
		return "", err
	}
	if err := t.Dir.Sync(); err != nil {
		s.log.Debug("file_write: sync directory", "dir", t.Dir.Name(), "err", err)
	}
	s.log.Info("file_write: upload committed", "upload", u.id, "path", u.path, "size", u.size)
	return sum, nil
}

func (s *Service) uploadByID(id string) *upload {
	s.uploads.mu.Lock()
	defer s.uploads.mu.Unlock()
	return s.uploads.m[id]
}

// endUpload drops u from the table; u.mu is held.
func (s *Service) endUpload(u *upload) {
	u.done = true
	if u.timer != nil {
		u.timer.Stop()
	}
	if u.f != nil {
		u.f.Close()
	}
	s.uploads.mu.Lock()
	defer s.uploads.mu.Unlock()
	if s.uploads.m[u.id] == u {
		delete(s.uploads.m, u.id)
	}
}

// uploadGone is the error for a chunk of an upload that is not there (any
// more): one text whether the upload ended before the call or while it
// waited for the upload's lock.
func (s *Service) uploadGone(id string) error {
	return protocol.Errorf(protocol.CodeNotFound, "upload %q not found (committed, aborted, idle for more than %v, or the agent restarted)", id, s.uploadIdle)
}

// sweepUploads removes the uploads idle for more than uploadIdle, and
// their temporary files.
func (s *Service) sweepUploads() {
	s.uploads.mu.Lock()
	var idle []*upload
	now := time.Now()
	for _, u := range s.uploads.m {
		if u.mu.TryLock() {
			if now.Sub(u.last) >= s.uploadIdle && u.tmp != "" {
				idle = append(idle, u)
			} else {
				u.mu.Unlock()
			}
		}
	}
	s.uploads.mu.Unlock()
	for _, u := range idle {
		err := s.write.Do(u.path, func(t *policy.Target) error { return u.remove(t) })
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("file_write: cannot remove an idle upload's temporary file", "upload", u.id, "path", u.path, "err", err)
		}
		s.endUpload(u)
		u.mu.Unlock()
	}
}

// offsetWriter writes f from off on (pwrite).
type offsetWriter struct {
	f   *os.File
	off int64
}

func (w *offsetWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// fileReadChunk reads [offset, offset+length) of a regular file of any size.
func (s *Service) fileReadChunk(ctx context.Context, p protocol.FileReadParams, enc string) (any, error) {
	var off int64
	if p.Offset != nil {
		off = *p.Offset
	}
	length := s.cfg.MaxFileSizeBytes
	if p.Length != nil {
		length = *p.Length
	}
	switch {
	case off < 0:
		return nil, invalidParams(`"offset" must not be negative, got %d`, off)
	case length < 0:
		return nil, invalidParams(`"length" must not be negative, got %d`, length)
	case length > s.cfg.MaxFileSizeBytes:
		return nil, invalidParams(`"length" %d is over max_file_size_bytes (%d)`, length, s.cfg.MaxFileSizeBytes)
	}
	var res protocol.FileReadChunkResult
	err := s.read.Do(p.Path, func(t *policy.Target) error {
		f, fi, err := s.openRegularAt(t)
		if err != nil {
			return err
		}
		defer f.Close()
		// The memory budget: the buffer, then its encoded copies (the
		// content string and the server's two JSON encodings of it).
		if err := server.Reserve(ctx, length); err != nil {
			return err
		}
		buf := make([]byte, length)
		n, err := f.ReadAt(buf, off)
		eof := err == io.EOF
		if err != nil && !eof {
			if errors.Is(err, syscall.EAGAIN) {
				return errWouldBlock
			}
			return err
		}
		buf = buf[:n]
		if fi.Size() > 0 && off+int64(n) >= fi.Size() {
			eof = true
		}
		res = protocol.FileReadChunkResult{SizeBytes: int64(n), Encoding: enc, Offset: off, FileSize: fi.Size(), EOF: eof}
		if enc == protocol.EncodingBase64 {
			if err := server.Reserve(ctx, 3*int64(base64.StdEncoding.EncodedLen(n))); err != nil {
				return err
			}
			res.Content = base64.StdEncoding.EncodeToString(buf)
		} else {
			if !utf8.Valid(buf) {
				return errNotUTF8
			}
			if err := server.Reserve(ctx, int64(n)+2*int64(jsonStringLen(unsafeString(buf)))); err != nil {
				return err
			}
			res.Content = string(buf)
		}
		return nil
	})
	if err != nil {
		return nil, fileError(p.Path, err)
	}
	return res, nil
}

// openRegularAt opens t for reading if it is a regular file file_read may
// read (no size limit): checked before the open and again on the handle.
func (s *Service) openRegularAt(t *policy.Target) (*os.File, fs.FileInfo, error) {
	check := func(fi fs.FileInfo) error {
		if fi.Mode()&fs.ModeSymlink != 0 {
			return errSymlink
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%w (%s)", errNotRegular, fileKind(fi.Mode()))
		}
		uid, nlink := owner(fi)
		return policy.CheckFile(t, uid, nlink, false)
	}
	fi, err := statAt(t)
	if err != nil {
		return nil, nil, err
	}
	if err := check(fi); err != nil {
		return nil, nil, err
	}
	f, err := openReadAt(t)
	if err != nil {
		return nil, nil, err
	}
	if fi, err = f.Stat(); err == nil {
		err = check(fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, fi, nil
}

// file_stat: the metadata of a path inside allowed_read_paths or
// allowed_write_paths (not followed if it is a link); the sha256 of a
// regular file inside allowed_read_paths on request.
func (s *Service) fileStat(ctx context.Context, params json.RawMessage) (any, error) {
	return s.withFileDeadline(ctx, func() (any, error) { return s.fileStatNow(params) })
}

func (s *Service) fileStatNow(params json.RawMessage) (any, error) {
	var p protocol.FileStatParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Path == "" {
		return nil, invalidParams(`"path" is required`)
	}
	if !strings.HasPrefix(p.Path, "/") {
		return nil, fileError(p.Path, policy.ErrNotAbsolute)
	}
	var res protocol.FileStatResult
	stat := func(t *policy.Target) error {
		fi, err := statAt(t)
		if err != nil {
			return err
		}
		res = statResult(p.Path, fi)
		if p.SHA256 && res.Type == "file" {
			f, _, err := s.openRegularAt(t)
			if err != nil {
				return err
			}
			defer f.Close()
			r, err := newNonblockReader(f)
			if err != nil {
				return err
			}
			h := sha256.New()
			if _, err := io.Copy(h, r); err != nil {
				return err
			}
			res.SHA256 = hex.EncodeToString(h.Sum(nil))
		}
		return nil
	}
	err := s.read.Do(p.Path, stat)
	if policy.IsEscape(err) && !p.SHA256 {
		if werr := s.write.Do(p.Path, stat); !policy.IsEscape(werr) {
			err = werr
		}
	}
	if err != nil {
		return nil, fileError(p.Path, err)
	}
	return res, nil
}

func statResult(path string, fi fs.FileInfo) protocol.FileStatResult {
	m := fi.Mode()
	typ := "file"
	switch {
	case m.IsDir():
		typ = "directory"
	case m&fs.ModeSymlink != 0:
		typ = "symlink"
	case m&fs.ModeNamedPipe != 0:
		typ = "fifo"
	case m&fs.ModeSocket != 0:
		typ = "socket"
	case m&fs.ModeCharDevice != 0:
		typ = "char_device"
	case m&fs.ModeDevice != 0:
		typ = "block_device"
	}
	bits := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	uid, _ := owner(fi)
	gid := groupOf(fi)
	return protocol.FileStatResult{
		Path: path, Type: typ, SizeBytes: fi.Size(), Mode: fmt.Sprintf("%04o", bits),
		UID: uid, GID: gid, MtimeNS: fi.ModTime().UnixNano(),
	}
}
