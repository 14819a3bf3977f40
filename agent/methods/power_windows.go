package methods

import (
	"fmt"
	"log/slog"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// InitiateShutdownW flags and reason.
const (
	shutdownForceOthers   = 0x00000001 // SHUTDOWN_FORCE_OTHERS: close other sessions' applications
	shutdownForceSelf     = 0x00000002 // SHUTDOWN_FORCE_SELF
	shutdownRestart       = 0x00000004 // SHUTDOWN_RESTART
	shutdownPowerOff      = 0x00000008 // SHUTDOWN_POWEROFF
	shutdownGraceOverride = 0x00000020 // SHUTDOWN_GRACE_OVERRIDE: the grace period holds even if policy sets another
	// SHTDN_REASON_MAJOR_OTHER | SHTDN_REASON_MINOR_OTHER | SHTDN_REASON_FLAG_PLANNED
	shutdownReason = 0x80000000
)

// forceMargin is how long after the grace period a non-forced shutdown that
// has not happened (an application refused to close) is forced.
const forceMargin = 30 * time.Second

// shutdownPrivilegeName is SE_SHUTDOWN_NAME.
const shutdownPrivilegeName = "SeShutdownPrivilege"

var (
	advapi32              = windows.NewLazySystemDLL("advapi32.dll")
	procInitiateShutdownW = advapi32.NewProc("InitiateShutdownW")
	shutdownMessage, _    = windows.UTF16PtrFromString("Requested by the KVM host through kvmmanager-agent")
)

// windowsPower is the real PowerAction on Windows: InitiateShutdownW with
// SE_SHUTDOWN_NAME enabled. Not forced, Windows warns the sessions for the
// grace period and asks applications to close; if the machine is still up
// forceMargin after that, the shutdown is forced. Forced, applications are
// closed without asking and it happens at once.
type windowsPower struct {
	log      *slog.Logger
	enable   func() error                           // enables SE_SHUTDOWN_NAME in the process token
	initiate func(flags uint32, grace uint32) error // InitiateShutdownW
	after    func(time.Duration) <-chan time.Time
}

func newSystemPower(log *slog.Logger) *windowsPower {
	return &windowsPower{log: log, enable: enableShutdownPrivilege, initiate: initiateShutdown, after: time.After}
}

// shutdownFlags are the InitiateShutdownW flags of a request.
func shutdownFlags(kind PowerKind, force bool) uint32 {
	f := uint32(shutdownPowerOff)
	if kind == Reboot {
		f = shutdownRestart
	}
	if force {
		f |= shutdownForceOthers | shutdownForceSelf
	} else {
		f |= shutdownGraceOverride
	}
	return f
}

func (p *windowsPower) Power(kind PowerKind, force bool, grace time.Duration) error {
	if err := p.enable(); err != nil {
		return err
	}
	secs := uint32(grace / time.Second)
	if force {
		secs = 0
	}
	if err := p.initiate(shutdownFlags(kind, force), secs); err != nil {
		if force {
			return err
		}
		p.log.Warn("shutdown request refused; forcing", "action", kind.String(), "err", err)
		return p.initiate(shutdownFlags(kind, true), 0)
	}
	if force {
		return nil
	}
	<-p.after(grace + forceMargin)
	p.log.Warn("system still running after the grace period; forcing", "action", kind.String(), "grace", grace)
	return p.initiate(shutdownFlags(kind, true), 0)
}

// enableShutdownPrivilege enables SE_SHUTDOWN_NAME, which LocalSystem (the
// service's account) holds but has disabled.
func enableShutdownPrivilege() error {
	var tok windows.Token
	if err := windows.OpenProcessToken(windows.CurrentProcess(), windows.TOKEN_ADJUST_PRIVILEGES|windows.TOKEN_QUERY, &tok); err != nil {
		return fmt.Errorf("OpenProcessToken: %w", err)
	}
	defer tok.Close()
	name, _ := windows.UTF16PtrFromString(shutdownPrivilegeName)
	var luid windows.LUID
	if err := windows.LookupPrivilegeValue(nil, name, &luid); err != nil {
		return fmt.Errorf("LookupPrivilegeValue %s: %w", shutdownPrivilegeName, err)
	}
	tp := windows.Tokenprivileges{PrivilegeCount: 1}
	tp.Privileges[0] = windows.LUIDAndAttributes{Luid: luid, Attributes: windows.SE_PRIVILEGE_ENABLED}
	// Without the privilege this succeeds all the same (ERROR_NOT_ALL_ASSIGNED
	// in the last error); InitiateShutdownW then fails with access denied.
	if err := windows.AdjustTokenPrivileges(tok, false, &tp, 0, nil, nil); err != nil {
		return fmt.Errorf("AdjustTokenPrivileges %s: %w", shutdownPrivilegeName, err)
	}
	return nil
}

func initiateShutdown(flags, grace uint32) error {
	if err := procInitiateShutdownW.Find(); err != nil {
		return fmt.Errorf("InitiateShutdownW: %w", err)
	}
	r, _, _ := procInitiateShutdownW.Call(0, uintptr(unsafe.Pointer(shutdownMessage)), uintptr(grace), uintptr(flags), shutdownReason)
	if r != 0 { // a Win32 error code
		return fmt.Errorf("InitiateShutdownW: %w", windows.Errno(r))
	}
	return nil
}
