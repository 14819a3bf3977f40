package methods

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/windows"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// The file methods on Windows. A path passes policy.Clean (drive paths
// only; no \\?\, \\.\, UNC, device names, streams, 8.3 names, trailing dots
// or spaces) and lies inside an allowed entry by whole components, case
// insensitively; then the file is opened without following a link in its
// last component (FILE_FLAG_OPEN_REPARSE_POINT: a link or junction there is
// refused) and the final path Windows reports for the open handle
// (junctions and links in the middle resolved) must still lie inside the
// entry's own final path. Reads use that handle. Writes go to a temporary
// file created in the checked directory, which is held open without
// FILE_SHARE_DELETE (so it cannot be renamed or replaced by a junction
// meanwhile), and replace the target with
// MoveFileEx(MOVEFILE_REPLACE_EXISTING|MOVEFILE_WRITE_THROUGH): a failed
// write leaves the old file.

// Errors of the file methods, mapped to protocol codes by fileErrorWindows.
var (
	errNotRegular = errors.New("not a regular file")
	errNotUTF8    = errors.New("content is not valid UTF-8")
	errBadBase64  = errors.New("content is not valid base64")
)

type tooLargeError struct {
	size int64
	max  int64
}

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("is %d bytes, over max_file_size_bytes (%d)", e.size, e.max)
}

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

// validPerm reports whether p is three octal digits, optionally with a
// leading 0 ("644", "0644").
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

// openShare is how files are opened for the checks: others may read and
// write, but not delete or rename what the agent holds.
const openShare = windows.FILE_SHARE_READ | windows.FILE_SHARE_WRITE

