package methods

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
	"unicode"
)

// Errors of the guest operations (fsfreeze, time, accounts, ...). Each
// dialect maps them to its own error reply: test with errors.Is.
var (
	// ErrInvalidArgument: the request itself is wrong (a bad key, a
	// forbidden character, a time out of range).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound: the user or file the request names does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotAllowed: the configuration forbids the operation
	// (allow_account_changes is false).
	ErrNotAllowed = errors.New("not allowed by the configuration")
	// ErrFrozen: the operation would write to a frozen file system.
	ErrFrozen = errors.New("file systems are frozen")
	// ErrUnsupported: the machine lacks what the operation needs (no RTC).
	ErrUnsupported = errors.New("unsupported")
)

// opError is an error whose text is the user-facing message (qemu-ga's
// wording where there is one) and whose kind is one of the Err* values
// above, or nil for an operation that failed on the machine.
type opError struct {
	kind error
	msg  string
	err  error
}

func (e *opError) Error() string {
	if e.err != nil {
		return e.msg + ": " + strerror(e.err)
	}
	return e.msg
}

// strerror is strerror(3)'s text for an errno ("Operation not permitted"),
// as qemu-ga's messages carry it; other errors print as they are.
func strerror(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) && errno != 0 {
		msg := []rune(errno.Error())
		msg[0] = unicode.ToUpper(msg[0])
		return string(msg)
	}
	return err.Error()
}

// Is matches the kind; Unwrap gives the cause (e.g. a syscall.Errno).
func (e *opError) Is(target error) bool { return e.kind != nil && target == e.kind }
func (e *opError) Unwrap() error        { return e.err }

func opErr(kind error, format string, args ...any) error {
	return &opError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// wrapErr returns an error reading "msg: err" (err being the cause).
func wrapErr(kind, err error, format string, args ...any) error {
	return &opError{kind: kind, msg: fmt.Sprintf(format, args...), err: err}
}

// guestState is the mutable state of the guest operations, and the seams
// tests replace (system calls that would change the real machine).
type guestState struct {
	freeze freezeState

	// fsIoctl performs FIFREEZE/FITHAW/FITRIM on a mount point; tests
	// replace it to keep away from the real file systems.
	fsIoctl func(path string, req uint, arg *fstrimRange) error
	// setClock sets CLOCK_REALTIME; readRTC/writeRTC access /dev/rtc0.
	setClock func(t time.Time) error
	readRTC  func() (time.Time, error)
	writeRTC func(t time.Time) error
	// chpasswd is the path of chpasswd ("" = look it up in the system PATH).
	chpasswd string
	// hookTimeout bounds each fsfreeze hook (default hookTimeoutDefault).
	hookTimeout time.Duration
	// stateFile is the fsfreeze record ("" = hostPath(fsfreezeStateFile)).
	stateFile string
	// hookDir is the fsfreeze hook directory ("" = hostPath(FsfreezeHookDir)).
	hookDir string
	// onAutoThaw, when set (tests), runs after an automatic thaw.
	onAutoThaw func(thawed int)
	// freezeBound overrides fsfreeze_timeout_seconds (tests).
	freezeBound time.Duration
}

// freezeState is what fsfreeze_freeze did and the auto-thaw timer.
type freezeState struct {
	mu       sync.Mutex
	frozen   bool
	mounts   []string // frozen mount points, in freeze order
	deadline time.Time
	timer    *time.Timer
	gen      uint64 // incremented by every freeze and thaw
}

// fstrimRange is struct fstrim_range of <linux/fs.h>.
type fstrimRange struct {
	Start  uint64
	Len    uint64
	Minlen uint64
}