// openChecked opens path (already cleaned and inside entry) with access,
// never following a link in the last component, and checks that it is not
// a link, is a directory when dir (else a regular disk file), and that its
// final path lies inside entry.
func openChecked(path, entry string, access uint32, dir bool) (windows.Handle, error) {
	p16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	h, err := windows.CreateFile(p16, access, openShare, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return 0, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var info windows.ByHandleFileInformation
	if err := windows.GetFileInformationByHandle(h, &info); err != nil {
		windows.CloseHandle(h)
		return 0, fmt.Errorf("query %s: %w", path, err)
	}
	isDir := info.FileAttributes&windows.FILE_ATTRIBUTE_DIRECTORY != 0
	switch {
	case info.FileAttributes&windows.FILE_ATTRIBUTE_REPARSE_POINT != 0:
		windows.CloseHandle(h)
		return 0, fmt.Errorf("%s: %w", path, policy.ErrUntrusted)
	case dir && !isDir:
		windows.CloseHandle(h)
		return 0, fmt.Errorf("%s: %w (want a directory)", path, errNotRegular)
	case !dir && isDir:
		windows.CloseHandle(h)
		return 0, fmt.Errorf("%w (directory)", errNotRegular)
	}
	if !dir {
		if t, _ := windows.GetFileType(h); t != windows.FILE_TYPE_DISK {
			windows.CloseHandle(h)
			return 0, fmt.Errorf("%w (device or pipe)", errNotRegular)
		}
	}
	if err := checkFinal(h, entry); err != nil {
		windows.CloseHandle(h)
		return 0, err
	}
	return h, nil
}

// checkFinal refuses a handle whose final path is not inside entry.
func checkFinal(h windows.Handle, entry string) error {
	final, err := policy.FinalPath(h)
	if err != nil {
		return err
	}
	entryFinal, err := policy.EntryFinalPath(entry)
	if err != nil {
		return err
	}
	if !policy.Contains(final, entry, entryFinal) {
		return fmt.Errorf("%s leads to %s: %w", entry, policy.StripFinalPrefix(final), policy.ErrOutside)
	}
	return nil
}

// file_read: a regular file inside allowed_read_paths, at most
// max_file_size_bytes, as UTF-8 text or base64.
func (s *Service) fileRead(_ context.Context, params json.RawMessage) (any, error) {
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
	path, err := policy.Clean(p.Path)
	if err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	entry, err := s.read.Entry(path)
	if err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	h, err := openChecked(path, entry, windows.GENERIC_READ, false)
	if err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	f := os.NewFile(uintptr(h), path)
	defer f.Close()
	max := s.cfg.MaxFileSizeBytes
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	if int64(len(data)) > max {
		fi, _ := f.Stat()
		size := int64(len(data))
		if fi != nil {
			size = fi.Size()
		}
		return nil, fileErrorWindows(p.Path, &tooLargeError{size: size, max: max})
	}
	res := protocol.FileReadResult{Encoding: enc, SizeBytes: int64(len(data))}
	if enc == protocol.EncodingBase64 {
		res.Content = base64Enc.EncodeToString(data)
	} else {
		if !utf8.Valid(data) {
			return nil, fileErrorWindows(p.Path, errNotUTF8)
		}
		res.Content = string(data)
	}
	return res, nil
}

// file_write: decode and size-check the content, check the path, then write
// a temporary file in the checked directory and move it over the target.
// SpooledMethods is empty on Windows: file_write takes its content from
// the request line (server.Options.Spooled).
func (s *Service) SpooledMethods() map[string]bool { return nil }

func (s *Service) fileWrite(_ context.Context, params json.RawMessage) (any, error) {
	var p protocol.FileWriteParams
	raw, err := decodeWriteParams(params, &p, &p.Content)
	if err != nil {
		return nil, err
	}
	if p.Path == "" {
		return nil, invalidParams(`"path" is required`)
	}
	enc, err := checkEncoding(p.Encoding)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		if enc == protocol.EncodingUTF8 {
			if utf8.Valid(raw) {
				p.Content = string(raw)
			} else if err := json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &p.Content); err != nil {
				return nil, invalidParams(`"content": %v`, err)
			}
		} else {
			p.Content = string(raw)
		}
	}
	readOnly := false
	if p.Permissions != "" {
		if !validPerm(p.Permissions) {
			return nil, invalidParams(`"permissions" must be an octal mode from "000" to "0777" such as "0644", got %q`, p.Permissions)
		}
		v, _ := strconv.ParseUint(p.Permissions, 8, 32)
		// Windows has no mode bits: an owner without write permission
		// makes the file read-only; the rest is the directory's ACL.
		readOnly = v&0o200 == 0
	}
	data := []byte(p.Content)
	if enc == protocol.EncodingBase64 {
		if data, err = base64Enc.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(p.Content)); err != nil {
			return nil, invalidParams("%v: %v", errBadBase64, err)
		}
	}
	if int64(len(data)) > s.cfg.MaxFileSizeBytes {
		return nil, fileErrorWindows(p.Path, &tooLargeError{size: int64(len(data)), max: s.cfg.MaxFileSizeBytes})
	}
	path, err := policy.Clean(p.Path)
	if err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	if strings.Contains(strings.ReplaceAll(p.Path, "/", `\`), `\..`) {
		return nil, protocol.Errorf(protocol.CodePermissionDenied, `path %q contains ".."; file_write needs a path without it`, p.Path)
	}
	entry, err := s.write.Entry(path)
	if err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	if err := writeFileWindows(path, entry, data, p.CreateDirs, readOnly); err != nil {
		return nil, fileErrorWindows(p.Path, err)
	}
	return protocol.FileWriteResult{BytesWritten: int64(len(data)), Path: p.Path}, nil
}

// writeFileWindows writes data to path atomically. With createDirs the
// missing directories between entry and path are created one by one, each
// parent checked first.
func writeFileWindows(path, entry string, data []byte, createDirs, readOnly bool) error {
	dir := filepath.Dir(path)
	if createDirs && !strings.EqualFold(dir, entry) && len(dir) > len(entry) {
		if err := mkdirsChecked(entry, dir); err != nil {
			return err
		}
	}
	// Hold the directory: checked, and neither renamed nor replaced while
	// the temporary file is written and moved.
	dh, err := openChecked(dir, entry, windows.FILE_LIST_DIRECTORY|windows.FILE_TRAVERSE|windows.SYNCHRONIZE, true)
	if err != nil {
		return err
	}
	defer windows.CloseHandle(dh)
	// An existing target must be a regular file, not a link or directory.
	if _, err := os.Lstat(path); err == nil {
		th, err := openChecked(path, entry, windows.FILE_READ_ATTRIBUTES, false)
		if err != nil {
			return err
		}
		windows.CloseHandle(th)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := filepath.Join(dir, ".kvmmanager-agent-"+hex.EncodeToString(rnd[:])+".tmp")
	t16, err := windows.UTF16PtrFromString(tmp)
	if err != nil {
		return err
	}
	th, err := windows.CreateFile(t16, windows.GENERIC_WRITE|windows.DELETE, 0, nil, windows.CREATE_NEW,
		windows.FILE_ATTRIBUTE_NORMAL|windows.FILE_FLAG_OPEN_REPARSE_POINT, 0)
	if err != nil {
		return &os.PathError{Op: "create", Path: tmp, Err: err}
	}
	if err := checkFinal(th, entry); err != nil {
		windows.CloseHandle(th)
		os.Remove(tmp)
		return err
	}
	f := os.NewFile(uintptr(th), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync() // FlushFileBuffers
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && readOnly {
		err = windows.SetFileAttributes(t16, windows.FILE_ATTRIBUTE_READONLY)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	p16, err := windows.UTF16PtrFromString(path)
	if err == nil {
		err = windows.MoveFileEx(t16, p16, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH)
	}
	if err != nil {
		windows.SetFileAttributes(t16, windows.FILE_ATTRIBUTE_NORMAL)
		os.Remove(tmp)
		return &os.PathError{Op: "replace", Path: path, Err: err}
	}
	return nil
}

// mkdirsChecked creates the directories from entry down to dir, opening and
// checking each existing parent before creating its child.
func mkdirsChecked(entry, dir string) error {
	rest := strings.Split(strings.TrimPrefix(dir[len(entry):], `\`), `\`)
	cur := entry
	for _, c := range rest {
		parent := cur
		cur = filepath.Join(cur, c)
		if fi, err := os.Lstat(cur); err == nil {
			if !fi.IsDir() || fi.Mode()&os.ModeSymlink != 0 {
				return fmt.Errorf("%s: %w (want a directory)", cur, errNotRegular)
			}
			continue
		}
		ph, err := openChecked(parent, entry, windows.FILE_LIST_DIRECTORY|windows.FILE_TRAVERSE|windows.SYNCHRONIZE, true)
		if err != nil {
			return err
		}
		c16, err := windows.UTF16PtrFromString(cur)
		if err == nil {
			err = windows.CreateDirectory(c16, nil)
		}
		windows.CloseHandle(ph)
		if err != nil && !errors.Is(err, windows.ERROR_ALREADY_EXISTS) {
			return &os.PathError{Op: "mkdir", Path: cur, Err: err}
		}
	}
	return nil
}

// fileErrorWindows maps an error of file_read/file_write on path to a
// protocol error.
func fileErrorWindows(path string, err error) error {
	var tl *tooLargeError
	var pe *protocol.Error
	var oe *policy.OutsideError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.Is(err, policy.ErrNotAbsolute):
		return invalidParams("path %q is not absolute (want a drive path such as C:\\Windows\\Temp\\x)", path)
	case errors.Is(err, policy.ErrForbiddenName):
		return protocol.Errorf(protocol.CodePermissionDenied, "%v", err)
	case errors.As(err, &oe):
		return protocol.Errorf(protocol.CodePermissionDenied, "%v", oe)
	case errors.Is(err, policy.ErrOutside):
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q is outside the allowed paths: %v", path, err)
	case errors.Is(err, policy.ErrUntrusted):
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q is a symbolic link or junction; the file methods do not follow them", path)
	case errors.As(err, &tl):
		return protocol.Errorf(protocol.CodePermissionDenied, "file %q %v", path, tl)
	case errors.Is(err, errNotUTF8):
		return invalidParams(`file %q is not valid UTF-8 text; read it with "encoding": "base64"`, path)
	case errors.Is(err, errNotRegular):
		return invalidParams("path %q: %v", path, err)
	case errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND), errors.Is(err, os.ErrNotExist):
		return protocol.Errorf(protocol.CodeNotFound, "path %q not found", path)
	case errors.Is(err, windows.ERROR_ACCESS_DENIED), errors.Is(err, windows.ERROR_SHARING_VIOLATION), errors.Is(err, os.ErrPermission):
		return protocol.Errorf(protocol.CodePermissionDenied, "path %q: %v", path, err)
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "path %q: %v", path, err)
}
